"""The training loop: :func:`train` is the one entry point, :class:`Trainer` the one loop.

    config -> check -> data + TrainingState -> run folder -> Trainer.fit:
        batches -> AdversarialStep (step.py) -> logs, grids, checkpoints -> final artefacts

The loop knows nothing of command-line flags or of how quality is measured: the caller
passes an ``evaluator`` (a function of the generator and the step) and ``hooks`` (objects
told about logs, grids and the end of the run: loggers, the benchmark). It keeps the dataset
on the device as uint8, cuts batches by index, keeps statistics on the device and reads them
only every ``log_every`` iterations, so a GPU never waits for Python inside an iteration.
"""

from __future__ import annotations

import hashlib
import json
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from torch import nn

from ganforge.artefacts.gif import save_gif
from ganforge.artefacts.images import save_grid
from ganforge.artefacts.plots import plot_training_curves
from ganforge.artefacts.rundir import RunDirectory, default_run_name
from ganforge.artefacts.writer import BackgroundWriter
from ganforge.augment import from_config as augment_from_config
from ganforge.check import check, check_against_data
from ganforge.checkpoint import (
    GeneratorInfo,
    export_generator,
    find_latest,
    load_checkpoint,
    save_checkpoint,
    training_checkpoint,
)
from ganforge.conditional import fake_labels, grid_labels, num_classes_of
from ganforge.config import TrainConfig
from ganforge.data import ImageData, load_images, to_uint8, to_unit_range
from ganforge.data.folder import oasis_substitute
from ganforge.errors import CheckpointError, GanforgeError, TrainingDiverged, first_line
from ganforge.losses import R1, R2, get_loss
from ganforge.noise import draw_noise
from ganforge.training.health import HealthMonitor, spread
from ganforge.training.oom import out_of_memory_message
from ganforge.training.progress import Progress
from ganforge.training.runtime import Runtime, compile_module, resolve_runtime
from ganforge.training.state import TrainingState, real_batch_size
from ganforge.training.step import STAT_NAMES, AdversarialStep, Batch, GraphedStep, StepOptions
from ganforge.training.threads import configure_threads, seed_everything
from ganforge.training.transfer import host_to_device, to_host_async

# An evaluator scores a generator: (generator, step) -> {"main": ..., "fid": ...}; a lower "main"
# is better.
Evaluator = Callable[[nn.Module, int], dict[str, float]]


class Hook(Protocol):
    """Told what the loop does; every method is optional (see :class:`TrainerHook`)."""

    def on_start(self, trainer: Trainer) -> None: ...
    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None: ...
    def on_grid(self, trainer: Trainer, images: torch.Tensor, path: Path) -> None: ...
    def on_eval(self, trainer: Trainer, record: dict[str, Any]) -> None: ...
    def before_finish(self, trainer: Trainer) -> None: ...
    def after_finish(self, trainer: Trainer) -> None: ...


class TrainerHook:
    """A hook that ignores everything: subclass it and override what you need."""

    def on_start(self, trainer: Trainer) -> None:
        """The run folder and state are ready (a resumed run: at its checkpoint's step)."""

    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """After the statistics of a log interval were read (a device sync) and written."""

    def on_grid(self, trainer: Trainer, images: torch.Tensor, path: Path) -> None:
        """A sample grid was made: uint8 [N, C, H, W] images (on the device), its PNG path."""

    def on_eval(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """An evaluation during training finished."""

    def before_finish(self, trainer: Trainer) -> None:
        """Training ended; the final artefacts are about to be written."""

    def after_finish(self, trainer: Trainer) -> None:
        """The final artefacts are on disk."""


class RealBatches(Protocol):
    """Where real images come from: the next batch in [-1, 1] on the device, and its labels."""

    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]: ...


class ResidentBatches:
    """The dataset kept on the device as uint8; batches cut by index (no DataLoader, no syncs)."""

    def __init__(self, data: ImageData, state: TrainingState, runtime: Runtime):
        self.images = data.images.to(runtime.device)  # uint8 [N, C, H, W], resident for the run
        self.labels = data.labels.to(runtime.device) if data.labels is not None else None
        self.sampler, self.runtime = state.sampler, runtime

    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        indices = host_to_device(self.sampler.next(), self.runtime.device)  # pinned: no stream sync
        real = to_unit_range(self.images[indices])
        if self.runtime.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        labels = self.labels[indices] if self.labels is not None else None
        return real, labels


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    seconds: float
    images_per_second: float
    final_stats: dict[str, float] = field(default_factory=dict)
    best_metric: float | None = None
    stopped_early: bool = False
    stop_signal: int | None = None  # SIGINT or SIGTERM when a signal stopped the run
    nothing_to_do: bool = False  # resumed a run that had already reached its schedule's end


