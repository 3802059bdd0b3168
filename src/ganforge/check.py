"""Check a whole run configuration before anything happens.

``check(config)`` is the one gate: ``ganforge train --dry-run`` and ``train()`` both call it
before any data is read, any folder made or any model built on a real device. It checks the
fields (types, ranges, Literal choices: ``TrainConfig.validate``), the names looked up in the
registries (loss, dataset, model and the model's options) and, when the image shape can be
known from the config alone, builds both networks on the meta device (no memory, no time) so
that a shape the architecture cannot make is reported too. Every problem found is reported
at once, in one line. ``check_against_data`` repeats the shape check with the real data's
shape and checks that one batch fits in the dataset, still before the run folder exists.
"""

from __future__ import annotations

import math
import os

import torch

from ganforge.augment import names_problem
from ganforge.conditional import data_problems
from ganforge.config import TrainConfig
from ganforge.data import ImageData, expected_shape, source_problems
from ganforge.errors import ConfigError
from ganforge.loggers import logger_problems
from ganforge.losses import LOSSES
from ganforge.models import ARCHITECTURES, build_models
from ganforge.models.spectral import spectral_norm_problem


def check(config: TrainConfig) -> TrainConfig:
    """Raise one ConfigError listing every problem of `config`; return it unchanged if none."""
    problems = config.problems()
    if config.loss not in LOSSES:
        problems.append(f"unknown loss {config.loss!r}; choose one of: {', '.join(sorted(LOSSES))}")
    elif LOSSES[config.loss].paired:
        problems += paired_loss_problems(config)
    problems += source_problems(config.data)
    augment_problem = names_problem(
        [n.strip() for n in str(config.augment.names).split(",") if n.strip()]
    )
    if augment_problem:
        problems.append(augment_problem)
    problems += _model_problems(config)
    problems += _execution_problems(config)
    problems += logger_problems(config.loggers)
    # the batch split over WORLD_SIZE processes, the backend
    problems += distributed_problems(config)
    if problems:
        raise ConfigError("; ".join(problems))
    return config


def paired_loss_problems(config: TrainConfig) -> list[str]:
    """A paired loss (rpgan) scores the i-th real image against the i-th fake: D must see both
    in one update, as many fakes as reals, and no real targets to smooth."""
    name, found = config.loss, []
    if config.step.d_separate_updates:
        found.append(
            f"loss {name!r} compares each real image with its fake in one D update; set "
            "step.d_separate_updates=false"
        )
    if config.step.d_half_batch:
        found.append(
            f"loss {name!r} pairs every real image with a fake; set step.d_half_batch=false"
        )
    if config.regularise.label_smoothing:
        found.append(
            f"loss {name!r} has no real targets to smooth; set regularise.label_smoothing=0"
        )
    if config.augment.names and config.augment.ada_target > 0:
        # ADA steers p by E[sign D(real)], which a relativistic D's logits do not measure
        found.append(
            f"loss {name!r} scores reals only against fakes, so D's sign on reals cannot steer "
            "adaptive augmentation; set augment.ada_target=0 and a fixed augment.p"
        )
    return found


