"""The one set-up of a training run, for any world (one process, or one of several).

    runtime -> threads, seeds -> data (rank 0 first) -> evaluator -> TrainingState
        -> the world prepares it (shard, sync BatchNorm, per-rank streams)
        -> run folder (rank 0 makes it) -> step, batches, checkpointer, hooks -> Trainer
        -> start (config.json) or resume (the checkpoint) -> compile warm-up

Everything that can be refused is refused before the run folder exists, so a failed set-up
leaves nothing behind. ``ganforge.train`` (api.py) calls :func:`prepare` and then
``Trainer.fit``; the benchmark calls the same :func:`prepare`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch

from ganforge.artefacts.rundir import RunDirectory, default_run_name
from ganforge.check import check_against_data
from ganforge.conditional import num_classes_of
from ganforge.config import TrainConfig
from ganforge.data import ImageData, load_images
from ganforge.data.folder import oasis_substitute
from ganforge.errors import GanforgeError
from ganforge.training.batches import BatchSource, RealBatches, ResidentBatches
from ganforge.training.checkpointer import Checkpointer
from ganforge.training.forwards import make_forwards
from ganforge.training.hooks import FinalArtefacts, Hook, SampleGrids
from ganforge.training.loop import Evaluator, Trainer
from ganforge.training.oom import out_of_memory_message
from ganforge.training.resume import resume, start
from ganforge.training.runtime import Runtime, resolve_runtime
from ganforge.training.state import TrainingState
from ganforge.training.step import build_step
from ganforge.training.threads import configure_threads, seed_everything

if TYPE_CHECKING:
    from ganforge.training.world import World

# Makes the default evaluator once the data are loaded: (config, data, device) -> Evaluator.
EvaluatorFactory = Callable[[TrainConfig, ImageData, torch.device], Evaluator]


@dataclass(frozen=True)
class RunOptions:
    """How to run a config: what a command-line flag decides, not what the config records.

    ``data`` skips loading (tests, notebooks); ``resume`` continues the run folder's latest
    checkpoint exactly; ``overwrite`` replaces an existing run folder; a resumed run refuses
    data that differ from what it trained on, unless ``allow_data_change``.
    """

    data: ImageData | None = None
    overwrite: bool = False
    resume: bool = False
    show_progress: bool = True
    allow_data_change: bool = False
    log: Callable[[str], None] = lambda message: None


def prepare(
    config: TrainConfig,
    world: World,
    run: RunOptions,
    *,
    evaluator: Evaluator | None = None,
    default_evaluator: EvaluatorFactory | None = None,
    hooks: tuple[Hook, ...] = (),
    real_batches: Callable[[ImageData, TrainingState, Runtime], RealBatches] = ResidentBatches,
    warm_up: bool = True,
) -> Trainer:
    """A checked `config`'s run, set up in `world` and ready to ``fit()`` (see the module's
    docstring). Rank 0 alone logs, shows progress, calls the hooks, evaluates and writes;
    `default_evaluator` makes the evaluator when none is given and ``schedule.eval_every`` asks;
    `real_batches` and ``warm_up=False`` (the caller compiles, and times it) are for the
    benchmark."""
    main = world.is_main
    log = run.log if main else (lambda message: None)
    runtime = resolve_runtime(config)
    world.place(runtime)
    configure_threads(idle_cores_only=runtime.cpu_mixed_precision)
    seed_everything(config.seed, config.execution.deterministic)
    data = run.data if run.data is not None else _load(config, world)
    check_against_data(config, data)
    config = declare_substitute(config, runtime)
    if (
        evaluator is None
        and default_evaluator is not None
        and config.schedule.eval_every > 0
        and main
    ):
        evaluator = default_evaluator(config, data, runtime.device)
    # every process reaches the same evaluation points (a new best is saved by all): the
    # others follow rank 0's evaluator, whatever theirs
    evaluator = _rank_zero_evaluates(world, evaluator)
    try:
        state = TrainingState.create(config, data.image_shape, len(data), runtime)
        world.prepare(config, state, runtime)
        name = world.from_main(
            lambda: config.run_name or default_run_name(config.preset, config.out_dir)
        )
        config = config.with_overrides({"run_name": name})
        state.config = config
        path = world.from_main(
            lambda: RunDirectory.create(config.out_dir, name, run.overwrite, run.resume).path
        )
        folder = RunDirectory(path, writes=main)
        # process-wide switches (TF32) are set by the run that needs them, before any kernel
        runtime.apply()
        step = build_step(
            config, state, runtime, *make_forwards(state, runtime, world, config.step.update)
        )
        world.prepare_step(step, config)
        num_classes = num_classes_of(state.generator)
        batches = BatchSource(
            config, state, runtime, world, real_batches(data, state, runtime), num_classes
        )
        checkpointer = Checkpointer(config, state, data, folder, runtime, world, step.augment)
        built_in = (SampleGrids(runtime.async_artefacts), FinalArtefacts())
        trainer = Trainer(
            config,
            data,
            state,
            folder,
            runtime,
            world,
            batches=batches,
            step=step,
            checkpointer=checkpointer,
            evaluator=evaluator,
            hooks=(*hooks, *built_in) if main else (),
            show_progress=run.show_progress and main,
            log=log,
        )
        if run.resume:
            resume(trainer, run.allow_data_change, log)
        else:
            start(trainer)
        announce(trainer, log, warm_up)
        return trainer
    except torch.OutOfMemoryError:
        raise out_of_memory(config, world, runtime, data, "setting up") from None


def _load(config: TrainConfig, world: World) -> ImageData:
    """The run's images; rank 0 first (it may fill the cache), then the others."""
    loaded: list[ImageData] = []
    world.from_main(lambda: loaded.append(load_images(config.data)))
    return loaded[0] if loaded else load_images(config.data)


