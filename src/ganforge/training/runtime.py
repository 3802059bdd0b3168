"""Turn the execution settings (device, precision, compile, channels-last) into decisions.

"auto" picks the fast path where the hardware has it. Asking explicitly for something
the machine lacks is an error; "auto" falling back is announced once in the log.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

import torch

from ganforge.config import TrainConfig
from ganforge.errors import ConfigError


@dataclass
class Runtime:
    device: torch.device
    dtype: torch.dtype | None  # autocast dtype, None for plain fp32
    compile: bool
    channels_last: bool
    notes: list[str] = field(default_factory=list)  # fallbacks to tell the user about

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for, but this PyTorch sees no CUDA GPU; use --device cpu or auto")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r} asked for, but only {torch.cuda.device_count()} GPU(s) are visible")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' asked for, but it is not available; use --device cpu or auto")
    return torch.device(name)


def resolve_runtime(config: TrainConfig) -> Runtime:
    device = resolve_device(config.device)
    notes: list[str] = []
    cuda = device.type == "cuda"
    if config.precision == "bf16" and not (cuda and torch.cuda.is_bf16_supported()):
        raise ConfigError("precision bf16 needs a CUDA GPU with bf16 support; use --precision fp32 or auto")
    use_bf16 = config.precision == "bf16" or (config.precision == "auto" and cuda and torch.cuda.is_bf16_supported())
    if config.precision == "auto" and not use_bf16:
        notes.append(f"precision: fp32 (bf16 autocast only on a CUDA GPU; this run is on {device.type})")
    use_compile = config.compile == "on" or (config.compile == "auto" and cuda)
    if config.deterministic:
        if config.compile == "on":
            raise ConfigError("compile=on cannot be combined with deterministic=true; drop one of them")
        use_compile = False
    channels_last = config.channels_last == "on" or (config.channels_last == "auto" and cuda)
    return Runtime(device, torch.bfloat16 if use_bf16 else None, use_compile, channels_last, notes)


def configure_threads() -> None:
    """Use every physical core for intra-op work unless the user pinned a number."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, os.cpu_count() or 1))


def seed_everything(seed: int, deterministic: bool) -> None:
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
