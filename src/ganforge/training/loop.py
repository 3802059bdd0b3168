"""The training loop: one function, :func:`train`, owns it from data to final artefacts.

    config -> data + models -> iterations (training/step.py) -> artefacts (run folder)

The loop knows nothing of command-line flags. It keeps the dataset on the device as
uint8, cuts batches by index, keeps statistics on the device and reads them only every
``log_every`` iterations, so a GPU never waits for Python inside an iteration.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ganforge.artefacts.gif import save_gif
from ganforge.artefacts.images import save_grid
from ganforge.artefacts.plots import plot_training_curves
from ganforge.artefacts.rundir import RunDirectory, default_run_name
from ganforge.checkpoint import (GeneratorInfo, export_generator, find_latest, load_checkpoint, load_state_strict,
                                 save_checkpoint)
from ganforge.config import TrainConfig
from ganforge.data import ImageData, load_images, to_uint8, to_unit_range
from ganforge.errors import CheckpointError, ConfigError, GanforgeError, TrainingDiverged
from ganforge.losses import get_loss
from ganforge.models import build_models
from ganforge.training.ema import GeneratorEMA
from ganforge.training.health import HealthMonitor, spread
from ganforge.training.progress import Progress
from ganforge.training.runtime import (BackgroundWriter, Runtime, compile_module, configure_threads, host_to_device,
                                       out_of_memory_message, resolve_runtime, seed_everything, to_host_async)
from ganforge.training.sampler import BatchSampler
from ganforge.training.step import STAT_NAMES, AdversarialStep, GraphedStep

# An evaluator scores a generator: (generator, step) -> {"fid": ..., ...}; lower main metric is better.
Evaluator = Callable[[nn.Module, int], dict[str, float]]


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    seconds: float
    images_per_second: float
    final_stats: dict[str, float] = field(default_factory=dict)
    best_metric: float | None = None
    stopped_early: bool = False


def draw_noise(count: int, latent_dim: int, law: str, std: float, generator: torch.Generator,
               device: torch.device) -> torch.Tensor:
    """Latent vectors [count, latent_dim]: N(0, std^2) or U(-1, 1)."""
    if law == "uniform":
        return torch.rand(count, latent_dim, generator=generator, device=device).mul_(2).sub_(1)
    return torch.randn(count, latent_dim, generator=generator, device=device).mul_(std)


class _StopRequest:
    """Turns SIGINT/SIGTERM into a flag the loop checks, so a run stops after saving."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopRequest":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Trainer:
    """Holds the state of one run; :func:`train` is the public entry point."""

    def __init__(self, config: TrainConfig, data: ImageData, run: RunDirectory, runtime: Runtime,
                 evaluator: Evaluator | None, show_progress: bool, log: Callable[[str], None] = lambda m: None):
        self.config, self.data, self.run, self.runtime = config, data, run, runtime
        self.evaluator, self.show_progress, self.log = evaluator, show_progress, log
        self.warnings: list[str] = []
        self.health = HealthMonitor(spread(to_unit_range(data.images[:64])),
                                    dominance_steps=max(20 * config.log_every, 500))
        c = config
        device = runtime.device
        self.image_shape = data.image_shape
        self.G, self.D = build_models(c.model.arch, c.model.latent_dim, self.image_shape, c.model.options)
        memory_format = torch.channels_last if runtime.channels_last else torch.contiguous_format
        self.G.to(device, memory_format=memory_format)
        self.D.to(device, memory_format=memory_format)
        fused = runtime.fused_optim  # one kernel per step on CUDA; the CPU uses the multi-tensor path
        adam = dict(betas=(c.optim.beta1, c.optim.beta2), fused=fused or None, foreach=None if fused else True,
                    capturable=runtime.cuda_graphs)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=c.optim.lr_g, **adam)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=c.optim.lr_d, **adam)
        self.ema = GeneratorEMA(self.G, c.ema_decay) if c.ema_decay > 0 else None
        self.real_batch = c.batch_size // 2 if c.d_half_batch else c.batch_size
        self.fake_batch = self.real_batch
        if len(data) < self.real_batch:
            raise ConfigError(f"the dataset has {len(data)} images, fewer than one batch of {self.real_batch}; "
                              "lower --batch-size or add data")
        self.sampler = BatchSampler(len(data), self.real_batch, c.batch_order, seed=c.seed + 1)
        self.steps_per_epoch = self.sampler.batches_per_pass
        self.total_steps = c.epochs * self.steps_per_epoch if c.epochs is not None else int(c.iterations)
        self.unit_steps = self.steps_per_epoch if c.schedule_unit == "epoch" else 1
        self.noise_rng = torch.Generator(device=device).manual_seed(c.seed + 2)
        grid_rng = torch.Generator(device="cpu").manual_seed(c.seed + 3)
        grid_law = c.noise if c.grid_noise == "train" else c.grid_noise
        self.grid_noise = draw_noise(c.grid_size**2, c.model.latent_dim, grid_law, c.noise_std, grid_rng,
                                     torch.device("cpu")).to(device)
        self.images = data.images.to(device)  # uint8 [N, C, H, W], resident for the whole run
        g_forward, d_forward = self._compiled(self.G), self._compiled(self.D)
        self.step_fn = AdversarialStep(self.G, self.D, self.opt_g, self.opt_d, get_loss(c.loss), runtime,
                                       separate_d_updates=c.d_separate_updates, fakes_from_eval_g=c.d_fakes_from_eval_g,
                                       label_smoothing=c.label_smoothing, r1_gamma=c.r1_gamma, ema=self.ema,
                                       g_forward=g_forward, d_forward=d_forward)
        self.run_step = GraphedStep(self.step_fn, runtime) if runtime.cuda_graphs else self.step_fn
        self.writer = BackgroundWriter(runtime.async_artefacts)  # sample grids off the training thread
        self.warmed_up = False
        self.progress: Progress | None = None
        self.step = 0
        self.elapsed_before = 0.0  # training seconds of earlier sessions of a resumed run
        self.best_metric: float | None = None

    # ---- set-up helpers ------------------------------------------------------------------
    def _compiled(self, module: nn.Module):
        if not self.runtime.compile:
            return module
        try:
            return compile_module(module, self.runtime)
        except Exception as exc:  # compile unavailable on this platform: say so, run eager
            self.runtime.notes.append(f"torch.compile unavailable ({type(exc).__name__}); running eager")
            return module

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
        real = to_unit_range(self.images[: self.real_batch])
        if self.runtime.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        z_d = draw_noise(self.fake_batch, c.model.latent_dim, c.noise, c.noise_std, rng, device)
        z_g = draw_noise(c.batch_size, c.model.latent_dim, c.noise, c.noise_std, rng, device)
        try:
            self.step_fn.probe(real, z_d, z_g)
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:  # a compiler error, missing toolchain, unsupported op
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            if self.runtime.compile_required:
                raise GanforgeError(f"torch.compile failed at the first iteration ({type(exc).__name__}: {first}); "
                                    "use --set compile=off (eager) or compile=auto (falls back by itself)") from exc
            self.step_fn.use_eager()
            self.runtime.compile = False
            self.runtime.notes.append(f"compile: failed at the first iteration ({type(exc).__name__}: {first}); "
                                      "fell back to eager")
        return self.runtime.notes[before:]

    def next_real_batch(self) -> torch.Tensor:
        """The next batch of real images in [-1, 1] on the device, in the models' memory layout."""
        indices = host_to_device(self.sampler.next(), self.runtime.device)  # pinned: no stream sync
        real = to_unit_range(self.images[indices])
        if self.runtime.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        return real

    def images_per_step(self) -> int:
        """Images through D (real + fake) plus through G in one iteration."""
        return self.real_batch + self.fake_batch + self.config.batch_size

    # ---- state ------------------------------------------------------------------------------
    def state_dict(self, elapsed: float) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state(), "noise": self.noise_rng.get_state()}
        if self.runtime.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.runtime.device)
        return {
            "config": self.config.to_json(), "arch": self.config.model.arch,
            "image_shape": list(self.image_shape), "dataset": self.data.name,
            "step": self.step, "elapsed": elapsed,
            "generator": self.G.state_dict(), "discriminator": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "ema": self.ema.model.state_dict() if self.ema else {},
            "sampler": self.sampler.state_dict(), "rng": rng, "grid_noise": self.grid_noise.cpu(),
            "best_metric": self.best_metric if self.best_metric is not None else float("nan"),
        }

    def load_state_dict(self, state: dict[str, Any], source: Path) -> None:
        if state.get("arch") != self.config.model.arch or tuple(state.get("image_shape", ())) != self.image_shape:
            raise CheckpointError(f"{source}: checkpoint is for model {state.get('arch')!r} at "
                                  f"{tuple(state.get('image_shape', ()))}, this run builds {self.config.model.arch!r} "
                                  f"at {self.image_shape}")
        load_state_strict(self.G, state["generator"], "generator", source)
        load_state_strict(self.D, state["discriminator"], "discriminator", source)
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        for optimiser, lr in ((self.opt_g, self.config.optim.lr_g), (self.opt_d, self.config.optim.lr_d)):
            for group in optimiser.param_groups:  # a resumed run may lower the rate after a divergence
                group["lr"] = lr
        if self.ema and state["ema"]:
            load_state_strict(self.ema.model, state["ema"], "EMA generator", source)
        self.sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["rng"]["torch"])
        self.noise_rng.set_state(state["rng"]["noise"])
        if "cuda" in state["rng"] and self.runtime.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.runtime.device)
        self.grid_noise = state["grid_noise"].to(self.runtime.device)
        self.step, self.elapsed_before = int(state["step"]), float(state["elapsed"])
        best = float(state["best_metric"])
        self.best_metric = None if math.isnan(best) else best

    # ---- artefacts ----------------------------------------------------------------------------
    def sampling_generator(self) -> nn.Module:
        return self.ema.model if self.ema else self.G

    @torch.no_grad()
    def save_sample_grid(self) -> Path:
        generator = self.sampling_generator()
        was_training = generator.training
        generator.eval()
        generated = generator(self.grid_noise)
        generator.train(was_training)
        if self.step > 0:
            self._warn(self.health.check_samples(self.step, generated.float()))
        images = to_uint8(generated)
        unit = self.config.schedule_unit
        index = self.step // self.unit_steps if unit == "epoch" else self.step
        path = self.run.sample_path(unit, index)
        host, ready = to_host_async(images)  # the PNG is written by the writer thread once the copy lands
        self.writer.submit(save_grid, host, path, self.config.grid_size, ready=ready)
        return path

    def save_training_checkpoint(self, elapsed: float, best: bool = False) -> Path:
        self._check_finite_weights()
        folder = self.run.checkpoints_dir
        path = folder / f"ckpt-{self.step:08d}.pt"
        try:
            save_checkpoint(path, self.state_dict(elapsed))
            if best:
                save_checkpoint(folder / "best.pt", self.state_dict(elapsed))
        except OSError as exc:  # a full disk, a vanished or read-only folder
            previous = find_latest(folder)
            kept = f"the last good checkpoint, {previous}, is intact" if previous else "no earlier checkpoint exists"
            raise GanforgeError(f"could not write checkpoint {path} at iteration {self.step} "
                                f"({exc.strerror or exc}); {kept}; free space or fix the folder, then --resume "
                                f"{self.run.path}") from None
        old = sorted(folder.glob("ckpt-*.pt"))[: -self.config.keep_checkpoints]
        for stale in old:
            stale.unlink(missing_ok=True)
        return path

    def _check_finite_weights(self) -> None:
        for name, module in (("generator", self.G), ("discriminator", self.D)):
            finite = torch.stack([torch.isfinite(p).all() for p in module.parameters()]).all()
            if not finite:  # one host-device sync per network, not one per tensor
                raise TrainingDiverged(f"training diverged at iteration {self.step}: the {name} has NaN/Inf weights; "
                                       f"{self._last_good()}")

    def export(self) -> Path:
        info = GeneratorInfo.from_config(self.config, self.image_shape, self.data.name, self.step)
        return export_generator(self.run.generator_file, self.sampling_generator(), info)

    # ---- the loop -----------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        c, device = self.config, self.runtime.device
        stats_sum = torch.zeros(len(STAT_NAMES), device=device)
        stats_count = 0
        start = time.perf_counter()
        first_step = self.step
        window_start, window_step = start, self.step
        last_stats: dict[str, float] = {}
        self.warm_up()
        if self.step == 0:
            self.save_sample_grid()
        progress = Progress(self.total_steps, self.step, enabled=self.show_progress, unit_steps=self.unit_steps,
                            unit=c.schedule_unit)
        self.progress = progress
        stopped = False
        self.G.train()
        self.D.train()
        with _StopRequest() as stop, progress:
            while self.step < self.total_steps:
                real = self.next_real_batch()
                z_d = draw_noise(self.fake_batch, c.model.latent_dim, c.noise, c.noise_std, self.noise_rng, device)
                z_g = draw_noise(c.batch_size, c.model.latent_dim, c.noise, c.noise_std, self.noise_rng, device)
                stats_sum += self.run_step(real, z_d, z_g)
                stats_count += 1
                self.step += 1
                progress.advance()
                end_of_unit = self.step % self.unit_steps == 0
                unit_index = self.step // self.unit_steps
                is_last = self.step == self.total_steps
                if self.step % c.log_every == 0 or is_last or stop.requested:
                    now = time.perf_counter()
                    last_stats = self._log(stats_sum, stats_count, now - start, (self.step - window_step) /
                                           max(now - window_start, 1e-9))
                    progress.show(last_stats)
                    stats_sum.zero_()
                    stats_count, window_start, window_step = 0, now, self.step
                if end_of_unit and (unit_index % c.sample_every == 0 or is_last):
                    self.save_sample_grid()
                if end_of_unit and c.eval_every and self.evaluator and (unit_index % c.eval_every == 0 or is_last):
                    self._evaluate(time.perf_counter() - start)
                if (end_of_unit and unit_index % c.checkpoint_every == 0) or is_last or stop.requested:
                    self.save_training_checkpoint(self.elapsed_before + time.perf_counter() - start)
                if stop.requested and not is_last:
                    stopped = True
                    break
        seconds = time.perf_counter() - start
        self._finish(seconds, last_stats, stopped)
        speed = self.images_per_step() * (self.step - first_step) / max(seconds, 1e-9)
        return TrainResult(self.run.path, self.step, self.elapsed_before + seconds, speed, last_stats,
                           self.best_metric, stopped)

    def _log(self, stats_sum: torch.Tensor, count: int, elapsed: float, steps_per_second: float) -> dict[str, float]:
        values = (stats_sum / max(count, 1)).tolist()  # the one device sync per log interval
        record: dict[str, Any] = {"step": self.step, "epoch": round(self.step / self.steps_per_epoch, 4)}
        record.update({name: round(v, 6) for name, v in zip(STAT_NAMES, values)})
        record["images_per_s"] = round(steps_per_second * self.images_per_step(), 1)
        record["elapsed_s"] = round(self.elapsed_before + elapsed, 3)
        if not all(math.isfinite(v) for v in values):
            self.run.append_jsonl(self.run.metrics_file, record)
            raise TrainingDiverged(f"training diverged at iteration {self.step}: losses became NaN/Inf "
                                   f"(D {values[0]:.4g}, G {values[1]:.4g}); {self._last_good()}")
        self.run.append_jsonl(self.run.metrics_file, record)
        self._warn(self.health.check_stats(self.step, record))
        return record

    def _last_good(self) -> str:
        latest = find_latest(self.run.checkpoints_dir)
        if latest is None:
            return "no checkpoint was written yet; start again with a lower learning rate (--lr-d/--lr-g)"
        return (f"the last good checkpoint, {latest.name}, is intact; continue from it with a lower learning rate: "
                f"ganforge train --resume {self.run.path} --lr 1e-4 (or a stabiliser: --set r1_gamma=1)")

    def _warn(self, message: str | None) -> None:
        """Show a training-health warning now and keep it in the log and the summary."""
        if message is None:
            return
        self.warnings.append(message)
        self.run.append_jsonl(self.run.metrics_file, {"step": self.step, "warning": message})
        if self.progress is not None:
            self.progress.write(message, self.log)
        else:
            self.log(message)

    def _evaluate(self, elapsed: float) -> None:
        generator = self.sampling_generator()
        was_training = generator.training
        generator.eval()
        scores = self.evaluator(generator, self.step)
        generator.train(was_training)
        record = {"step": self.step, "elapsed_s": round(self.elapsed_before + elapsed, 3), **scores}
        self.run.append_jsonl(self.run.eval_file, record)
        main = scores.get("main")
        if main is not None and math.isfinite(main) and (self.best_metric is None or main < self.best_metric):
            self.best_metric = main
            self.save_training_checkpoint(self.elapsed_before + elapsed, best=True)

    def _finish(self, seconds: float, last_stats: dict[str, float], stopped: bool) -> None:
        self.writer.close()  # every sample grid is on disk before the GIF is made
        self.export()
        records = self.run.read_jsonl(self.run.metrics_file)
        plot_training_curves(records, self.run.plot_file, title=f"{self.config.preset or 'run'} on {self.data.name}")
        save_gif(self.run.sample_frames(), self.run.gif_file)
        summary = {"steps": self.step, "total_steps": self.total_steps, "stopped_early": stopped,
                   "seconds": round(self.elapsed_before + seconds, 2), "device": str(self.runtime.device),
                   "dataset": self.data.name, "images": len(self.data), "image_shape": list(self.image_shape),
                   "final": last_stats, "best_metric": self.best_metric, "notes": self.runtime.notes,
                   "warnings": self.warnings}
        self.run.write_json(self.run.summary_file, summary)


