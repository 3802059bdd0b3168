"""The whole training iteration replayed as one CUDA graph (``cuda_graphs=on``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from ganforge.errors import first_line
from ganforge.training.runtime import Runtime
from ganforge.training.step import AdversarialStep, Batch


class GraphedStep:
    """The whole iteration (D update(s), G update, statistics) replayed as one CUDA graph; the EMA
    of G follows eagerly, because its warm-up decay changes every iteration.

    For fixed shapes the GPU work of an iteration never changes, so after ``warmup`` eager
    iterations (on a side stream, which also creates Adam's state) the next one is
    captured and every later one is a single ``graph.replay()``: no per-kernel launch cost,
    no Python in the iteration beyond copying the batch and the noise into static inputs.
    Requires Adam(capturable=True) (the loop sets it) and autocast without its weight cache
    (Runtime.autocast). Dropout's RNG is graph-safe (philox offsets advance per replay).

    If capture fails, it says why in ``runtime.notes`` and runs eagerly from then on; the
    failed capture executed nothing, so training continues from the same state.
    The returned statistics tensor is overwritten by the next call: consume it at once.
    """

    def __init__(self, step: AdversarialStep, runtime: Runtime, warmup: int = 3):
        self.step, self.runtime, self.warmup = step, runtime, warmup
        step.defer_ema = True
        self.calls = 0
        self.graph: Any = None
        self.failed = False
        self.static: tuple[torch.Tensor | None, ...] = ()
        self.static_out: torch.Tensor | None = None
        self._side = torch.cuda.Stream(device=runtime.device)

    def __call__(self, batch: Batch) -> torch.Tensor:
        out = self._iteration(batch)
        if self.step.ema is not None:
            self.step.ema.update(self.step.G, batch.index)
        return out

    def _iteration(self, batch: Batch) -> torch.Tensor:
        self.calls += 1
        if self.graph is not None:
            for static, value in zip(self.static, batch.tensors()):
                if static is not None:
                    static.copy_(value)
            self.graph.replay()
            return self.static_out
        if self.failed:
            return self.step(batch)
        if self.calls <= self.warmup:
            return self._eager_on_side_stream(batch)
        return self._capture(batch)

    def _eager_on_side_stream(self, batch: Batch) -> torch.Tensor:
        current = torch.cuda.current_stream(self.runtime.device)
        self._side.wait_stream(current)
        with torch.cuda.stream(self._side):
            out = self.step(batch)
        current.wait_stream(self._side)
        out.record_stream(current)
        return out

    def _capture(self, batch: Batch) -> torch.Tensor:
        # clone keeps channels-last; a shared noise batch stays one tensor in the graph
        real, z_d, *labels = (None if t is None else t.clone() for t in batch.tensors())
        z_g = z_d if batch.z_g is batch.z_d else batch.z_g.clone()
        self.static = (real, z_d, z_g, *labels)
        static_batch = replace(
            batch,
            real=real,
            z_d=z_d,
            z_g=z_g,
            labels=labels[0],
            fake_labels=labels[1],
            fake_labels_g=labels[2],
        )
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                out = self.step(static_batch)
        except torch.OutOfMemoryError:
            # the trainer turns it into a message with the memory figures
            raise
        # e.g. an op that syncs, or a library that cannot be captured
        except Exception as exc:
            self.failed, self.static = True, ()
            torch.cuda.synchronize(self.runtime.device)
            first = first_line(exc, 200)
            self.runtime.notes.append(
                f"cuda_graphs: capture failed ({type(exc).__name__}: {first}); "
                "running the step without CUDA graphs"
            )
            return self.step(batch)
        self.graph, self.static_out = graph, out
        # the captured iteration is this one: capture itself executes nothing
        graph.replay()
        return out
