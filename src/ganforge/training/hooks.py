"""What the loop tells the world about: hooks, and the built-in ones that write artefacts.

A hook is told about the start, every iteration, logs, grids, evaluations and the finish
(every method optional: subclass :class:`TrainerHook`). The loggers (loggers.py) and the
benchmark are hooks; so are the run's own sample grids (:class:`SampleGrids`) and final
artefacts (:class:`FinalArtefacts`), which the set-up adds after the caller's hooks in the
process that writes the run folder (rank 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from ganforge.artefacts.gif import save_gif
from ganforge.artefacts.images import save_grid
from ganforge.artefacts.plots import plot_training_curves
from ganforge.artefacts.writer import BackgroundWriter
from ganforge.checkpoint import GeneratorInfo, export_generator
from ganforge.conditional import grid_labels
from ganforge.data import to_uint8
from ganforge.training.transfer import to_host_async

if TYPE_CHECKING:
    from ganforge.artefacts.rundir import RunDirectory
    from ganforge.config import TrainConfig
    from ganforge.data import ImageData
    from ganforge.training.batches import BatchSource
    from ganforge.training.health import HealthMonitor
    from ganforge.training.runtime import Runtime
    from ganforge.training.state import TrainingState


@dataclass(frozen=True)
class Tick:
    """Where the schedule stands after an iteration."""

    step: int
    unit_index: int
    end_of_unit: bool
    is_last: bool


class TrainerView(Protocol):
    """What a hook may read of the loop that calls it. The loop (``loop.Trainer``) has all of
    it; hooks are written against this view, so they never import the loop that imports them."""

    config: TrainConfig
    data: ImageData
    state: TrainingState
    run: RunDirectory
    runtime: Runtime
    batches: BatchSource
    health: HealthMonitor
    hooks: tuple[Hook, ...]
    unit_steps: int
    stopped: bool
    warnings: list[str]
    last_stats: dict[str, float]

    def warn(self, message: str | None) -> None: ...


class Hook(Protocol):
    """Told what the loop does; every method is optional (see :class:`TrainerHook`)."""

    def on_start(self, trainer: TrainerView) -> None: ...
    def after_iteration(self, trainer: TrainerView, tick: Tick) -> None: ...
    def on_log(self, trainer: TrainerView, record: dict[str, Any]) -> None: ...
    def on_grid(self, trainer: TrainerView, images: torch.Tensor, path: Path) -> None: ...
    def on_eval(self, trainer: TrainerView, record: dict[str, Any]) -> None: ...
    def before_finish(self, trainer: TrainerView) -> None: ...
    def after_finish(self, trainer: TrainerView) -> None: ...


class TrainerHook:
    """A hook that ignores everything: subclass it and override what you need."""

    def on_start(self, trainer: TrainerView) -> None:
        """The run folder and state are ready (a resumed run: at its checkpoint's step)."""

    def after_iteration(self, trainer: TrainerView, tick: Tick) -> None:
        """An iteration ended (after its log record, if one was due)."""

    def on_log(self, trainer: TrainerView, record: dict[str, Any]) -> None:
        """After the statistics of a log interval were read (a device sync) and written."""

    def on_grid(self, trainer: TrainerView, images: torch.Tensor, path: Path) -> None:
        """A sample grid was made: uint8 [N, C, H, W] images (on the device), its PNG path."""

    def on_eval(self, trainer: TrainerView, record: dict[str, Any]) -> None:
        """An evaluation during training finished."""

    def before_finish(self, trainer: TrainerView) -> None:
        """Training ended; the final artefacts are about to be written."""

    def after_finish(self, trainer: TrainerView) -> None:
        """The final artefacts are on disk."""


class SampleGrids(TrainerHook):
    """reals.png, and a grid of the generator's images from fixed noise when the schedule
    says (``schedule.sample_every`` units, shifted by ``schedule.sample_offset``, and the
    last), written by a background thread so the loop does not wait for PNG encoding."""

    def __init__(self, async_writes: bool):
        self.writer = BackgroundWriter(async_writes)

    def on_start(self, trainer: TrainerView) -> None:
        if trainer.state.step == 0:
            self.save_reals(trainer)
            self.save(trainer)

    def after_iteration(self, trainer: TrainerView, tick: Tick) -> None:
        c = trainer.config
        due = (tick.unit_index - c.schedule.sample_offset) % c.schedule.sample_every == 0
        if tick.end_of_unit and (due or tick.is_last):
            self.save(trainer)

    def before_finish(self, trainer: TrainerView) -> None:
        # every sample grid is on disk before the GIF is made
        self.writer.close()

    @torch.no_grad()
    def save(self, trainer: TrainerView) -> Path:
        """One grid of the sampling generator (the EMA copy when kept), now."""
        state, config = trainer.state, trainer.config
        generator, step, noise = state.sampling_generator, state.step, state.grid_noise
        was_training = generator.training
        generator.eval()
        if trainer.batches.num_classes:
            # one class per row
            labels = grid_labels(
                len(noise), config.schedule.grid_size, trainer.batches.num_classes, noise.device
            )
            generated = generator(noise, labels)
        else:
            generated = generator(noise)
        generator.train(was_training)
        if step > 0:
            trainer.warn(trainer.health.check_samples(step, generated.float()))
        images = to_uint8(generated)
        unit = config.schedule_unit
        path = trainer.run.sample_path(
            unit, step // trainer.unit_steps if unit == "epoch" else step
        )
        # the PNG is written by the writer thread once the copy lands
        host, ready = to_host_async(images)
        self.writer.submit(save_grid, host, path, config.schedule.grid_size, ready=ready)
        for hook in trainer.hooks:
            hook.on_grid(trainer, images, path)
        return path

    def save_reals(self, trainer: TrainerView) -> Path:
        """reals.png: the preprocessed real images as training sees them, so a flipped or
        badly windowed dataset shows at once."""
        config, data = trainer.config, trainer.data
        count = min(config.schedule.grid_size**2, len(data))
        path = trainer.run.path / "reals.png"
        self.writer.submit(save_grid, data.images[:count], path, config.schedule.grid_size)
        return path


class FinalArtefacts(TrainerHook):
    """At the end of a run: the generator, the loss curves, the GIF of the grids and
    summary.json."""

    def before_finish(self, trainer: TrainerView) -> None:
        export(trainer)
        state, data, run = trainer.state, trainer.data, trainer.run
        records = run.read_jsonl(run.metrics_file)
        title = f"{trainer.config.preset or 'run'} on {data.name}"
        plot_training_curves(records, run.plot_file, title=title)
        save_gif(run.sample_frames(), run.gif_file)
        summary = {
            "steps": state.step,
            "total_steps": state.total_steps,
            "stopped_early": trainer.stopped,
            "seconds": round(state.elapsed, 2),
            "device": str(trainer.runtime.device),
            "dataset": data.name,
            "images": len(data),
            "image_shape": list(state.image_shape),
            "final": trainer.last_stats,
            "best_metric": state.best_metric,
            "notes": trainer.runtime.notes,
            "warnings": trainer.warnings,
        }
        run.write_json(run.summary_file, summary)


def export(trainer: TrainerView) -> Path:
    """generator.safetensors: the sampling generator with what it is, loadable alone."""
    state, data = trainer.state, trainer.data
    info = GeneratorInfo.from_config(
        trainer.config, state.image_shape, data.name, state.step, data.class_names
    )
    return export_generator(trainer.run.generator_file, state.sampling_generator, info)
