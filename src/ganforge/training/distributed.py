"""Training on several processes and machines with PyTorch's own engine.

    torchrun --nproc_per_node=N -m ganforge train ...        (docs/distributed.md)

torchrun starts one process per GPU (or CPU worker) and sets WORLD_SIZE, RANK, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT. ``loop.train`` sees WORLD_SIZE > 1 and calls
:func:`train_distributed`, which joins the process group (env://; gloo on the CPU, nccl on
CUDA), wraps G and D in DistributedDataParallel and runs the one training loop through
:class:`DistributedTrainer`. That subclass changes only what several processes must do
differently:

* The batch. ``batch_size`` is the global batch. The sampler's order (one seed) is the same
  in every process and process r takes the r-th slice of every batch; the noise of the whole
  batch is drawn from the one shared stream and sliced the same way. Together the processes
  see exactly the images and noise one process would see, so a run does not depend on how
  many processes share it, and a checkpoint resumes at another world size (re-sharded).
* Gradients. DDP averages them during backward. D's forward in the G step (its weights
  frozen) and every forward without gradients bypass DDP and call the network itself, so no
  all-reduce is ever left waiting. The simultaneous step takes its gradients with
  ``torch.autograd.grad``, which DDP cannot see: there each optimiser averages its gradients
  with one ``all_reduce`` just before it steps.
* BatchNorm. Per process unless ``sync_bn``: then ``nn.SyncBatchNorm`` on CUDA, and on the
  CPU (where PyTorch's SyncBatchNorm refuses to run) :class:`CPUSyncBatchNorm`, which takes
  the same global statistics through a differentiable all_reduce.
* Artefacts. Only rank 0 writes (grids, logs, plots, GIF, checkpoints, the generator) and
  evaluates; the statistics shown are averaged over processes when they are read (log
  time), never inside an iteration.
* Faults. Joining and every collective wait at most ``dist_timeout_s``; a lost process turns
  into one line on the others, and torchrun's agent stops the rest. Rank 0 writes
  checkpoints atomically, so the last one stays intact and resumable.
"""

from __future__ import annotations

import datetime
import gc
import hashlib
import inspect
import math
import os
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ganforge.artefacts.rundir import RunDirectory, default_run_name
from ganforge.check import check, check_against_data
from ganforge.config import TrainConfig
from ganforge.data import ImageData, load_images
from ganforge.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    GanforgeError,
    TrainingDiverged,
    first_line,
)
from ganforge.training import loop
from ganforge.training.loop import (
    Evaluator,
    Hook,
    Trainer,
    TrainResult,
    declare_substitute,
)
from ganforge.training.oom import out_of_memory_message
from ganforge.training.runtime import resolve_runtime
from ganforge.training.state import TrainingState
from ganforge.training.step import Batch
from ganforge.training.threads import configure_threads, seed_everything

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


