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
import math
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save
from torch import nn

from ganforge.artefacts.files import atomic_open, write_bytes
from ganforge.config_migration import migrate_config
from ganforge.errors import CheckpointError, first_line
from ganforge.settings import LatentConfig

FORMAT = "ganforge-checkpoint-v1"
GENERATOR_FORMAT = "ganforge-generator-v1"
# sanity bounds for stored metadata; real models are far below them
MAX_LATENT_DIM = 1 << 16
MAX_IMAGE_SIDE = 1 << 14
MAX_CLASSES, MAX_NAME = 1 << 16, 200


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
    # label i is class_names[i], when the data names them
    class_names: tuple[str, ...] = ()

    @property
    def latent(self) -> LatentConfig:
        """The noise law this generator was trained on, in the form ganforge.noise draws from
        (the run's ``config.latent``; ``noise`` and ``noise_std`` are its stored form)."""
        return LatentConfig(self.noise, self.noise_std)

    @classmethod
    def from_config(
        cls,
        config: Any,
        image_shape: tuple[int, int, int],
        dataset: str,
        step: int,
        class_names: tuple[str, ...] | None = None,
    ) -> "GeneratorInfo":
        return cls(
            config.model.arch,
            config.model.latent_dim,
            tuple(image_shape),
            dict(config.model.options),
            config.latent.law,
            config.latent.std,
            dataset,
            step,
            tuple(class_names or ()),
        )


def training_checkpoint(
    config: Any,
    state: dict[str, Any],
    image_shape: tuple[int, ...],
    dataset: str,
    data_fingerprint: str = "",
    world_size: int = 1,
    class_names: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The contents of a training checkpoint: the run's config and what the model is, beside
    ``TrainingState.state_dict()`` (models, optimisers, EMA, sampler, random streams, step).

    This and :func:`generator_from_checkpoint` are the one place that knows the layout.
    """
    return {
        "config": config.to_json(),
        "arch": config.model.arch,
        "image_shape": list(image_shape),
        "dataset": dataset,
        "class_names": list(class_names),
        "data_fingerprint": data_fingerprint,
        # processes that trained it (distributed runs)
        "world_size": world_size,
        **state,
    }


def generator_from_checkpoint(
    state: dict[str, Any], path: Path, use_ema: bool = True
) -> tuple[GeneratorInfo, dict[str, torch.Tensor]]:
    """The generator's description and weights in a training checkpoint (the EMA copy when kept)."""
    try:
        config = migrate_config(json.loads(state["config"]))
        model = config["model"]
        values = {
            "arch": model["arch"],
            "latent_dim": model["latent_dim"],
            "image_shape": state["image_shape"],
            "options": model["options"],
            "noise": config["latent"]["law"],
            "noise_std": config["latent"]["std"],
            "dataset": state["dataset"],
            "step": state["step"],
            # checkpoints before names have none
            "class_names": state.get("class_names", []),
        }
        ema = state["ema"]
        # forged or damaged: never skipped silently
        if not (ema is None or isinstance(ema, dict)):
            raise TypeError("ema")
        tensors = ema if (use_ema and isinstance(ema, dict) and ema) else state["generator"]
    except (KeyError, TypeError, ValueError) as exc:
        what = (
            f"no {str(exc)[:60]}" if isinstance(exc, KeyError) else "a malformed model description"
        )
        raise CheckpointError(
            f"{path}: damaged ganforge checkpoint ({what}); use an earlier "
            "checkpoint or the run's generator.safetensors"
        ) from None
    return generator_info(values, path), tensors


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
        # torch's pickle-protocol notices about a foreign file would only confuse
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    # torch's own text is long and about torch, not this file
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path}: refused to load: it holds Python objects besides tensors and plain "
            "data, which could run code; only open ganforge checkpoints you trust"
        ) from None
    # torch.load raises many types on foreign or damaged files
    except Exception as exc:
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({first_line(exc)}); "
            "it may be truncated or from another program"
        ) from None
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
        metadata = json.loads(raw[8 : 8 + header_len]).get("__metadata__") or {}
    except (OSError, SafetensorError, ValueError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({first_line(exc)})"
        ) from None
    if metadata.get("format") != GENERATOR_FORMAT:
        raise CheckpointError(
            f"{path}: a safetensors file, but not a ganforge generator (no ganforge metadata)"
        )
    try:
        values = json.loads(metadata["info"])
    except (KeyError, TypeError, ValueError):
        values = None
    return tensors, generator_info(values, path)


