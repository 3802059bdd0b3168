"""`fastgan`: a light FastGAN (Liu et al., ICLR 2021) for small datasets at 64-256 px.

Generator:     z -> ConvTranspose 4x4 (1x1 -> 4x4) -> BN -> GLU
               -> [nearest up x2 -> conv3 -> BN -> GLU] x (log2(R) - 2)        (4 -> ... -> R)
               with skip-layer excitation: the 4x4 features gate the 64x64 ones, the 8x8
               features the 128x128 ones, the 16x16 features the 256x256 ones
               -> conv3 -> C channels -> tanh
Discriminator: conv4 stride 2 -> LeakyReLU(0.2)                              (R -> R/2)
               -> [DownBlockComp: (conv4 s2 -> LReLU -> conv3 -> LReLU)
                                  + (avgpool -> conv1 -> LReLU), halved] until 8x8
               -> LReLU -> sum over space -> Linear = logit
               (+ projection: <embed(y), h> when conditional, Miyato & Koyama 2018)

Why this design for brain slices on a CPU: FastGAN was made for 100-1,000-image sets at
256-1024 px on one GPU. Its generator spends its channels at the small sizes and keeps the
large ones narrow (16 channels at 128 px with ``channels=16``), so a 128 px image costs
about a tenth of the Radford DCGAN's multiply-adds at the same output size. Skip-layer
excitation (a channel gate computed from a 4x4 or 8x8 feature map, applied to the 64 or
128 px one) gives the large layers a short path to the global layout, which is what a
narrow generator needs to keep the skull outline and the ventricles in place. GLU halves
the channels after each convolution, a cheap learned gate instead of a ReLU.

Departures from the paper, for the CPU: no noise injection, no self-supervised decoder in
D (the reconstruction loss needs D to return features, which no other model does), spectral
norm in D in place of BatchNorm (so real and fake batches are judged alike), and global sum
pooling + a linear logit (with the projection term when conditional) in place of the
5x5 logit map. Conditional BatchNorm in G when ``num_classes`` > 0, as in ``resnet``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ganforge.conditional import balanced_labels, projection_logits
from ganforge.models.registry import Architecture, register
from ganforge.models.resnet import ConditionalBatchNorm

ImageShape = tuple[int, int, int]
MIN_SIDE, MAX_SIDE = 64, 256
G_MULTIPLIER = {4: 16, 8: 8, 16: 4, 32: 2, 64: 2, 128: 1, 256: 1}
D_MULTIPLIER = {4: 16, 8: 16, 16: 8, 32: 4, 64: 2, 128: 1, 256: 1}
# the size gated -> the size whose features gate it
EXCITES = {64: 4, 128: 8, 256: 16}


def supports(shape: ImageShape) -> str | None:
    channels, height, width = shape
    if channels not in (1, 3):
        return f"it makes 1- or 3-channel images (got {channels} channels; set data.channels)"
    if height != width or height not in (64, 128, 256):
        return f"it makes square images of 64, 128 or 256 px (got {height}x{width}; --resolution)"
    return None


def _check(channels: int, num_classes: int) -> None:
    if channels < 1 or num_classes < 0:
        raise ValueError(
            f"channels must be >= 1 and num_classes >= 0 (got {channels}, {num_classes})"
        )


class UpBlock(nn.Module):
    """Nearest x2, conv3 to twice the channels, (conditional) BN, GLU back to `cout`."""

    def __init__(self, cin: int, cout: int, num_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, 2 * cout, 3, 1, 1, bias=False)
        self.bn = ConditionalBatchNorm(2 * cout, num_classes)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        h = self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        # [N, cout, 2H, 2W]
        return F.glu(self.bn(h, labels), dim=1)


class SkipExcitation(nn.Module):
    """A channel gate for a large feature map, computed from a small one."""

    def __init__(self, small: int, large: int):
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(4),
            # [N, large, 1, 1]
            nn.Conv2d(small, large, 4, 1, 0, bias=False),
            nn.LeakyReLU(0.1),
            nn.Conv2d(large, large, 1, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, small: torch.Tensor, large: torch.Tensor) -> torch.Tensor:
        return large * self.gate(small)


class FastGANGenerator(nn.Module):
    def __init__(
        self, latent_dim: int, image_shape: ImageShape, channels: int = 16, num_classes: int = 0
    ):
        super().__init__()
        _check(channels, num_classes)
        self.latent_dim, self.image_shape = latent_dim, tuple(image_shape)
        self.num_classes = num_classes
        resolution = image_shape[1]
        # 4 .. R
        self.sides = [4 * 2**k for k in range(int(math.log2(resolution)) - 1)]
        width = {side: channels * G_MULTIPLIER[side] for side in self.sides}
        self.initial = nn.ConvTranspose2d(latent_dim, 2 * width[4], 4, 1, 0, bias=False)
        self.initial_bn = ConditionalBatchNorm(2 * width[4], num_classes)
        self.ups = nn.ModuleList(
            UpBlock(width[side // 2], width[side], num_classes) for side in self.sides[1:]
        )
        self.excite = nn.ModuleDict(
            {
                str(side): SkipExcitation(width[EXCITES[side]], width[side])
                for side in self.sides
                if side in EXCITES
            }
        )
        self.to_image = nn.Conv2d(width[resolution], image_shape[0], 3, 1, 1)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes and labels is None:
            labels = balanced_labels(z.shape[0], self.num_classes, z.device)
        labels = labels if self.num_classes else None
        h = self.initial(z.view(z.shape[0], self.latent_dim, 1, 1))
        # [N, width[4], 4, 4]
        features = {4: F.glu(self.initial_bn(h, labels), dim=1)}
        for side, up in zip(self.sides[1:], self.ups, strict=True):
            h = up(features[side // 2], labels)
            if str(side) in self.excite:
                h = self.excite[str(side)](features[EXCITES[side]], h)
            features[side] = h
        # [N, C, R, R]
        return torch.tanh(self.to_image(h))


class DownBlock(nn.Module):
    """FastGAN's DownBlockComp: a strided conv pair and an average-pool shortcut, averaged."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.main = nn.Sequential(
            spectral_norm(nn.Conv2d(cin, cout, 4, 2, 1, bias=False)),
            nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(cout, cout, 3, 1, 1, bias=False)),
            nn.LeakyReLU(0.2),
        )
        self.direct = nn.Sequential(
            nn.AvgPool2d(2), spectral_norm(nn.Conv2d(cin, cout, 1, bias=False)), nn.LeakyReLU(0.2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.main(x) + self.direct(x)) / 2


class FastGANDiscriminator(nn.Module):
    def __init__(self, image_shape: ImageShape, channels: int = 16, num_classes: int = 0):
        super().__init__()
        _check(channels, num_classes)
        self.num_classes = num_classes
        resolution = image_shape[1]
        # R/2..8
        sides = [resolution // 2**k for k in range(1, int(math.log2(resolution)) - 2)]
        width = {side: channels * D_MULTIPLIER[side] for side in sides}
        self.from_image = nn.Sequential(
            spectral_norm(nn.Conv2d(image_shape[0], width[sides[0]], 4, 2, 1, bias=False)),
            nn.LeakyReLU(0.2),
        )
        self.downs = nn.Sequential(
            *(DownBlock(width[side], width[side // 2]) for side in sides[:-1])
        )
        features = width[8]
        self.linear = spectral_norm(nn.Linear(features, 1))
        self.embed = spectral_norm(nn.Embedding(num_classes, features)) if num_classes else None

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        # [N, width[8], 8, 8]
        h = self.downs(self.from_image(images))
        # global sum pooling
        h = F.leaky_relu(h, 0.2).sum(dim=(2, 3))
        return projection_logits(h, self.linear, self.embed, labels, self.num_classes)


register(
    Architecture(
        name="fastgan",
        summary="light FastGAN: skip-layer excitation, narrow large layers, spectral norm in D; "
        "64/128/256 px, 1 or 3 channels, conditional with num_classes",
        generator=FastGANGenerator,
        discriminator=FastGANDiscriminator,
        supports=supports,
        default_resolution=128,
    )
)
