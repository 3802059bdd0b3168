#!/usr/bin/env python
"""Training speed of every preset: ganforge's fast path against a plain PyTorch path, side by side.

Prints a table and writes JSON. For each preset and each variant (a set of config
settings) it measures, in one process and one run:

* ms per training iteration (median over windows of ``--window`` iterations, each window
  ending in the loop's own device sync) and training images/s (real + fake through D,
  plus the batch through G, per iteration);
* the fixed costs of a run: process start, data load, set-up (models, dataset on the
  device), compilation, one sample grid, one checkpoint, the final artefacts;
* the time to finish the documented recipe end to end: extrapolated from those
  measurements ("extrapolated"), or measured by running the whole recipe with ``--full``;
* peak GPU memory, model FLOPs per image (torch.utils.flop_counter.FlopCounterMode over the
  forward and backward passes of one real training iteration, fp32 eager) and achieved
  TFLOP/s;
* with ``--full ... --quality``: the project's evaluation metrics (ganforge.metrics) of
  the finished runs, over ``--seeds`` seeds, fast against plain.

Variants: ``fast`` is the default config (on a CUDA GPU: bf16 autocast, channels-last,
torch.compile, fused Adam, dataset resident on the device as uint8, grids written off the
training thread). ``plain`` is what a straightforward PyTorch script does: fp32, eager,
a DataLoader over a float TensorDataset copied to the device every batch, contiguous
tensors, multi-tensor Adam. ``fast-*`` variants turn one technique off (or one option
on), so each technique's effect is a ratio measured side by side. See bench/README.md.

    python bench/train_speed.py                                  # every preset, fast vs plain
    python bench/train_speed.py --device cuda --variants all     # the H100 run, with ablations
    python bench/train_speed.py --presets demo --steps 3 --warmup 1 --window 1   # smoke test
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# as `import ganforge` does; before torch loads OpenMP
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402
from torch.utils.data import DataLoader, RandomSampler, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
try:
    import ganforge
# running from a checkout without `pip install -e .`
except ImportError:
    sys.path.insert(0, str(ROOT / "src"))
    import ganforge

from ganforge.artefacts.gif import save_gif
from ganforge.config import TrainConfig
from ganforge.data import ImageData, load_images, to_unit_range
from ganforge.devices import resolve_device
from ganforge.errors import GanforgeError
from ganforge.noise import draw_noise
from ganforge.presets import load_preset, preset_names
from ganforge.training import Trainer, TrainerHook, TrainingState
from ganforge.training.batches import ResidentBatches
from ganforge.training.hooks import SampleGrids
from ganforge.training.runtime import Runtime
from ganforge.training.setup import RunOptions, prepare
from ganforge.training.step import Batch, build_step
from ganforge.training.threads import configure_threads, usable_cpus
from ganforge.training.world import SingleProcess

PLAIN = {
    "execution.precision": "fp32",
    "execution.compile": "off",
    "execution.channels_last": "off",
    "execution.fused_optim": "off",
    "execution.async_artefacts": "off",
    "execution.cuda_graphs": "off",
}
# name -> (config overrides, plain DataLoader input?)
# CUDA graphs per model (compile)
# the whole iteration as one CUDA graph
# no compile time, no launch cost
VARIANTS: dict[str, tuple[dict[str, str], bool]] = {
    "fast": ({}, False),
    "plain": (PLAIN, True),
    # no bf16 autocast
    "fast-fp32": ({"execution.precision": "fp32"}, False),
    # bf16 autocast asked for: the faithful presets pin fp32, so this is their fast path
    "fast-bf16": ({"execution.precision": "bf16"}, False),
    # no torch.compile
    "fast-eager": ({"execution.compile": "off"}, False),
    "fast-contiguous": ({"execution.channels_last": "off"}, False),
    "fast-unfused": ({"execution.fused_optim": "off"}, False),
    "fast-sync-io": ({"execution.async_artefacts": "off"}, False),
    # the plain input pipeline, everything else fast
    "fast-dataloader": ({}, True),
    "fast-reduce-overhead": (
        {"execution.compile_mode": "reduce-overhead"},
        False,
    ),
    "fast-autotune": ({"execution.compile_mode": "max-autotune-no-cudagraphs"}, False),
    "fast-graphs": (
        {"execution.cuda_graphs": "on"},
        False,
    ),
    "fast-eager-graphs": (
        {"execution.compile": "off", "execution.cuda_graphs": "on"},
        False,
    ),
}
DEFAULT_VARIANTS = ("fast", "plain")
# identical to "fast" (or impossible) off a CUDA GPU
CUDA_ONLY = {
    "fast-reduce-overhead",
    "fast-graphs",
    "fast-eager-graphs",
    "fast-autotune",
    "fast-unfused",
    "fast-sync-io",
    "fast-eager",
}
FIELDS = (
    "ms_per_step",
    "best_ms_per_step",
    "cpu_ms_per_step",
    "images_per_s",
    "steps_measured",
    "startup_s",
    "setup_s",
    "compile_s",
    "grid_s",
    "checkpoint_s",
    "finish_s",
    "recipe_s",
    "recipe_time_kind",
    "peak_gpu_mib",
    "achieved_tflops",
)


# ---- the trainer, instrumented through its public hooks ------------------------------------------
class Marks(TrainerHook):
    """Notes the wall and CPU time after each log's device sync, and the final artefacts' time."""

    def __init__(self) -> None:
        # (step, wall, process CPU time)
        self.marks: list[tuple[int, float, float]] = []
        self.finish_s: float | None = None
        self._finish_start = 0.0

    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        # the record was read from the device: everything before it has run
        self.marks.append((trainer.state.step, time.perf_counter(), time.process_time()))

    def before_finish(self, trainer: Trainer) -> None:
        self._finish_start = time.perf_counter()

    def after_finish(self, trainer: Trainer) -> None:
        self.finish_s = time.perf_counter() - self._finish_start


class LoaderBatches:
    """The plain input path: a DataLoader over a float TensorDataset in host memory, copied to the
    device every iteration (what most training scripts do)."""

    def __init__(self, config: TrainConfig, data: ImageData, runtime: Runtime):
        # float32 [N, C, H, W] in [-1, 1], host memory
        images = data.images.float().div_(127.5).sub_(1.0)
        dataset = TensorDataset(images)
        real_batch = config.batch_sizes().real
        generator = torch.Generator().manual_seed(config.seed + 1)
        if config.schedule.batch_order == "random":
            sampler = RandomSampler(
                dataset, replacement=True, num_samples=10**9, generator=generator
            )
            self.loader = DataLoader(
                dataset, batch_size=real_batch, sampler=sampler, drop_last=True
            )
        else:
            self.loader = DataLoader(
                dataset,
                batch_size=real_batch,
                shuffle=config.schedule.batch_order == "shuffle",
                drop_last=True,
                generator=generator,
            )
        self.runtime = runtime
        self._batches = iter(self.loader)

    def next(self) -> tuple[torch.Tensor, None]:
        try:
            (batch,) = next(self._batches)
        except StopIteration:
            self._batches = iter(self.loader)
            (batch,) = next(self._batches)
        batch = batch.to(self.runtime.device)
        if self.runtime.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch, None


def make_trainer(config: TrainConfig, data: ImageData, plain_input: bool) -> tuple[Trainer, Marks]:
    """The real Trainer on a fresh run folder, set up as ``ganforge.train`` sets it up
    (training/setup.py), instrumented; the plain variant reads its real batches from a
    DataLoader. Compilation is left to the caller, which times it."""
    marks = Marks()
    real_batches = ResidentBatches
    if plain_input:

        def real_batches(data: ImageData, state: TrainingState, runtime: Runtime) -> LoaderBatches:
            return LoaderBatches(config, data, runtime)

    options = RunOptions(data=data, overwrite=True, show_progress=False)
    trainer = prepare(
        config, SingleProcess(), options, hooks=(marks,), real_batches=real_batches, warm_up=False
    )
    return trainer, marks


def sample_grids(trainer: Trainer) -> SampleGrids:
    """The run's built-in sample-grid hook (its grids and its writer thread)."""
    return next(hook for hook in trainer.hooks if isinstance(hook, SampleGrids))