class _StopRequest:
    """Turns SIGINT/SIGTERM into a flag the loop checks, so a run stops after saving."""

    def __init__(self) -> None:
        self.requested = False
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested, self.signal = True, signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def build_step(
    config: TrainConfig,
    state: TrainingState,
    runtime: Runtime,
    g_forward: Callable | None = None,
    d_forward: Callable | None = None,
) -> AdversarialStep:
    """The iteration the config describes: loss, update mode, regularisers."""
    c = config
    options = StepOptions(
        update=c.update,
        separate_d_updates=c.d_separate_updates,
        fakes_from_eval_g=c.d_fakes_from_eval_g,
        label_smoothing=c.label_smoothing,
    )
    ramp = {"ramp": c.gamma_ramp}
    regularisers = tuple(
        kind(gamma, c.r1_interval, final=gamma * c.gamma_end, **ramp)
        for kind, gamma in ((R1, c.r1_gamma), (R2, c.r2_gamma))
        if gamma > 0
    )
    return AdversarialStep(
        state.generator,
        state.discriminator,
        state.opt_g,
        state.opt_d,
        get_loss(c.loss),
        runtime,
        options,
        regularisers=regularisers,
        augment=augment_from_config(c, runtime.device),
        ema=state.ema,
        g_forward=g_forward,
        d_forward=d_forward,
        scalers=state.scalers,
    )


