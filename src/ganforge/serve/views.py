"""What the explorer asks for, checked and bounded, and the files and commands it gets back.

A query string becomes a :class:`GridView` or :class:`WalkView` here, or a one-line
ConfigError (HTTP 400): unknown or repeated parameters, numbers that do not parse, seeds,
frames and grids beyond the bounds. The images come from the public API
(``ganforge.latent.seed_images`` / ``walk_images``, the code ``ganforge sample --seeds`` and
``ganforge interpolate`` run), and every view carries the command that makes the same
images from the command line.
"""

from __future__ import annotations

import io
import math
import shlex
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ganforge.errors import ConfigError
from ganforge.latent import check_truncation, parse_seeds, seed_images, walk_images, with_noise

# images in one grid: 16 x 16
MAX_GRID = 256
# frames in one walk: 12 s at 20 frames/s
MAX_FRAMES = 240
MAX_WALK_SEEDS = 16
# characters in a query string
MAX_QUERY = 2000
# one forward pass for the whole grid: several times faster on a CPU than one image at a
# time; a pixel may differ from `ganforge sample` (batches of one) by a grey level
BATCH = 256
GRID_KEYS = ("seeds", "class", "truncation", "noise", "noise_std", "format")
WALK_KEYS = ("seeds", "frames", "loop", "class", "truncation", "noise", "noise_std", "format")
GRID_FORMATS = {"png": ".png", "npy": ".npy", "nii": ".nii.gz"}
WALK_FORMATS = {"png": ".png", "npy": ".npy", "gif": ".gif"}


@dataclass(frozen=True)
class Latents:
    """The choices a grid and a walk share: class, truncation and noise law."""

    label: str | None
    truncation: float | None
    noise: str | None
    noise_std: float | None


@dataclass(frozen=True)
class GridView:
    seeds: tuple[int, ...]
    latents: Latents
    format: str


@dataclass(frozen=True)
class WalkView:
    seeds: tuple[int, ...]
    frames: int
    loop: bool
    latents: Latents
    format: str


def single_values(items: list[tuple[str, str]], allowed: tuple[str, ...]) -> dict[str, str]:
    """The query's parameters, each given at most once and each one this view knows."""
    values: dict[str, str] = {}
    for key, value in items:
        if key not in allowed:
            raise ConfigError(f"unknown parameter {key[:30]!r}; expected {', '.join(allowed)}")
        if key in values:
            raise ConfigError(f"parameter {key!r} given twice; give it once")
        values[key] = value
    return values


