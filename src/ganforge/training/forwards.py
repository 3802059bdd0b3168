"""What the step calls to run G and D: the networks, compiled when asked, and in a DDP world
their DistributedDataParallel wrappers used only where a call takes weight gradients."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from ganforge.training.runtime import Runtime, compile_module
from ganforge.training.state import TrainingState

if TYPE_CHECKING:
    from ganforge.training.world import World


def compiled(module: nn.Module, runtime: Runtime) -> nn.Module | Callable:
    """`module` through torch.compile when the runtime asks; eager, with a note, when the
    platform has no compiler."""
    if not runtime.compile:
        return module
    try:
        return compile_module(module, runtime)
    # compile unavailable on this platform: say so, run eager
    except Exception as exc:
        runtime.notes.append(f"torch.compile unavailable ({type(exc).__name__}); running eager")
        return module


def make_forwards(
    state: TrainingState, runtime: Runtime, world: World, update: str
) -> tuple[Callable, Callable]:
    """(G's forward, D's forward) for the step; called again after a compile fallback."""
    generator, discriminator = state.generator, state.discriminator
    wrapped = world.wrap(state, update)
    if wrapped is None:
        return compiled(generator, runtime), compiled(discriminator, runtime)
    ddp_g, ddp_d = wrapped
    return (
        Forward(compiled(ddp_g, runtime), compiled(generator, runtime), generator),
        Forward(compiled(ddp_d, runtime), compiled(discriminator, runtime), discriminator),
    )


class Forward:
    """Calls the DDP-wrapped network when this call will take weight gradients, the network
    itself otherwise. DDP expects each forward with gradients to be followed by a backward
    that reaches its weights; D in the G step (weights frozen) and G making D's fakes (no
    gradients) would leave its all-reduce waiting, or do needless work."""

    def __init__(self, synced: Callable, local: Callable, module: nn.Module):
        self.synced, self.local = synced, local
        self.weight = next(module.parameters())

    def __call__(self, *args: Any) -> torch.Tensor:
        if torch.is_grad_enabled() and self.weight.requires_grad:
            return self.synced(*args)
        return self.local(*args)
