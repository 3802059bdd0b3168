"""Turn the execution settings (device, precision, compile, ...) into decisions.

"auto" picks the fast path where the hardware has it. On a CUDA GPU: bf16 autocast,
channels-last, torch.compile, fused Adam and artefacts written off the training thread. On a
CPU: channels-last, and bf16 autocast where the CPU computes bf16 natively (AMX-BF16,
AVX512-BF16 or ARM BF16, read from its flags: ``cpu_bf16_unit``) and the images are large
enough for it to pay (``CPU_BF16_MIN_SIDE``). An explicit fp32, which the faithful presets
pin, is exact fp32 (TF32 off) on the plain path. The start line names the path taken
(``Runtime.path``). Asking explicitly for something the machine lacks is a ConfigError
that names the fallback; "auto" falling back is announced once, in the log and in the run's
summary.json ("notes"). Nothing here silently takes a slow path.

Neighbours: threads.py (CPU threads, seeding), transfer.py (copies without host syncs),
oom.py (the out-of-memory message), artefacts/writer.py (grids off the training thread).
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from ganforge.devices import resolve_device
from ganforge.errors import ConfigError

if TYPE_CHECKING:
    # annotations only: `ganforge sample` resolves its device here without the config schema
    from ganforge.config import TrainConfig

# PyTorch's TF32 switches as this process found them (matmul, cuDNN), restored by any run that
# does not ask for exact fp32
_TF32_DEFAULTS = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)

# torch.compile modes that use CUDA graphs
CUDA_GRAPH_COMPILE_MODES = ("reduce-overhead", "max-autotune")


@dataclass
class Runtime:
    device: torch.device
    # autocast dtype, None for plain fp32
    dtype: torch.dtype | None
    compile: bool
    channels_last: bool
    # fallbacks to tell the user about
    notes: list[str] = field(default_factory=list)
    # torch.compile mode, when compile is on
    compile_mode: str = "default"
    # compile=on: a compile failure is an error, not a fallback
    compile_required: bool = False
    # fused Adam kernels (CUDA)
    fused_optim: bool = False
    # whole-step CUDA graph capture (training/step.py GraphedStep)
    cuda_graphs: bool = False
    # sample grids written by a background thread
    async_artefacts: bool = False
    # TF32 matrix products and convolutions on an Ampere+ GPU (PyTorch's cuDNN default); off
    # where fp32 was asked for, so an fp32 run is exactly fp32
    tf32: bool = True
    # what the CPU computes bf16 with ("AMX-BF16", ...), for the start line; None off a CPU
    cpu_bf16: str | None = None

    @property
    def cpu_mixed_precision(self) -> bool:
        """bf16 autocast on a CPU: its threads should take only idle cores (threads.py)."""
        return self.device.type == "cpu" and self.dtype is not None

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

    def apply(self) -> None:
        """Set the process-wide backend switches these decisions need (before any kernel runs)."""
        if self.device.type == "cuda":
            # TF32 off where fp32 was asked for; otherwise PyTorch's own defaults, unchanged
            torch.backends.cuda.matmul.allow_tf32 = self.tf32 and _TF32_DEFAULTS[0]
            torch.backends.cudnn.allow_tf32 = self.tf32 and _TF32_DEFAULTS[1]

    def path(self) -> str:
        """The execution path in a few words, for the start line: what was taken, and why."""
        parts = [
            "bf16 autocast" if self.dtype == torch.bfloat16 else "",
            "fp16 autocast" if self.dtype == torch.float16 else "",
            "fp32" + ("" if self.tf32 or self.device.type != "cuda" else ", TF32 off")
            if self.dtype is None
            else "",
            "channels-last" if self.channels_last else "",
            "torch.compile" if self.compile else "eager",
            _threads(torch.get_num_threads()) if self.device.type == "cpu" else "",
        ]
        fast = self.dtype is not None or self.compile or self.channels_last
        kind = "fast path" if fast else "plain path"
        unit = f" ({self.cpu_bf16})" if self.cpu_bf16 and self.dtype == torch.bfloat16 else ""
        return f"{kind}{unit}: " + ", ".join(p for p in parts if p)

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
            "tf32": self.tf32 if self.device.type == "cuda" else None,
            "cpu_bf16": self.cpu_bf16,
        }


def _threads(count: int) -> str:
    return "1 thread" if count == 1 else f"{count} threads"


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


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as the kernel reports them (/proc/cpuinfo), empty where unknown."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        # x86 says "flags", ARM says "Features"
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_bf16_unit(flags: frozenset[str] | None = None) -> str | None:
    """The CPU's native bf16 arithmetic ("AMX-BF16", "AVX512-BF16", "ARM BF16"), or None.

    Detected, not guessed: without one of these, bf16 matrix products are emulated by
    converting to fp32 and are slower than plain fp32. `flags` defaults to this machine's
    (``cpu_flags()``); tests pass others.
    """
    flags = cpu_flags() if flags is None else flags
    if "amx_bf16" in flags:
        return "AMX-BF16"
    if "avx512_bf16" in flags:
        return "AVX512-BF16"
    # aarch64 (Neoverse V1/N2, Graviton 3): BFDOT/BFMMLA
    if "bf16" in flags:
        return "ARM BF16"
    return None


def native_bf16(device: torch.device, flags: frozenset[str] | None = None) -> bool:
    """bf16 in hardware (Ampere and later GPUs; AMX or AVX512-BF16 CPUs): emulated bf16 is
    slower than fp32."""
    if device.type == "cpu":
        return cpu_bf16_unit(flags) is not None
    if device.type != "cuda":
        return False
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    # PyTorch before 2.4 has no including_emulation
    except TypeError:
        return torch.cuda.get_device_capability(device)[0] >= 8


# The smallest image side at which bf16 autocast pays on a CPU's matrix units. Measured on 2
# cores with AMX (bench/README.md, "CPU fast path"): at 64x64 and 128x128 bf16 with
# channels-last beats fp32 with channels-last; at 28x28 and 32x32 the layers' matrices are too
# small, and converting to and from bf16 costs more than it saves (the demo ran at 0.35x).
CPU_BF16_MIN_SIDE = 64


def _autocast_dtype(
    config: TrainConfig, device: torch.device, notes: list[str]
) -> torch.dtype | None:
    """bf16 where the device has it natively (GPU or CPU), fp16 (with gradient scaling) on other
    GPUs, else fp32. An explicit fp32 (the faithful presets pin it) is exact fp32: TF32 off."""
    cuda, cpu, precision = device.type == "cuda", device.type == "cpu", config.execution.precision
    if precision == "fp16" and not cuda:
        raise ConfigError(
            f"precision fp16 needs a CUDA GPU (this run is on {device.type}); use "
            "--precision bf16, fp32, or auto (bf16 where the processor has it, else fp32)"
        )
    if precision == "fp32":
        pinned = _preset_pins_fp32(config)
        notes.append(
            "precision: fp32, TF32 off ("
            + (
                f"preset {config.preset} pins it: a faithful reproduction; --precision bf16 "
                "or auto for speed"
                if pinned
                else "as asked"
            )
            + ")"
        )
        return None
    if cpu:
        return _cpu_autocast_dtype(config, notes)
    if precision == "bf16" and not native_bf16(device):
        raise ConfigError(
            f"precision bf16 asked for, but this {device.type} has no native bf16 (it would be "
            "emulated, slower than fp32); use --precision fp16, fp32 or auto"
        )
    if precision == "bf16" or (precision == "auto" and native_bf16(device)):
        return torch.bfloat16
    if precision == "fp16" or (precision == "auto" and cuda):
        penalised = config.regularise.r1_gamma > 0 or config.regularise.r2_gamma > 0
        if penalised and precision == "auto":
            notes.append(
                "precision: fp32 (R1's and R2's gradient penalties are not scaled for fp16 on "
                "this GPU, which has no native bf16)"
            )
            return None
        if penalised:
            raise ConfigError(
                "precision fp16 cannot be combined with R1 or R2 (regularise.r1_gamma, "
                "r2_gamma > 0); use fp32"
            )
        if precision == "auto":
            notes.append("precision: fp16 with gradient scaling (this GPU has no native bf16)")
        return torch.float16
    notes.append(f"precision: fp32 (mixed precision needs a GPU; this run is on {device.type})")
    return None


def _cpu_autocast_dtype(config: TrainConfig, notes: list[str]) -> torch.dtype | None:
    """bf16 autocast on a CPU: asked for (said to be slow without native bf16), or chosen by
    auto where the CPU has native bf16 and the images are large enough for it to pay."""
    unit = cpu_bf16_unit()
    if config.execution.precision == "bf16":
        notes.append(
            f"precision: bf16 autocast on the CPU's {unit} units"
            if unit
            else "precision: bf16 as asked, but this CPU has no native bf16 (no AMX-BF16 or "
            "AVX512-BF16): it is emulated and will be slower than fp32"
        )
        return torch.bfloat16
    if unit is None:
        notes.append("precision: fp32 (this CPU has no native bf16: no AMX-BF16 or AVX512-BF16)")
        return None
    side = _image_side(config)
    if side is None or side < CPU_BF16_MIN_SIDE:
        size = f"{side}x{side} images" if side else "images of a size unknown before loading"
        notes.append(
            f"precision: fp32 ({unit} found, but at {size} bf16 does not pay on a CPU; "
            "--precision bf16 to use it anyway)"
        )
        return None
    notes.append(f"precision: bf16 autocast on the CPU's {unit} units")
    return torch.bfloat16


def _image_side(config: TrainConfig) -> int | None:
    """The training images' larger side, when the config alone tells it."""
    from ganforge.data import expected_shape

    shape = expected_shape(config.data)
    return max(shape[1:]) if shape else None


