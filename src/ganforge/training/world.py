"""The world a run trains in: one process, or one of several started by torchrun.

The set-up (training/setup.py) and the loop (training/loop.py) are written once, for any
world; what several processes do differently is asked of the world, never coded as a second
path. :class:`SingleProcess` is the trivial world (every collective returns its input);
``training/distributed.py`` gives the DDP world, its ``Distributed``.
Both answer the same questions:

* where this process stands: ``rank``, ``world_size``, ``is_main``;
* the few collectives the loop needs: ``part`` (this process's slice of a global batch),
  ``mean``, ``any``, ``gather``, ``from_main`` (rank 0 does it, every process gets the
  result or its one-line error) and ``should_stop`` (the processes agree on a signal);
* what the networks need: ``prepare`` (shard the sampler, synchronise BatchNorm, per-rank
  random streams), ``wrap`` (DDP wrappers, or None) and ``prepare_step`` (gradient averaging
  of the simultaneous step);
* how a run ends: ``explain`` turns a lost peer into one line; ``leave`` leaves the group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol

import torch
from torch import nn

from ganforge.check import world_size_from_env
from ganforge.training.distributed import join

if TYPE_CHECKING:
    from ganforge.artefacts.rundir import RunDirectory
    from ganforge.config import TrainConfig
    from ganforge.errors import GanforgeError
    from ganforge.training.runtime import Runtime
    from ganforge.training.state import TrainingState
    from ganforge.training.step import AdversarialStep


class World(Protocol):
    """What the set-up and the loop ask of the processes a run is spread over."""

    rank: int
    world_size: int

    @property
    def is_main(self) -> bool: ...
    def place(self, runtime: Runtime) -> None: ...
    def part(self, tensor: torch.Tensor) -> torch.Tensor: ...
    def mean(self, tensor: torch.Tensor) -> torch.Tensor: ...
    def any(self, flag: bool) -> bool: ...
    def gather(self, value: Any) -> list[Any]: ...
    def should_stop(self, requested: bool, log_time: bool) -> bool: ...
    def from_main(self, make: Callable[[], Any]) -> Any: ...
    def prepare(self, config: TrainConfig, state: TrainingState, runtime: Runtime) -> None: ...
    def wrap(self, state: TrainingState, update: str) -> tuple[nn.Module, nn.Module] | None: ...
    def prepare_step(self, step: AdversarialStep, config: TrainConfig) -> None: ...
    def explain(self, exc: BaseException, step: int, run: RunDirectory) -> GanforgeError | None: ...
    def leave(self) -> None: ...


class SingleProcess:
    """The trivial world: this process is the whole run."""

    rank = 0
    world_size = 1

    @property
    def is_main(self) -> bool:
        return True

    def place(self, runtime: Runtime) -> None:
        """The runtime's own device choice stands."""

    def part(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def any(self, flag: bool) -> bool:
        return flag

    def gather(self, value: Any) -> list[Any]:
        return [value]

    def from_main(self, make: Callable[[], Any]) -> Any:
        return make()

    def should_stop(self, requested: bool, log_time: bool) -> bool:
        """A signal stops the run after the iteration it came in."""
        return requested

    def prepare(self, config: TrainConfig, state: TrainingState, runtime: Runtime) -> None:
        """Nothing to shard or synchronise."""

    def wrap(self, state: TrainingState, update: str) -> tuple[nn.Module, nn.Module] | None:
        return None

    def prepare_step(self, step: AdversarialStep, config: TrainConfig) -> None:
        """Gradients are this process's own."""

    def explain(self, exc: BaseException, step: int, run: RunDirectory) -> GanforgeError | None:
        return None

    def leave(self) -> None:
        """No process group to leave."""


def open_world(config: TrainConfig) -> World:
    """The world torchrun's environment describes: several processes join their group."""
    if world_size_from_env() > 1:
        return join(config)
    return SingleProcess()
