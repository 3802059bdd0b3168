"""The out-of-memory message: what ran out, how much memory there is, and what to change."""

from __future__ import annotations

import torch

from ganforge.training.runtime import CUDA_GRAPH_COMPILE_MODES, Runtime


def out_of_memory_message(
    device: torch.device,
    batch_size: int,
    image_shape: tuple[int, ...],
    runtime: Runtime,
    where: str,
) -> str:
    """What ran out, how much memory there is, and what to change."""
    figures = ""
    if device.type == "cuda":
        try:
            free, total = torch.cuda.mem_get_info(device)
            peak = torch.cuda.max_memory_allocated(device)
            reserved = torch.cuda.memory_reserved(device)
            figures = (
                f"; GPU {torch.cuda.get_device_name(device)}: {total / 2**30:.1f} GiB total, "
                f"{free / 2**30:.2f} GiB free, peak allocated by ganforge {peak / 2**30:.2f} GiB, "
                f"reserved {reserved / 2**30:.2f} GiB"
            )
        # the allocator may be in no state to answer
        except Exception:
            figures = ""
    hints = [f"lower --batch-size (now {batch_size})"]
    if runtime.dtype is None and device.type == "cuda":
        hints.append("use --precision bf16 (about half the activation memory)")
    if runtime.cuda_graphs or runtime.compile_mode in CUDA_GRAPH_COMPILE_MODES:
        hints.append(
            "--set execution.cuda_graphs=off --set execution.compile_mode=default "
            "(CUDA graphs keep their own memory pool)"
        )
    hints.append("use a smaller --resolution or model width (--set model.options.width=0.5)")
    hints.append("or free the GPU from other processes (nvidia-smi)")
    shape = "x".join(str(s) for s in image_shape)
    return (
        f"out of memory on {device} while {where} (batch {batch_size} of {shape} images{figures}); "
        + ", ".join(hints)
    )
