"""Exponential moving average of the generator's weights (Karras et al.), a cheap stabiliser."""

from __future__ import annotations

import copy

import torch
from torch import nn


class GeneratorEMA:
    def __init__(self, generator: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(generator).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, generator: nn.Module) -> None:
        weight = 1.0 - self.decay
        for ema_param, param in zip(self.model.parameters(), generator.parameters()):
            ema_param.lerp_(param.detach(), weight)
        for ema_buffer, buffer in zip(self.model.buffers(), generator.buffers()):
            ema_buffer.copy_(buffer)  # BatchNorm statistics follow the live generator
