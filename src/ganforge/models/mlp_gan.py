"""`gan`: the notebook's fully connected GAN.

Generator:     z -> Dense 256 -> 512 -> 1024 -> 2048 (each LeakyReLU 0.2 then BatchNorm)
               -> Dense C*H*W, tanh -> reshape to the image
Discriminator: Flatten -> Dense 512 -> LeakyReLU 0.2 -> Dense 256 -> LeakyReLU 0.2 -> Dense 1

Keras ``BatchNormalization(momentum=0.8)`` keeps 80% of the old running value, which is
PyTorch's ``momentum=0.2``; Keras' epsilon is 1e-3. Options `g_hidden` and `d_hidden` set
the hidden widths; `batchnorm: keras2` keeps G's moving statistics as the notebook's Keras 2
did (zero-debiased, `ganforge.models.layers.KerasBatchNorm1d`). For one channel, Keras'
channels-last reshape and flatten order the pixels as this port does, so Keras weights copy
over unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ganforge.models.layers import BatchNormKind, ImageShape, keras_bn, keras_init
from ganforge.models.registry import Architecture, register

# Keras BatchNormalization(momentum=0.8), in PyTorch's convention
NOTEBOOK_BN_MOMENTUM = 0.2


class MLPGenerator(nn.Module):
    def __init__(
        self,
        latent_dim: int,
        image_shape: ImageShape,
        g_hidden: tuple[int, ...] = (256, 512, 1024, 2048),
        batchnorm: BatchNormKind = "torch",
    ):
        super().__init__()
        self.latent_dim, self.image_shape = latent_dim, tuple(image_shape)
        layers: list[nn.Module] = []
        width = latent_dim
        for units in tuple(g_hidden):
            layers += [
                nn.Linear(width, units),
                nn.LeakyReLU(0.2),
                keras_bn(nn.BatchNorm1d, units, NOTEBOOK_BN_MOMENTUM, batchnorm),
            ]
            width = units
        layers += [nn.Linear(width, math.prod(image_shape)), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        keras_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # [N, C, H, W]
        return self.net(z).view(-1, *self.image_shape)


class MLPDiscriminator(nn.Module):
    def __init__(self, image_shape: ImageShape, d_hidden: tuple[int, ...] = (512, 256)):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(image_shape)
        for units in tuple(d_hidden):
            layers += [nn.Linear(width, units), nn.LeakyReLU(0.2)]
            width = units
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        keras_init(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # [N] logits
        return self.net(images).squeeze(1)


register(
    Architecture(
        name="gan",
        summary="the notebook's MLP GAN (G 256-512-1024-2048, D 512-256), any image size",
        generator=MLPGenerator,
        discriminator=MLPDiscriminator,
    )
)
