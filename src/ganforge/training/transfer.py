"""Copies between host and device that never make the host wait for the GPU."""

from __future__ import annotations

from typing import Any

import torch


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
