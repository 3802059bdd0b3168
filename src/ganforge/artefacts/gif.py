"""An animated GIF of the sample grids over training (Pillow writes it; no extra package)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

from PIL import Image

from ganforge.artefacts.files import write_bytes


def save_gif(
    frames: Sequence[str | Path],
    path: str | Path,
    duration_ms: int = 200,
    max_frames: int = 120,
    max_side: int = 512,
) -> Path | None:
    """Write PNG frames, in order, as a looping GIF; long runs thinned evenly to `max_frames`."""
    frames = list(frames)
    if not frames:
        return None
    if len(frames) > max_frames:
        step = (len(frames) - 1) / (max_frames - 1)
        frames = [frames[round(i * step)] for i in range(max_frames)]
    images = []
    for frame in frames:
        with Image.open(frame) as image:
            image = (
                image.convert("L") if image.mode in ("L", "LA", "I;16") else image.convert("RGB")
            )
            if max(image.size) > max_side:
                image.thumbnail((max_side, max_side), Image.LANCZOS)
            images.append(image.copy())
    # pause on the final frame
    durations = [duration_ms] * (len(images) - 1) + [duration_ms * 8]
    buffer = io.BytesIO()
    images[0].save(
        buffer, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0
    )
    write_bytes(path, buffer.getvalue())
    return Path(path)