def generator_info(values: Any, source: str | Path) -> GeneratorInfo:
    """GeneratorInfo from stored metadata, checked field by field: a damaged or forged file
    becomes a CheckpointError here, not a crash (or a huge allocation) while building the model."""

    def bad(what: str) -> CheckpointError:
        return CheckpointError(
            f"{source}: damaged ganforge metadata ({what}); the file was altered or corrupted "
            "after ganforge wrote it"
        )

    if not isinstance(values, dict):
        raise bad("no generator description")
    unknown = sorted(map(str, set(values) - set(GeneratorInfo.__dataclass_fields__)))
    if unknown:
        raise bad(f"unknown field {unknown[0]!r}")
    try:
        info = GeneratorInfo(**values)
    except TypeError:
        raise bad("fields missing") from None
    shape = info.image_shape
    checks = (
        ("arch", isinstance(info.arch, str)),
        ("latent_dim", _whole(info.latent_dim) and 0 < info.latent_dim <= MAX_LATENT_DIM),
        (
            "image_shape",
            isinstance(shape, (list, tuple))
            and len(shape) == 3
            and all(_whole(n) and 0 < n <= MAX_IMAGE_SIDE for n in shape),
        ),
        ("options", isinstance(info.options, dict)),
        ("noise", info.noise in ("normal", "uniform")),
        ("noise_std", _finite(info.noise_std)),
        ("dataset", isinstance(info.dataset, str)),
        ("step", _whole(info.step) and info.step >= 0),
        (
            "class_names",
            isinstance(info.class_names, (list, tuple))
            and len(info.class_names) <= MAX_CLASSES
            and all(isinstance(n, str) and 0 < len(n) <= MAX_NAME for n in info.class_names),
        ),
    )
    for name, ok in checks:
        if not ok:
            raise bad(f"{name} = {_shown(getattr(info, name))}")
    info.image_shape = tuple(int(n) for n in shape)
    info.class_names = tuple(info.class_names)
    return info


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    try:
        return repr(value)[:60]
    # an int with thousands of digits has no repr
    except ValueError:
        return type(value).__name__


def _finite(value: Any) -> bool:
    try:
        return (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(float(value))
        )
    # an int beyond float range
    except OverflowError:
        return False


def state_problem(module: nn.Module, state: Any) -> str | None:
    """What keeps `state` from loading into `module` (names and shapes), or None if it fits."""
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        return "it holds no tensor state for it"
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    for key, value in own.items():
        if key in state and tuple(state[key].shape) != tuple(value.shape):
            return (
                f"{key} is {tuple(state[key].shape)} in the checkpoint, "
                f"{tuple(value.shape)} in the model"
            )
    if missing:
        return f"the checkpoint lacks {', '.join(missing[:2])}"
    if unexpected:
        return f"the model has no {', '.join(unexpected[:2])}"
    return None


def check_state_fits(module: nn.Module, state: Any, what: str, source: str | Path) -> None:
    """Raise a one-line CheckpointError naming the first layer that differs. `module` may live
    on the meta device, so a forged file is compared before any real weights are allocated."""
    problem = state_problem(module, state)
    if problem:
        raise CheckpointError(
            f"{source}: the {what} in this checkpoint does not fit the model being built "
            f"({problem}); it is from another architecture, size or option set"
        )


def load_state_strict(
    module: nn.Module, state: dict[str, torch.Tensor], what: str, source: str | Path
) -> None:
    """load_state_dict, but a mismatch becomes a one-line message naming what differs."""
    check_state_fits(module, state, what, source)
    module.load_state_dict(state)


def find_latest(checkpoints_dir: str | Path) -> Path | None:
    """The newest readable-looking ckpt-<step>.pt in a folder, by step number."""
    folder = Path(checkpoints_dir)
    candidates = sorted(
        folder.glob("ckpt-*.pt"),
        key=lambda p: int(p.stem.split("-")[1]) if p.stem.split("-")[1].isdigit() else -1,
    )
    return candidates[-1] if candidates else None
