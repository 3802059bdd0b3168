"""Training on several processes and machines with PyTorch's own engine.

    torchrun --nproc_per_node=N -m ganforge train ...        (docs/distributed.md)

torchrun starts one process per GPU (or CPU worker) and sets WORLD_SIZE, RANK, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT. ``ganforge.train`` sees WORLD_SIZE > 1 and opens this world
(training/world.py): :func:`join` joins the process group (env://; gloo on the CPU, nccl on
CUDA) and returns a :class:`Distributed`, which the one set-up (setup.py) and the one loop
(loop.py) ask what several processes must do differently:

* The batch. ``schedule.batch_size`` is the global batch. The sampler's order (one seed) is the same
  in every process and process r takes the r-th slice of every batch; the noise of the whole
  batch is drawn from the one shared stream and sliced the same way. Together the processes
  see exactly the images and noise one process would see, so a run does not depend on how
  many processes share it, and a checkpoint resumes at another world size (re-sharded).
* Gradients. DDP averages them during backward. D's forward in the G step (its weights
  frozen) and every forward without gradients bypass DDP and call the network itself, so no
  all-reduce is ever left waiting. The simultaneous step takes its gradients with
  ``torch.autograd.grad``, which DDP cannot see: there each optimiser averages its gradients
  with one ``all_reduce`` just before it steps.
* BatchNorm. Per process unless ``distributed.sync_bn``: then ``nn.SyncBatchNorm`` on CUDA,
  and on the CPU (where PyTorch's SyncBatchNorm refuses to run) :class:`CPUSyncBatchNorm`,
  which takes the same global statistics through a differentiable all_reduce.
* Artefacts. Only rank 0 writes (grids, logs, plots, GIF, checkpoints, the generator) and
  evaluates; the statistics shown are averaged over processes when they are read (log
  time), never inside an iteration.
* Faults. Joining and every collective wait at most ``distributed.timeout_s``; a lost process turns
  into one line on the others, and torchrun's agent stops the rest. Rank 0 writes
  checkpoints atomically, so the last one stays intact and resumable.
"""

from __future__ import annotations

import datetime
import gc
import inspect
import os
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ganforge.artefacts.rundir import RunDirectory
from ganforge.check import world_size_from_env
from ganforge.config import TrainConfig
from ganforge.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    GanforgeError,
    TrainingDiverged,
    first_line,
)

if TYPE_CHECKING:
    from ganforge.training.runtime import Runtime
    from ganforge.training.state import TrainingState
    from ganforge.training.step import AdversarialStep

_ERRORS: dict[str, type[GanforgeError]] = {
    cls.__name__: cls
    for cls in (GanforgeError, ConfigError, DataError, CheckpointError, TrainingDiverged)
}
# Words in the message of a RuntimeError raised by a collective whose peer is gone or late.
_LOST_PEER_MARKERS = (
    "gloo",
    "nccl",
    "connection",
    "peer",
    "timed out",
    "timeout",
    "processgroup",
    "socket",
    "broken pipe",
)