def train(config: TrainConfig, *, data: ImageData | None = None, overwrite: bool = False, resume: bool = False,
          show_progress: bool = True, evaluator: Evaluator | None = None,
          log: Callable[[str], None] = lambda message: None) -> TrainResult:
    """Train a GAN as `config` says and write every artefact to its run folder.

    `data` may be passed to skip loading (tests, notebooks). `resume` continues the run
    folder's latest checkpoint exactly; `overwrite` replaces an existing run folder.
    """
    config.validate()
    runtime = resolve_runtime(config)
    configure_threads()
    seed_everything(config.seed, config.deterministic)
    data = data if data is not None else load_images(config.data)
    if evaluator is None and config.eval_every > 0:  # the default quality curve: classifier FID, else SWD
        from ganforge.metrics import training_evaluator
        evaluator = training_evaluator(config, data, runtime.device)
    name = config.run_name or default_run_name(config.preset, config.out_dir)
    config = config.with_overrides({"run_name": name})
    run = RunDirectory.create(config.out_dir, name, overwrite=overwrite, resume=resume)
    stage = ["setting up (dataset and models on the device, compilation)"]
    try:
        return _train_in(config, data, run, runtime, evaluator, show_progress, resume, log, stage)
    except torch.OutOfMemoryError:  # CUDA OOM: say what ran out and what to change
        message = out_of_memory_message(runtime.device, config.batch_size, data.image_shape, runtime, stage[0])
        if runtime.device.type == "cuda":
            torch.cuda.empty_cache()
        raise GanforgeError(message) from None