def _preset_pins_fp32(config: TrainConfig) -> bool:
    """Whether the run's preset itself says precision fp32 (the faithful reproductions)."""
    if not config.preset:
        return False
    from ganforge.presets import PRESET_DIR

    path = PRESET_DIR / f"{config.preset}.yaml"
    try:
        return any(
            line.split("#")[0].strip() == "precision: fp32"
            for line in path.read_text(encoding="utf-8").splitlines()
        )
    except OSError:
        return False


def resolve_runtime(config: TrainConfig) -> Runtime:
    """Decide every execution setting; ConfigError where an explicit request cannot be met."""
    device = resolve_device(config.execution.device)
    notes: list[str] = []
    cuda = device.type == "cuda"

    dtype = _autocast_dtype(config, device, notes)
    use_compile = config.execution.compile == "on" or (config.execution.compile == "auto" and cuda)
    if config.execution.deterministic:
        if config.execution.compile == "on":
            raise ConfigError(
                "execution.compile=on cannot be combined with execution.deterministic=true; "
                "drop one of them"
            )
        use_compile = False
    if use_compile:
        reason = compile_unavailable(device)
        if reason and config.execution.compile == "on":
            raise ConfigError(
                f"execution.compile=on asked for, but {reason}; use --set execution.compile=off "
                "(eager) or auto"
            )
        if reason:
            notes.append(f"compile: off ({reason}); running eager")
            use_compile = False
    if use_compile and config.execution.compile_mode in CUDA_GRAPH_COMPILE_MODES and not cuda:
        notes.append(
            f"execution.compile_mode {config.execution.compile_mode}: CUDA graphs apply on a "
            f"CUDA GPU only; on {device.type} it compiles without them"
        )

    # On a CPU, channels-last pays for every convolution, in fp32 (1.3-1.5x measured) and
    # above all in bf16 (oneDNN's bf16 kernels want it: contiguous bf16 ran 3-6x slower). An
    # fp32 that was asked for (the faithful presets) stays the plain path.
    cpu_fast = device.type == "cpu" and config.execution.precision != "fp32"
    channels_last = config.execution.channels_last == "on" or (
        config.execution.channels_last == "auto" and (cuda or cpu_fast)
    )
    fused = config.execution.fused_optim == "on" or (
        config.execution.fused_optim == "auto" and cuda
    )
    if config.execution.fused_optim == "on" and not cuda:
        raise ConfigError(
            f"execution.fused_optim=on needs a CUDA GPU (this run is on {device.type}); use auto "
            "or off (the CPU uses the multi-tensor 'foreach' Adam)"
        )

    if config.execution.cuda_graphs == "on":
        if not cuda:
            raise ConfigError(
                f"execution.cuda_graphs=on needs a CUDA GPU (this run is on {device.type}); "
                "use --set execution.cuda_graphs=off"
            )
        if config.execution.deterministic:
            raise ConfigError(
                "execution.cuda_graphs=on cannot be combined with execution.deterministic=true; "
                "drop one of them"
            )
        if use_compile and config.execution.compile_mode in CUDA_GRAPH_COMPILE_MODES:
            raise ConfigError(
                "execution.cuda_graphs=on captures the whole step itself; use it with "
                "execution.compile_mode=default or max-autotune-no-cudagraphs, "
                f"not {config.execution.compile_mode} (which graphs each model)"
            )
    async_artefacts = config.execution.async_artefacts == "on" or (
        config.execution.async_artefacts == "auto" and cuda
    )
    if dtype == torch.float16 and config.execution.cuda_graphs == "on":
        raise ConfigError(
            "fp16 training scales its gradients with a host-side check each step, which "
            "CUDA graphs cannot replay; use --precision bf16/fp32 or execution.cuda_graphs=off"
        )
    if device.type == "cpu" and config.execution.compile == "auto" and cpu_fast:
        notes.append(
            "compile: off on the CPU (inductor took over 3 minutes to compile a training step "
            "on 2 busy cores; --set execution.compile=on to try it)"
        )
    return Runtime(
        device,
        dtype,
        use_compile,
        channels_last,
        notes,
        tf32=config.execution.precision != "fp32",
        cpu_bf16=cpu_bf16_unit() if device.type == "cpu" else None,
        compile_mode=config.execution.compile_mode,
        compile_required=config.execution.compile == "on",
        fused_optim=fused,
        cuda_graphs=config.execution.cuda_graphs == "on",
        async_artefacts=async_artefacts,
    )


