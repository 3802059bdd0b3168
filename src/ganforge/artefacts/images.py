"""Sample grids and image files from uint8 tensors.

Grids are tiled in torch; PIL, imported where a file is written, encodes the PNGs (it adds
about 30 ms to `ganforge sample`, whose start-up is otherwise torch's own import).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ganforge.artefacts.files import write_bytes

if TYPE_CHECKING:
    from PIL import Image


def grid_tensor(
    images: torch.Tensor, rows: int | None = None, padding: int = 2, pad_value: int = 0
) -> torch.Tensor:
    """Tile uint8 images [N, C, H, W] into one [H', W', C] tensor, `rows` rows (square default)."""
    images = images.detach().cpu()
    n, c, h, w = images.shape
    rows = rows or max(1, int(math.ceil(math.sqrt(n))))
    cols = int(math.ceil(n / rows))
    grid = torch.full(
        (rows * (h + padding) + padding, cols * (w + padding) + padding, c),
        pad_value,
        dtype=torch.uint8,
    )
    # [N, H, W, C]
    cells = images.permute(0, 2, 3, 1)
    for i in range(n):
        r, col = divmod(i, cols)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top : top + h, left : left + w] = cells[i]
    return grid


def make_grid(
    images: torch.Tensor, rows: int | None = None, padding: int = 2, pad_value: int = 0
) -> np.ndarray:
    """`grid_tensor` as a numpy array [H', W', C], for PIL and the experiment loggers."""
    return grid_tensor(images, rows, padding, pad_value).numpy()


def to_pil(array: np.ndarray, upscale: int = 1) -> Image.Image:
    """[H, W, 1|3] uint8 -> PIL image, optionally enlarged nearest-neighbour (for 28x28 digits)."""
    from PIL import Image

    image = Image.fromarray(
        array[:, :, 0] if array.shape[2] == 1 else array, mode="L" if array.shape[2] == 1 else "RGB"
    )
    if upscale > 1:
        image = image.resize((image.width * upscale, image.height * upscale), Image.NEAREST)
    return image


def png_bytes(pixels: torch.Tensor) -> bytes:
    """uint8 [H, W, 1|3] -> the bytes of a greyscale or RGB PNG file, losslessly (PIL's
    encoder at zlib's default level)."""
    from PIL import Image

    array = pixels.detach().cpu().numpy()
    image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def enlarge(pixels: torch.Tensor, factor: int) -> torch.Tensor:
    """[H, W, C] enlarged `factor` times, nearest-neighbour (each pixel a factor² block)."""
    if factor == 1:
        return pixels
    return pixels.repeat_interleave(factor, dim=0).repeat_interleave(factor, dim=1)


def save_grid(images: torch.Tensor, path: str | Path, rows: int | None = None) -> Path:
    """Write uint8 images [N, C, H, W] as one PNG grid; small images are enlarged to be legible."""
    h = images.shape[-2]
    # 28x28 digits become 56x56 cells
    upscale = max(1, 64 // h)
    write_bytes(path, png_bytes(enlarge(grid_tensor(images, rows), upscale)))
    return Path(path)


def save_individual(images: torch.Tensor, folder: str | Path, prefix: str = "sample") -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    width = max(4, len(str(len(images) - 1)))
    for i, image in enumerate(images.detach().cpu()):
        path = folder / f"{prefix}_{i:0{width}d}.png"
        write_bytes(path, png_bytes(image.permute(1, 2, 0)))
        paths.append(path)
    return paths
