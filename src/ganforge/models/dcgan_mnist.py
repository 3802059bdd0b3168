"""`dcgan-mnist`: the notebook's DCGAN for 28x28 images, layer for layer.

Generator:     z -> Dense 1024 -> BN -> ReLU -> Dense 128*7*7 -> BN -> ReLU -> [128, 7, 7]
               -> UpSampling x2 -> Conv 64 5x5 'same' -> BN -> ReLU            [64, 14, 14]
               -> UpSampling x2 -> Conv C 5x5 'same' -> tanh                   [C, 28, 28]
Discriminator: Conv 64 5x5 stride 2 'same' -> BN -> ELU                        [64, 14, 14]
               -> Conv 128 5x5 stride 2 'valid' -> BN -> ELU                   [128, 5, 5]
               -> MaxPool 2 -> Flatten (512) -> Dense 256 -> BN -> Dropout 0.5 -> ELU
               -> Dense 1 (a logit; the notebook's sigmoid lives in the loss)

The notebook's second discriminator conv has no `padding` argument, so Keras uses 'valid':
14x14 -> 5x5, and max-pooling leaves 2x2x128 = 512 features. Keras counts 6,753,409
trainable generator and 339,073 trainable discriminator parameters; so does this port.
The first discriminator conv pads as Keras does on a stride-2 'same' conv (1 before, 2
after; see `ganforge.models.layers`). Keras reshapes the Dense output channels-last
(7, 7, 128) and flattens the pooled map channels-last; this port reshapes and flattens
channels-first. That only renames hidden units (the Dense weights are drawn i.i.d.), so
the two compute the same family of functions: tests/fidelity copies Keras' weights in,
with that fixed permutation, and gets Keras' outputs.

BatchNorm uses Keras' defaults (momentum 0.99 = PyTorch 0.01, epsilon 1e-3); `bn_momentum`
changes the PyTorch-style momentum (0.1 tracks the statistics faster in short runs);
`batchnorm: keras2` keeps the moving statistics as the notebook's Keras 2 did (zero-debiased,
see `ganforge.models.layers.KerasBatchNorm2d`), which the faithful preset sets.
`width` scales every layer (the CPU demo uses 0.25); `dropout` is D's dropout rate.
"""

from __future__ import annotations

import torch
from torch import nn

from ganforge.models.layers import (
    KERAS_BN_MOMENTUM,
    BatchNormKind,
    ImageShape,
    KerasConv2d,
    keras_bn,
    keras_init,
    scaled,
)
from ganforge.models.registry import Architecture, register


class DCGANMnistGenerator(nn.Module):
    def __init__(
        self,
        latent_dim: int,
        image_shape: ImageShape,
        width: float = 1.0,
        bn_momentum: float = KERAS_BN_MOMENTUM,
        batchnorm: BatchNormKind = "torch",
    ):
        super().__init__()
        channels = image_shape[0]
        dense, c1, c2 = scaled(1024, width), scaled(128, width), scaled(64, width)
        self.latent_dim, self.image_shape, self.c1 = latent_dim, tuple(image_shape), c1
        self.dense = nn.Sequential(
            nn.Linear(latent_dim, dense),
            keras_bn(nn.BatchNorm1d, dense, bn_momentum, batchnorm),
            nn.ReLU(),
            nn.Linear(dense, c1 * 7 * 7),
            keras_bn(nn.BatchNorm1d, c1 * 7 * 7, bn_momentum, batchnorm),
            nn.ReLU(),
        )
        self.conv = nn.Sequential(
            # [c1, 14, 14]
            nn.Upsample(scale_factor=2, mode="nearest"),
            KerasConv2d(c1, c2, 5),
            keras_bn(nn.BatchNorm2d, c2, bn_momentum, batchnorm),
            nn.ReLU(),
            # [c2, 28, 28]
            nn.Upsample(scale_factor=2, mode="nearest"),
            KerasConv2d(c2, channels, 5),
            nn.Tanh(),
        )
        keras_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # [N, c1, 7, 7]
        x = self.dense(z).view(-1, self.c1, 7, 7)
        # [N, C, 28, 28]
        return self.conv(x)


class DCGANMnistDiscriminator(nn.Module):
    def __init__(
        self,
        image_shape: ImageShape,
        width: float = 1.0,
        dropout: float = 0.5,
        bn_momentum: float = KERAS_BN_MOMENTUM,
        batchnorm: BatchNormKind = "torch",
    ):
        super().__init__()
        channels = image_shape[0]
        c1, c2, dense = scaled(64, width), scaled(128, width), scaled(256, width)
        self.net = nn.Sequential(
            # [c1, 14, 14]
            KerasConv2d(channels, c1, 5, stride=2, padding="same"),
            keras_bn(nn.BatchNorm2d, c1, bn_momentum, batchnorm),
            nn.ELU(),
            # [c2, 5, 5]
            KerasConv2d(c1, c2, 5, stride=2, padding="valid"),
            keras_bn(nn.BatchNorm2d, c2, bn_momentum, batchnorm),
            nn.ELU(),
            # [c2, 2, 2]
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(c2 * 2 * 2, dense),
            keras_bn(nn.BatchNorm1d, dense, bn_momentum, batchnorm),
            nn.Dropout(dropout),
            nn.ELU(),
            nn.Linear(dense, 1),
        )
        keras_init(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # [N] logits
        return self.net(images).squeeze(1)


def _supports(shape: ImageShape) -> str | None:
    if shape[1:] == (28, 28):
        return None
    return "it makes 28x28 images only (use 'dcgan' for other sizes)"


register(
    Architecture(
        name="dcgan-mnist",
        summary="the notebook's DCGAN for 28x28 images (upsample + 5x5 conv G, strided-conv + "
        "maxpool D)",
        generator=DCGANMnistGenerator,
        discriminator=DCGANMnistDiscriminator,
        supports=_supports,
        default_resolution=28,
    )
)
