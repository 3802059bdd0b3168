"""`dcgan-oasis`: the OASIS brain-MRI course project's DCGAN, 128x128x1 by default.

Generator:     z -> Dense 256*(R/8)^2 (no bias) -> BN -> LeakyReLU(0.2) -> [256, R/8, R/8]
               -> ConvTranspose 128 5x5 stride 2 -> BN -> LeakyReLU(0.2)        (R/4)
               -> ConvTranspose  64 5x5 stride 2 -> BN -> LeakyReLU(0.2)        (R/2)
               -> ConvTranspose   C 5x5 stride 2 -> tanh                        (R = 128)
Discriminator: Conv 64 5x5 stride 2 -> BN -> LeakyReLU(0.2)                     (R/2)
               -> Conv 128 5x5 stride 2 -> BN -> LeakyReLU(0.2)                 (R/4)
               -> Flatten -> Dense 1 (a logit; the sigmoid lives in the loss)

The document describes a Dense layer and three transposed-convolution upsampling stages
with BatchNorm and LeakyReLU(0.2), a tanh output, and a discriminator of two strided
convolutions and one Dense layer, and says twice that BatchNorm is used in both networks,
with LeakyReLU(0.2) after the convolution and BatchNorm layers. The layer sizes follow the
TensorFlow DCGAN tutorial the project builds on, scaled to 128x128: 5x5 kernels, 'same'
padding (as TensorFlow computes it, see `ganforge.models.layers`), no bias before BatchNorm
in G, Keras initialisation (Glorot-uniform, zero bias) and Keras BatchNorm defaults
(momentum 0.99, epsilon 1e-3). The discriminator's convs keep their bias (Keras' default).

Options: `d_norm` ("batch", the document; "none", the tutorial) and `dropout` (0, the
document; the tutorial uses 0.3 after each LeakyReLU) choose the discriminator;
`d_norm="none", dropout=0.3` is the tutorial's discriminator. `width` scales every layer;
`bn_momentum` sets BatchNorm's momentum in PyTorch's convention (0.1 makes the running
statistics, which sample grids use, settle within a few dozen iterations in short runs);
`batchnorm: tf2` keeps them as tf.keras on TensorFlow 2 does (the faithful preset; see
`ganforge.models.layers.KerasBatchNorm1d`).
Besides 128, any power-of-two size from 32 to 256 works (the Dense layer starts at R/8),
which lets tests and CPU demos run the same architecture small.
"""

from __future__ import annotations

import torch
from torch import nn

from ganforge.models.layers import (
    KERAS_BN_MOMENTUM,
    BatchNormKind,
    ImageShape,
    KerasConv2d,
    KerasConvTranspose2d,
    keras_bn,
    keras_init,
    resolution_problem,
    scaled,
)
from ganforge.models.registry import Architecture, register

D_NORMS = ("batch", "none")


class OasisGenerator(nn.Module):
    def __init__(
        self,
        latent_dim: int,
        image_shape: ImageShape,
        width: float = 1.0,
        bn_momentum: float = KERAS_BN_MOMENTUM,
        batchnorm: BatchNormKind = "torch",
    ):
        super().__init__()
        channels, resolution = image_shape[0], image_shape[1]
        c0, c1, c2 = scaled(256, width), scaled(128, width), scaled(64, width)
        self.latent_dim, self.image_shape = latent_dim, tuple(image_shape)
        self.start = (c0, resolution // 8, resolution // 8)
        units = c0 * (resolution // 8) ** 2
        self.dense = nn.Sequential(
            nn.Linear(latent_dim, units, bias=False),
            keras_bn(nn.BatchNorm1d, units, bn_momentum, batchnorm),
            nn.LeakyReLU(0.2),
        )
        self.conv = nn.Sequential(
            # [c1, R/4, R/4]
            KerasConvTranspose2d(c0, c1, 5, 2, bias=False),
            keras_bn(nn.BatchNorm2d, c1, bn_momentum, batchnorm),
            nn.LeakyReLU(0.2),
            # [c2, R/2, R/2]
            KerasConvTranspose2d(c1, c2, 5, 2, bias=False),
            keras_bn(nn.BatchNorm2d, c2, bn_momentum, batchnorm),
            nn.LeakyReLU(0.2),
            # [C, R, R]
            KerasConvTranspose2d(c2, channels, 5, 2, bias=False),
            nn.Tanh(),
        )
        keras_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv(self.dense(z).view(-1, *self.start))


class OasisDiscriminator(nn.Module):
    def __init__(
        self,
        image_shape: ImageShape,
        width: float = 1.0,
        d_norm: str = "batch",
        dropout: float = 0.0,
        bn_momentum: float = KERAS_BN_MOMENTUM,
        batchnorm: BatchNormKind = "torch",
    ):
        super().__init__()
        if d_norm not in D_NORMS:
            raise ValueError(f"d_norm must be one of {', '.join(D_NORMS)}, got {d_norm!r}")
        channels, resolution = image_shape[0], image_shape[1]
        c1, c2 = scaled(64, width), scaled(128, width)
        layers: list[nn.Module] = []
        # [c1, R/2, R/2], then [c2, R/4, R/4]
        for n_in, n_out in ((channels, c1), (c1, c2)):
            layers.append(KerasConv2d(n_in, n_out, 5, stride=2))
            if d_norm == "batch":
                layers.append(keras_bn(nn.BatchNorm2d, n_out, bn_momentum, batchnorm))
            layers.append(nn.LeakyReLU(0.2))
            if dropout:
                layers.append(nn.Dropout(dropout))
        layers += [nn.Flatten(), nn.Linear(c2 * (resolution // 4) ** 2, 1)]
        self.net = nn.Sequential(*layers)
        keras_init(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # [N] logits
        return self.net(images).squeeze(1)


register(
    Architecture(
        name="dcgan-oasis",
        summary="the OASIS brain-MRI DCGAN, 128x128x1 (Dense + 3 transposed convs G, 2 strided "
        "convs with BatchNorm + Dense D)",
        generator=OasisGenerator,
        discriminator=OasisDiscriminator,
        supports=resolution_problem,
        default_resolution=128,
    )
)
