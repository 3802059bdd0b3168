"""The training loop: :class:`Trainer.fit` runs a prepared run to the end of its schedule.

    batches (batches.py) -> AdversarialStep (step.py) -> logs -> hooks (grids: hooks.py)
        -> evaluation -> checkpoints (checkpointer.py) -> hooks (final artefacts)

The Trainer is built by the one set-up (setup.py) for any world (world.py): one process, or
one of several under torchrun. It knows nothing of command-line flags or of how quality is
measured: the caller passes an ``evaluator`` (a function of the generator and the step) and
``hooks``. It keeps statistics on the device and reads them only every ``schedule.log_every``
iterations (one all_reduce there with several processes), so a GPU never waits for Python
inside an iteration.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from ganforge.artefacts.rundir import RunDirectory
from ganforge.config import TrainConfig
from ganforge.data import ImageData, to_unit_range
from ganforge.errors import GanforgeError, TrainingDiverged, first_line
from ganforge.training.batches import BatchSource
from ganforge.training.checkpointer import Checkpointer
from ganforge.training.forwards import make_forwards
from ganforge.training.graphed import GraphedStep
from ganforge.training.health import HealthMonitor, spread
from ganforge.training.hooks import Hook, Tick
from ganforge.training.progress import Progress
from ganforge.training.runtime import Runtime
from ganforge.training.state import TrainingState
from ganforge.training.step import STAT_NAMES, AdversarialStep

if TYPE_CHECKING:
    from ganforge.training.world import World

# An evaluator scores a generator: (generator, step) -> {"main": ..., "fid": ...}; a lower
# "main" is better.
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
    # SIGINT or SIGTERM when a signal stopped the run
    stop_signal: int | None = None
    # resumed a run that had already reached its schedule's end
    nothing_to_do: bool = False


class Trainer:
    """Runs a :class:`TrainingState` forward to the end of its schedule (built by setup.py)."""

    def __init__(
        self,
        config: TrainConfig,
        data: ImageData,
        state: TrainingState,
        run: RunDirectory,
        runtime: Runtime,
        world: World,
        *,
        batches: BatchSource,
        step: AdversarialStep,
        checkpointer: Checkpointer,
        evaluator: Evaluator | None = None,
        hooks: tuple[Hook, ...] = (),
        show_progress: bool = True,
        log: Callable[[str], None] = lambda message: None,
    ):
        self.config, self.data, self.state, self.run = config, data, state, run
        self.runtime, self.world, self.batches, self.step_fn = runtime, world, batches, step
        self.checkpointer, self.evaluator, self.hooks = checkpointer, evaluator, tuple(hooks)
        self.show_progress, self.log = show_progress, log
        self.run_step = GraphedStep(step, runtime) if runtime.cuda_graphs else step
        self.health = HealthMonitor(
            spread(to_unit_range(data.images[:64])),
            dominance_steps=max(20 * config.schedule.log_every, 500),
        )
        self.unit_steps = state.steps_per_epoch if config.schedule_unit == "epoch" else 1
        checkpointer.warn = self.warn
        self.warnings: list[str] = []
        self.warmed_up = False
        self.progress: Progress | None = None
        self.elapsed_before = state.elapsed
        self.stopped, self.last_stats = False, {}

    def images_per_step(self) -> int:
        """Images through D (real + fake) plus through G in one iteration, all processes."""
        return self.batches.sizes.images_per_step

    def warm_up(self) -> list[str]:
        """Compile before the first iteration, on a throwaway iteration that is undone.

        A compile failure falls back to eager and says so (an error with compile=on).
        Returns the notes this added. Called by the set-up and, if not yet done, by fit().
        """
        if self.warmed_up or not self.runtime.compile:
            self.warmed_up = True
            return []
        self.warmed_up = True
        runtime, before = self.runtime, len(self.runtime.notes)
        try:
            self.step_fn.probe(self.batches.probe(self.data))
        except torch.OutOfMemoryError:
            raise
        # a compiler error, missing toolchain, unsupported op
        except Exception as exc:
            first = first_line(exc, 200)
            if runtime.compile_required:
                raise GanforgeError(
                    f"torch.compile failed at the first iteration ({type(exc).__name__}: "
                    f"{first}); use --set execution.compile=off (eager) or "
                    "execution.compile=auto (falls back by itself)"
                ) from exc
            runtime.compile = False
            self.step_fn.g_forward, self.step_fn.d_forward = make_forwards(
                self.state, runtime, self.world, self.config.step.update
            )
            runtime.notes.append(
                f"compile: failed at the first iteration ({type(exc).__name__}: "
                f"{first}); fell back to eager"
            )
        finally:
            self.state.reset_counters()
        return runtime.notes[before:]

    # ---- the loop --------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        c, state, world = self.config, self.state, self.world
        # what earlier sessions of a resumed run took
        self.elapsed_before = state.elapsed
        stats_sum = torch.zeros(len(STAT_NAMES), device=self.runtime.device)
        stats_count = 0
        # every iteration's statistics since the last log (raw_losses)
        raw: list[torch.Tensor] = []
        start = time.perf_counter()
        first_step, total = state.step, state.total_steps
        window_start, window_step = start, state.step
        last_stats: dict[str, float] = {}
        self.warm_up()
        for hook in self.hooks:
            hook.on_start(self)
        progress = Progress(total, state.step, self.show_progress, self.unit_steps, c.schedule_unit)
        self.progress = progress
        stopped, stop_signal = False, None
        state.generator.train()
        state.discriminator.train()
        with _StopRequest() as stop, progress:
            while state.step < total:
                stats = self.run_step(self.batches.next())
                stats_sum += stats
                stats_count += 1
                # a copy: a CUDA graph overwrites its output next iteration
                if c.schedule.raw_losses:
                    raw.append(stats.detach().clone())
                state.step += 1
                progress.advance()
                tick = Tick(
                    state.step,
                    state.step // self.unit_steps,
                    state.step % self.unit_steps == 0,
                    state.step == total,
                )
                log_due = state.step % c.schedule.log_every == 0 or tick.is_last
                # several processes agree on a signal at log time, never in between
                requested = world.should_stop(stop.requested, log_due)
                if log_due or requested:
                    now = time.perf_counter()
                    rate = (state.step - window_step) / max(now - window_start, 1e-9)
                    last_stats = self._log(stats_sum, stats_count, now - start, rate, raw)
                    progress.show(last_stats)
                    raw.clear()
                    stats_sum.zero_()
                    stats_count, window_start, window_step = 0, now, state.step
                for hook in self.hooks:
                    hook.after_iteration(self, tick)
                eval_due = tick.unit_index % max(c.schedule.eval_every, 1) == 0 or tick.is_last
                if tick.end_of_unit and c.schedule.eval_every and self.evaluator and eval_due:
                    self.evaluate(time.perf_counter() - start)
                checkpoint_due = tick.unit_index % c.schedule.checkpoint_every == 0
                if (tick.end_of_unit and checkpoint_due) or tick.is_last or requested:
                    state.elapsed = self._elapsed_total(start)
                    self.checkpointer.save()
                if requested and not tick.is_last:
                    stopped, stop_signal = True, stop.signal
                    break
        seconds = time.perf_counter() - start
        state.elapsed = self._elapsed_total(start)
        self.stopped, self.last_stats = stopped, last_stats
        for hook in self.hooks:
            hook.before_finish(self)
        for hook in self.hooks:
            hook.after_finish(self)
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

    def nothing_to_do(self) -> TrainResult | None:
        """The result of a resumed run that had already reached its schedule's end."""
        state = self.state
        if state.step < state.total_steps:
            return None
        return TrainResult(
            self.run.path,
            state.step,
            state.elapsed,
            0.0,
            best_metric=state.best_metric,
            nothing_to_do=True,
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
        raw: list[torch.Tensor],
    ) -> dict[str, float]:
        step = self.state.step
        # the whole batch's statistics (and every iteration's, if kept): averaged over the
        # processes in one all_reduce; every process checks them, rank 0 alone writes them
        rows = self.world.mean(torch.stack([stats_sum, *raw]))
        means = rows[0] / max(count, 1)
        # the one device sync per log interval: the means, and every iteration's values if kept
        values_rows = torch.cat([means[None], *(r[None] for r in rows[1:])]).tolist()
        values, every = values_rows[0], [list(column) for column in zip(*values_rows[1:])]
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
            # ADA's probability, read with the stats
            record["augment_p"] = round(float(augment.p), 5)
        self.run.append_jsonl(self.run.metrics_file, record)
        if not all(math.isfinite(v) for v in values):
            raise TrainingDiverged(
                f"training diverged at iteration {step}: losses became NaN/Inf "
                f"(D {values[0]:.4g}, G {values[1]:.4g}); {self.checkpointer.last_good()}"
            )
        for hook in self.hooks:
            hook.on_log(self, record)
        self.warn(self.health.check_stats(step, record))
        # the interval's figures for the progress line and the final summary (the raw values
        # live in metrics.jsonl and reach the hooks)
        return {key: value for key, value in record.items() if key != "raw"}

    def warn(self, message: str | None) -> None:
        """Show a training-health warning now and keep it in the log and the summary."""
        if message is None:
            return
        self.warnings.append(message)
        self.run.append_jsonl(self.run.metrics_file, {"step": self.state.step, "warning": message})
        if self.progress is not None:
            self.progress.write(message, self.log)
        else:
            self.log(message)

    def evaluate(self, elapsed: float) -> None:
        """Rank 0 scores the generator; a new best is then saved by every process (the
        checkpoint gathers every process's random streams)."""
        improved, self.state.best_metric, self.state.elapsed = self.world.from_main(
            lambda: self._score(elapsed)
        )
        if improved:
            self.checkpointer.save(best=True)

    def _score(self, elapsed: float) -> tuple[bool, float | None, float]:
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
        best = state.best_metric
        improved = main is not None and math.isfinite(main) and (best is None or main < best)
        if improved:
            state.best_metric = main
            state.elapsed = self.elapsed_before + elapsed
        return improved, state.best_metric, state.elapsed


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
            # not the main thread: leave signals alone
            except ValueError:
                pass
        return self

    def _handle(self, signum, frame) -> None:
        # a second Ctrl-C: stop now
        if self.requested:
            raise KeyboardInterrupt
        self.requested, self.signal = True, signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
