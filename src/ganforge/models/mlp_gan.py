"""`gan`: the notebook's fully connected GAN.

Generator:     z -> Dense 256 -> 512 -> 1024 -> 2048 (each LeakyReLU 0.2 then BatchNorm) -> Dense C*H*W, tanh
Discriminator: Flatten -> Dense 512 -> LeakyReLU 0.2 -> Dense 256 -> LeakyReLU 0.2 -> Dense 1

Keras ``BatchNormalization(momentum=0.8)`` keeps 80% of the old running value, which is
PyTorch's ``momentum=0.2``; Keras' epsilon is 1e-3.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ganforge.models.registry import Architecture, ImageShape, keras_init, register

KERAS_BN = dict(momentum=0.2, eps=1e-3)  # Keras BatchNormalization(momentum=0.8)


class MLPGenerator(nn.Module):
    def __init__(self, latent_dim: int, image_shape: ImageShape, hidden: tuple[int, ...] = (256, 512, 1024, 2048)):
        super().__init__()
        self.latent_dim, self.image_shape = latent_dim, tuple(image_shape)
        layers: list[nn.Module] = []
        width = latent_dim
        for units in hidden:
            layers += [nn.Linear(width, units), nn.LeakyReLU(0.2), nn.BatchNorm1d(units, **KERAS_BN)]
            width = units
        layers += [nn.Linear(width, math.prod(image_shape)), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        keras_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.image_shape)  # [N, C, H, W]


class MLPDiscriminator(nn.Module):
    def __init__(self, image_shape: ImageShape, hidden: tuple[int, ...] = (512, 256)):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(image_shape)
        for units in hidden:
            layers += [nn.Linear(width, units), nn.LeakyReLU(0.2)]
            width = units
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        keras_init(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).squeeze(1)  # [N] logits


def _generator(latent_dim: int, image_shape: ImageShape, g_hidden=(256, 512, 1024, 2048), **_: object) -> nn.Module:
    return MLPGenerator(latent_dim, image_shape, tuple(g_hidden))


def _discriminator(image_shape: ImageShape, d_hidden=(512, 256), **_: object) -> nn.Module:
    return MLPDiscriminator(image_shape, tuple(d_hidden))


register(Architecture(
    name="gan",
    summary="the notebook's MLP GAN (G 256-512-1024-2048, D 512-256), any image size",
    generator=_generator,
    discriminator=_discriminator,
    supports=lambda shape: None,
    options=("g_hidden", "d_hidden"),
))
