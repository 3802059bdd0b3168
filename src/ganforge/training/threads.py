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
