"""Decoding and stacking: image files -> uint8 arrays -> one [N, C, H, W] tensor.

Shaping rules shared by every file-based source:
- grayscale stays 1 channel, colour becomes RGB; an RGB file whose three channels are equal
  counts as grayscale; 16-bit and float images are stretched to 0..255 per image;
- with ``channels`` unset the dataset is 1-channel if every image is grayscale, else 3;
- images of one size are stacked as they are; sources of mixed sizes need a target
  ``resolution`` and each size is brought to it by transforms.shape_to as one batch.

Unreadable files (corrupt, truncated, not an image) are skipped with one warning naming how
many and the first three, as long as they are at most 10% of the files tried; above that the
copy is damaged and the run stops with a DataError.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ganforge.data.transforms import shape_to, to_channels
from ganforge.errors import DataError, first_line

# more unreadable files than this: the copy is damaged, stop
MAX_UNREADABLE_FRACTION = 0.10
# (row, column) size of one pixel
Spacing = tuple[float, float]


def stretch(values: np.ndarray) -> np.ndarray:
    """High-bit-depth pixels -> uint8 by the image's own min..max (16-bit MRI rarely fills all)."""
    values = np.nan_to_num(values.astype(np.float64))
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, np.uint8)
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)


def _pixels(image: Image.Image) -> np.ndarray:
    """uint8 [H, W] for grayscale content, [H, W, 3] for colour."""
    mode = image.mode
    if mode == "L":
        return np.asarray(image)
    if mode in ("1", "LA", "La"):
        return np.asarray(image.convert("L"))
    if mode.startswith("I") or mode == "F":
        return stretch(np.asarray(image))
    rgb = np.asarray(image.convert("RGB"))
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        # grayscale stored as RGB (common for MRI PNGs)
        return np.ascontiguousarray(rgb[..., 0])
    return rgb


def decode_image(path: Path) -> tuple[np.ndarray | None, str]:
    """(pixels, "") or (None, why it cannot be read). Never raises for a bad file."""
    try:
        with Image.open(path) as image:
            # decode now: a truncated file fails here, not later
            image.load()
            return _pixels(image), ""
    except (
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
        struct.error,
        zlib.error,
        Image.DecompressionBombError,
    ) as exc:
        return None, first_line(exc, 80)


def stack_fitted(
    arrays: Sequence[np.ndarray],
    channels: int | None,
    resolution: int | None,
    fit: str,
    spacings: Sequence[Spacing] | None = None,
) -> torch.Tensor:
    """uint8 arrays -> [N, C, H, W], shaping each (size, pixel spacing) group as one batch.

    Every group goes through transforms.shape_to, the one function that resizes: with one
    size of square pixels and no resolution that is a no-op, so native sizes are kept.
    """
    target = channels or (3 if any(a.ndim == 3 for a in arrays) else 1)
    groups: dict[tuple[tuple[int, ...], Spacing], list[int]] = {}
    for index, array in enumerate(arrays):
        spacing = spacings[index] if spacings is not None else (1.0, 1.0)
        groups.setdefault((array.shape, spacing), []).append(index)
    out: torch.Tensor | None = None
    for (shape, spacing), indices in groups.items():
        batch = torch.from_numpy(np.stack([arrays[i] for i in indices]))
        batch = batch.unsqueeze(1) if len(shape) == 2 else batch.permute(0, 3, 1, 2)
        batch = shape_to(batch, target, resolution, fit, spacing)
        if len(groups) == 1:
            return batch.contiguous()
        # several groups: all were brought to the same size
        if out is None:
            out = torch.empty((len(arrays), *batch.shape[1:]), dtype=torch.uint8)
        out[torch.tensor(indices)] = batch
    assert out is not None
    return out


def join_parts(parts: Sequence[torch.Tensor], channels: int | None) -> torch.Tensor:
    """Concatenate chunks; with channels unset, any colour chunk makes the whole set RGB."""
    target = channels or max(p.shape[1] for p in parts)
    return torch.cat([to_channels(p, target) for p in parts]).contiguous()


def require_one_size(
    sizes: dict[tuple[int, int], str], resolution: int | None, where: Path
) -> None:
    """Without a target resolution every source must have the same size: say which differ."""
    if resolution is None and len(sizes) > 1:
        (s1, n1), (s2, n2) = list(sizes.items())[:2]
        raise DataError(
            f"{where}: images differ in size ({s1[1]}x{s1[0]} in {n1}, {s2[1]}x{s2[0]} "
            f"in {n2}); set a target size with --resolution N (each image is resized "
            "with data.fit)"
        )


def check_unreadable(
    skipped: Sequence[str], attempted: int, where: Path, noun: str = "file"
) -> None:
    """The corrupt-file policy: warn about up to 10% unreadable files, stop above that."""
    if not skipped:
        return
    first = ", ".join(skipped[:3]) + (", ..." if len(skipped) > 3 else "")
    share = len(skipped) / max(attempted, 1)
    if share > MAX_UNREADABLE_FRACTION:
        raise DataError(
            f"{where}: {len(skipped)} of {attempted} {noun}s are unreadable ({share:.0%}, "
            f"more than {MAX_UNREADABLE_FRACTION:.0%}): {first}; the copy looks damaged, "
            "fetch it again"
        )
    warnings.warn(
        f"{where}: skipped {len(skipped)} unreadable {noun}(s) of {attempted}: {first}",
        stacklevel=4,
    )