def world_size_from_env() -> int:
    """WORLD_SIZE as torchrun sets it; 1 when unset (check() reports a malformed value)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def distributed_problems(config: TrainConfig, world_size: int | None = None) -> list[str]:
    """What keeps `config` from running on `world_size` processes (WORLD_SIZE by default)."""
    found: list[str] = []
    timeout = config.distributed.timeout_s
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        found.append(
            f"distributed.timeout_s must be a positive number of seconds (got {timeout!r})"
        )
    raw = os.environ.get("WORLD_SIZE", "1")
    if world_size is None and not raw.strip().isdigit():
        found.append(f"WORLD_SIZE={raw[:20]!r} is not a number of processes; let torchrun set it")
    world = world_size_from_env() if world_size is None else world_size
    if world <= 1:
        return found
    batch = config.schedule.batch_size
    if isinstance(batch, int) and batch > 0 and batch % world:
        lower, higher = batch // world * world, (batch // world + 1) * world
        found.append(
            f"schedule.batch_size {batch} is the global batch and must split evenly over the "
            f"{world} processes; use a multiple of {world}, e.g. {higher}"
            + (f" or {lower}" if lower else "")
        )
    elif isinstance(batch, int) and config.step.d_half_batch and (batch // 2) % world:
        found.append(
            f"with step.d_half_batch D takes {batch // 2} real images per iteration, which "
            f"must split evenly over the {world} processes; use a schedule.batch_size that is a "
            f"multiple of {2 * world}"
        )
    if config.execution.cuda_graphs == "on":
        found.append(
            "execution.cuda_graphs=on cannot capture DDP's communication; use --set "
            "execution.cuda_graphs=off with several processes"
        )
    device = config.execution.device
    if device == "mps" or str(device).startswith("cuda:"):
        found.append(
            f"device {device} cannot be shared by {world} processes: each one uses "
            "the GPU of its LOCAL_RANK (--device cuda or auto) or the CPU (--device cpu)"
        )
    if config.distributed.backend == "nccl" and (
        config.execution.device == "cpu" or not torch.cuda.is_available()
    ):
        found.append(
            "distributed.backend=nccl needs CUDA GPUs, and this process has none (or --device "
            "cpu); use --set distributed.backend=gloo (or auto: nccl on GPUs, gloo on the CPU)"
        )
    return found


def check_against_data(config: TrainConfig, data: ImageData) -> None:
    """Checks that need the loaded data: its shape against the model, its size against a batch."""
    problems = _build_problems(config, data.image_shape)
    if not problems:
        with torch.device("meta"):
            generator, _ = build_models(
                config.model.arch, config.model.latent_dim, data.image_shape, config.model.options
            )
        problems += data_problems(
            int(getattr(generator, "num_classes", 0) or 0), data.labels, data.name
        )
    real_batch = config.batch_sizes().real
    if len(data) < real_batch:
        problems.append(
            f"the dataset has {len(data)} images, fewer than one batch of {real_batch}; "
            "lower --batch-size or add data"
        )
    if problems:
        raise ConfigError("; ".join(problems))


def _model_problems(config: TrainConfig) -> list[str]:
    name = config.model.arch
    if name not in ARCHITECTURES:
        return [f"unknown model {name!r}; choose one of: {', '.join(sorted(ARCHITECTURES))}"]
    options = config.model.options if isinstance(config.model.options, dict) else {}
    valid = list(ARCHITECTURES[name].options)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        return [
            f"model {name!r} has no option {unknown[0]!r}; "
            f"its options: {', '.join(valid) or 'none'}"
        ]
    shape = expected_shape(config.data)
    return _build_problems(config, shape) if shape is not None else []


def _build_problems(config: TrainConfig, shape: tuple[int, int, int]) -> list[str]:
    """Build both networks on the meta device: shapes and option values, with no memory used."""
    try:
        with torch.device("meta"):
            _, discriminator = build_models(
                config.model.arch, config.model.latent_dim, shape, config.model.options
            )
    except ConfigError as exc:
        return [str(exc)]
    if config.regularise.spectral_norm == "d":
        problem = spectral_norm_problem(discriminator, config.model.arch)
        return [problem] if problem else []
    return []


def _execution_problems(config: TrainConfig) -> list[str]:
    problems = []
    if config.execution.cuda_graphs == "on" and config.optim.shared_counter:
        problems.append(
            "execution.cuda_graphs=on replays fixed Adam counts; it cannot be combined with "
            "optim.shared_counter=true"
        )
    if config.execution.cuda_graphs == "on" and config.optim.keras_epsilon:
        problems.append(
            "execution.cuda_graphs=on replays a fixed Adam epsilon; it cannot be combined with "
            "optim.keras_epsilon=true"
        )
    if config.execution.cuda_graphs == "on" and config.regularise.r1_interval > 1:
        problems.append(
            "execution.cuda_graphs=on replays the same step every iteration; lazy R1 "
            "(regularise.r1_interval > 1) needs execution.cuda_graphs=off"
        )
    if config.execution.cuda_graphs == "on" and config.regularise.gamma_ramp > 0:
        problems.append(
            "execution.cuda_graphs=on replays the same step every iteration; the gamma ramp "
            "(regularise.gamma_ramp > 0) changes the penalty weight between iterations and needs "
            "execution.cuda_graphs=off"
        )
    if config.execution.cuda_graphs == "on" and config.optim.ramp > 0:
        problems.append(
            "execution.cuda_graphs=on replays the same step every iteration; the optimiser ramp "
            "(optim.ramp > 0) changes the learning rates between iterations and needs "
            "execution.cuda_graphs=off"
        )
    if (
        config.execution.cuda_graphs == "on"
        and config.augment.names
        and config.augment.ada_target > 0
    ):
        problems.append(
            "execution.cuda_graphs=on replays the same step every iteration; the adaptive "
            "augmentation probability (augment.ada_target > 0) changes between iterations and "
            "needs execution.cuda_graphs=off"
        )
    return problems
