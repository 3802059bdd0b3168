"""Turn the execution settings (device, precision, compile, ...) into decisions.

"auto" picks the fast path where the hardware has it (a CUDA GPU): bf16 autocast,
channels-last, torch.compile, fused Adam and artefacts written off the training thread.
Asking explicitly for something the machine lacks is a ConfigError that names the
fallback; "auto" falling back is announced once, in the log and in the run's
summary.json ("notes"). Nothing here silently takes a slow path.

Neighbours: threads.py (CPU threads, seeding), transfer.py (copies without host syncs),
oom.py (the out-of-memory message), artefacts/writer.py (grids off the training thread).
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ganforge.config import TrainConfig
from ganforge.errors import ConfigError

CUDA_GRAPH_COMPILE_MODES = (
    "reduce-overhead",
    "max-autotune",
)  # torch.compile modes that use CUDA graphs


@dataclass
class Runtime:
    device: torch.device
    dtype: torch.dtype | None  # autocast dtype, None for plain fp32
    compile: bool
    channels_last: bool
    notes: list[str] = field(default_factory=list)  # fallbacks to tell the user about
    compile_mode: str = "default"  # torch.compile mode, when compile is on
    compile_required: bool = False  # compile=on: a compile failure is an error, not a fallback
    fused_optim: bool = False  # fused Adam kernels (CUDA)
    cuda_graphs: bool = False  # whole-step CUDA graph capture (training/step.py GraphedStep)
    async_artefacts: bool = False  # sample grids written by a background thread

    @property
    def grad_scaling(self) -> bool:
        """fp16 gradients need a loss scale (bf16 has fp32's range and does not)."""
        return self.dtype == torch.float16

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        # No autocast weight cache inside CUDA graph capture (PyTorch docs, "CUDA Graphs").
        return torch.autocast(
            self.device.type, dtype=self.dtype, cache_enabled=not self.cuda_graphs
        )

    def describe(self) -> dict[str, Any]:
        """The decisions, for logs, summaries and the benchmark."""
        return {
            "device": str(self.device),
            "autocast": str(self.dtype).removeprefix("torch.") if self.dtype else "fp32",
            "compile": self.compile_mode if self.compile else "off",
            "channels_last": self.channels_last,
            "fused_optim": self.fused_optim,
            "cuda_graphs": self.cuda_graphs,
            "async_artefacts": self.async_artefacts,
        }


def resolve_device(name: str) -> torch.device:
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


def compile_unavailable(device: torch.device) -> str | None:
    """Why torch.compile cannot work here, or None if it should."""
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        return "Triton (which torch.compile needs for CUDA kernels) is not installed"
    if device.type == "cpu" and not any(
        shutil.which(cc) for cc in ("cc", "gcc", "clang", "c++", "g++")
    ):
        return "no C/C++ compiler on PATH (torch.compile needs one for CPU kernels)"
    if device.type not in ("cuda", "cpu"):
        return f"torch.compile is not supported by ganforge on {device.type}"
    return None


def native_bf16(device: torch.device) -> bool:
    """bf16 in hardware (Ampere and later): emulated bf16 is slower than fp32."""
    if device.type != "cuda":
        return False
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # PyTorch before 2.4 has no including_emulation
        return torch.cuda.get_device_capability(device)[0] >= 8


def _autocast_dtype(
    config: TrainConfig, device: torch.device, notes: list[str]
) -> torch.dtype | None:
    """bf16 where the GPU has it natively, fp16 (with gradient scaling) on other GPUs, else fp32."""
    cuda, precision = device.type == "cuda", config.precision
    if precision in ("bf16", "fp16") and not cuda:
        raise ConfigError(
            f"precision {precision} needs a CUDA GPU (this run is on {device.type}); use "
            "--precision fp32, or auto (mixed precision where the GPU has it, else fp32)"
        )
    if precision == "bf16" and not native_bf16(device):
        raise ConfigError(
            "precision bf16 asked for, but this GPU has no native bf16 (it would be "
            "emulated, slower than fp32); use --precision fp16 or auto"
        )
    if precision == "fp32":
        return None
    if precision == "bf16" or (precision == "auto" and native_bf16(device)):
        return torch.bfloat16
    if precision == "fp16" or (precision == "auto" and cuda):
        penalised = config.r1_gamma > 0 or config.r2_gamma > 0
        if penalised and precision == "auto":
            notes.append(
                "precision: fp32 (R1's and R2's gradient penalties are not scaled for fp16 on "
                "this GPU, which has no native bf16)"
            )
            return None
        if penalised:
            raise ConfigError(
                "precision fp16 cannot be combined with R1 or R2 (r1_gamma, r2_gamma > 0); use fp32"
            )
        if precision == "auto":
            notes.append("precision: fp16 with gradient scaling (this GPU has no native bf16)")
        return torch.float16
    notes.append(
        f"precision: fp32 (mixed precision only on a CUDA GPU; this run is on {device.type})"
    )
    return None


def resolve_runtime(config: TrainConfig) -> Runtime:
    """Decide every execution setting; ConfigError where an explicit request cannot be met."""
    device = resolve_device(config.device)
    notes: list[str] = []
    cuda = device.type == "cuda"

    dtype = _autocast_dtype(config, device, notes)
    use_compile = config.compile == "on" or (config.compile == "auto" and cuda)
    if config.deterministic:
        if config.compile == "on":
            raise ConfigError(
                "compile=on cannot be combined with deterministic=true; drop one of them"
            )
        use_compile = False
    if use_compile:
        reason = compile_unavailable(device)
        if reason and config.compile == "on":
            raise ConfigError(
                f"compile=on asked for, but {reason}; use --set compile=off (eager) or auto"
            )
        if reason:
            notes.append(f"compile: off ({reason}); running eager")
            use_compile = False
    if use_compile and config.compile_mode in CUDA_GRAPH_COMPILE_MODES and not cuda:
        notes.append(
            f"compile_mode {config.compile_mode}: CUDA graphs apply on a CUDA GPU only; "
            f"on {device.type} it compiles without them"
        )

    channels_last = config.channels_last == "on" or (config.channels_last == "auto" and cuda)
    fused = config.fused_optim == "on" or (config.fused_optim == "auto" and cuda)
    if config.fused_optim == "on" and not cuda:
        raise ConfigError(
            f"fused_optim=on needs a CUDA GPU (this run is on {device.type}); use auto or off "
            "(the CPU uses the multi-tensor 'foreach' Adam)"
        )

    if config.cuda_graphs == "on":
        if not cuda:
            raise ConfigError(
                f"cuda_graphs=on needs a CUDA GPU (this run is on {device.type}); "
                "use --set cuda_graphs=off"
            )
        if config.deterministic:
            raise ConfigError(
                "cuda_graphs=on cannot be combined with deterministic=true; drop one of them"
            )
        if use_compile and config.compile_mode in CUDA_GRAPH_COMPILE_MODES:
            raise ConfigError(
                "cuda_graphs=on captures the whole step itself; use it with "
                "compile_mode=default or max-autotune-no-cudagraphs, "
                f"not {config.compile_mode} (which graphs each model)"
            )
    async_artefacts = config.async_artefacts == "on" or (config.async_artefacts == "auto" and cuda)
    if dtype == torch.float16 and config.cuda_graphs == "on":
        raise ConfigError(
            "fp16 training scales its gradients with a host-side check each step, which "
            "CUDA graphs cannot replay; use --precision bf16/fp32 or cuda_graphs=off"
        )
    return Runtime(
        device,
        dtype,
        use_compile,
        channels_last,
        notes,
        compile_mode=config.compile_mode,
        compile_required=config.compile == "on",
        fused_optim=fused,
        cuda_graphs=config.cuda_graphs == "on",
        async_artefacts=async_artefacts,
    )


def compile_module(module: torch.nn.Module, runtime: Runtime) -> Callable:
    """torch.compile(module) with the configured mode (it compiles at the first call)."""
    mode = None if runtime.compile_mode == "default" else runtime.compile_mode
    return torch.compile(module, mode=mode)
