"""Animations from generated frames: GIF with Pillow, MP4 with imageio-ffmpeg when installed."""

from __future__ import annotations

import importlib.util
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganforge.artefacts.files import write_bytes
from ganforge.errors import ConfigError

VIDEO_HINT = "pip install 'ganforge[video]'"


def check_writer(path: str | Path) -> str:
    """'gif' or 'mp4' for `path`, or a one-line ConfigError before any frame is made."""
    suffix = Path(path).suffix.lower()
    if suffix == ".gif":
        return "gif"
    if suffix == ".mp4":
        missing = [
            name for name in ("imageio", "imageio_ffmpeg") if importlib.util.find_spec(name) is None
        ]
        if missing:
            raise ConfigError(
                f"writing .mp4 needs {' and '.join(missing)} (the video extra): "
                f"{VIDEO_HINT}; or write a .gif"
            )
        return "mp4"
    raise ConfigError(f"--out {path}: give a .gif or an .mp4 file name")


def enlarge(frames: torch.Tensor, min_side: int, rgb: bool = False) -> np.ndarray:
    """uint8 [N, C, H, W] -> [N, H', W', C], nearest-neighbour enlarged so the short side
    reaches `min_side` (28-pixel digits are unreadable as a video otherwise), cut to even
    sides (yuv420p video needs them). `rgb` repeats a grey channel: MP4 encoders want RGB."""
    array = frames.permute(0, 2, 3, 1).numpy()
    if rgb and array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    height, width = array.shape[1:3]
    factor = max(1, -(-min_side // min(height, width)))
    if factor > 1:
        array = array.repeat(factor, axis=1).repeat(factor, axis=2)
    return np.ascontiguousarray(array[:, : array.shape[1] // 2 * 2, : array.shape[2] // 2 * 2])


def save_animation(
    frames: torch.Tensor, path: str | Path, fps: int = 20, min_side: int = 256
) -> Path:
    """Write uint8 frames [N, C, H, W] as a looping GIF or an H.264 MP4, atomically."""
    kind = check_writer(path)
    array = enlarge(frames, min_side, rgb=kind == "mp4")
    if kind == "gif":
        images = [
            Image.fromarray(frame[:, :, 0] if frame.shape[-1] == 1 else frame) for frame in array
        ]
        buffer = io.BytesIO()
        duration = max(1, round(1000 / fps))
        images[0].save(
            buffer, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0
        )
        write_bytes(path, buffer.getvalue())
        return Path(path)
    import imageio.v2 as imageio

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".mp4")
    os.close(fd)
    tmp = Path(name)
    # imageio-ffmpeg encodes to a path: beside the target, then copied in atomically
    try:
        with imageio.get_writer(
            tmp,
            format="FFMPEG",
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            macro_block_size=1,
        ) as writer:
            for frame in array:
                writer.append_data(frame)
        write_bytes(target, tmp.read_bytes())
    finally:
        tmp.unlink(missing_ok=True)
    return target
