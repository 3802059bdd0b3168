"""CPU threads and random seeds: process-wide settings made once at the start of a run."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch


def usable_cpus() -> int:
    """CPUs this process may run on: the affinity mask, capped by a cgroup CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    # cgroup v2 quota, e.g. "200000 100000" = 2 CPUs (containers, CI runners)
    try:
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


def idle_cores(cores: int, busy: float | None = None) -> int:
    """Of `cores`, how many other processes leave idle: cores minus the CPUs they keep busy
    (`busy`; by default measured now, ``busy_cpus``), at least one.

    bf16 kernels on a CPU's matrix units (AMX) split into many short parallel pieces; when
    another process takes one thread's core, the other threads wait for it at every piece.
    Measured on 2 shared cores (load average 4-6), one brain-demo step: 2 threads 3.2 s
    (median, 0.8-8.2 s), 1 thread 0.51 s; fp32 was not hurt the same way (bench/README.md,
    "CPU fast path"). The load average was the first measure used, but it lags by a minute
    and counts this process's own threads, so it gave one thread on a quiet machine too.
    """
    if busy is None:
        busy = busy_cpus()
        if busy is None:
            return cores
    return max(1, min(cores, cores - math.floor(busy + 0.5)))


def busy_cpus(seconds: float = 0.25) -> float | None:
    """CPUs kept busy by other processes over the next `seconds` (this one sleeps meanwhile),
    from the kernel's counters in /proc/stat; None where they cannot be read."""
    first = _cpu_times()
    if first is None:
        return None
    time.sleep(seconds)
    second = _cpu_times()
    if second is None or second[0] <= first[0]:
        return None
    total, idle = second[0] - first[0], second[1] - first[1]
    return (total - idle) / total * (os.cpu_count() or 1)


def _cpu_times() -> tuple[int, int] | None:
    """(all, idle) jiffies of every CPU together, from the first line of /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal ...: idle and iowait are idle time
    return sum(fields[:8]), fields[3] + fields[4]


def seed_everything(seed: int, deterministic: bool) -> None:
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    elif torch.cuda.is_available():
        # fixed shapes: pick the fastest convolution once
        torch.backends.cudnn.benchmark = True