def _number(values: Mapping[str, str], key: str) -> float | None:
    text = values.get(key, "").strip()
    if text in ("", "off", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{key} must be a number, got {text[:30]!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {text[:30]!r}")
    return value


def _whole(values: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    text = values.get(key, "").strip() or str(default)
    if not text.isdecimal() or len(text) > 6:
        raise ConfigError(f"{key} must be a whole number from {low} to {high}, got {text[:30]!r}")
    value = int(text)
    if not low <= value <= high:
        raise ConfigError(f"{key} must be from {low} to {high}, got {value}")
    return value


def _seeds(values: Mapping[str, str], default: str, low: int, high: int, what: str) -> list[int]:
    text = values.get("seeds", "").strip() or default
    if len(text) > 400:
        raise ConfigError("seeds: too long a list; give ranges such as 0-63")
    seeds = parse_seeds(text)
    if not low <= len(seeds) <= high:
        raise ConfigError(f"{what} takes {low} to {high} seeds, got {len(seeds)}")
    return seeds


def _latents(values: Mapping[str, str]) -> Latents:
    label = values.get("class", "").strip() or None
    if label is not None and (len(label) > 60 or not label.isprintable()):
        raise ConfigError("class: give a class number or a class name")
    noise = values.get("noise", "").strip() or None
    return Latents(label, _number(values, "truncation"), noise, _number(values, "noise_std"))


def _format(values: Mapping[str, str], formats: Mapping[str, str]) -> str:
    chosen = values.get("format", "").strip() or "png"
    if chosen not in formats:
        raise ConfigError(f"format {chosen[:20]!r}: choose one of {', '.join(formats)}")
    return chosen


def parse_grid(items: list[tuple[str, str]]) -> GridView:
    """A grid request: seeds (up to MAX_GRID), class, truncation, noise, noise_std, format."""
    values = single_values(items, GRID_KEYS)
    seeds = _seeds(values, "0-63", 1, MAX_GRID, "a grid")
    return GridView(tuple(seeds), _latents(values), _format(values, GRID_FORMATS))


def parse_walk(items: list[tuple[str, str]]) -> WalkView:
    """A walk request: 2 to MAX_WALK_SEEDS seeds, frames, loop, and the grid's latent choices."""
    values = single_values(items, WALK_KEYS)
    seeds = _seeds(values, "0,1", 2, MAX_WALK_SEEDS, "a walk")
    frames = _whole(values, "frames", 60, 2, MAX_FRAMES)
    loop_text = values.get("loop", "1").strip()
    if loop_text not in ("0", "1", "true", "false"):
        raise ConfigError(f"loop must be 1 or 0, got {loop_text[:20]!r}")
    latents = _latents(values)
    return WalkView(
        tuple(seeds), frames, loop_text in ("1", "true"), latents, _format(values, WALK_FORMATS)
    )


def prepared(generator, info, latents: Latents):
    """(info with the noise law asked for, class index or None), checked as the CLI checks."""
    from ganforge.conditional import class_labels, num_classes_of

    info = with_noise(info, latents.noise, latents.noise_std)
    check_truncation(info, latents.truncation)
    labels = class_labels(
        latents.label,
        num_classes_of(generator),
        1,
        f"the {info.arch} generator",
        info.class_names,
    )
    return info, (int(labels[0]) if labels is not None else None)


def grid_images(generator, info, view: GridView) -> torch.Tensor:
    """uint8 [N, C, H, W]: one image per seed, as `ganforge sample --seeds` draws them."""
    info, label = prepared(generator, info, view.latents)
    labels = None if label is None else torch.full((len(view.seeds),), label, dtype=torch.long)
    return seed_images(
        generator, info, list(view.seeds), view.latents.truncation, labels, batch_size=BATCH
    )


def walk_frames(generator, info, view: WalkView) -> torch.Tensor:
    """uint8 [frames, C, H, W]: the walk `ganforge interpolate` animates."""
    info, label = prepared(generator, info, view.latents)
    return walk_images(
        generator,
        info,
        list(view.seeds),
        view.frames,
        view.loop,
        view.latents.truncation,
        label,
        batch_size=BATCH,
    )


def grid_rows(count: int) -> int:
    """Rows of a grid of `count` images, as `ganforge sample --out grid.png` lays them out."""
    return max(1, int(math.sqrt(count)))


def encode_grid(images: torch.Tensor, fmt: str) -> bytes:
    """The grid as `ganforge sample` writes it: PNG grid, .npy [N, H, W, C] or NIfTI stack."""
    from ganforge.artefacts.images import make_grid, to_pil

    if fmt == "png":
        picture = to_pil(make_grid(images, grid_rows(len(images))), max(1, 64 // images.shape[-2]))
        return _png(picture)
    if fmt == "npy":
        return _npy(images)
    from ganforge.data import save_nifti_stack

    with tempfile.TemporaryDirectory(prefix="ganforge-serve-") as folder:
        path = save_nifti_stack(images, Path(folder) / "grid.nii.gz")
        return path.read_bytes()


def encode_walk(frames: torch.Tensor, fmt: str, fps: int = 20) -> bytes:
    """The walk as a vertical strip of frames (PNG, the page's slider cuts it), .npy or GIF."""
    from ganforge.artefacts.images import to_pil

    if fmt == "png":
        strip = frames.permute(0, 2, 3, 1).reshape(-1, frames.shape[-1], frames.shape[1])
        return _png(to_pil(strip.numpy()))
    if fmt == "npy":
        return _npy(frames)
    from ganforge.artefacts.video import save_animation

    with tempfile.TemporaryDirectory(prefix="ganforge-serve-") as folder:
        return save_animation(frames, Path(folder) / "walk.gif", fps=fps).read_bytes()


def _png(picture) -> bytes:
    # fast compression: the page asks for a new grid on every change
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _npy(images: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, images.permute(0, 2, 3, 1).numpy())
    return buffer.getvalue()


def seeds_text(seeds: tuple[int, ...] | list[int]) -> str:
    """Seeds as `--seeds` takes them, runs of consecutive seeds as ranges: 0-63, 3,7,12."""
    parts, start = [], 0
    for i in range(1, len(seeds) + 1):
        if i == len(seeds) or seeds[i] != seeds[i - 1] + 1:
            first, last = seeds[start], seeds[i - 1]
            parts.append(str(first) if first == last else f"{first}-{last}")
            start = i
    return ",".join(parts)


def _latent_flags(latents: Latents) -> list[str]:
    flags = []
    if latents.label is not None:
        flags += ["--class", latents.label]
    if latents.truncation is not None:
        flags += ["--truncation", f"{latents.truncation:g}"]
    if latents.noise is not None:
        flags += ["--noise", latents.noise]
    if latents.noise_std is not None:
        flags += ["--noise-std", f"{latents.noise_std:g}"]
    return flags


def grid_command(source: list[str], view: GridView) -> str:
    """The `ganforge sample` command that writes this grid."""
    out = "grid" + GRID_FORMATS[view.format]
    argv = ["ganforge", "sample", *source, "--seeds", seeds_text(view.seeds)]
    argv += _latent_flags(view.latents) + ["--out", out]
    return shlex.join(argv)


def walk_command(source: list[str], view: WalkView) -> str:
    """The `ganforge interpolate` command that animates this walk."""
    argv = ["ganforge", "interpolate", *source, "--seeds", seeds_text(view.seeds)]
    argv += ["--frames", str(view.frames)] + ([] if view.loop else ["--no-loop"])
    argv += _latent_flags(view.latents) + ["--out", "walk.gif"]
    return shlex.join(argv)
