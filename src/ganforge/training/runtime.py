"""Turn the execution settings (device, precision, compile, ...) into decisions.

"auto" picks the fast path where the hardware has it (a CUDA GPU): bf16 autocast,
channels-last, torch.compile, fused Adam and artefacts written off the training thread.
Asking explicitly for something the machine lacks is a ConfigError that names the
fallback; "auto" falling back is announced once, in the log and in the run's
summary.json ("notes"). Nothing here silently takes a slow path.

Also here: CPU thread settings, the out-of-memory message, and the background writer that
keeps sample grids off the training thread.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import queue
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ganforge.config import TrainConfig
from ganforge.errors import ConfigError, GanforgeError

CUDA_GRAPH_COMPILE_MODES = ("reduce-overhead", "max-autotune")  # torch.compile modes that use CUDA graphs


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

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        # The autocast weight cache must be off inside CUDA graph capture (PyTorch docs, "CUDA Graphs").
        return torch.autocast(self.device.type, dtype=self.dtype, cache_enabled=not self.cuda_graphs)

    def describe(self) -> dict[str, Any]:
        """The decisions, for logs, summaries and the benchmark."""
        return {"device": str(self.device), "autocast": str(self.dtype).removeprefix("torch.") if self.dtype else "fp32",
                "compile": self.compile_mode if self.compile else "off", "channels_last": self.channels_last,
                "fused_optim": self.fused_optim, "cuda_graphs": self.cuda_graphs,
                "async_artefacts": self.async_artefacts}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for, but this PyTorch sees no CUDA GPU "
                              f"(torch {torch.__version__}); use --device cpu or auto")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r} asked for, but only {torch.cuda.device_count()} GPU(s) are visible")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' asked for, but it is not available; use --device cpu or auto")
    return torch.device(name)


def compile_unavailable(device: torch.device) -> str | None:
    """Why torch.compile cannot work here, or None if it should."""
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        return "Triton (which torch.compile needs for CUDA kernels) is not installed"
    if device.type == "cpu" and not any(shutil.which(cc) for cc in ("cc", "gcc", "clang", "c++", "g++")):
        return "no C/C++ compiler on PATH (torch.compile needs one for CPU kernels)"
    if device.type not in ("cuda", "cpu"):
        return f"torch.compile is not supported by ganforge on {device.type}"
    return None


def resolve_runtime(config: TrainConfig) -> Runtime:
    """Decide every execution setting; ConfigError where an explicit request cannot be met."""
    device = resolve_device(config.device)
    notes: list[str] = []
    cuda = device.type == "cuda"

    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    if config.precision == "bf16" and not bf16_ok:
        raise ConfigError(f"precision bf16 needs a CUDA GPU with bf16 support (this run is on {device.type}); "
                          "use --precision fp32, or auto (bf16 where supported, else fp32)")
    use_bf16 = config.precision == "bf16" or (config.precision == "auto" and bf16_ok)
    if config.precision == "auto" and not use_bf16:
        notes.append(f"precision: fp32 (bf16 autocast only on a CUDA GPU with bf16; this run is on {device.type})")

    use_compile = config.compile == "on" or (config.compile == "auto" and cuda)
    if config.deterministic:
        if config.compile == "on":
            raise ConfigError("compile=on cannot be combined with deterministic=true; drop one of them")
        use_compile = False
    if use_compile:
        reason = compile_unavailable(device)
        if reason and config.compile == "on":
            raise ConfigError(f"compile=on asked for, but {reason}; use --set compile=off (eager) or auto")
        if reason:
            notes.append(f"compile: off ({reason}); running eager")
            use_compile = False
    if use_compile and config.compile_mode in CUDA_GRAPH_COMPILE_MODES and not cuda:
        notes.append(f"compile_mode {config.compile_mode}: CUDA graphs apply on a CUDA GPU only; "
                     f"on {device.type} it compiles without them")

    channels_last = config.channels_last == "on" or (config.channels_last == "auto" and cuda)
    fused = config.fused_optim == "on" or (config.fused_optim == "auto" and cuda)
    if config.fused_optim == "on" and not cuda:
        raise ConfigError(f"fused_optim=on needs a CUDA GPU (this run is on {device.type}); use auto or off "
                          "(the CPU uses the multi-tensor 'foreach' Adam)")

    if config.cuda_graphs == "on":
        if not cuda:
            raise ConfigError(f"cuda_graphs=on needs a CUDA GPU (this run is on {device.type}); use --set cuda_graphs=off")
        if config.deterministic:
            raise ConfigError("cuda_graphs=on cannot be combined with deterministic=true; drop one of them")
        if use_compile and config.compile_mode in CUDA_GRAPH_COMPILE_MODES:
            raise ConfigError(f"cuda_graphs=on captures the whole step itself; use it with compile_mode=default or "
                              f"max-autotune-no-cudagraphs, not {config.compile_mode} (which graphs each model)")
    async_artefacts = config.async_artefacts == "on" or (config.async_artefacts == "auto" and cuda)
    return Runtime(device, torch.bfloat16 if use_bf16 else None, use_compile, channels_last, notes,
                   compile_mode=config.compile_mode, compile_required=config.compile == "on", fused_optim=fused,
                   cuda_graphs=config.cuda_graphs == "on", async_artefacts=async_artefacts)


def compile_module(module: torch.nn.Module, runtime: Runtime) -> Callable:
    """torch.compile(module) with the configured mode (compilation itself happens at the first call)."""
    mode = None if runtime.compile_mode == "default" else runtime.compile_mode
    return torch.compile(module, mode=mode)


# ---- CPU threads ----------------------------------------------------------------------------
def usable_cpus() -> int:
    """CPUs this process may run on: the affinity mask, capped by a cgroup CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:  # cgroup v2 quota, e.g. "200000 100000" = 2 CPUs (containers, CI runners)
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def physical_cores(cpus: int) -> int:
    """Physical cores among the usable CPUs (SMT siblings slow GEMM/conv down); `cpus` if unknown."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
        cores = set()
        for cpu in allowed:
            topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
            cores.add(((topology / "physical_package_id").read_text().strip(), (topology / "core_id").read_text().strip()))
        return max(1, min(cpus, len(cores)))
    except (AttributeError, OSError):
        return cpus


def configure_threads() -> int:
    """Intra-op threads = physical cores this process may use, unless the user chose.

    OMP_NUM_THREADS (or GANFORGE_THREADS) wins. PyTorch's own default counts logical CPUs
    of the whole machine and ignores container quotas, which oversubscribes shared
    machines; SMT siblings add little to convolutions. Returns the thread count in use.
    """
    chosen = os.environ.get("GANFORGE_THREADS")
    if chosen and chosen.isdigit() and int(chosen) > 0:
        torch.set_num_threads(int(chosen))
    elif "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(physical_cores(usable_cpus()))
    return torch.get_num_threads()


def seed_everything(seed: int, deterministic: bool) -> None:
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest convolution once


# ---- out of memory ----------------------------------------------------------------------------
def out_of_memory_message(device: torch.device, batch_size: int, image_shape: tuple[int, ...], runtime: Runtime,
                          where: str) -> str:
    """What ran out, how much memory there is, and what to change."""
    figures = ""
    if device.type == "cuda":
        try:
            free, total = torch.cuda.mem_get_info(device)
            peak = torch.cuda.max_memory_allocated(device)
            reserved = torch.cuda.memory_reserved(device)
            figures = (f"; GPU {torch.cuda.get_device_name(device)}: {total / 2**30:.1f} GiB total, "
                       f"{free / 2**30:.2f} GiB free, peak allocated by ganforge {peak / 2**30:.2f} GiB, "
                       f"reserved {reserved / 2**30:.2f} GiB")
        except Exception:  # the allocator may be in no state to answer
            figures = ""
    hints = [f"lower --batch-size (now {batch_size})"]
    if runtime.dtype is None and device.type == "cuda":
        hints.append("use --precision bf16 (about half the activation memory)")
    if runtime.cuda_graphs or runtime.compile_mode in CUDA_GRAPH_COMPILE_MODES:
        hints.append("--set cuda_graphs=off --set compile_mode=default (CUDA graphs keep their own memory pool)")
    hints.append("use a smaller --resolution or model width (--set model.options.width=0.5)")
    hints.append("or free the GPU from other processes (nvidia-smi)")
    shape = "x".join(str(s) for s in image_shape)
    return (f"out of memory on {device} while {where} (batch {batch_size} of {shape} images{figures}); "
            + ", ".join(hints))


# ---- work off the training thread -------------------------------------------------------------
class BackgroundWriter:
    """Runs artefact writes (PNG grids) on one worker thread, in order.

    ``submit(fn, *args, ready=event)`` returns at once; the worker waits for the CUDA event
    (the device-to-host copy of the images) and then calls ``fn``. Errors surface at the
    next ``submit`` or at ``drain``, so a failed write is never lost. With ``enabled=False``
    everything runs inline (CPU runs, tests).
    """

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._queue: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def submit(self, fn: Callable[..., Any], *args: Any, ready: Any = None) -> None:
        self._raise_pending()
        if not self.enabled:
            if ready is not None:
                ready.synchronize()
            fn(*args)
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="ganforge-artefacts", daemon=True)
            self._thread.start()
        self._queue.put((fn, args, ready))

    def drain(self) -> None:
        """Wait until every submitted write is done; re-raise the first error."""
        if self._thread is not None:
            self._queue.join()
        self._raise_pending()

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        self._raise_pending()

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                fn, args, ready = item
                if self._error is None:
                    if ready is not None:
                        ready.synchronize()
                    fn(*args)
            except BaseException as exc:  # handed to the training thread
                self._error = exc
            finally:
                self._queue.task_done()


def to_host_async(tensor: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """Start a device-to-host copy without waiting: (host tensor, CUDA event to wait on).

    On the CPU the tensor itself is returned with no event.
    """
    if tensor.device.type != "cuda":
        return tensor, None
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    event = torch.cuda.Event()
    event.record()
    return host, event


def host_to_device(indices: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a small CPU tensor to the device without a host-device synchronisation.

    A copy from pageable memory makes the CUDA driver synchronise the stream; from pinned
    memory it is truly asynchronous (PyTorch's caching host allocator keeps the pinned
    block alive until the copy is done).
    """
    if device.type != "cuda":
        return indices
    return indices.pin_memory().to(device, non_blocking=True)
