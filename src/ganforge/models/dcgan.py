"""`dcgan`: the DCGAN of Radford, Metz & Chintala (2016) for any power-of-two size, 32 to 256.

Generator:     z -> ConvTranspose 4x4 (1x1 -> 4x4) -> BN -> ReLU
               -> [ConvTranspose 4x4 stride 2 -> BN -> ReLU] x (log2(R) - 3)
               -> ConvTranspose 4x4 stride 2 -> C channels -> tanh          (4 -> 8 -> ... -> R)
Discriminator: Conv 4x4 stride 2 -> LeakyReLU(0.2)                        (no BN on the input layer)
               -> [Conv 4x4 stride 2 -> BN -> LeakyReLU(0.2)] until 4x4
               -> Conv 4x4 (4x4 -> 1x1) = one logit

Channels double as the image halves (64, 128, 256, 512 at width 1, capped at 8x the base
width), as in the paper's Figure 1. No pooling and no fully connected hidden layers;
weights drawn from N(0, 0.02), BatchNorm scales from N(1, 0.02), as the paper
prescribes. `width` scales every layer (0.25 trains on a laptop CPU).

Why only powers of two: every layer doubles (G) or halves (D) the size, starting or ending
at 4x4, so the size must be 4 * 2^k.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ganforge.models.layers import ImageShape, dcgan_init, resolution_problem, scaled
from ganforge.models.registry import Architecture, register

BASE_CHANNELS = 64
MAX_MULTIPLIER = 8


def _channels(width: float, multiplier: int) -> int:
    return scaled(BASE_CHANNELS * min(multiplier, MAX_MULTIPLIER), width)


class DCGANGenerator(nn.Module):
    def __init__(self, latent_dim: int, image_shape: ImageShape, width: float = 1.0):
        super().__init__()
        channels, resolution = image_shape[0], image_shape[1]
        # 4x4 -> R takes this many doublings
        stages = int(math.log2(resolution)) - 2
        self.latent_dim, self.image_shape = latent_dim, tuple(image_shape)
        ch = _channels(width, 2 ** (stages - 1))
        layers: list[nn.Module] = [
            # [ch, 4, 4]
            nn.ConvTranspose2d(latent_dim, ch, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ch),
            nn.ReLU(True),
        ]
        for stage in range(stages - 1):
            out = _channels(width, 2 ** (stages - 2 - stage))
            layers += [
                # doubles the size
                nn.ConvTranspose2d(ch, out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(True),
            ]
            ch = out
        # [C, R, R]
        layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], self.latent_dim, 1, 1))


class DCGANDiscriminator(nn.Module):
    def __init__(self, image_shape: ImageShape, width: float = 1.0):
        super().__init__()
        channels, resolution = image_shape[0], image_shape[1]
        # R -> 4x4 takes this many halvings
        stages = int(math.log2(resolution)) - 2
        ch = _channels(width, 1)
        layers: list[nn.Module] = [
            nn.Conv2d(channels, ch, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, True),
        ]
        for stage in range(1, stages):
            out = _channels(width, 2**stage)
            layers += [
                # halves the size
                nn.Conv2d(ch, out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(out),
                nn.LeakyReLU(0.2, True),
            ]
            ch = out
        # [1, 1, 1]
        layers += [nn.Conv2d(ch, 1, 4, 1, 0, bias=False)]
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # [N] logits
        return self.net(images).flatten()


register(
    Architecture(
        name="dcgan",
        summary="Radford et al. DCGAN for square power-of-two sizes 32-256, 1 or 3 channels",
        generator=DCGANGenerator,
        discriminator=DCGANDiscriminator,
        supports=resolution_problem,
        default_resolution=64,
    )
)
