"""`resnet`: the residual SNGAN/BigGAN family (Miyato et al. 2018; Brock et al. 2019), 28-256 px.

Generator:     z -> Linear -> [ch*m0, b, b]                      (b = 4..7, R = b * 2^k)
               -> k x GBlock: CBN -> ReLU -> up x2 -> conv3 -> CBN -> ReLU -> conv3
                              (+ shortcut: up x2 -> conv1)
               -> BN -> ReLU -> conv3 -> C channels -> tanh
Discriminator: DBlock (first): conv3 -> ReLU -> conv3 -> avgpool (+ avgpool -> conv1)
               -> (k - 1) x DBlock: ReLU -> conv3 -> ReLU -> conv3 -> avgpool
               -> one DBlock without pooling -> ReLU -> sum over space -> Linear = logit
               (+ projection: <embed(y), h> when conditional, Miyato & Koyama 2018)

Every convolution and linear layer of D is spectrally normalised (one power iteration per
forward in training mode), which bounds D's Lipschitz constant per layer; together with the
hinge loss this is the SNGAN recipe that trains without mode collapse at learning rates
where the DCGANs diverge. G uses BatchNorm; with ``num_classes`` > 0 its BatchNorms are
conditional (per-class scale and shift from an embedding, the BigGAN/SNGAN choice) and D
gains the projection term, so the pair learns p(x | y).

Channels halve as the resolution doubles (``channels`` at full size, at most 8x that at
the smallest), as in BigGAN, so 128 and 256 px stay affordable. Why residual: the skip
paths give both networks a short gradient path, which is what lets SNGAN/BigGAN go deeper
than DCGAN without BatchNorm in D.

A conditional generator called without labels makes a balanced cycle of classes
(0, 1, ..., n-1, 0, ...), so every caller that knows nothing of classes (metrics, export,
latent walks) still gets a fair class mix, the same for the same noise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ganforge.conditional import balanced_labels, projection_logits
from ganforge.models.registry import Architecture, register

ImageShape = tuple[int, int, int]
MAX_MULTIPLIER = 8
MIN_SIDE, MAX_SIDE = 28, 256


def layout(resolution: int) -> tuple[int, int] | None:
    """(base, k) with resolution = base * 2^k, base in 4..7 and k >= 2, or None."""
    for base in (4, 5, 6, 7):
        k, side = 0, base
        while side < resolution:
            side, k = side * 2, k + 1
        if side == resolution and k >= 2:
            return base, k
    return None


def supports(shape: ImageShape) -> str | None:
    channels, height, width = shape
    if channels not in (1, 3):
        return f"it makes 1- or 3-channel images (got {channels} channels; set data.channels)"
    if height != width:
        return f"it makes square images (got {height}x{width}); set a square size with --resolution"
    if not MIN_SIDE <= height <= MAX_SIDE or layout(height) is None:
        return (
            f"resolution {height} must be 4, 5, 6 or 7 times a power of two (at least 4), "
            f"from {MIN_SIDE} to {MAX_SIDE}: e.g. 28, 32, 48, 56, 64, 128, 256 (--resolution)"
        )
    return None


def _channels(channels: int, level: int, k: int) -> int:
    """Channels at `level` (0 = the smallest side, k = the full image)."""
    return channels * min(2 ** (k - level), MAX_MULTIPLIER)


class ConditionalBatchNorm(nn.Module):
    """BatchNorm whose scale and shift come from the class (plain BatchNorm without classes)."""

    def __init__(self, features: int, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.bn = nn.BatchNorm2d(features, affine=num_classes == 0)
        if num_classes:
            self.gain = nn.Embedding(num_classes, features)
            self.bias = nn.Embedding(num_classes, features)
            nn.init.ones_(self.gain.weight)
            nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        out = self.bn(x)
        if not self.num_classes:
            return out
        return out * self.gain(labels)[:, :, None, None] + self.bias(labels)[:, :, None, None]


class GBlock(nn.Module):
    def __init__(self, cin: int, cout: int, num_classes: int):
        super().__init__()
        self.bn1, self.bn2 = (
            ConditionalBatchNorm(cin, num_classes),
            ConditionalBatchNorm(cout, num_classes),
        )
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, labels)), scale_factor=2.0)
        h = self.conv2(F.relu(self.bn2(self.conv1(h), labels)))
        # [N, cout, 2H, 2W]
        return h + self.skip(F.interpolate(x, scale_factor=2.0))


class ResNetGenerator(nn.Module):
    def __init__(
        self, latent_dim: int, image_shape: ImageShape, channels: int = 32, num_classes: int = 0
    ):
        super().__init__()
        if channels < 1 or num_classes < 0:
            raise ValueError(
                f"channels must be >= 1 and num_classes >= 0 (got {channels}, {num_classes})"
            )
        self.latent_dim, self.image_shape, self.num_classes = (
            latent_dim,
            tuple(image_shape),
            num_classes,
        )
        resolution = image_shape[1]
        base, k = layout(resolution) or (4, max(2, resolution.bit_length() - 3))
        self.base, self.start = base, _channels(channels, 0, k)
        self.linear = nn.Linear(latent_dim, self.start * base * base)
        self.blocks = nn.ModuleList(
            GBlock(_channels(channels, level, k), _channels(channels, level + 1, k), num_classes)
            for level in range(k)
        )
        self.bn = nn.BatchNorm2d(channels)
        self.out = nn.Conv2d(channels, image_shape[0], 3, 1, 1)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes and labels is None:
            labels = balanced_labels(z.shape[0], self.num_classes, z.device)
        # [N, ch*m, b, b]
        h = self.linear(z).view(z.shape[0], self.start, self.base, self.base)
        for block in self.blocks:
            h = block(h, labels if self.num_classes else None)
        # [N, C, R, R]
        return torch.tanh(self.out(F.relu(self.bn(h))))


class DBlock(nn.Module):
    def __init__(self, cin: int, cout: int, downsample: bool, first: bool = False):
        super().__init__()
        self.first, self.downsample = first, downsample
        self.conv1 = spectral_norm(nn.Conv2d(cin, cout, 3, 1, 1))
        self.conv2 = spectral_norm(nn.Conv2d(cout, cout, 3, 1, 1))
        self.skip = spectral_norm(nn.Conv2d(cin, cout, 1)) if (cin != cout or downsample) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the first block sees pixels: no activation before it
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        skip = x
        # pool before the 1x1 conv: cheaper, the SNGAN "optimized block"
        if self.first:
            skip = self.skip(F.avg_pool2d(x, 2) if self.downsample else x)
        elif self.skip is not None:
            skip = self.skip(x)
            skip = F.avg_pool2d(skip, 2) if self.downsample else skip
        return h + skip


class ResNetDiscriminator(nn.Module):
    def __init__(self, image_shape: ImageShape, channels: int = 32, num_classes: int = 0):
        super().__init__()
        if channels < 1 or num_classes < 0:
            raise ValueError(
                f"channels must be >= 1 and num_classes >= 0 (got {channels}, {num_classes})"
            )
        self.num_classes = num_classes
        resolution = image_shape[1]
        _, k = layout(resolution) or (4, max(2, resolution.bit_length() - 3))
        current = _channels(channels, k, k)
        blocks = [DBlock(image_shape[0], current, downsample=True, first=True)]
        for level in range(k - 1, 0, -1):
            out = _channels(channels, level, k)
            blocks.append(DBlock(current, out, downsample=True))
            current = out
        blocks.append(DBlock(current, _channels(channels, 0, k), downsample=False))
        current = _channels(channels, 0, k)
        self.blocks = nn.Sequential(*blocks)
        self.linear = spectral_norm(nn.Linear(current, 1))
        self.embed = spectral_norm(nn.Embedding(num_classes, current)) if num_classes else None
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.parametrizations.weight.original)
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        # [N, ch*m] global sum pooling
        h = F.relu(self.blocks(images)).sum(dim=(2, 3))
        return projection_logits(h, self.linear, self.embed, labels, self.num_classes)


register(
    Architecture(
        name="resnet",
        summary="residual SNGAN/BigGAN: spectral norm in D, conditional BN + projection with "
        "num_classes, 28-256 px, 1 or 3 channels",
        generator=ResNetGenerator,
        discriminator=ResNetDiscriminator,
        supports=supports,
        default_resolution=64,
    )
)
