"""Load a trained generator from anywhere a user points, and make images with it.

Accepted sources: a run folder (its generator.safetensors, else its latest checkpoint), a model
folder from ``ganforge export --format folder`` (its model.safetensors), an exported
``.safetensors`` generator, or a training checkpoint ``.pt``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ganforge.checkpoint import (
    GeneratorInfo,
    check_state_fits,
    find_latest,
    generator_from_checkpoint,
    load_checkpoint,
    load_state_strict,
    read_generator_file,
)
from ganforge.conditional import class_labels, num_classes_of
from ganforge.data.base import to_uint8
from ganforge.errors import CheckpointError, ConfigError
from ganforge.latent import check_truncation, seed_images, walk_class, walk_images, with_noise
from ganforge.models import build_models, generator_skeleton
from ganforge.noise import draw_noise

if TYPE_CHECKING:
    import numpy as np


def resolve_source(source: str | Path) -> Path:
    """The generator file a run folder or path stands for."""
    path = Path(source)
    if path.is_dir():
        # run folder, model folder
        for name in ("generator.safetensors", "model.safetensors"):
            if (path / name).is_file():
                return path / name
        latest = find_latest(path / "checkpoints")
        if latest is not None:
            return latest
        raise CheckpointError(
            f"{path} holds no generator.safetensors, model.safetensors or "
            "checkpoints/ckpt-*.pt; is it a ganforge run or model folder?"
        )
    if not path.exists():
        raise CheckpointError(
            f"{path} not found: give a run folder, a generator .safetensors or a checkpoint .pt"
        )
    return path


def load_generator(
    source: str | Path, device: str | torch.device = "cpu", use_ema: bool = True
) -> tuple[nn.Module, GeneratorInfo]:
    """Rebuild the generator from the registry and load its weights; eval mode, on `device`."""
    path = resolve_source(source)
    if path.suffix == ".safetensors":
        tensors, info = read_generator_file(path)
    else:
        state = load_checkpoint(path)
        info, tensors = generator_from_checkpoint(state, path, use_ema)
    # compare shapes first: a forged size allocates nothing
    skeleton = generator_skeleton(info.arch, info.latent_dim, info.image_shape, info.options)
    check_state_fits(skeleton, tensors, "generator", path)
    expected = skeleton.state_dict()
    if set(expected) == {name for name, _ in _parameters_and_buffers(skeleton)}:
        # every value is in the file: the file's tensors become the weights, nothing is
        # initialised or copied (in the model's dtypes, as a copying load would convert)
        generator = skeleton
        tensors = {k: v.to(expected[k].dtype) if k in expected else v for k, v in tensors.items()}
        generator.load_state_dict(tensors, assign=True)
    else:
        # a non-persistent buffer is computed at construction, not saved: build it for real
        generator, _ = build_models(info.arch, info.latent_dim, info.image_shape, info.options)
        load_state_strict(generator, tensors, "generator", path)
    return generator.to(device).eval(), info


def _parameters_and_buffers(module: nn.Module):
    yield from module.named_parameters()
    yield from module.named_buffers()


@torch.no_grad()
def generate(
    generator: nn.Module,
    info: GeneratorInfo,
    count: int,
    seed: int = 0,
    batch_size: int = 500,
    device: str | torch.device | None = None,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """`count` images as uint8 [N, C, H, W], the same for the same seed on the same device.

    `labels` [count] asks a conditional generator for these classes (see
    ganforge.conditional.class_labels); without them it cycles through its classes.
    """
    device = torch.device(device) if device else next(generator.parameters()).device
    rng = torch.Generator(device="cpu").manual_seed(seed)
    out = []
    for start in range(0, count, batch_size):
        n = min(batch_size, count - start)
        z = draw_noise(n, info.latent_dim, info.latent, rng, "cpu").to(device)
        if labels is None:
            images = generator(z)
        else:
            images = generator(z, labels[start : start + n].to(device))
        out.append(to_uint8(images).cpu())
    return torch.cat(out)


@dataclass(frozen=True)
class Drawn:
    """Images drawn from a generator, with what a caller needs to save or describe them."""

    images: torch.Tensor
    """uint8 [N, C, H, W]."""
    seeds: list[int] | None
    """One seed per image (asked for, or implied by a truncation); None: one stream from a
    single seed, the fastest way to many images."""
    label: int | None
    """The class every image was asked for; None: no class asked."""
    info: GeneratorInfo
    """The generator's description, with the noise law the images were drawn in."""