def _rank_zero_evaluates(world: World, evaluator: Evaluator | None) -> Evaluator | None:
    if not world.from_main(lambda: evaluator is not None):
        return None
    return evaluator if world.is_main else _never_called


def _never_called(generator: torch.nn.Module, step: int) -> dict[str, float]:
    """The evaluator of the processes other than rank 0: never called (rank 0 evaluates)."""
    raise AssertionError("only rank 0 evaluates")


def declare_substitute(config: TrainConfig, runtime: Runtime) -> TrainConfig:
    """A preset that requires the documented data (data.require_oasis) trains on other data
    only when they are named, and then says so: first among the run's notes (its first
    line) and in config.json (data.substitute)."""
    substitute = oasis_substitute(config.data)
    if not substitute:
        return config
    runtime.notes.insert(0, substitute)
    return config.with_overrides({"data.substitute": substitute})


def announce(trainer: Trainer, log: Callable[[str], None], warm_up: bool = True) -> None:
    """What is about to happen, then the compile warm-up (its notes too)."""
    config, run, runtime, data = trainer.config, trainer.run, trainer.runtime, trainer.data
    for note in runtime.notes:
        log(note)
    log(
        f"training {config.model.arch} on {data.name} ({len(data)} images {data.image_shape}) on "
        f"{runtime.device} ({runtime.path()}): {trainer.state.total_steps} iterations, "
        f"run folder {run.path}"
    )
    if runtime.compile and warm_up:
        log("compiling the models (torch.compile; once per run)")
        for note in trainer.warm_up():
            log(note)


def out_of_memory(
    config: TrainConfig, world: World, runtime: Runtime, data: ImageData, stage: str
) -> GanforgeError:
    """The one line for an out-of-memory error: what ran out and what to change."""
    if runtime.device.type == "cuda":
        torch.cuda.empty_cache()
    batch = config.batch_sizes(world.world_size).g
    message = out_of_memory_message(runtime.device, batch, data.image_shape, runtime, stage)
    return GanforgeError(f"process {world.rank}: {message}" if world.world_size > 1 else message)