# ---- helpers -------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int = 1) -> float:
    """Median wall seconds of fn() over `repeats` calls, each ended by a device sync."""
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def units_hit(length: int, every: int) -> int:
    """How many of the units 1..length are multiples of `every`, plus the last one if it is not."""
    return length // every + (1 if length % every else 0)


def startup_seconds() -> float:
    """A fresh Python process importing torch and ganforge's training and CLI code."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import ganforge.cli, ganforge.training"],
        check=True,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        },
    )
    return time.perf_counter() - start


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "ganforge": getattr(ganforge, "__version__", "?"),
        "cpu_model": _cpu_model(),
        "usable_cpus": usable_cpus(),
        "torch_threads": torch.get_num_threads(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "git_commit": _git_commit(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(
            {
                "gpu": props.name,
                "gpu_capability": f"{props.major}.{props.minor}",
                "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version(),
                "bf16_supported": torch.cuda.is_bf16_supported(),
            }
        )
        try:
            import triton

            env["triton"] = triton.__version__
        except ImportError:
            env["triton"] = None
    else:
        env["gpu"] = None
    return env


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return (out.stdout.strip() + ("+dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


def load_data(
    config: TrainConfig, mode: str, synthetic_size: int
) -> tuple[ImageData, float, str | None]:
    """(data, seconds, note). mode: real (fail if absent), auto (synthetic if absent), synthetic."""
    if mode != "synthetic":
        start = time.perf_counter()
        try:
            data = load_images(config.data)
            return data, time.perf_counter() - start, None
        except GanforgeError as exc:
            if mode == "real":
                raise
            note = f"synthetic data: the real data was not found ({str(exc)[:160]})"
    else:
        note = "synthetic data (--data synthetic)"
    res = config.data.resolution or 28
    channels = config.data.channels or 1
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(
        0, 256, (synthetic_size, channels, res, res), dtype=torch.uint8, generator=generator
    )
    # a conditional model trains on labelled data only (check.check_against_data)
    classes = int((config.model.options or {}).get("num_classes") or 0)
    labels = torch.randint(0, classes, (synthetic_size,), generator=generator) if classes else None
    data = ImageData(images, f"synthetic/{res}", "random uint8", labels, classes or None)
    return data, 0.0, note


def count_flops(config: TrainConfig, data: ImageData, device: torch.device) -> tuple[int, int]:
    """(FLOPs of one training iteration, images per iteration): FlopCounterMode, fp32 eager."""
    c = config
    runtime = Runtime(device, None, False, False)
    state = TrainingState.create(c, data.image_shape, len(data), runtime)
    step = build_step(c, state, runtime)
    real_batch = c.batch_sizes().real
    rng = torch.Generator(device=device).manual_seed(0)
    real = to_unit_range(data.images[:real_batch].to(device))
    z_d = draw_noise(real_batch, c.model.latent_dim, c.latent, rng, device)
    z_g = (
        z_d
        if c.step.shared_noise
        else draw_noise(c.schedule.batch_size, c.model.latent_dim, c.latent, rng, device)
    )
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _GlobalCountOnly()
    with counter:
        step(Batch(real, z_d, z_g))
    return int(counter.get_total_flops()), 2 * real_batch + c.schedule.batch_size


class _GlobalCountOnly:
    """Stands in for FlopCounterMode's module tracker: the bench reads only the total, and the
    tracker's gradient hooks on every module's outputs break torch.autograd.grad inside the
    step (R1/R2 penalties: 'A leaf node was passed to _will_engine_execute_node')."""

    parents = frozenset({"Global"})

    def __enter__(self) -> _GlobalCountOnly:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


def matmul_probe(device: torch.device, size: int, repeats: int = 5) -> dict[str, Any]:
    """The device's own peak: GFLOP/s of a size x size matrix product in fp32 and in bf16.

    The best of `repeats`, and on a CPU the best over 1 .. N threads (on a shared machine the
    least disturbed measurement is the machine's limit; bf16 with every thread is the first
    to suffer from another process, bench/README.md "CPU fast path"). Achieved model GFLOP/s
    is read against these.
    """
    threads_before = torch.get_num_threads()
    counts = range(1, threads_before + 1) if device.type == "cpu" else [threads_before]
    out: dict[str, Any] = {"size": size}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(size, size, device=device).to(dtype)
        b = torch.randn(size, size, device=device).to(dtype)
        for threads in counts:
            torch.set_num_threads(threads)
            torch.mm(a, b)
            best = min(timed(lambda a=a, b=b: torch.mm(a, b), device) for _ in range(repeats))
            gflops = 2 * size**3 / best / 1e9
            out[f"{name}_gflops_{threads}_threads"] = gflops
            if gflops > out.get(f"{name}_gflops", 0.0):
                out[f"{name}_gflops"], out[f"{name}_threads"] = gflops, threads
    torch.set_num_threads(threads_before)
    return out


# ---- one variant of one preset -------------------------------------------------------------------
def measure_variant(
    preset: str,
    base: TrainConfig,
    data: ImageData,
    variant: str,
    args: argparse.Namespace,
    workdir: Path,
    flops_per_step: int,
    data_load_s: float,
    startup_s: float,
) -> dict[str, Any]:
    overrides, plain_input = VARIANTS[variant]
    device_name = args.device
    steps = args.steps
    if args.seconds:
        # about --seconds of measured training at the plain path's expected speed (the FLOPs
        # at half the fp32 probe), so a 128x128 preset and the demo both take tens of seconds
        expected_step_s = flops_per_step / (0.5 * args.probe_fp32_gflops * 1e9)
        steps = max(2, min(steps, round(args.seconds / expected_step_s)))
    window = args.window or max(1, min(base.schedule.log_every, steps // 5))
    warmup = math.ceil(args.warmup / window) * window
    measured = math.ceil(steps / window) * window
    config = base.with_overrides(
        {
            **overrides,
            "execution.device": device_name,
            "out_dir": str(workdir),
            "run_name": f"{preset}-{variant}",
            "schedule.iterations": warmup + measured,
            "schedule.log_every": window,
            "schedule.sample_every": 10**9,
            "schedule.checkpoint_every": 10**9,
            "schedule.eval_every": 0,
        }
    ).validate()
    device = resolve_device(config.execution.device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    sync(device)
    start = time.perf_counter()
    trainer, marks = make_trainer(config, data, plain_input)
    runtime, device = trainer.runtime, trainer.runtime.device
    sync(device)
    setup_s = time.perf_counter() - start
    # 0 without compile
    compile_s = timed(trainer.warm_up, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    fit_start = time.perf_counter()
    load_before = os.getloadavg()[0]
    trainer.fit()
    fit_s = time.perf_counter() - fit_start
    # the 1-minute load average around the measured training: on a shared machine, which
    # variant met how much contention
    load_during = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None

    pairs = [(a, b) for a, b in zip(marks.marks, marks.marks[1:]) if a[0] >= warmup]
    # a budget too small for warm-up windows: use what there is
    if not pairs:
        pairs = list(zip(marks.marks, marks.marks[1:]))
    per_step = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in pairs]
    cpu_per_step = [(b[2] - a[2]) / (b[0] - a[0]) for a, b in pairs]
    step_s = statistics.median(per_step)

    # Fixed costs, measured on the trained state (the grid is what the recipe writes).
    repeats = args.fixed_repeats
    grids = sample_grids(trainer)
    # what the loop waits for
    grid_blocking_s = timed(lambda: grids.save(trainer), torch.device("cpu"), repeats)
    grid_s = timed(lambda: (grids.save(trainer), grids.writer.drain()), device, repeats)
    checkpoint_s = timed(lambda: trainer.checkpointer.save(), device, repeats)
    grids.writer.close()

    recipe = recipe_shape(base, trainer)
    frames = trainer.run.sample_frames()
    gif_measured = timed(lambda: save_gif(frames, workdir / "gif-now.gif"), torch.device("cpu"))
    gif_recipe = timed(
        lambda: save_gif(frames[-1:] * recipe["grids"], workdir / "gif-recipe.gif"),
        torch.device("cpu"),
    )
    finish_s = (marks.finish_s or 0.0) + max(0.0, gif_recipe - gif_measured)
    grid_cost = grid_blocking_s if runtime.async_artefacts else grid_s
    breakdown = {
        "startup_s": startup_s,
        "data_load_s": data_load_s,
        "setup_s": setup_s,
        "compile_s": compile_s,
        "training_s": recipe["steps"] * step_s,
        "grids_s": recipe["grids"] * grid_cost,
        "checkpoints_s": recipe["checkpoints"] * checkpoint_s,
        "finish_s": finish_s,
    }
    images_per_step = trainer.images_per_step()
    result = {
        "overrides": overrides,
        "plain_input": plain_input,
        "settings": runtime.describe(),
        # intra-op threads this variant trained with (bf16 on a CPU takes only idle cores)
        "threads": torch.get_num_threads(),
        "load_average": load_during,
        "notes": list(runtime.notes),
        "ms_per_step": 1e3 * step_s,
        "ms_per_step_windows": [round(1e3 * s, 4) for s in per_step],
        "images_per_s": images_per_step / step_s,
        "steps_measured": len(per_step) * window,
        # process CPU time (all threads)
        "cpu_ms_per_step": 1e3 * statistics.median(cpu_per_step),
        # the least disturbed window (shared machines)
        "best_ms_per_step": 1e3 * min(per_step),
        "window": window,
        "warmup_steps": warmup,
        "fit_s": fit_s,
        "startup_s": startup_s,
        "setup_s": setup_s,
        "compile_s": compile_s,
        "grid_s": grid_s,
        "grid_blocking_s": grid_blocking_s,
        "checkpoint_s": checkpoint_s,
        "finish_s": finish_s,
        "recipe_s": sum(breakdown.values()),
        "recipe_time_kind": "extrapolated",
        "recipe_breakdown": breakdown,
        "recipe": recipe,
        "peak_gpu_mib": peak,
        "host_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "achieved_tflops": flops_per_step / step_s / 1e12,
    }
    # free the models before the next variant
    trainer = None
    _release(device)
    return result


def merge_rounds(results: list[dict[str, Any]], flops_per_step: int) -> dict[str, Any]:
    """One variant's rounds as one result: medians over all windows and all rounds' fixed costs."""
    merged = dict(results[-1])
    if len(results) == 1:
        merged["rounds"] = 1
        return merged
    windows = [w for r in results for w in r["ms_per_step_windows"]]
    step_ms = statistics.median(windows)
    merged.update(
        ms_per_step=step_ms,
        ms_per_step_windows=windows,
        rounds=len(results),
        steps_measured=sum(r["steps_measured"] for r in results),
        cpu_ms_per_step=statistics.median(r["cpu_ms_per_step"] for r in results),
        best_ms_per_step=min(r["best_ms_per_step"] for r in results),
        images_per_s=results[-1]["images_per_s"] * results[-1]["ms_per_step"] / step_ms,
        achieved_tflops=flops_per_step / (step_ms / 1e3) / 1e12,
        load_average=[load for r in results for load in r["load_average"]],
    )
    for key in ("setup_s", "compile_s", "grid_s", "grid_blocking_s", "checkpoint_s", "finish_s"):
        merged[key] = statistics.median(r[key] for r in results)
    peaks = [r["peak_gpu_mib"] for r in results if r["peak_gpu_mib"] is not None]
    merged["peak_gpu_mib"] = max(peaks) if peaks else None
    breakdown = {
        key: statistics.median(r["recipe_breakdown"][key] for r in results)
        for key in results[-1]["recipe_breakdown"]
    }
    breakdown["training_s"] = results[-1]["recipe"]["steps"] * step_ms / 1e3
    merged.update(recipe_breakdown=breakdown, recipe_s=sum(breakdown.values()))
    return merged


def recipe_shape(config: TrainConfig, trainer: Trainer) -> dict[str, int]:
    """Iterations, grids and checkpoints of the documented recipe on this data."""
    length = config.schedule_length
    steps = length * trainer.state.steps_per_epoch if config.schedule_unit == "epoch" else length
    return {
        "steps": steps,
        "grids": 1 + units_hit(length, config.schedule.sample_every),
        "checkpoints": units_hit(length, config.schedule.checkpoint_every),
        "evaluations_not_timed": units_hit(length, config.schedule.eval_every)
        if config.schedule.eval_every
        else 0,
    }


def run_full(
    preset: str,
    base: TrainConfig,
    data: ImageData,
    variant: str,
    seed: int,
    args: argparse.Namespace,
    workdir: Path,
    data_load_s: float,
    startup_s: float,
) -> dict[str, Any]:
    """The whole recipe, end to end, timed; optionally evaluated with ganforge.metrics."""
    overrides, plain_input = VARIANTS[variant]
    config = base.with_overrides(
        {
            **overrides,
            "execution.device": args.device,
            "out_dir": str(workdir),
            "seed": seed,
            "run_name": f"{preset}-{variant}-full-s{seed}",
        }
    ).validate()
    device = resolve_device(config.execution.device)
    sync(device)
    start = time.perf_counter()
    trainer, marks = make_trainer(config, data, plain_input)
    runtime, device, run = trainer.runtime, trainer.runtime.device, trainer.run
    trainer.warm_up()
    result = trainer.fit()
    sync(device)
    wall = time.perf_counter() - start
    out: dict[str, Any] = {
        "seed": seed,
        "run_dir": str(run.path),
        "steps": result.steps,
        "train_and_artefacts_s": wall,
        "recipe_s": startup_s + data_load_s + wall,
        "recipe_time_kind": "measured",
        "final_stats": result.final_stats,
        "notes": list(runtime.notes),
    }
    if args.quality:
        out["quality"] = evaluate_generator(config, data, trainer, device)
    # free the models before the next variant
    trainer = None
    _release(device)
    return out


def evaluate_generator(
    config: TrainConfig, data: ImageData, trainer: Trainer, device: torch.device
) -> dict[str, Any]:
    try:
        from ganforge.metrics import training_evaluator
    except ImportError as exc:
        return {"error": f"ganforge.metrics unavailable ({exc})"}
    try:
        evaluator = training_evaluator(config, data, device)
        start = time.perf_counter()
        scores = evaluator(trainer.state.sampling_generator.eval(), trainer.state.step)
        return {
            **{k: float(v) for k, v in scores.items() if isinstance(v, (int, float))},
            "eval_s": time.perf_counter() - start,
        }
    except GanforgeError as exc:
        return {"error": str(exc)}


def compare_quality(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Fast vs plain per metric: means, spread over seeds, and whether the gap is within it."""
    if "fast" not in runs or "plain" not in runs:
        return {}
    out: dict[str, Any] = {}
    fast = [r["quality"] for r in runs["fast"] if "quality" in r and "error" not in r["quality"]]
    plain = [r["quality"] for r in runs["plain"] if "quality" in r and "error" not in r["quality"]]
    if not fast or not plain:
        return {"error": "no evaluation to compare"}
    for key in sorted(set(fast[0]) & set(plain[0]) - {"eval_s"}):
        a, b = [q[key] for q in fast], [q[key] for q in plain]
        spread = max(_spread(a), _spread(b))
        gap = abs(statistics.mean(a) - statistics.mean(b))
        out[key] = {
            "fast": a,
            "plain": b,
            "gap": gap,
            "seed_spread": spread,
            "within_noise": (gap <= 2 * spread) if len(a) > 1 and len(b) > 1 else None,
        }
    return out


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _release(device: torch.device) -> None:
    gc.collect()
    try:
        # compiled graphs of the last variant go with its models
        torch._dynamo.reset()
    except Exception:
        pass
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ---- driver --------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="variants: " + ", ".join(VARIANTS) + "  ('all' = every one that applies)",
    )
    p.add_argument(
        "--presets", default="all", help="comma-separated preset names (default: every preset)"
    )
    p.add_argument(
        "--variants", default=",".join(DEFAULT_VARIANTS), help="comma-separated variants, or 'all'"
    )
    p.add_argument(
        "--device", default="auto", help="auto, cpu, cuda, cuda:N (as ganforge train --device)"
    )
    p.add_argument(
        "--steps", type=int, default=None, help="iterations measured per variant (GPU 600, CPU 12)"
    )
    p.add_argument(
        "--warmup", type=int, default=None, help="iterations run before measuring (GPU 100, CPU 2)"
    )
    p.add_argument(
        "--window",
        type=int,
        default=None,
        help="iterations per timed window, each ended by the loop's stats read (default: "
        "the preset's log_every, at most steps/5)",
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="measure about this many seconds per variant (fewer steps for big presets; "
        "CPU default 15, GPU: off, --steps as given)",
    )
    p.add_argument(
        "--probe-size",
        type=int,
        default=4096,
        help="side of the fp32/bf16 matrix-product probe of the device's peak (default 4096)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every variant this many times, interleaved (noisy, shared machines: 3)",
    )
    p.add_argument(
        "--fixed-repeats",
        type=int,
        default=3,
        help="times each fixed cost (grid, checkpoint) is measured",
    )
    p.add_argument(
        "--full",
        default="",
        help="comma-separated variants to also run end to end (whole recipe, measured)",
    )
    p.add_argument(
        "--quality",
        action="store_true",
        help="with --full: evaluate each run with ganforge.metrics",
    )
    p.add_argument(
        "--seeds",
        default="0",
        help="seeds for --full runs, e.g. 0,1 (two or more give run-to-run noise)",
    )
    p.add_argument(
        "--data",
        choices=("auto", "real", "synthetic"),
        default="auto",
        help="auto: the preset's data, random images of its shape if not found (labelled); "
        "real: fail if missing; synthetic: always random images (timing only)",
    )
    p.add_argument(
        "--synthetic-size", type=int, default=10_000, help="images in the synthetic dataset"
    )
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override for every variant and preset (repeatable)",
    )
    p.add_argument(
        "--json",
        default=None,
        help="where to write the JSON (default: runs/bench/train_speed-<device>-<time>.json)",
    )
    p.add_argument(
        "--workdir", default=None, help="where the runs go (default: a temporary folder, removed)"
    )
    args = p.parse_args(argv)
    for item in args.settings:
        if "=" not in item:
            p.error(f"--set wants KEY=VALUE, got {item!r}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = resolve_device(args.device)
    args.device = str(device)
    gpu = device.type == "cuda"
    args.steps = args.steps or (600 if gpu else 12)
    args.warmup = args.warmup if args.warmup is not None else (100 if gpu else 2)
    if args.seconds is None and not gpu:
        args.seconds = 15.0
    names = (
        preset_names()
        if args.presets == "all"
        else [n.strip() for n in args.presets.split(",") if n.strip()]
    )
    variants = (
        list(VARIANTS)
        if args.variants == "all"
        else [v.strip() for v in args.variants.split(",") if v.strip()]
    )
    for v in variants + [v for v in args.full.split(",") if v]:
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    if args.variants == "all" and not gpu:
        variants = [v for v in variants if v not in CUDA_ONLY]
    full = [v.strip() for v in args.full.split(",") if v.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    sets = dict(item.split("=", 1) for item in args.settings)

    configure_threads()
    report: dict[str, Any] = {
        "benchmark": "ganforge bench/train_speed.py",
        "format": 1,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(
            [Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])
        ),
        "environment": environment(device),
        "settings": {
            "steps": args.steps,
            "warmup": args.warmup,
            "window": args.window,
            "rounds": args.rounds,
            "seconds": args.seconds,
            "variants": variants,
            "full": full,
            "seeds": seeds,
            "data": args.data,
            "sets": sets,
        },
        "presets": {},
    }
    startup_s = startup_seconds()
    report["environment"]["startup_s"] = startup_s
    print("[bench] matrix-product probe", file=sys.stderr, flush=True)
    probe = matmul_probe(device, args.probe_size)
    report["environment"]["matmul_probe"] = probe
    args.probe_fp32_gflops = probe["fp32_gflops"]
    with tempfile.TemporaryDirectory(prefix="ganforge-bench-") as tmp:
        workdir = Path(args.workdir or tmp)
        for name in names:
            base = load_preset(name).with_overrides(sets).validate()
            print(f"[bench] {name}: loading data", file=sys.stderr, flush=True)
            data, load_s, data_note = load_data(base, args.data, args.synthetic_size)
            try:
                flops, images_per_step = count_flops(base, data, device)
            except GanforgeError as exc:
                report["presets"][name] = {"error": str(exc)}
                print(f"[bench] {name}: skipped ({exc})", file=sys.stderr)
                continue
            entry: dict[str, Any] = {
                "arch": base.model.arch,
                "dataset": data.name,
                "images": len(data),
                "image_shape": list(data.image_shape),
                "batch_size": base.schedule.batch_size,
                "schedule": f"{base.schedule_length} {base.schedule_unit}s",
                "data_note": data_note,
                "data_load_s": load_s,
                "flops_per_step": flops,
                "images_per_step": images_per_step,
                "flops_per_image": flops / images_per_step,
                "variants": {},
            }
            report["presets"][name] = entry
            preset_variants = list(variants)
            if (
                base.execution.precision == "fp32"
                and "fast" in variants
                and "fast-bf16" not in variants
            ):
                # the faithful presets pin fp32: their fast path is asked for with --precision
                preset_variants.append("fast-bf16")
            rounds: dict[str, list[dict[str, Any]]] = {v: [] for v in preset_variants}
            # variants interleaved, so drifting load hits them alike
            for round_index in range(args.rounds):
                for variant in preset_variants:
                    print(
                        f"[bench] {name}: {variant} (round {round_index + 1}/{args.rounds})",
                        file=sys.stderr,
                        flush=True,
                    )
                    rounds[variant].append(
                        measure_variant(
                            name, base, data, variant, args, workdir, flops, load_s, startup_s
                        )
                    )
            for variant, results in rounds.items():
                merged = merge_rounds(results, flops)
                merged["achieved_gflops"] = merged["achieved_tflops"] * 1e3
                merged["percent_of_probe"] = {
                    kind: 100 * merged["achieved_gflops"] / probe[f"{kind}_gflops"]
                    for kind in ("fp32", "bf16")
                }
                entry["variants"][variant] = merged
            plain = entry["variants"].get("plain")
            for result in entry["variants"].values():
                result["speedup_vs_plain"] = (
                    (plain["ms_per_step"] / result["ms_per_step"]) if plain else None
                )
                result["recipe_speedup_vs_plain"] = (
                    (plain["recipe_s"] / result["recipe_s"]) if plain else None
                )
            if full:
                runs: dict[str, list[dict[str, Any]]] = {}
                for variant in full:
                    for seed in seeds:
                        print(
                            f"[bench] {name}: {variant} full recipe, seed {seed}",
                            file=sys.stderr,
                            flush=True,
                        )
                        runs.setdefault(variant, []).append(
                            run_full(
                                name, base, data, variant, seed, args, workdir, load_s, startup_s
                            )
                        )
                entry["full_runs"] = runs
                if args.quality:
                    entry["quality_fast_vs_plain"] = compare_quality(runs)
            del data
            gc.collect()
    report["environment"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    path = (
        Path(args.json)
        if args.json
        else ROOT
        / "runs"
        / "bench"
        / (f"train_speed-{device.type}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=_jsonable) + "\n")
    print(format_table(report))
    print(f"\nJSON: {path}")
    return report


def _jsonable(value: Any) -> Any:
    if isinstance(value, (torch.dtype, torch.device, Path)):
        return str(value)
    raise TypeError(type(value).__name__)


def format_table(report: dict[str, Any]) -> str:
    env = report["environment"]
    where = env["gpu"] or f"CPU: {env['cpu_model']}, {env['torch_threads']} threads"
    probe = env.get("matmul_probe") or {}
    lines = [
        f"ganforge training speed on {env['device']} ({where}); torch {env['torch']}"
        + (f", CUDA {env.get('cuda')}" if env.get("cuda") else "")
        + f"; load average {env['load_average_start']} -> {env.get('load_average_end')}",
        "ms/step: median over windows of iterations (wall); "
        "CPU ms: process CPU time per iteration, all threads; "
        "recipe time = process start + data + set-up + compile + "
        "iterations x ms/step + grids + checkpoints + final artefacts "
        f"({'extrapolated'} unless marked 'meas.')",
        f"peak (matrix-product probe, {probe.get('size')}^2): "
        f"fp32 {probe.get('fp32_gflops', 0):,.0f} GFLOP/s, "
        f"bf16 {probe.get('bf16_gflops', 0):,.0f} GFLOP/s; GFLOP/s columns are model FLOPs",
        "",
    ]
    head = (
        "preset",
        "variant",
        "autocast",
        "compile",
        "img/s",
        "ms/step",
        "x plain",
        "CPU ms",
        "recipe s",
        "x plain",
        "GFLOP/img",
        "GFLOP/s",
        "% fp32 probe",
        "% bf16 probe",
        "peak MiB",
    )
    rows = [head]
    for name, entry in report["presets"].items():
        if "error" in entry:
            rows.append((name, "skipped", entry["error"][:60], *[""] * (len(head) - 3)))
            continue
        for variant, r in entry["variants"].items():
            s = r["settings"]
            rows.append(
                (
                    name,
                    variant,
                    s["autocast"],
                    s["compile"],
                    f"{r['images_per_s']:,.0f}",
                    f"{r['ms_per_step']:.2f}",
                    _ratio(r.get("speedup_vs_plain")),
                    f"{r['cpu_ms_per_step']:.1f}",
                    f"~{r['recipe_s']:,.0f}",
                    _ratio(r.get("recipe_speedup_vs_plain")),
                    f"{entry['flops_per_image'] / 1e9:.3f}",
                    f"{r['achieved_gflops']:,.1f}",
                    f"{r['percent_of_probe']['fp32']:.0f}%",
                    f"{r['percent_of_probe']['bf16']:.0f}%",
                    "-" if r["peak_gpu_mib"] is None else f"{r['peak_gpu_mib']:,.0f}",
                )
            )
        for variant, runs in entry.get("full_runs", {}).items():
            for run in runs:
                rows.append(
                    (
                        name,
                        f"{variant} full s{run['seed']}",
                        "",
                        "",
                        "",
                        "",
                        "",
                        "",
                        f"{run['recipe_s']:,.1f} meas.",
                        *[""] * (len(head) - 9),
                    )
                )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(head))]
    for i, row in enumerate(rows):
        lines.append(
            "  ".join(
                str(cell).ljust(w) if j < 4 else str(cell).rjust(w)
                for j, (cell, w) in enumerate(zip(row, widths))
            )
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    notes = [
        f"{name}: {entry['data_note']}"
        for name, entry in report["presets"].items()
        if entry.get("data_note")
    ]
    for name, entry in report["presets"].items():
        for variant, r in entry.get("variants", {}).items():
            notes += [
                f"{name}/{variant}: {note}"
                for note in r["notes"]
                if not note.startswith("precision: fp32")
            ]
        for key, q in entry.get("quality_fast_vs_plain", {}).items():
            if isinstance(q, dict):
                notes.append(
                    f"{name} quality {key}: fast {q['fast']} vs plain {q['plain']} "
                    f"(gap {q['gap']:.4g}, seed spread {q['seed_spread']:.4g}, "
                    f"within noise: {q['within_noise']})"
                )
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


if __name__ == "__main__":
    main()