@dataclass
class Distributed:
    """This process's place in the run, and the few collectives the loop needs."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device
    # G's and D's DDP wrappers, made once (training/forwards.py asks for them)
    _wrapped: tuple[nn.Module, nn.Module] | None = field(default=None, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def part(self, tensor: torch.Tensor) -> torch.Tensor:
        """This process's slice of a global batch (along dimension 0)."""
        size = tensor.shape[0] // self.world_size
        return tensor[self.rank * size : (self.rank + 1) * size]

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The average of `tensor` over all processes (a new tensor; one all_reduce)."""
        total = tensor.detach().clone()
        dist.all_reduce(total)
        return total / self.world_size

    def any(self, flag: bool) -> bool:
        """Whether `flag` is set in any process (one all_reduce; reads the result on the host)."""
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def gather(self, value: Any) -> list[Any]:
        """`value` of every process, in rank order (pickled: small values only)."""
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def from_main(self, make: Callable[[], Any]) -> Any:
        """Run `make` in rank 0 only; every process gets its result, or raises its one-line
        error, so that a refusal in rank 0 (a folder that exists, a damaged checkpoint)
        stops every process with the same message instead of leaving them waiting."""
        box: list[Any] = [None]
        if self.is_main:
            try:
                box[0] = ("ok", make())
            except GanforgeError as exc:
                box[0] = ("error", type(exc).__name__, str(exc))
        dist.broadcast_object_list(box, src=0)
        if box[0][0] == "error":
            raise _ERRORS.get(box[0][1], GanforgeError)(box[0][2])
        return box[0][1]

    def should_stop(self, requested: bool, log_time: bool) -> bool:
        """A signal stops every process at the same iteration: they agree at log time (one
        tiny all_reduce per log interval), never inside the iterations between."""
        return self.any(requested) if log_time else False

    # ---- the set-up's questions ----------------------------------------------------------
    def place(self, runtime: Runtime) -> None:
        """Each process on the GPU of its LOCAL_RANK (chosen when joining), or the CPU."""
        runtime.device = self.device

    def prepare(self, config: TrainConfig, state: TrainingState, runtime: Runtime) -> None:
        """This process's shard of every batch, synchronised BatchNorm when asked, and its
        own random stream (dropout masks; rank 0 keeps the one-process stream)."""
        state.sampler.shard(self.rank, self.world_size)
        if config.distributed.sync_bn:
            state.generator, in_g = synchronise_batchnorm(state.generator, runtime.device)
            state.discriminator, in_d = synchronise_batchnorm(state.discriminator, runtime.device)
            kind = "SyncBatchNorm" if runtime.device.type == "cuda" else "CPUSyncBatchNorm (gloo)"
            runtime.notes.append(
                f"sync_bn: {in_g} BatchNorm layer(s) in G and {in_d} in D use the "
                f"global batch's statistics ({kind})"
            )
        if self.rank:
            torch.manual_seed(rank_seed(config.seed, self.rank))
        batch = config.schedule.batch_size
        runtime.notes.append(
            f"distributed: {self.world_size} processes ({self.backend}), batch "
            f"{batch} in all = {batch // self.world_size} per process; rank 0 writes the run folder"
        )

    def wrap(self, state: TrainingState, update: str) -> tuple[nn.Module, nn.Module] | None:
        """G and D in DDP, which averages their gradients during backward; None for the
        simultaneous step, whose gradients the optimisers average (prepare_step)."""
        if update == "simultaneous":
            return None
        if self._wrapped is None:
            self._wrapped = (
                _ddp(state.generator, self.device),
                _ddp(state.discriminator, self.device),
            )
        return self._wrapped

    def prepare_step(self, step: AdversarialStep, config: TrainConfig) -> None:
        """The simultaneous step takes its gradients with torch.autograd.grad, which DDP
        cannot see: each optimiser averages them just before it steps."""
        if config.step.update != "simultaneous":
            return
        for name, optimiser in (("g", step.opt_g), ("d", step.opt_d)):
            average_gradients_before_step(optimiser, self.world_size, step.scalers.get(name))

    def explain(self, exc: BaseException, step: int, run: RunDirectory) -> GanforgeError | None:
        """The one line for a collective that failed because another process is gone."""
        if isinstance(exc, torch.OutOfMemoryError) or not lost_peer(exc):
            return None
        return lost_contact_error(exc, self.rank, self.world_size, step, run)

    def leave(self) -> None:
        """Leave the group together, after freeing the DDP wrappers.

        Their reducers hold the last iteration's gloo work objects, and destroying those
        during interpreter shutdown aborts ("terminate called without an active
        exception"; pytorch/pytorch#179291). A process that tears its connections down while
        another still finishes its artefacts can abort the same way: hence the barrier.
        """
        self._wrapped = None
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def join(config: TrainConfig) -> Distributed:
    """Join the process group torchrun describes in the environment, or say in one line why
    not. The GPU is chosen first (LOCAL_RANK), so no process touches another's GPU."""
    world = world_size_from_env()
    try:
        rank = int(os.environ["RANK"])
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
    except (KeyError, ValueError):
        raise ConfigError(
            f"WORLD_SIZE={world} but RANK is not set; start the processes with "
            "torchrun (docs/distributed.md) rather than by setting WORLD_SIZE"
        ) from None
    cuda = config.execution.device != "cpu" and torch.cuda.is_available()
    backend = (
        config.distributed.backend
        if config.distributed.backend != "auto"
        else ("nccl" if cuda else "gloo")
    )
    device = torch.device("cpu")
    if cuda:
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise ConfigError(
                f"process {rank} has LOCAL_RANK {local_rank}, but this machine shows "
                f"{count} GPU(s); start at most {count} processes per machine "
                "(torchrun --nproc_per_node)"
            )
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    address, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if not address or not port:
        raise ConfigError(
            f"process {rank} of {world}: MASTER_ADDR and MASTER_PORT are not set, so "
            "it cannot find the others; launch with torchrun (it sets them), e.g. "
            "torchrun --nproc_per_node=2 -m ganforge train ..."
        )
    options: dict[str, Any] = {"device_id": device} if backend == "nccl" else {}
    try:
        dist.init_process_group(
            backend,
            init_method="env://",
            world_size=world,
            rank=rank,
            timeout=datetime.timedelta(seconds=config.distributed.timeout_s),
            **options,
        )
    # store unreachable, a process missing
    except (RuntimeError, ValueError, OSError) as exc:
        raise ConfigError(
            f"process {rank} of {world} could not join the run at {address}:{port} "
            f"within dist_timeout_s={config.distributed.timeout_s:g} s "
            f"({type(exc).__name__}: "
            f"{first_line(exc, 120)}); check the address and port and that every "
            "machine started its torchrun"
        ) from None
    return Distributed(rank, world, local_rank, backend, device)


# ---- synchronised BatchNorm ------------------------------------------------------------------
class _SumOverProcesses(torch.autograd.Function):
    """all_reduce(SUM) with its gradient: the gradient of a sum over processes is the sum of
    the processes' gradients (torch.distributed.nn.functional.all_reduce, now deprecated)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class CPUSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch, on CPU tensors.

    ``nn.SyncBatchNorm`` raises for CPU input ("expected input tensor to be on GPU"), so the
    gloo backend gets this: per channel, the sum, the sum of squares (in float64) and the
    count of every process are added up by a differentiable all_reduce (its backward sums
    the gradients over processes, as SyncBatchNorm's does), and the input is normalised with
    the global mean and (biased) variance; the running statistics take the unbiased global
    variance. In eval mode, or outside a process group of two or more, it is plain BatchNorm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (
            self.training
            and dist.is_available()
            and dist.is_initialized()
            and dist.get_world_size() > 1
        ):
            return super().forward(input)
        channels = input.shape[1]
        dims = [0, *range(2, input.dim())]
        x = input.double()
        local = torch.cat(
            [x.sum(dims), (x * x).sum(dims), x.new_full((1,), input.numel() // channels)]
        )
        total = _SumOverProcesses.apply(local)
        count = total[-1]
        mean = total[:channels] / count
        var = (total[channels : 2 * channels] / count - mean * mean).clamp_min(0.0)
        if self.track_running_stats and self.num_batches_tracked is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (
                    self.momentum
                    if self.momentum is not None
                    else 1.0 / float(self.num_batches_tracked)
                )
                unbiased = var * count / (count - 1).clamp_min(1.0)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        shape = (1, channels) + (1,) * (input.dim() - 2)
        out = ((x - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)).to(input.dtype)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def synchronise_batchnorm(module: nn.Module, device: torch.device) -> tuple[nn.Module, int]:
    """Every BatchNorm of `module` computing global-batch statistics (the same parameters and
    buffers, so optimisers and the EMA keep working); returns the module and how many."""
    count = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module), count
    return _to_cpu_sync(module), count


def _to_cpu_sync(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
        module, (CPUSyncBatchNorm, nn.SyncBatchNorm)
    ):
        converted = CPUSyncBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
        )
        if module.affine:
            converted.weight, converted.bias = module.weight, module.bias
        if module.track_running_stats:
            converted.running_mean, converted.running_var = module.running_mean, module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        replacement = _to_cpu_sync(child)
        if replacement is not child:
            setattr(module, name, replacement)
    return module


# ---- gradients of the simultaneous step ----------------------------------------------------
def _average_gradients(optimiser: torch.optim.Optimizer, world_size: int) -> None:
    """Replace the gradients of `optimiser`'s parameters by their mean over processes (one
    all_reduce of them all)."""
    grads = [
        p.grad for group in optimiser.param_groups for p in group["params"] if p.grad is not None
    ]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    for grad, average in zip(grads, flat.split([g.numel() for g in grads])):
        grad.copy_(average.view_as(grad))


def average_gradients_before_step(
    optimiser: torch.optim.Optimizer, world_size: int, scaler: Any = None
) -> None:
    """For the simultaneous step, whose torch.autograd.grad DDP cannot see: average the
    gradients just before `optimiser` steps. With a GradScaler (fp16) they are averaged
    before it unscales them, so an overflow in any process makes every process skip the
    step together (an all_reduce spreads inf)."""
    if scaler is None:

        def before_step(target: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            _average_gradients(target, world_size)

        optimiser.register_step_pre_hook(before_step)
        return
    unscale = scaler.unscale_

    def unscale_averaged(target: torch.optim.Optimizer) -> None:
        if target is optimiser:
            _average_gradients(target, world_size)
        unscale(target)

    scaler.unscale_ = unscale_averaged


def _ddp(module: nn.Module, device: torch.device) -> DistributedDataParallel:
    options: dict[str, Any] = {"device_ids": [device.index] if device.type == "cuda" else None}
    # BatchNorm buffers are not copied from rank 0 at every forward: with sync_bn they agree
    # anyway, without it each process keeps its own running statistics.
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters:
        options["forward_sync_buffers"] = False
    else:
        options["broadcast_buffers"] = False
    return DistributedDataParallel(module, **options)


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """The seed of process `rank`'s own stream (dropout masks); rank 0 keeps `seed`'s."""
    return (seed * 1_000_003 + rank * 7_919 + step) % 2**63


# ---- faults --------------------------------------------------------------------------------
def lost_contact_error(
    exc: BaseException, rank: int, world: int, step: int, run: RunDirectory
) -> GanforgeError:
    """The one line a process prints when the others are gone; from here on SIGTERM is ignored.

    torchrun sends SIGTERM to every surviving process as soon as one fails. This process is
    already stopping, with the stop signal handler of the loop gone: the signal would kill it
    before it says why (measured: a 1 s delay here lost the line every time).
    """
    try:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # not the main thread: signals are not this thread's to set
    except ValueError:
        pass
    return GanforgeError(
        f"process {rank} of {world} lost contact with the others at iteration {step} "
        f"({_reason(exc)}); one of them stopped or failed (its own message says "
        f"why); the last checkpoint in {run.checkpoints_dir} is intact: continue "
        f"with torchrun ... -m ganforge train --resume {run.path}"
    )


def _reason(exc: BaseException) -> str:
    """The first line of a collective's error without gloo's source-file prefix."""
    return re.sub(r"^\[[^\]]*\]\s*", "", first_line(exc, 200))[:100]


def lost_peer(exc: BaseException) -> bool:
    """Whether `exc` is a collective failing because another process is gone or too late."""
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(marker in text for marker in _LOST_PEER_MARKERS)
