"""CPU threads and random seeds: process-wide settings made once at the start of a run."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch


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
    """Physical cores among usable CPUs (SMT siblings slow GEMM/conv down); `cpus` if unknown."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
        cores = set()
        for cpu in allowed:
            topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
            cores.add(
                (
                    (topology / "physical_package_id").read_text().strip(),
                    (topology / "core_id").read_text().strip(),
                )
            )
        return max(1, min(cpus, len(cores)))
    except (AttributeError, OSError):
        return cpus


def configure_threads(idle_cores_only: bool = False) -> int:
    """Intra-op threads = physical cores this process may use, unless the user chose.

    OMP_NUM_THREADS (or GANFORGE_THREADS) wins. PyTorch's own default counts logical CPUs
    of the whole machine and ignores container quotas, which oversubscribes shared
    machines; SMT siblings add little to convolutions. `idle_cores_only` (bf16 on a CPU's
    matrix units) counts only the cores other processes leave idle (``idle_cores``).
    Returns the thread count in use.
    """
    chosen = os.environ.get("GANFORGE_THREADS")
    if chosen and chosen.isdigit() and int(chosen) > 0:
        torch.set_num_threads(int(chosen))
    elif "OMP_NUM_THREADS" not in os.environ:
        cores = physical_cores(usable_cpus())
        torch.set_num_threads(idle_cores(cores) if idle_cores_only else cores)
    return torch.get_num_threads()


def idle_cores(cores: int, load: float | None = None) -> int:
    """Of `cores`, how many other processes leave idle: cores minus the 1-minute load average
    (`load`, this machine's by default), at least one.

    bf16 kernels on a CPU's matrix units (AMX) split into many short parallel pieces; when
    another process takes one thread's core, the other threads wait for it at every piece.
    Measured on 2 shared cores (load average 4-6), one brain-demo step: 2 threads 3.2 s
    (median, 0.8-8.2 s), 1 thread 0.51 s; fp32 was not hurt the same way (bench/README.md,
    "CPU fast path").
    """
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            return cores
    return max(1, min(cores, cores - math.floor(load + 0.5)))


def seed_everything(seed: int, deterministic: bool) -> None:
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest convolution once
