"""`dcgan-oasis`: the OASIS brain-MRI course project's DCGAN, 128x128x1 by default.

Generator:     z -> Dense 256*(R/8)^2 (no bias) -> BN -> LeakyReLU(0.2) -> [256, R/8, R/8]
               -> ConvTranspose 128 5x5 stride 2 -> BN -> LeakyReLU(0.2)        (R/4)
               -> ConvTranspose  64 5x5 stride 2 -> BN -> LeakyReLU(0.2)        (R/2)
               -> ConvTranspose   C 5x5 stride 2 -> tanh                        (R = 128)
Discriminator: Conv 64 5x5 stride 2 -> LeakyReLU(0.2) -> Dropout 0.3            (R/2)
               -> Conv 128 5x5 stride 2 -> LeakyReLU(0.2) -> Dropout 0.3        (R/4)
               -> Flatten -> Dense 1 (a logit; the sigmoid lives in the loss)

This is the documented recipe (Dense, then three transposed-convolution upsampling
stages with BatchNorm + LeakyReLU(0.2), tanh; a discriminator of two strided
convolutions, no pooling, and a Dense output), built the way the Keras DCGAN tutorial it
follows builds it: 5x5 kernels, 'same' padding, no bias before BatchNorm, Dropout 0.3 in
D, Keras initialisation (Glorot-uniform, zero bias) and Keras BatchNorm defaults
(momentum 0.99, epsilon 1e-3). PyTorch's ConvTranspose2d(5, stride 2, padding 2,
output_padding 1) gives Keras' 'same' output size (exactly double).

`width` scales every layer; `dropout` sets D's dropout; `bn_momentum` the BatchNorm
momentum in PyTorch's convention (0.1 makes the running statistics, which sample grids
use, settle within a few dozen iterations in short runs). Besides 128, any power-of-two
size from 32 to 256 works (the Dense layer starts at R/8), which lets tests and CPU
demos run the same architecture small.
"""

from __future__ import annotations

import torch
from torch import nn

from ganforge.models.dcgan import resolution_problem
from ganforge.models.registry import Architecture, ImageShape, keras_init, register

KERAS_MOMENTUM = 0.01  # Keras BatchNormalization() momentum 0.99, in PyTorch's convention


def _bn(kind: type, features: int, momentum: float) -> nn.Module:
    return kind(features, momentum=momentum, eps=1e-3)  # Keras epsilon


def _scaled(units: int, width: float) -> int:
    return max(1, round(units * width))


class OasisGenerator(nn.Module):
    def __init__(self, latent_dim: int, image_shape: ImageShape, width: float = 1.0,
                 bn_momentum: float = KERAS_MOMENTUM):
        super().__init__()
        channels, resolution = image_shape[0], image_shape[1]
        c0, c1, c2 = _scaled(256, width), _scaled(128, width), _scaled(64, width)
        self.latent_dim, self.image_shape = latent_dim, tuple(image_shape)
        self.start = (c0, resolution // 8, resolution // 8)
        units = c0 * (resolution // 8) ** 2
        self.dense = nn.Sequential(nn.Linear(latent_dim, units, bias=False), _bn(nn.BatchNorm1d, units, bn_momentum),
                                   nn.LeakyReLU(0.2))
        self.conv = nn.Sequential(
            nn.ConvTranspose2d(c0, c1, 5, 2, 2, output_padding=1, bias=False),  # [c1, R/4, R/4]
            _bn(nn.BatchNorm2d, c1, bn_momentum), nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(c1, c2, 5, 2, 2, output_padding=1, bias=False),  # [c2, R/2, R/2]
            _bn(nn.BatchNorm2d, c2, bn_momentum), nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(c2, channels, 5, 2, 2, output_padding=1, bias=False),  # [C, R, R]
            nn.Tanh(),
        )
        keras_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv(self.dense(z).view(-1, *self.start))


class OasisDiscriminator(nn.Module):
    def __init__(self, image_shape: ImageShape, width: float = 1.0, dropout: float = 0.3):
        super().__init__()
        channels, resolution = image_shape[0], image_shape[1]
        c1, c2 = _scaled(64, width), _scaled(128, width)
        self.net = nn.Sequential(
            nn.Conv2d(channels, c1, 5, 2, 2), nn.LeakyReLU(0.2), nn.Dropout(dropout),  # [c1, R/2, R/2]
            nn.Conv2d(c1, c2, 5, 2, 2), nn.LeakyReLU(0.2), nn.Dropout(dropout),  # [c2, R/4, R/4]
            nn.Flatten(),
            nn.Linear(c2 * (resolution // 4) ** 2, 1),
        )
        keras_init(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).squeeze(1)  # [N] logits


register(Architecture(
    name="dcgan-oasis",
    summary="the OASIS brain-MRI DCGAN, 128x128x1 (Dense + 3 transposed convs G, 2 strided convs + Dense D)",
    generator=lambda latent_dim, image_shape, width=1.0, bn_momentum=KERAS_MOMENTUM, **_: OasisGenerator(
        latent_dim, image_shape, width, bn_momentum),
    discriminator=lambda image_shape, width=1.0, dropout=0.3, **_: OasisDiscriminator(image_shape, width, dropout),
    supports=resolution_problem,
    options=("width", "dropout", "bn_momentum"),
    default_resolution=128,
))