def draw(
    generator: nn.Module,
    info: GeneratorInfo,
    count: int = 64,
    *,
    seed: int = 0,
    seeds: list[int] | None = None,
    truncation: float | None = None,
    label: int | str | None = None,
    noise: str | None = None,
    noise_std: float | None = None,
    name: str = "the generator",
) -> Drawn:
    """Images as ``ganforge sample`` makes them: `count` from one `seed`, or one per seed.

    A truncation draws one image per seed (``seed`` .. ``seed + count - 1`` unless `seeds`
    are given), so an image never depends on the others. `label` (a class number or name)
    asks a conditional generator for one class; `noise` and `noise_std` draw from another
    law than the trained one. Every choice is checked before anything is generated; `name`
    says which generator a one-line error is about.
    """
    info = with_noise(info, noise, noise_std)
    check_truncation(info, truncation)
    if seeds is None and truncation is not None:
        seeds = seed_range(seed, count)
    amount = len(seeds) if seeds else count
    labels = class_labels(label, num_classes_of(generator), amount, name, info.class_names)
    if seeds is None:
        images = generate(generator, info, count, seed, labels=labels)
    else:
        images = seed_images(generator, info, seeds, truncation, labels)
    return Drawn(images, seeds, int(labels[0]) if labels is not None else None, info)


def walk_frames(
    generator: nn.Module,
    info: GeneratorInfo,
    seeds: list[int],
    frames: int = 60,
    *,
    loop: bool = True,
    truncation: float | None = None,
    label: int | str | None = None,
    noise: str | None = None,
    noise_std: float | None = None,
    name: str = "the generator",
) -> Drawn:
    """The frames of a walk through the seeds' latents (slerp for normal noise, else lerp),
    as ``ganforge interpolate`` makes them. A conditional generator stays in one class:
    `label`, else the first seed's (the class ``ganforge sample --seeds`` gives it)."""
    info = with_noise(info, noise, noise_std)
    check_truncation(info, truncation)
    labels = class_labels(label, num_classes_of(generator), 1, name, info.class_names)
    asked = int(labels[0]) if labels is not None else None
    images = walk_images(generator, info, seeds, frames, loop, truncation, asked)
    return Drawn(images, seeds, walk_class(generator, seeds, asked), info)


def seed_range(first: int, count: int) -> list[int]:
    """`count` consecutive seeds from `first`; each must be a non-negative 64-bit number."""
    if first < 0 or first + count > 2**63:
        raise ConfigError(
            f"a truncation draws one image per seed, here {first}..{first + count - 1}, and "
            "seeds must be non-negative 64-bit numbers; choose another seed"
        )
    return list(range(first, first + count))


def sample(
    source: str | Path,
    count: int = 64,
    seed: int = 0,
    device: str = "cpu",
    **options,
) -> np.ndarray:
    """The one-call API: uint8 images [N, H, W, C] from a run folder or generator file.

    `options` are :func:`draw`'s: ``seeds``, ``truncation``, ``label``, ``noise`` and
    ``noise_std``, e.g. ``ganforge.sample("runs/mnist-best-001", 16, label=7)``.
    """
    generator, info = load_generator(source, device)
    drawn = draw(generator, info, count, seed=seed, name=f"the generator in {source}", **options)
    return drawn.images.permute(0, 2, 3, 1).numpy()


def interpolate(
    source: str | Path, seeds: list[int], frames: int = 60, device: str = "cpu", **options
) -> np.ndarray:
    """uint8 frames [frames, H, W, C] of a latent walk through `seeds` (:func:`walk_frames`;
    ``loop``, ``truncation``, ``label``, ``noise``, ``noise_std`` as there)."""
    generator, info = load_generator(source, device)
    walked = walk_frames(
        generator, info, seeds, frames, name=f"the generator in {source}", **options
    )
    return walked.images.permute(0, 2, 3, 1).numpy()