def world_size_from_env() -> int:
    """WORLD_SIZE as torchrun sets it; 1 when unset (check() reports a malformed value)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def problems(config: TrainConfig, world_size: int | None = None) -> list[str]:
    """What keeps `config` from running on `world_size` processes (WORLD_SIZE by default)."""
    found: list[str] = []
    timeout = config.dist_timeout_s
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        found.append(f"dist_timeout_s must be a positive number of seconds (got {timeout!r})")
    raw = os.environ.get("WORLD_SIZE", "1")
    if world_size is None and not raw.strip().isdigit():
        found.append(f"WORLD_SIZE={raw[:20]!r} is not a number of processes; let torchrun set it")
    world = world_size_from_env() if world_size is None else world_size
    if world <= 1:
        return found
    batch = config.batch_size
    if isinstance(batch, int) and batch > 0 and batch % world:
        lower, higher = batch // world * world, (batch // world + 1) * world
        found.append(
            f"batch_size {batch} is the global batch and must split evenly over the "
            f"{world} processes; use a multiple of {world}, e.g. {higher}"
            + (f" or {lower}" if lower else "")
        )
    elif isinstance(batch, int) and config.d_half_batch and (batch // 2) % world:
        found.append(
            f"with d_half_batch D takes {batch // 2} real images per iteration, which "
            f"must split evenly over the {world} processes; use a batch_size that is a "
            f"multiple of {2 * world}"
        )
    if config.cuda_graphs == "on":
        found.append(
            "cuda_graphs=on cannot capture DDP's communication; use --set "
            "cuda_graphs=off with several processes"
        )
    if config.device == "mps" or str(config.device).startswith("cuda:"):
        found.append(
            f"device {config.device} cannot be shared by {world} processes: each one uses "
            "the GPU of its LOCAL_RANK (--device cuda or auto) or the CPU (--device cpu)"
        )
    if config.dist_backend == "nccl" and (config.device == "cpu" or not torch.cuda.is_available()):
        found.append(
            "dist_backend=nccl needs CUDA GPUs, and this process has none (or --device "
            "cpu); use --set dist_backend=gloo (or auto: nccl on GPUs, gloo on the CPU)"
        )
    return found


@dataclass
class Distributed:
    """This process's place in the run, and the few collectives the loop needs."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device

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
    cuda = config.device != "cpu" and torch.cuda.is_available()
    backend = config.dist_backend if config.dist_backend != "auto" else ("nccl" if cuda else "gloo")
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
            timeout=datetime.timedelta(seconds=config.dist_timeout_s),
            **options,
        )
    except (RuntimeError, ValueError, OSError) as exc:  # store unreachable, a process missing
        raise ConfigError(
            f"process {rank} of {world} could not join the run at {address}:{port} "
            f"within dist_timeout_s={config.dist_timeout_s:g} s "
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


# ---- the networks under DDP --------------------------------------------------------------------
class _Forward:
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


def weights_digest(*modules: nn.Module) -> str:
    """SHA-256 of the modules' parameters (names and bytes): equal in every process of a run."""
    digest = hashlib.sha256()
    for module in modules:
        for name, param in module.named_parameters():
            digest.update(name.encode())
            digest.update(param.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """The seed of process `rank`'s own stream (dropout masks); rank 0 keeps `seed`'s."""
    return (seed * 1_000_003 + rank * 7_919 + step) % 2**63


# ---- the loop ---------------------------------------------------------------------------------
class DistributedTrainer(Trainer):
    """The training loop of one process among several (see the module's docstring)."""

    def __init__(self, *args: Any, distributed: Distributed, **kwargs: Any):
        self.dist = distributed
        self._ddp: tuple[DistributedDataParallel, DistributedDataParallel] | None = None
        self._defer_checkpoints = False
        self._ranks: list[dict[str, Any]] = []
        self._resumed: dict[str, Any] | None = None
        super().__init__(*args, **kwargs)
        world = distributed.world_size
        self.real_batch //= world  # this process's part; images_per_step multiplies back
        self.fake_batch //= world
        self.g_batch //= world
        if self.config.update == "simultaneous":
            scalers = getattr(self.step_fn, "scalers", None) or {}
            for name, optimiser in (("g", self.state.opt_g), ("d", self.state.opt_d)):
                average_gradients_before_step(optimiser, world, scalers.get(name))

    def forwards(self) -> tuple[Callable, Callable]:
        generator, discriminator = self.state.generator, self.state.discriminator
        if self.config.update == "simultaneous":  # gradients averaged by the optimiser hooks
            return self._compiled(generator), self._compiled(discriminator)
        if self._ddp is None:
            self._ddp = (_ddp(generator, self.dist.device), _ddp(discriminator, self.dist.device))
        ddp_g, ddp_d = self._ddp
        return (
            _Forward(self._compiled(ddp_g), self._compiled(generator), generator),
            _Forward(self._compiled(ddp_d), self._compiled(discriminator), discriminator),
        )

    def read_checkpoint(self, log: Callable[[str], None]) -> tuple[Path, dict[str, Any]]:
        """Rank 0 reads the checkpoint (on the CPU) and hands it to every process, so only
        rank 0's machine needs the run folder."""

        def read() -> tuple[Path, dict[str, Any]]:
            return loop._newest_readable_checkpoint(self.run, torch.device("cpu"), log)

        latest, saved = self.dist.from_main(read)
        self._resumed = saved
        return latest, saved

    def warm_up(self) -> list[str]:
        """After a resume: each process's own random streams (loop._start_or_resume restored
        rank 0's everywhere); then the base warm-up (compilation)."""
        notes = []
        if self._resumed is not None:
            notes = self._restore_rank_streams(self._resumed)
            self._resumed = None
        notes += super().warm_up()
        if self.step_fn.g_forward is self.state.generator:  # compile fell back to eager
            self.step_fn.g_forward, self.step_fn.d_forward = self.forwards()
        return notes

    def _restore_rank_streams(self, saved: dict[str, Any]) -> list[str]:
        """This process's random streams from the checkpoint; a process the saved run did not
        have (a larger world) starts a fresh stream of its own."""
        rank, device = self.dist.rank, self.dist.device
        streams = saved.get("rank_rng") or []
        if rank < len(streams) and isinstance(streams[rank], torch.Tensor):
            torch.set_rng_state(streams[rank])
            cuda_streams = saved.get("rank_cuda_rng") or []
            if device.type == "cuda" and rank < len(cuda_streams):
                torch.cuda.set_rng_state(cuda_streams[rank], device)
        elif rank:
            torch.manual_seed(_rank_seed(self.config.seed, rank, self.state.step))
        saved_world = int(saved.get("world_size", 1))
        if saved_world == self.dist.world_size:
            return []
        note = (
            f"resumed a run of {saved_world} process(es) on {self.dist.world_size}: "
            "re-sharded (the global batch, its order and its noise are unchanged)"
        )
        self.runtime.notes.append(note)  # in summary.json too
        return [note]

    def next_batch(self) -> Batch:
        """The base loop's batch with the noise of the whole global batch, then this process's
        slice of it (the real images come sliced from the sharded sampler)."""
        world, sizes = self.dist.world_size, (self.fake_batch, self.g_batch)
        self.fake_batch, self.g_batch = self.fake_batch * world, self.g_batch * world
        try:
            batch = super().next_batch()
        finally:
            self.fake_batch, self.g_batch = sizes
        part = self.dist.part
        z_d = part(batch.z_d)
        z_g = z_d if batch.z_g is batch.z_d else part(batch.z_g)
        return replace(
            batch,
            z_d=z_d,
            z_g=z_g,
            fake_labels=None if batch.fake_labels is None else part(batch.fake_labels),
            fake_labels_g=(None if batch.fake_labels_g is None else part(batch.fake_labels_g)),
        )

    def images_per_step(self) -> int:
        """Images through D (real + fake) and G in one iteration, in all processes together."""
        return (self.real_batch + self.fake_batch + self.g_batch) * self.dist.world_size

    def stop_requested(self, stop: Any) -> bool:
        """A signal stops every process at the same iteration: they agree at log time (one
        tiny all_reduce per log interval), never inside the iterations between."""
        step, total = self.state.step, self.state.total_steps
        if step % self.config.log_every and step != total:
            return False
        return self.dist.any(stop.requested)

    # ---- what rank 0 alone does --------------------------------------------------------------
    def save_sample_grid(self) -> Path:
        return super().save_sample_grid() if self.dist.is_main else self.run.samples_dir

    def save_reals_grid(self) -> Path:
        return super().save_reals_grid() if self.dist.is_main else self.run.path / "reals.png"

    def export(self) -> Path:
        return super().export() if self.dist.is_main else self.run.generator_file

    def _finish(self, seconds: float, last_stats: dict[str, float], stopped: bool) -> None:
        if self.dist.is_main:
            super()._finish(seconds, last_stats, stopped)
        else:
            self.writer.close()

    def _log(
        self,
        stats_sum: torch.Tensor,
        count: int,
        elapsed: float,
        steps_per_second: float,
        raw: list[torch.Tensor] | None = None,
    ) -> dict[str, float]:
        # the whole batch's statistics (and every iteration's, if kept), once per log interval
        # in one all_reduce; every process checks them for NaN, rank 0 alone writes them (the
        # others' run folder does not write)
        rows = self.dist.mean(torch.stack([stats_sum, *(raw or ())]))
        return super()._log(rows[0], count, elapsed, steps_per_second, list(rows[1:]))

    def _evaluate(self, elapsed: float) -> None:
        """Rank 0 evaluates; a new best is then saved by all (the checkpoint gathers every
        process's random streams)."""

        def score() -> tuple[bool, float | None, float]:
            before = self.state.best_metric
            self._defer_checkpoints = True
            try:
                super(DistributedTrainer, self)._evaluate(elapsed)
            finally:
                self._defer_checkpoints = False
            return self.state.best_metric != before, self.state.best_metric, self.state.elapsed

        improved, self.state.best_metric, self.state.elapsed = self.dist.from_main(score)
        if improved:
            self.save_checkpoint(best=True)

    def save_checkpoint(self, best: bool = False) -> Path:
        """Every process: check the weights and hand over its random streams and a digest of
        its weights; rank 0 writes (atomically) and any error reaches every process."""
        if self._defer_checkpoints:
            return self.run.checkpoints_dir / "best.pt"
        self._check_finite_weights()
        device = self.runtime.device
        self._ranks = self.dist.gather(
            {
                "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "digest": weights_digest(self.state.generator, self.state.discriminator),
                "augment_p": self._augment_p(),
            }
        )
        path = self.dist.from_main(lambda: super(DistributedTrainer, self).save_checkpoint(best))
        if self.dist.is_main and len({r["digest"] for r in self._ranks}) > 1:
            self._warn(
                f"the processes hold different weights at iteration {self.state.step} "
                "(rank digests differ); the checkpoint has rank 0's"
            )
        return path

    def _augment_p(self) -> float | None:
        """This process's adaptive augmentation probability (the same on every process)."""
        augment = self.step_fn.augment
        return float(augment.p) if augment is not None and augment.adaptive else None

    def checkpoint_contents(self) -> dict[str, Any]:
        contents = super().checkpoint_contents()
        contents["world_size"] = self.dist.world_size
        contents["rank_rng"] = [r["rng"] for r in self._ranks]
        if self.runtime.device.type == "cuda":
            contents["rank_cuda_rng"] = [r["cuda_rng"] for r in self._ranks]
        contents["rank_digests"] = [r["digest"] for r in self._ranks]
        contents["rank_augment_p"] = [r["augment_p"] for r in self._ranks]
        return contents

    def fit(self) -> TrainResult:
        try:
            return super().fit()
        except torch.OutOfMemoryError:
            raise
        except RuntimeError as exc:
            if not lost_peer(exc):
                raise
            raise lost_contact_error(
                exc, self.dist.rank, self.dist.world_size, self.state.step, self.run
            ) from None


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
    except ValueError:  # not the main thread: signals are not this thread's to set
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


# ---- the entry point ----------------------------------------------------------------------------
class _MainOnlyRun(RunDirectory):
    """The run folder as the processes other than rank 0 see it: paths to read, no writes
    (logs, config.json and summaries are rank 0's)."""

    def append_jsonl(self, path: Path, record: dict[str, Any]) -> None:
        """Rank 0 keeps the logs."""

    def write_json(self, path: Path, data: Any) -> None:
        """Rank 0 writes the run's JSON files."""

    def truncate_logs_after(self, step: int) -> None:
        """Rank 0 trims the logs of a resumed run."""


def train_distributed(
    config: TrainConfig,
    *,
    data: ImageData | None = None,
    overwrite: bool = False,
    resume: bool = False,
    show_progress: bool = True,
    evaluator: Evaluator | None = None,
    hooks: tuple[Hook, ...] = (),
    allow_data_change: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> TrainResult:
    """:func:`ganforge.training.train` for one of WORLD_SIZE processes started by torchrun.

    Same arguments and result; rank 0 alone logs, shows progress, calls the hooks, evaluates
    and writes the run folder. The process group is left when training ends.
    """
    check(config)
    distributed = join(config)
    main = distributed.is_main
    # Rank 0 alone evaluates, but every process must reach the same evaluation points (a new
    # best checkpoint is saved by all): the others follow rank 0's evaluator, whatever theirs.
    if distributed.from_main(lambda: evaluator is not None):
        evaluator = evaluator if main else _rank_zero_evaluates
    else:
        evaluator = None
    result = _train(
        distributed,
        config,
        data,
        overwrite,
        resume,
        allow_data_change,
        show_progress and main,
        evaluator,
        hooks if main else (),
        log if main else (lambda message: None),
    )
    # Free the DDP wrappers now: their reducers hold the last iteration's gloo work objects,
    # and destroying those during interpreter shutdown aborts ("terminate called without an
    # active exception"; pytorch/pytorch#179291). Then leave together: a process that tears its
    # connections down while another still finishes its artefacts can abort the same way.
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()
    return result


def _rank_zero_evaluates(generator: nn.Module, step: int) -> dict[str, float]:
    """The evaluator of the processes other than rank 0: never called (rank 0 evaluates)."""
    raise AssertionError("only rank 0 evaluates")


def _train(
    distributed: Distributed,
    config: TrainConfig,
    data: ImageData | None,
    overwrite: bool,
    resume: bool,
    allow_data_change: bool,
    show_progress: bool,
    evaluator: Evaluator | None,
    hooks: tuple[Hook, ...],
    log: Callable[[str], None],
) -> TrainResult:
    world, rank = distributed.world_size, distributed.rank
    runtime = resolve_runtime(config)
    runtime.device = distributed.device
    configure_threads(idle_cores_only=runtime.cpu_mixed_precision)
    seed_everything(config.seed, config.deterministic)
    if data is None:  # rank 0 first (it may fill the cache), then the others
        loaded: list[ImageData] = []
        distributed.from_main(lambda: loaded.append(load_images(config.data)))
        data = loaded[0] if loaded else load_images(config.data)
    check_against_data(config, data)
    config = declare_substitute(config, runtime)
    state = TrainingState.create(config, data.image_shape, len(data), runtime)
    state.sampler.shard(rank, world)
    if config.sync_bn:
        state.generator, in_g = synchronise_batchnorm(state.generator, runtime.device)
        state.discriminator, in_d = synchronise_batchnorm(state.discriminator, runtime.device)
        kind = "SyncBatchNorm" if runtime.device.type == "cuda" else "CPUSyncBatchNorm (gloo)"
        runtime.notes.append(
            f"sync_bn: {in_g} BatchNorm layer(s) in G and {in_d} in D use the "
            f"global batch's statistics ({kind})"
        )
    if rank:  # each process its own dropout masks; rank 0 keeps the one-process stream
        torch.manual_seed(_rank_seed(config.seed, rank))
    per_process = config.batch_size // world
    runtime.notes.append(
        f"distributed: {world} processes ({distributed.backend}), batch "
        f"{config.batch_size} in all = {per_process} per process; rank 0 writes "
        "the run folder"
    )
    name = distributed.from_main(
        lambda: config.run_name or default_run_name(config.preset, config.out_dir)
    )
    config = config.with_overrides({"run_name": name})
    state.config = config
    path = distributed.from_main(
        lambda: RunDirectory.create(config.out_dir, name, overwrite=overwrite, resume=resume).path
    )
    run = RunDirectory(path) if distributed.is_main else _MainOnlyRun(path)
    trainer = DistributedTrainer(
        config,
        data,
        state,
        run,
        runtime,
        evaluator=evaluator,
        hooks=hooks,
        show_progress=show_progress,
        log=log,
        distributed=distributed,
    )
    try:
        loop._start_or_resume(trainer, resume, allow_data_change, log)
        if resume and state.step >= state.total_steps:
            return TrainResult(
                run.path,
                state.step,
                state.elapsed,
                0.0,
                best_metric=state.best_metric,
                nothing_to_do=True,
            )
        return trainer.fit()
    except torch.OutOfMemoryError:
        message = out_of_memory_message(
            runtime.device, per_process, data.image_shape, runtime, "training"
        )
        raise GanforgeError(f"process {rank}: {message}") from None