def _newest_readable_checkpoint(run: RunDirectory, device: torch.device, log: Callable[[str], None]):
    """The newest checkpoint that loads; a damaged newer one is reported and skipped."""
    candidates = sorted(run.checkpoints_dir.glob("ckpt-*.pt"), reverse=True)
    if not candidates:
        raise CheckpointError(f"cannot resume: no checkpoint in {run.checkpoints_dir}")
    for path in candidates:
        try:
            return path, load_checkpoint(path, map_location=device)
        except CheckpointError as exc:
            log(f"skipping damaged checkpoint: {exc}")
    raise CheckpointError(f"cannot resume: none of the {len(candidates)} checkpoints in {run.checkpoints_dir} "
                          "could be read")


def _train_in(config: TrainConfig, data: ImageData, run: RunDirectory, runtime: Runtime,
              evaluator: Evaluator | None, show_progress: bool, resume: bool, log: Callable[[str], None],
              stage: list[str]) -> TrainResult:
    trainer = Trainer(config, data, run, runtime, evaluator, show_progress, log)
    if resume:
        latest, state = _newest_readable_checkpoint(run, runtime.device, log)
        trainer.load_state_dict(state, latest)
        run.truncate_logs_after(trainer.step)
        log(f"resuming {run.path} from iteration {trainer.step} ({latest.name})")
    else:
        run.write_json(run.config_file, config.to_dict())
    for note in runtime.notes:
        log(note)
    log(f"training {config.model.arch} on {data.name} ({len(data)} images {data.image_shape}) on {runtime.device}: "
        f"{trainer.total_steps} iterations, run folder {run.path}")
    if runtime.compile:
        log("compiling the models (torch.compile; once per run)")
    for note in trainer.warm_up():
        log(note)
    stage[0] = "training"
    return trainer.fit()