class Trainer:
    """Runs a :class:`TrainingState` forward to the end of its schedule, writing artefacts."""

    def __init__(
        self,
        config: TrainConfig,
        data: ImageData,
        state: TrainingState,
        run: RunDirectory,
        runtime: Runtime,
        *,
        evaluator: Evaluator | None = None,
        hooks: tuple[Hook, ...] = (),
        batches: RealBatches | None = None,
        show_progress: bool = True,
        log: Callable[[str], None] = lambda m: None,
    ):
        self.config, self.data, self.state, self.run, self.runtime = (
            config,
            data,
            state,
            run,
            runtime,
        )
        self.evaluator, self.hooks, self.show_progress, self.log = (
            evaluator,
            tuple(hooks),
            show_progress,
            log,
        )
        self.warnings: list[str] = []
        # process-wide switches (TF32) are set by the run that needs them, before any kernel
        runtime.apply()
        self.health = HealthMonitor(
            spread(to_unit_range(data.images[:64])), dominance_steps=max(20 * config.log_every, 500)
        )
        self.real_batch = real_batch_size(config)
        self.num_classes = num_classes_of(state.generator)  # 0: unconditional
        self.fake_batch = self.real_batch
        self.g_batch = config.batch_size  # noise vectors in the G step
        self.unit_steps = state.steps_per_epoch if config.schedule_unit == "epoch" else 1
        self.batches = batches if batches is not None else ResidentBatches(data, state, runtime)
        self.step_fn = build_step(config, state, runtime, *self.forwards())
        self.run_step = GraphedStep(self.step_fn, runtime) if runtime.cuda_graphs else self.step_fn
        self.writer = BackgroundWriter(
            runtime.async_artefacts
        )  # sample grids off the training thread
        self.warmed_up = False
        self.progress: Progress | None = None
        self.elapsed_before = state.elapsed
        self.data_fingerprint = data_fingerprint(data)

    # ---- set-up ----------------------------------------------------------------------------------
    def _compiled(self, module: nn.Module) -> nn.Module | Callable:
        if not self.runtime.compile:
            return module
        try:
            return compile_module(module, self.runtime)
        except Exception as exc:  # compile unavailable on this platform: say so, run eager
            self.runtime.notes.append(
                f"torch.compile unavailable ({type(exc).__name__}); running eager"
            )
            return module

    def forwards(self) -> tuple[nn.Module | Callable, nn.Module | Callable]:
        """What the step calls to run G and D: the networks, compiled when asked (wrapped in
        DDP in a distributed run, training/distributed.py)."""
        return self._compiled(self.state.generator), self._compiled(self.state.discriminator)

    def warm_up(self) -> list[str]:
        """Compile before the first iteration, on a throwaway iteration that is undone.

        A compile failure falls back to eager and says so (an error with compile=on).
        Returns the notes this added. Called by train() and, if not yet done, by fit().
        """
        if self.warmed_up or not self.runtime.compile:
            self.warmed_up = True
            return []
        self.warmed_up = True
        c, device, before = self.config, self.runtime.device, len(self.runtime.notes)
        rng = torch.Generator(device=device).manual_seed(c.seed + 4)
        real = to_unit_range(self.data.images[: self.real_batch].to(device))
        if self.runtime.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        z_d = draw_noise(self.fake_batch, c.model.latent_dim, c.noise, c.noise_std, rng, device)
        z_g = (
            z_d
            if c.shared_noise
            else draw_noise(self.g_batch, c.model.latent_dim, c.noise, c.noise_std, rng, device)
        )
        try:
            self.step_fn.probe(Batch(real, z_d, z_g))
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:  # a compiler error, missing toolchain, unsupported op
            first = first_line(exc, 200)
            if self.runtime.compile_required:
                raise GanforgeError(
                    f"torch.compile failed at the first iteration ({type(exc).__name__}: "
                    f"{first}); use --set compile=off (eager) or compile=auto (falls back "
                    "by itself)"
                ) from exc
            self.step_fn.use_eager()
            self.runtime.compile = False
            self.runtime.notes.append(
                f"compile: failed at the first iteration ({type(exc).__name__}: "
                f"{first}); fell back to eager"
            )
        finally:
            self.state.reset_counters()
        return self.runtime.notes[before:]

    # ---- one iteration's inputs ------------------------------------------------------------------
    def next_batch(self) -> Batch:
        """Real images and the iteration's noise (one batch for both updates with shared_noise)."""
        c, device, rng = self.config, self.runtime.device, self.state.noise_rng
        real, labels = self.batches.next()
        z_d = draw_noise(self.fake_batch, c.model.latent_dim, c.noise, c.noise_std, rng, device)
        z_g = (
            z_d
            if c.shared_noise
            else draw_noise(c.batch_size, c.model.latent_dim, c.noise, c.noise_std, rng, device)
        )
        if not self.num_classes:
            return Batch(real, z_d, z_g, index=self.state.step)
        fakes = fake_labels(
            self.num_classes,
            self.fake_batch + (0 if c.shared_noise else c.batch_size),
            c.seed,
            self.state.step,
            device,
        )
        fake_g = fakes[: self.fake_batch] if c.shared_noise else fakes[self.fake_batch :]
        return Batch(
            real, z_d, z_g, labels, fakes[: self.fake_batch], fake_g, index=self.state.step
        )

    def images_per_step(self) -> int:
        """Images through D (real + fake) plus through G in one iteration."""
        return self.real_batch + self.fake_batch + self.config.batch_size

    # ---- artefacts -------------------------------------------------------------------------------
    @torch.no_grad()
    def save_sample_grid(self) -> Path:
        generator, step = self.state.sampling_generator, self.state.step
        was_training = generator.training
        generator.eval()
        if self.num_classes:  # one class per row
            noise = self.state.grid_noise
            generated = generator(
                noise,
                grid_labels(len(noise), self.config.grid_size, self.num_classes, noise.device),
            )
        else:
            generated = generator(self.state.grid_noise)
        generator.train(was_training)
        if step > 0:
            self._warn(self.health.check_samples(step, generated.float()))
        images = to_uint8(generated)
        unit = self.config.schedule_unit
        path = self.run.sample_path(unit, step // self.unit_steps if unit == "epoch" else step)
        host, ready = to_host_async(
            images
        )  # the PNG is written by the writer thread once the copy lands
        self.writer.submit(save_grid, host, path, self.config.grid_size, ready=ready)
        for hook in self.hooks:
            hook.on_grid(self, images, path)
        return path

    def save_reals_grid(self) -> Path:
        """reals.png: the preprocessed real images as training sees them, so a flipped or badly
        windowed dataset shows at once."""
        count = min(self.config.grid_size**2, len(self.data))
        path = self.run.path / "reals.png"
        self.writer.submit(save_grid, self.data.images[:count], path, self.config.grid_size)
        return path

    def checkpoint_contents(self) -> dict[str, Any]:
        """What a checkpoint holds (a distributed run adds each process's random streams)."""
        state = self.state.state_dict()
        if self.step_fn.augment is not None:  # ADA's probability: resume continues from it
            state["augment"] = self.step_fn.augment.state_dict()
        return training_checkpoint(
            self.config,
            state,
            self.state.image_shape,
            self.data.name,
            self.data_fingerprint,
            class_names=self.data.class_names or (),
        )

    def read_checkpoint(self, log: Callable[[str], None]) -> tuple[Path, dict[str, Any]]:
        """The run folder's newest readable checkpoint (in a distributed run rank 0 reads it
        and hands it to the others)."""
        return _newest_readable_checkpoint(self.run, self.runtime.device, log)

    def stop_requested(self, stop: _StopRequest) -> bool:
        """Whether a signal asks to stop after this iteration (the processes of a distributed
        run agree on it at log time)."""
        return stop.requested

    def save_checkpoint(self, best: bool = False) -> Path:
        """ckpt-<step>.pt (and best.pt), keeping the newest ``keep_checkpoints``."""
        self._check_finite_weights()
        folder, step = self.run.checkpoints_dir, self.state.step
        path = folder / f"ckpt-{step:08d}.pt"
        contents = self.checkpoint_contents()
        try:
            save_checkpoint(path, contents)
            if best:
                save_checkpoint(folder / "best.pt", contents)
        except OSError as exc:  # a full disk, a vanished or read-only folder
            previous = find_latest(folder)
            kept = (
                f"the last good checkpoint, {previous}, is intact"
                if previous
                else "no earlier checkpoint exists"
            )
            raise GanforgeError(
                f"could not write checkpoint {path} at iteration {step} "
                f"({exc.strerror or exc}); {kept}; free space or fix the folder, then "
                f"--resume {self.run.path}"
            ) from None
        for stale in sorted(folder.glob("ckpt-*.pt"))[: -self.config.keep_checkpoints]:
            stale.unlink(missing_ok=True)
        return path

    def export(self) -> Path:
        info = GeneratorInfo.from_config(
            self.config,
            self.state.image_shape,
            self.data.name,
            self.state.step,
            self.data.class_names,
        )
        return export_generator(self.run.generator_file, self.state.sampling_generator, info)

    def _check_finite_weights(self) -> None:
        for name, module in (
            ("generator", self.state.generator),
            ("discriminator", self.state.discriminator),
        ):
            finite = torch.stack([torch.isfinite(p).all() for p in module.parameters()]).all()
            if not finite:  # one host-device sync per network, not one per tensor
                raise TrainingDiverged(
                    f"training diverged at iteration {self.state.step}: the {name} has "
                    f"NaN/Inf weights; {self._last_good()}"
                )

    # ---- the loop --------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        c, state = self.config, self.state
        self.elapsed_before = state.elapsed  # what earlier sessions of a resumed run took
        stats_sum = torch.zeros(len(STAT_NAMES), device=self.runtime.device)
        stats_count = 0
        # every iteration's statistics since the last log
        raw: list[torch.Tensor] = []
        start = time.perf_counter()
        first_step = state.step
        window_start, window_step = start, state.step
        last_stats: dict[str, float] = {}
        self.warm_up()
        for hook in self.hooks:
            hook.on_start(self)
        if state.step == 0:
            self.save_reals_grid()
            self.save_sample_grid()
        total = state.total_steps
        progress = Progress(
            total,
            state.step,
            enabled=self.show_progress,
            unit_steps=self.unit_steps,
            unit=c.schedule_unit,
        )
        self.progress = progress
        stopped, stop_signal = False, None
        state.generator.train()
        state.discriminator.train()
        with _StopRequest() as stop, progress:
            while state.step < total:
                stats = self.run_step(self.next_batch())
                stats_sum += stats
                stats_count += 1
                # a copy: a CUDA graph overwrites its output next iteration
                if c.raw_losses:
                    raw.append(stats.detach().clone())
                state.step += 1
                progress.advance()
                end_of_unit = state.step % self.unit_steps == 0
                unit_index = state.step // self.unit_steps
                is_last = state.step == total
                requested = self.stop_requested(stop)
                if state.step % c.log_every == 0 or is_last or requested:
                    now = time.perf_counter()
                    rate = (state.step - window_step) / max(now - window_start, 1e-9)
                    last_stats = self._log(stats_sum, stats_count, now - start, rate, raw)
                    progress.show(last_stats)
                    raw.clear()
                    stats_sum.zero_()
                    stats_count, window_start, window_step = 0, now, state.step
                due = (unit_index - c.sample_offset) % c.sample_every == 0
                if end_of_unit and (due or is_last):
                    self.save_sample_grid()
                if (
                    end_of_unit
                    and c.eval_every
                    and self.evaluator
                    and (unit_index % c.eval_every == 0 or is_last)
                ):
                    self._evaluate(time.perf_counter() - start)
                if (end_of_unit and unit_index % c.checkpoint_every == 0) or is_last or requested:
                    state.elapsed = self._elapsed_total(start)
                    self.save_checkpoint()
                if requested and not is_last:
                    stopped, stop_signal = True, stop.signal
                    break
        seconds = time.perf_counter() - start
        state.elapsed = self._elapsed_total(start)
        self._finish(seconds, last_stats, stopped)
        speed = self.images_per_step() * (state.step - first_step) / max(seconds, 1e-9)
        return TrainResult(
            self.run.path,
            state.step,
            state.elapsed,
            speed,
            last_stats,
            state.best_metric,
            stopped,
            stop_signal,
        )

    def _elapsed_total(self, start: float) -> float:
        """Training seconds of every session of this run, this one included."""
        return self.elapsed_before + time.perf_counter() - start

    def _log(
        self,
        stats_sum: torch.Tensor,
        count: int,
        elapsed: float,
        steps_per_second: float,
        raw: list[torch.Tensor] | None = None,
    ) -> dict[str, float]:
        step = self.state.step
        means = stats_sum / max(count, 1)
        # the one device sync per log interval: the means, and every iteration's values if kept
        rows = torch.cat([means[None], *(r[None] for r in raw or ())]).tolist()
        values, every = rows[0], [list(column) for column in zip(*rows[1:])]
        record: dict[str, Any] = {
            "step": step,
            "epoch": round(step / self.state.steps_per_epoch, 4),
        }
        record.update({name: round(v, 6) for name, v in zip(STAT_NAMES, values)})
        # every iteration since the last record, ending at `step`
        if every:
            record["raw"] = {n: [round(v, 6) for v in vs] for n, vs in zip(STAT_NAMES, every)}
        record["images_per_s"] = round(steps_per_second * self.images_per_step(), 1)
        record["elapsed_s"] = round(self.elapsed_before + elapsed, 3)
        augment = self.step_fn.augment
        if augment is not None and getattr(augment, "adaptive", False):
            record["augment_p"] = round(
                float(augment.p), 5
            )  # ADA's probability, read with the stats
        self.run.append_jsonl(self.run.metrics_file, record)
        if not all(math.isfinite(v) for v in values):
            raise TrainingDiverged(
                f"training diverged at iteration {step}: losses became NaN/Inf "
                f"(D {values[0]:.4g}, G {values[1]:.4g}); {self._last_good()}"
            )
        for hook in self.hooks:
            hook.on_log(self, record)
        self._warn(self.health.check_stats(step, record))
        # the interval's figures for the progress line and the final summary (the raw values
        # live in metrics.jsonl and reach the hooks)
        return {key: value for key, value in record.items() if key != "raw"}

    def _last_good(self) -> str:
        latest = find_latest(self.run.checkpoints_dir)
        if latest is None:
            return (
                "no checkpoint was written yet; "
                "start again with a lower learning rate (--lr-d/--lr-g)"
            )
        return (
            f"the last good checkpoint, {latest.name}, is intact; continue from it with a lower "
            f"learning rate: ganforge train --resume {self.run.path} --lr 1e-4 (or a stabiliser: "
            "--set r1_gamma=1)"
        )

    def _warn(self, message: str | None) -> None:
        """Show a training-health warning now and keep it in the log and the summary."""
        if message is None:
            return
        self.warnings.append(message)
        self.run.append_jsonl(self.run.metrics_file, {"step": self.state.step, "warning": message})
        if self.progress is not None:
            self.progress.write(message, self.log)
        else:
            self.log(message)

    def _evaluate(self, elapsed: float) -> None:
        generator, state = self.state.sampling_generator, self.state
        was_training = generator.training
        generator.eval()
        scores = self.evaluator(generator, state.step)
        generator.train(was_training)
        record = {
            "step": state.step,
            "elapsed_s": round(self.elapsed_before + elapsed, 3),
            **scores,
        }
        self.run.append_jsonl(self.run.eval_file, record)
        for hook in self.hooks:
            hook.on_eval(self, record)
        main = scores.get("main")
        if (
            main is not None
            and math.isfinite(main)
            and (state.best_metric is None or main < state.best_metric)
        ):
            state.best_metric = main
            state.elapsed = self.elapsed_before + elapsed
            self.save_checkpoint(best=True)

    def _finish(self, seconds: float, last_stats: dict[str, float], stopped: bool) -> None:
        for hook in self.hooks:
            hook.before_finish(self)
        self.writer.close()  # every sample grid is on disk before the GIF is made
        self.export()
        records = self.run.read_jsonl(self.run.metrics_file)
        plot_training_curves(
            records, self.run.plot_file, title=f"{self.config.preset or 'run'} on {self.data.name}"
        )
        save_gif(self.run.sample_frames(), self.run.gif_file)
        summary = {
            "steps": self.state.step,
            "total_steps": self.state.total_steps,
            "stopped_early": stopped,
            "seconds": round(self.state.elapsed, 2),
            "device": str(self.runtime.device),
            "dataset": self.data.name,
            "images": len(self.data),
            "image_shape": list(self.state.image_shape),
            "final": last_stats,
            "best_metric": self.state.best_metric,
            "notes": self.runtime.notes,
            "warnings": self.warnings,
        }
        self.run.write_json(self.run.summary_file, summary)
        for hook in self.hooks:
            hook.after_finish(self)


def data_fingerprint(data: ImageData) -> str:
    """Digest of the images (and labels) a run trains on: a resumed run must find the same data."""
    digest = hashlib.sha256(f"{data.name}|{tuple(data.images.shape)}".encode())
    digest.update(data.images.contiguous().numpy().tobytes())
    if data.labels is not None:
        digest.update(data.labels.contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def train(
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
    """Train a GAN as `config` says and write every artefact to its run folder.

    Everything is checked, the data read and the models built before the run folder is
    made, so a failed set-up leaves nothing behind. `data` may be passed to skip loading
    (tests, notebooks). `resume` continues the run folder's latest checkpoint exactly;
    `overwrite` replaces an existing run folder. `evaluator` scores the generator every
    ``eval_every`` units (ganforge.api.train passes the default one). A resumed run refuses
    data that differ from what it trained on, unless `allow_data_change`.
    """
    check(config)
    from ganforge.training.distributed import train_distributed, world_size_from_env

    if world_size_from_env() > 1:  # one of several processes started by torchrun
        return train_distributed(
            config,
            data=data,
            overwrite=overwrite,
            resume=resume,
            show_progress=show_progress,
            evaluator=evaluator,
            hooks=hooks,
            allow_data_change=allow_data_change,
            log=log,
        )
    runtime = resolve_runtime(config)
    configure_threads(idle_cores_only=runtime.cpu_mixed_precision)
    seed_everything(config.seed, config.deterministic)
    data = data if data is not None else load_images(config.data)
    check_against_data(config, data)
    config = declare_substitute(config, runtime)
    stage = ["setting up (dataset and models on the device, compilation)"]
    try:
        state = TrainingState.create(config, data.image_shape, len(data), runtime)
        name = config.run_name or default_run_name(config.preset, config.out_dir)
        config = config.with_overrides({"run_name": name})
        state.config = config
        run = RunDirectory.create(config.out_dir, name, overwrite=overwrite, resume=resume)
        trainer = Trainer(
            config,
            data,
            state,
            run,
            runtime,
            evaluator=evaluator,
            hooks=hooks,
            show_progress=show_progress,
            log=log,
        )
        _start_or_resume(trainer, resume, allow_data_change, log)
        if resume and state.step >= state.total_steps:
            return TrainResult(
                run.path,
                state.step,
                state.elapsed,
                0.0,
                best_metric=state.best_metric,
                nothing_to_do=True,
            )
        stage[0] = "training"
        return trainer.fit()
    except torch.OutOfMemoryError:  # CUDA OOM: say what ran out and what to change
        message = out_of_memory_message(
            runtime.device, config.batch_size, data.image_shape, runtime, stage[0]
        )
        if runtime.device.type == "cuda":
            torch.cuda.empty_cache()
        raise GanforgeError(message) from None


def declare_substitute(config: TrainConfig, runtime: Runtime) -> TrainConfig:
    """A preset that requires the documented data (data.require_oasis) trains on other data
    only when they are named, and then says so: first among the run's notes (its first
    line) and in config.json (data.substitute)."""
    substitute = oasis_substitute(config.data)
    if not substitute:
        return config
    runtime.notes.insert(0, substitute)
    return config.with_overrides({"data.substitute": substitute})


def _start_or_resume(
    trainer: Trainer, resume: bool, allow_data_change: bool, log: Callable[[str], None]
) -> None:
    config, run, runtime, data = trainer.config, trainer.run, trainer.runtime, trainer.data
    if resume:
        latest, saved = trainer.read_checkpoint(log)
        _check_same_model(saved, config, trainer.state.image_shape, latest)
        _check_same_data(saved, trainer, latest, allow_data_change, log)
        trainer.state.load_state_dict(saved, latest)
        if trainer.step_fn.augment is not None and isinstance(saved.get("augment"), dict):
            trainer.step_fn.augment.load_state_dict(saved["augment"])
        run.truncate_logs_after(trainer.state.step)
        _record_config_changes(run, saved, config)
        log(f"resuming {run.path} from iteration {trainer.state.step} ({latest.name})")
    else:
        run.write_json(run.config_file, config.to_dict())
    for note in runtime.notes:
        log(note)
    log(
        f"training {config.model.arch} on {data.name} ({len(data)} images {data.image_shape}) on "
        f"{runtime.device} ({runtime.path()}): {trainer.state.total_steps} iterations, "
        f"run folder {run.path}"
    )
    if runtime.compile:
        log("compiling the models (torch.compile; once per run)")
    for note in trainer.warm_up():
        log(note)


def _check_same_model(
    saved: dict[str, Any], config: TrainConfig, image_shape: tuple[int, ...], source: Path
) -> None:
    if saved.get("arch") != config.model.arch or tuple(saved.get("image_shape", ())) != tuple(
        image_shape
    ):
        raise CheckpointError(
            f"{source}: checkpoint is for model {saved.get('arch')!r} at "
            f"{tuple(saved.get('image_shape', ()))}, this run builds "
            f"{config.model.arch!r} at {tuple(image_shape)}"
        )


def _check_same_data(
    saved: dict[str, Any], trainer: Trainer, source: Path, allowed: bool, log: Callable[[str], None]
) -> None:
    """A resumed run must train on the data it started on (checkpoints before this check had no
    fingerprint and are taken as they are)."""
    before = saved.get("data_fingerprint") or ""
    if not before or before == trainer.data_fingerprint:
        return
    data = trainer.data
    what = (
        f"it trained on {saved.get('dataset')!r}, the data found now are {data.name!r} "
        f"({len(data)} images from {data.source})"
    )
    if not allowed:
        raise CheckpointError(
            f"cannot resume {trainer.run.path}: the data changed since {source.name} "
            f"({what}); give the run's data with --data, or pass --allow-data-change "
            "to continue on these"
        )
    log(f"note: the data changed since {source.name} ({what}); continuing on them as asked")


def _record_config_changes(run: RunDirectory, saved: dict[str, Any], config: TrainConfig) -> None:
    """A resumed run with other settings: config.json becomes the new settings, and
    config-changes.jsonl says what changed at which iteration."""
    try:
        before = _flatten(json.loads(saved["config"]))
    except (KeyError, TypeError, ValueError):
        return
    after = _flatten(config.to_dict())
    changed = {
        key: [before.get(key), value] for key, value in after.items() if before.get(key) != value
    }
    if changed:
        run.append_jsonl(
            run.path / "config-changes.jsonl", {"step": int(saved["step"]), "changed": changed}
        )
    run.write_json(run.config_file, config.to_dict())


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and key != "options":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def _newest_readable_checkpoint(
    run: RunDirectory, device: torch.device, log: Callable[[str], None]
):
    """The newest checkpoint that loads; a damaged newer one is reported and skipped."""
    candidates = sorted(run.checkpoints_dir.glob("ckpt-*.pt"), reverse=True)
    if not candidates:
        raise CheckpointError(f"cannot resume: no checkpoint in {run.checkpoints_dir}")
    for path in candidates:
        try:
            return path, load_checkpoint(path, map_location=device)
        except CheckpointError as exc:
            log(f"skipping damaged checkpoint: {exc}")
    raise CheckpointError(
        f"cannot resume: none of the {len(candidates)} checkpoints in "
        f"{run.checkpoints_dir} could be read"
    )
