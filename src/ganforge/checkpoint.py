"""Checkpoints that load without executing code.

Two formats, both safe to open from an untrusted source:

* a *training checkpoint* (``checkpoints/ckpt-<step>.pt``): everything needed to continue
  a run exactly (G, D, both optimisers, EMA, sampler position, every RNG stream, the
  config). Saved with ``torch.save`` and loaded with ``torch.load(weights_only=True)``,
  whose unpickler accepts only tensors and plain containers; anything else is refused.
* an *exported generator* (``generator.safetensors``): the generator's weights plus JSON
  metadata (architecture, options, latent size, image shape, noise law), enough to rebuild
  it from the registry with no pickle at all.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save
from torch import nn

from ganforge.artefacts.files import atomic_open, write_bytes
from ganforge.errors import CheckpointError

FORMAT = "ganforge-checkpoint-v1"
GENERATOR_FORMAT = "ganforge-generator-v1"


@dataclass
class GeneratorInfo:
    """What is needed to rebuild and sample a generator."""

    arch: str
    latent_dim: int
    image_shape: tuple[int, int, int]
    options: dict[str, Any]
    noise: str = "normal"
    noise_std: float = 1.0
    dataset: str = ""
    step: int = 0

    @classmethod
    def from_config(cls, config: Any, image_shape: tuple[int, int, int], dataset: str, step: int) -> "GeneratorInfo":
        return cls(config.model.arch, config.model.latent_dim, tuple(image_shape), dict(config.model.options),
                   config.noise, config.noise_std, dataset, step)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write a training checkpoint atomically (temporary file, fsync, rename)."""
    state = {"format": FORMAT, **state}
    with atomic_open(path) as handle:
        torch.save(state, handle)
    return Path(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a training checkpoint; refuse anything that is not plain tensors and containers."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsupported content"
        raise CheckpointError(f"{path}: refused to load: it contains objects other than tensors and plain data "
                              f"({first[:160]}); only open checkpoints you trust, and only ganforge's own") from None
    except Exception as exc:  # torch.load raises many types on foreign or damaged files
        raise CheckpointError(f"{path}: not a readable checkpoint ({str(exc).splitlines()[0][:160]}); "
                              "it may be truncated or from another program") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a ganforge training checkpoint")
    return state


def export_generator(path: str | Path, generator: nn.Module, info: GeneratorInfo) -> Path:
    """Write the generator's weights (and BatchNorm buffers) with its metadata as safetensors."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    metadata = {"format": GENERATOR_FORMAT, "info": json.dumps(info.__dict__)}
    write_bytes(path, safetensors_save(tensors, metadata=metadata))
    return Path(path)


def read_generator_file(path: str | Path) -> tuple[dict[str, torch.Tensor], GeneratorInfo]:
    path = Path(path)
    try:
        raw = path.read_bytes()
        tensors = safetensors_load(raw)
        header_len = int.from_bytes(raw[:8], "little")
        metadata = json.loads(raw[8 : 8 + header_len]).get("__metadata__", {})
    except (OSError, SafetensorError, ValueError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({str(exc)[:160]})") from None
    if metadata.get("format") != GENERATOR_FORMAT:
        raise CheckpointError(f"{path}: a safetensors file, but not a ganforge generator (no ganforge metadata)")
    values = json.loads(metadata["info"])
    values["image_shape"] = tuple(values["image_shape"])
    return tensors, GeneratorInfo(**values)


def load_state_strict(module: nn.Module, state: dict[str, torch.Tensor], what: str, source: str | Path) -> None:
    """load_state_dict, but a mismatch becomes a one-line message naming what differs."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        detail = (f"shape {shapes[0]}" if shapes else f"missing {missing[:2]}" if missing else f"unexpected {unexpected[:2]}")
        raise CheckpointError(f"{source}: the {what} in this checkpoint does not fit the model being built "
                              f"({detail}); it is from another architecture, size or option set")
    module.load_state_dict(state)


def find_latest(checkpoints_dir: str | Path) -> Path | None:
    """The newest readable-looking ckpt-<step>.pt in a folder, by step number."""
    folder = Path(checkpoints_dir)
    candidates = sorted(folder.glob("ckpt-*.pt"), key=lambda p: int(p.stem.split("-")[1]) if p.stem.split("-")[1].isdigit() else -1)
    return candidates[-1] if candidates else None