def batch_norm_channels_last(module: torch.nn.Module) -> None:
    """Every BatchNorm2d of `module` sees its input and its output's gradient in channels-last.

    On a CPU, batch norm is fast when both are in the same layout and 10-20x slower when they
    differ (torch 2.13, 1 thread, [64, 128, 32, 32] bf16, forward + backward: 0.02 s both
    channels-last, 0.40 s contiguous input with a channels-last gradient, 0.61 s the other
    way round). A channels-last network hands batch norm a gradient in either layout,
    depending on the layer after it, so the gradient is put into channels-last on its way
    back. Batch norm backward was 39 % of a brain-best bf16 step before (bench/README.md).
    """
    for layer in module.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.register_forward_pre_hook(_channels_last_input)
            layer.register_forward_hook(_channels_last_gradient)


def _channels_last_input(layer: torch.nn.Module, args: tuple) -> tuple:
    # a no-op where the input is channels-last already
    return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])


def _channels_last_gradient(layer: torch.nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
    # a hook on this tensor sees the gradient with respect to batch norm's own output, also
    # when an in-place activation modifies the output next
    if out.requires_grad:
        out.register_hook(_to_channels_last)
    return out


def _to_channels_last(grad: torch.Tensor) -> torch.Tensor:
    # a no-op where the gradient is channels-last already
    return grad.contiguous(memory_format=torch.channels_last)


def compile_module(module: torch.nn.Module, runtime: Runtime) -> Callable:
    """torch.compile(module) with the configured mode (it compiles at the first call)."""
    mode = None if runtime.compile_mode == "default" else runtime.compile_mode
    return torch.compile(module, mode=mode)
