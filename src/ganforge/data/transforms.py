"""Shape images to what a model wants: channels and a square resolution. The one place that resizes.

All functions take and return uint8 tensors [N, C, H, W]. Resizing uses antialiased
bilinear interpolation (area-correct when shrinking), so 256->128 brain slices keep
their fine structure without aliasing. Pixels that are not square (a NIfTI slice with
0.9 mm rows and 1.2 mm columns) are resampled in the same single resize, so an image is
interpolated once however many corrections it needs.
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


def shape_to(
    images: torch.Tensor,
    channels: int | None,
    resolution: int | None,
    fit: str = "pad",
    spacing: tuple[float, float] = (1.0, 1.0),
) -> torch.Tensor:
    """Channels, then the square resolution: what load_images (or a stacking source) applies."""
    return fit_square(to_channels(images, channels), resolution, fit, spacing)


def square_pixel_size(height: int, width: int, spacing: tuple[float, float]) -> tuple[int, int]:
    """The size of an image with `spacing` (row, column pixel size) once its pixels are square.

    The finer of the two pixel sizes is kept, so no detail is lost.
    """
    row, col = spacing
    finer = min(row, col)
    return max(1, round(height * row / finer)), max(1, round(width * col / finer))


def fit_square(
    images: torch.Tensor,
    resolution: int | None,
    mode: str = "pad",
    spacing: tuple[float, float] = (1.0, 1.0),
) -> torch.Tensor:
    """Bring [N, C, H, W] uint8 images to [N, C, resolution, resolution].

    pad:     scale the longer side to `resolution`, then pad the shorter one with the
             border's value (black for MRI and MNIST); nothing is cut off or squashed.
    crop:    scale the shorter side to `resolution`, then centre-crop the longer one.
    stretch: resize both sides independently (changes the aspect ratio).

    `spacing` is the (row, column) size of one pixel, e.g. a NIfTI slice's voxel sizes in mm:
    pad and crop keep the physical aspect ratio, and with `resolution` None the images are
    only resampled to square pixels (see square_pixel_size).
    """
    if mode not in FIT_MODES:
        raise ConfigError(f"data.fit must be one of {', '.join(FIT_MODES)} (got {mode!r})")
    h, w = images.shape[-2:]
    row, col = spacing
    if resolution is None:
        return images if row == col else _resize(images, *square_pixel_size(h, w, spacing))
    if h == w == resolution and row == col:
        return images
    if mode == "stretch":
        return _resize(images, resolution, resolution)
    # physical extent
    tall, wide = h * row, w * col
    scale = resolution / (max(tall, wide) if mode == "pad" else min(tall, wide))
    new_h, new_w = max(1, round(tall * scale)), max(1, round(wide * scale))
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
    # bound the float copy's memory
    for chunk in images.split(1024):
        resized = F.interpolate(
            chunk.float(),
            size=(height, width),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        out.append(resized.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def _border_value(images: torch.Tensor) -> int:
    """The median value of the images' outer frame: the background to pad with."""
    frame = torch.cat(
        [
            images[:, :, 0, :].flatten(),
            images[:, :, -1, :].flatten(),
            images[:, :, :, 0].flatten(),
            images[:, :, :, -1].flatten(),
        ]
    )
    return int(frame[:1_000_000].median())
