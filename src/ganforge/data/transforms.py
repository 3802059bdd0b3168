"""Shape images to what a model wants: channels and a square resolution.

All functions take and return uint8 tensors [N, C, H, W]. Resizing uses antialiased
bilinear interpolation (area-correct when shrinking), so 256->128 brain slices keep
their fine structure without aliasing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganforge.errors import ConfigError

FIT_MODES = ("pad", "crop", "stretch")


def to_channels(images: torch.Tensor, channels: int | None) -> torch.Tensor:
    """Convert between grayscale and RGB (ITU-R 601 luma for RGB -> gray)."""
    have = images.shape[1]
    if channels is None or channels == have:
        return images
    if have == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if have == 3 and channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    raise ConfigError(f"cannot convert {have}-channel images to {channels} channels")


def fit_square(images: torch.Tensor, resolution: int | None, mode: str = "pad") -> torch.Tensor:
    """Bring [N, C, H, W] uint8 images to [N, C, resolution, resolution].

    pad:     scale the longer side to `resolution`, then pad the shorter one with the
             border's value (black for MRI and MNIST); nothing is cut off or squashed.
    crop:    scale the shorter side to `resolution`, then centre-crop the longer one.
    stretch: resize both sides independently (changes the aspect ratio).
    """
    if mode not in FIT_MODES:
        raise ConfigError(f"data.fit must be one of {', '.join(FIT_MODES)} (got {mode!r})")
    n, c, h, w = images.shape
    if resolution is None or (h == w == resolution):
        return images
    if mode == "stretch":
        return _resize(images, resolution, resolution)
    scale = resolution / (max(h, w) if mode == "pad" else min(h, w))
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    resized = _resize(images, new_h, new_w)
    if mode == "crop":
        top, left = (new_h - resolution) // 2, (new_w - resolution) // 2
        return resized[:, :, top : top + resolution, left : left + resolution].contiguous()
    pad_h, pad_w = resolution - new_h, resolution - new_w
    padding = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
    return F.pad(resized, padding, value=_border_value(images))


def _resize(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if images.shape[-2:] == (height, width):
        return images
    out = []
    for chunk in images.split(1024):  # bound the float copy's memory
        resized = F.interpolate(chunk.float(), size=(height, width), mode="bilinear", antialias=True, align_corners=False)
        out.append(resized.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def _border_value(images: torch.Tensor) -> int:
    """The median value of the images' outer frame: the background to pad with."""
    frame = torch.cat([images[:, :, 0, :].flatten(), images[:, :, -1, :].flatten(),
                       images[:, :, :, 0].flatten(), images[:, :, :, -1].flatten()])
    return int(frame[: 1_000_000].median())
