"""Exponential moving average of the generator's weights (Karras et al.), a cheap stabiliser.

The average warms up: at iteration ``n`` it uses ``min(decay, (1 + n) / (10 + n))`` (the
``num_updates`` rule of TensorFlow's ExponentialMovingAverage). Without it, a decay of 0.999
keeps the randomly initialised weights dominant for thousands of iterations (0.999^1000 =
0.37), so a short run's samples, grids and metrics would come from a generator that has
barely moved. The rule depends only on the iteration number, so a resumed run averages
exactly as an uninterrupted one.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def warmed_up_decay(decay: float, step: int | None) -> float:
    """The decay to use at iteration `step` (0-based); `decay` itself when no step is given."""
    return decay if step is None else min(decay, (1.0 + step) / (10.0 + step))


class GeneratorEMA:
    def __init__(self, generator: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(generator).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, generator: nn.Module, step: int | None = None) -> None:
        weight = 1.0 - warmed_up_decay(self.decay, step)
        for ema_param, param in zip(self.model.parameters(), generator.parameters()):
            ema_param.lerp_(param.detach(), weight)
        for ema_buffer, buffer in zip(self.model.buffers(), generator.buffers()):
            # BatchNorm statistics follow the live generator
            ema_buffer.copy_(buffer)
