"""`dcgan-mnist`: the notebook's DCGAN for 28x28 images.

Generator:     z -> Dense 1024 -> BN -> ReLU -> Dense 128*7*7 -> BN -> ReLU -> [128,7,7]
               -> upsample x2 -> Conv 64 5x5 -> BN -> ReLU -> upsample x2 -> Conv C 5x5 -> tanh
Discriminator: Conv 64 5x5/2 -> BN -> ELU -> Conv 128 5x5/2 -> BN -> ELU -> MaxPool 2
               -> Dense 256 -> BN -> Dropout 0.5 -> ELU -> Dense 1

BatchNorm uses Keras' defaults (momentum 0.99 = PyTorch 0.01, epsilon 1e-3); `bn_momentum`
changes the PyTorch-style momentum (0.1 tracks the statistics faster in short runs). Keras'
'same' padding on a stride-2 5x5 conv pads (1, 2); we pad 2 on both sides, which gives the
same output sizes and parameter counts. `width` scales every layer (the CPU demo uses 0.25).
"""

from __future__ import annotations

import torch
from torch import nn

from ganforge.models.registry import Architecture, ImageShape, keras_init, register

KERAS_MOMENTUM = 0.01  # Keras BatchNormalization() default momentum 0.99
KERAS_BN_DEFAULT = dict(momentum=KERAS_MOMENTUM, eps=1e-3)


def _bn(kind: type, features: int, momentum: float) -> nn.Module:
    return kind(features, **{**KERAS_BN_DEFAULT, "momentum": momentum})


def _scaled(units: int, width: float) -> int:
    return max(1, round(units * width))


class DCGANMnistGenerator(nn.Module):
    def __init__(self, latent_dim: int, image_shape: ImageShape, width: float = 1.0,
                 bn_momentum: float = KERAS_MOMENTUM):
        super().__init__()
        channels = image_shape[0]
        dense, c1, c2 = _scaled(1024, width), _scaled(128, width), _scaled(64, width)
        self.latent_dim, self.image_shape, self.c1 = latent_dim, tuple(image_shape), c1
        self.dense = nn.Sequential(
            nn.Linear(latent_dim, dense), _bn(nn.BatchNorm1d, dense, bn_momentum), nn.ReLU(),
            nn.Linear(dense, c1 * 7 * 7), _bn(nn.BatchNorm1d, c1 * 7 * 7, bn_momentum), nn.ReLU(),
        )
        self.conv = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),  # [c1, 14, 14]
            nn.Conv2d(c1, c2, 5, padding=2), _bn(nn.BatchNorm2d, c2, bn_momentum), nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="nearest"),  # [c2, 28, 28]
            nn.Conv2d(c2, channels, 5, padding=2), nn.Tanh(),
        )
        keras_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.dense(z).view(-1, self.c1, 7, 7)  # [N, c1, 7, 7]
        return self.conv(x)  # [N, C, 28, 28]


class DCGANMnistDiscriminator(nn.Module):
    def __init__(self, image_shape: ImageShape, width: float = 1.0, dropout: float = 0.5,
                 bn_momentum: float = KERAS_MOMENTUM):
        super().__init__()
        channels = image_shape[0]
        c1, c2, dense = _scaled(64, width), _scaled(128, width), _scaled(256, width)
        self.net = nn.Sequential(
            nn.Conv2d(channels, c1, 5, stride=2, padding=2), _bn(nn.BatchNorm2d, c1, bn_momentum), nn.ELU(),  # 14x14
            nn.Conv2d(c1, c2, 5, stride=2, padding=2), _bn(nn.BatchNorm2d, c2, bn_momentum), nn.ELU(),  # 7x7
            nn.MaxPool2d(2),  # [c2, 3, 3]
            nn.Flatten(),
            nn.Linear(c2 * 3 * 3, dense), _bn(nn.BatchNorm1d, dense, bn_momentum), nn.Dropout(dropout), nn.ELU(),
            nn.Linear(dense, 1),
        )
        keras_init(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).squeeze(1)  # [N] logits


def _supports(shape: ImageShape) -> str | None:
    return None if shape[1:] == (28, 28) else "it makes 28x28 images only (use 'dcgan' for other sizes)"


register(Architecture(
    name="dcgan-mnist",
    summary="the notebook's DCGAN for 28x28 images (upsample + 5x5 conv G, strided-conv + maxpool D)",
    generator=lambda latent_dim, image_shape, width=1.0, bn_momentum=KERAS_MOMENTUM, **_: DCGANMnistGenerator(
        latent_dim, image_shape, width, bn_momentum),
    discriminator=lambda image_shape, width=1.0, dropout=0.5, bn_momentum=KERAS_MOMENTUM, **_: DCGANMnistDiscriminator(
        image_shape, width, dropout, bn_momentum),
    supports=_supports,
    default_resolution=28,
    options=("width", "dropout", "bn_momentum"),
))
