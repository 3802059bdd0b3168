"""Which device a run or a command uses: the one place that turns a device name into a
``torch.device`` and says, in one line, why a named device cannot be used here.

Training, sampling, evaluation and the benchmark all ask here, so ``--device`` means the same
to every command.
"""

from __future__ import annotations

import torch

from ganforge.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA, then MPS, then the CPU; a named device must exist here."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {name!r} asked for, but this PyTorch sees no CUDA GPU "
                f"(torch {torch.__version__}); use --device cpu or auto"
            )
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {name!r} asked for, but only "
                f"{torch.cuda.device_count()} GPU(s) are visible"
            )
    if name == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ConfigError(
            "device 'mps' asked for, but it is not available; use --device cpu or auto"
        )
    return torch.device(name)
