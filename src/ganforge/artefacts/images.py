"""Sample grids and image files from uint8 tensors."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganforge.artefacts.files import write_bytes


def make_grid(
    images: torch.Tensor, rows: int | None = None, padding: int = 2, pad_value: int = 0
) -> np.ndarray:
    """Tile uint8 images [N, C, H, W] into an [H', W', C] array, `rows` rows (square by default)."""
    images = images.detach().cpu()
    n, c, h, w = images.shape
    rows = rows or max(1, int(math.ceil(math.sqrt(n))))
    cols = int(math.ceil(n / rows))
    grid = np.full(
        (rows * (h + padding) + padding, cols * (w + padding) + padding, c),
        pad_value,
        dtype=np.uint8,
    )
    array = images.permute(0, 2, 3, 1).numpy()
    for i in range(n):
        r, col = divmod(i, cols)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top : top + h, left : left + w] = array[i]
    return grid


def to_pil(array: np.ndarray, upscale: int = 1) -> Image.Image:
    """[H, W, 1|3] uint8 -> PIL image, optionally enlarged nearest-neighbour (for 28x28 digits)."""
    image = Image.fromarray(
        array[:, :, 0] if array.shape[2] == 1 else array, mode="L" if array.shape[2] == 1 else "RGB"
    )
    if upscale > 1:
        image = image.resize((image.width * upscale, image.height * upscale), Image.NEAREST)
    return image


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def save_grid(images: torch.Tensor, path: str | Path, rows: int | None = None) -> Path:
    """Write uint8 images [N, C, H, W] as one PNG grid; small images are enlarged to be legible."""
    h = images.shape[-2]
    upscale = max(1, 64 // h)  # 28x28 digits become 56x56 cells
    write_bytes(path, png_bytes(to_pil(make_grid(images, rows), upscale)))
    return Path(path)


def save_individual(images: torch.Tensor, folder: str | Path, prefix: str = "sample") -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    width = max(4, len(str(len(images) - 1)))
    for i, image in enumerate(images.detach().cpu()):
        path = folder / f"{prefix}_{i:0{width}d}.png"
        write_bytes(path, png_bytes(to_pil(image.permute(1, 2, 0).numpy())))
        paths.append(path)
    return paths
