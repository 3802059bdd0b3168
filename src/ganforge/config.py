"""Run configuration: plain dataclasses, filled from a preset and then from overrides.

A config is pure data. It is validated once, up front, so that an impossible setting is
reported before any data is read or any model is built (:meth:`TrainConfig.validate`).

Settings are grouped by the part of ganforge that reads them (docs/architecture.md, "Settings"):
``data``, ``model``, ``optim``, ``step``, ``latent``, ``regularise``, ``augment``,
``schedule``, ``execution`` and ``distributed``, so each setting has one owner. Every field
documents itself once, in :func:`setting`'s ``help``; the command line reads its help from
there (:func:`setting_help`). Configs written before the groups (flat keys such as
``r1_gamma``) are moved to their place by ``ganforge.config_migration``, also for ``--set``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from ganforge.config_migration import migrate_config, migrate_key
from ganforge.errors import ConfigError
from ganforge.settings import LatentConfig, group, setting

SCHEDULE_UNITS = ("epoch", "iteration")

# Choice fields are typed as Literal: the annotation is the one list of valid values, read by
# the checks, the command-line help and the error messages.
Split = Literal["train", "test", "all"]
Fit = Literal["pad", "crop", "stretch"]
BatchOrder = Literal["shuffle", "sequential", "random"]
UpdateMode = Literal["alternating", "simultaneous"]
Switch = Literal["auto", "on", "off"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]


@dataclass
class DataConfig:
    """Where images come from and how they are shaped before training."""

    dataset: str = setting("mnist", help="data source: a name in ganforge.data.SOURCES")
    path: str | None = setting(
        None, help="a local copy of the data (folder or file); searched first, and alone when given"
    )
    split: Split = setting("train", help="which split of the data to train on")
    resolution: int | None = setting(
        None, help="square image size to train at; None keeps the source size (28 for MNIST)"
    )
    channels: int | None = setting(
        None, help="1 (grayscale) or 3 (RGB); None keeps the source channels"
    )
    fit: Fit = setting("pad", help="how a non-square image reaches a square size")
    limit: int | None = setting(None, help="use only the first N images (quick experiments, tests)")
    cache: bool = setting(
        True, help="keep decoded images in the user cache, keyed by source and settings"
    )
    allow_bundled_slice: bool = setting(
        True,
        help="MNIST without the full files: train on the 5,000-digit slice shipped with "
        "ganforge (the demo), or stop and say how to get full MNIST (the faithful presets)",
    )
    require_oasis: bool = setting(
        False,
        help="the brain-MRI document's data or nothing: without --data, train only on OASIS "
        "slices (the keras_png_slices_train/_validate/_test layout) and stop when none are "
        "found, never on other slices that happen to be around (oasis-dcgan); other slices "
        "are trained on when named with --data, and the run says so (substitute)",
    )
    substitute: str | None = setting(
        None,
        help="written by ganforge, not by hand: why the data are not the preset's documented "
        "data (--data naming other slices than OASIS); the run's first line and config.json "
        "say it",
    )
    options: dict[str, Any] = setting(
        help="the data source's own options, declared and checked by the source "
        "(e.g. nifti_axis for NIfTI volumes, stacks for stacked-mnist; "
        "docs/architecture.md lists them)",
        factory=dict,
    )


@dataclass
class ModelConfig:
    """Which registered architecture to build, and its options."""

    arch: str = setting("dcgan-mnist", help="architecture: a name in ganforge.models.ARCHITECTURES")
    latent_dim: int = setting(100, help="size of the noise vector z")
    options: dict[str, Any] = setting(
        help="the architecture's keyword arguments (ganforge presets lists them)", factory=dict
    )


@dataclass
class OptimConfig:
    """Adam settings for both networks (the notebook's Adam(2e-4, beta1=0.5) by default)."""

    lr_g: float = setting(2e-4, help="generator learning rate")
    lr_d: float = setting(2e-4, help="discriminator learning rate")
    beta1: float = setting(0.5, help="Adam beta1 for both networks")
    beta2: float = setting(0.999, help="Adam beta2 for both networks")
    eps: float = setting(1e-8, help="Adam epsilon: PyTorch's default; Keras' Adam uses 1e-7")
    keras_epsilon: bool = setting(
        False, help="add eps where Keras does (before bias correction), not where PyTorch does"
    )
    shared_counter: bool = setting(
        False,
        help="one Adam iteration counter for D and G, as when one Keras Adam object is passed "
        "to both models (the notebook's GAN): bias correction then advances once per "
        "optimiser step of either network",
    )
    ramp: int = setting(
        0,
        help="R3GAN's optimiser schedule: over the first N iterations both learning rates fall "
        "along a half cosine to lr_end times their value and beta2 moves to beta2_end, then "
        "they stay; 0: constant",
    )
    lr_end: float = setting(
        1.0, help="the share of each learning rate the ramp ends at (R3GAN: 0.25)"
    )
    beta2_end: float | None = setting(
        None, help="Adam beta2 at the end of the ramp (R3GAN: 0.9 -> 0.99); None keeps beta2"
    )


@dataclass
class StepConfig:
    """What one iteration does (training/step.py): which updates, on which batches."""

    update: UpdateMode = setting(
        "alternating",
        help="alternating: D step(s), then G through the updated D; simultaneous: both losses "
        "from one forward pass, both optimisers stepped together (a Keras GradientTape loop)",
    )
    d_half_batch: bool = setting(
        False, help="D sees batch/2 real + batch/2 fake (the notebook's GAN)"
    )
    d_separate_updates: bool = setting(
        True, help="one D step on the real batch, then one on the fake batch"
    )
    d_fakes_from_eval_g: bool = setting(
        False,
        help="D's fakes from G in inference mode, as Keras generator.predict() (BatchNorm "
        "running statistics)",
    )
    shared_noise: bool = setting(
        False, help="one noise batch per iteration for D's fakes and the G step"
    )


@dataclass
class RegulariseConfig:
    """Stabilisers of the adversarial game (all off in the documented faithful recipes)."""

    label_smoothing: float = setting(
        0.0, help="one-sided label smoothing: real targets become 1 - label_smoothing"
    )
    r1_gamma: float = setting(0.0, help="R1 gradient penalty on real images")
    r1_interval: int = setting(
        1, help="lazy R1 and R2: apply them every N iterations (scaled by N)"
    )
    r2_gamma: float = setting(
        0.0, help="R2 gradient penalty on generated images (R3GAN: r1_gamma = r2_gamma)"
    )
    gamma_ramp: int = setting(
        0,
        help="gamma schedule of R1 and R2 (R3GAN): over the first gamma_ramp iterations both "
        "weights fall along a half cosine to gamma_end times their value, then stay there; "
        "0: constant",
    )
    gamma_end: float = setting(0.1, help="share of R1/R2's gamma left after gamma_ramp")
    ema_decay: float = setting(
        0.0, help="exponential moving average of G's weights, e.g. 0.999 (0: off)"
    )
    spectral_norm: Literal["off", "d"] = setting(
        "off", help="d: spectral norm on D's conv/linear layers"
    )


@dataclass
class AugmentConfig:
    """Differentiable augmentation of every image D sees, real and fake (ganforge.augment)."""

    names: str = setting(
        "", help='comma-separated transforms, e.g. "translation,cutout"; "" is off'
    )
    p: float = setting(1.0, help="probability of each transform per image (fixed, without ADA)")
    ada_target: float = setting(
        0.0, help="> 0: adapt p (from 0) to keep E[sign(D(real))] near it (ADA: 0.6)"
    )
    ada_interval: int = setting(4, help="D steps between adjustments of p")
    ada_speed: float = setting(20000.0, help="real images over which p can move from 0 to 1")


@dataclass
class ScheduleConfig:
    """How long training runs, in batches of what size, and when it writes what.

    Give exactly one of epochs or iterations; the intervals count in that unit.
    """

    epochs: int | None = setting(None, help="train for this many passes over the data")
    iterations: int | None = setting(
        None, help="train for this many iterations (instead of epochs)"
    )
    batch_size: int = setting(
        128, help="images per batch (the global batch with several processes)"
    )
    batch_order: BatchOrder = setting(
        "shuffle",
        help="shuffle: a new permutation per pass; sequential: in order (the notebook's "
        "DCGAN); random: independent draws with replacement (the notebook's GAN)",
    )
    sample_every: int = setting(1, help="save a sample grid every N epochs/iterations")
    sample_offset: int = setting(
        0,
        help="a grid after unit u when (u - sample_offset) % sample_every == 0: 1 puts the "
        "notebook's `if e % 200 == 0` after iterations 1, 201, 401, ...",
    )
    grid_size: int = setting(5, help="sample grids are grid_size x grid_size")
    checkpoint_every: int = setting(1, help="save a checkpoint every N epochs/iterations")
    keep_checkpoints: int = setting(3, help="checkpoints kept (the oldest are removed)")
    eval_every: int = setting(0, help="evaluate quality every N epochs/iterations (0: off)")
    eval_samples: int = setting(2000, help="generated images per evaluation during training")
    log_every: int = setting(50, help="iterations between reads of the on-device loss accumulators")
    raw_losses: bool = setting(
        False,
        help="also keep every iteration's statistics (metrics.jsonl raw, read with the means, "
        "no extra sync) and plot them raw, as the notebook plots its losses",
    )


@dataclass
class ExecutionConfig:
    """Where and how the computation runs; "auto" switches are on for a CUDA GPU, off elsewhere.

    Each fast-path switch can be turned off alone (--set execution.KEY=off) to measure its
    effect (bench/train_speed.py --variants).
    """

    device: str = setting("auto", help="auto, cpu, cuda, cuda:N or mps")
    precision: Precision = setting(
        "auto",
        help="auto (bf16 where the GPU or CPU has it natively and it pays, else fp32), fp32 "
        "(exact, TF32 off; the faithful presets' default), bf16, or fp16 (GPUs, with "
        "gradient scaling)",
    )
    compile: Switch = setting("auto", help="torch.compile the models")
    compile_mode: CompileMode = setting(
        "default", help="torch.compile mode; reduce-overhead: CUDA graphs per model"
    )
    channels_last: Switch = setting("auto", help="channels-last memory format for images")
    fused_optim: Switch = setting(
        "auto", help="fused Adam kernels (CUDA only; the CPU uses foreach)"
    )
    cuda_graphs: Literal["off", "on"] = setting(
        "off", help="replay the whole training step as one CUDA graph"
    )
    async_artefacts: Switch = setting("auto", help="sample grids written by a background thread")
    deterministic: bool = setting(
        False, help="deterministic kernels only (slower; bitwise-repeatable runs)"
    )


@dataclass
class DistributedConfig:
    """Several processes (torchrun; docs/distributed.md). schedule.batch_size stays global."""

    sync_bn: bool = setting(
        False, help="BatchNorm statistics of the global batch, not of each process's part"
    )
    backend: Literal["auto", "gloo", "nccl"] = setting(
        "auto", help="auto: nccl on CUDA, gloo on the CPU"
    )
    timeout_s: float = setting(
        300.0, help="longest wait for another process: joining, each collective"
    )


@dataclass(frozen=True)
class BatchSizes:
    """Images of one iteration, derived from the config in this one place.

    ``real``, ``fake`` and ``g`` are one process's part (reals and fakes through D, noise
    vectors through G); the whole iteration, over all ``world_size`` processes, is that
    times ``world_size`` (check.py refuses a batch that does not split evenly).
    """

    real: int
    fake: int
    g: int
    world_size: int = 1

    @property
    def global_fake(self) -> int:
        return self.fake * self.world_size

    @property
    def global_g(self) -> int:
        return self.g * self.world_size

    @property
    def images_per_step(self) -> int:
        """Images through D (real + fake) plus through G, in all processes together."""
        return (self.real + self.fake + self.g) * self.world_size


@dataclass
class TrainConfig:
    """Everything that defines a training run. Presets are instances of this, as YAML."""

    preset: str | None = setting(None, help="the named recipe this config came from")
    description: str = setting("", help="what the recipe is, in words")
    data: DataConfig = group(DataConfig)
    model: ModelConfig = group(ModelConfig)
    optim: OptimConfig = group(OptimConfig)
    loss: str = setting("bce", help="adversarial loss: a name in ganforge.losses.LOSSES")
    seed: int = setting(
        0,
        help="random seed of the run: initial weights, batch order, noise and augmentation "
        "streams all derive from it",
    )
    step: StepConfig = group(StepConfig)
    latent: LatentConfig = group(LatentConfig)
    regularise: RegulariseConfig = group(RegulariseConfig)
    augment: AugmentConfig = group(AugmentConfig)
    schedule: ScheduleConfig = group(ScheduleConfig)
    execution: ExecutionConfig = group(ExecutionConfig)
    distributed: DistributedConfig = group(DistributedConfig)
    out_dir: str = setting("runs", help="folder that holds run folders")
    run_name: str | None = setting(None, help="name of this run's folder (default: <preset>-NNN)")
    loggers: list[str] = setting(
        help="experiment loggers besides metrics.jsonl and its CSV twin metrics.csv (always "
        "written): names in ganforge.loggers.LOGGERS, e.g. [tensorboard]",
        factory=list,
    )

    # ---- derived values -------------------------------------------------------------
    @property
    def schedule_unit(self) -> str:
        return "epoch" if self.schedule.epochs is not None else "iteration"

    @property
    def schedule_length(self) -> int:
        s = self.schedule
        return s.epochs if s.epochs is not None else int(s.iterations or 0)

    # ---- validation -----------------------------------------------------------------
    def batch_sizes(self, world_size: int = 1) -> BatchSizes:
        """One process's batches: D sees half real, half fake with ``step.d_half_batch``."""
        batch = self.schedule.batch_size
        real = batch // 2 if self.step.d_half_batch else batch
        return BatchSizes(real // world_size, real // world_size, batch // world_size, world_size)

    def problems(self) -> list[str]:
        """What is wrong with the fields themselves (types, ranges, choices), one item each.

        Names looked up in registries (model, loss, dataset) are checked by ganforge.check.
        """
        return list(_problems(self))

    def validate(self) -> "TrainConfig":
        """Raise ConfigError for field values that cannot work; return self for chaining."""
        problems = self.problems()
        if problems:
            raise ConfigError("; ".join(problems))
        return self

    # ---- (de)serialisation -----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """A config from its dict form, grouped or as written before the groups (flat keys)."""
        return _build(cls, migrate_config(values), prefix="")

    def with_overrides(self, overrides: dict[str, Any]) -> "TrainConfig":
        """Return a copy with dotted keys replaced, e.g. {"optim.lr_g": 1e-3}.

        String values (from the command line) are converted to the field's type. Names from
        before the groups (``r1_gamma``) still work: they are moved to their group. Setting
        ``schedule.epochs`` clears ``schedule.iterations`` and vice versa, so a user can
        switch the schedule of any preset with one flag.
        """
        values = self.to_dict()
        for old_key, raw in overrides.items():
            if not isinstance(old_key, str):
                raise ConfigError(
                    f"setting names are dotted strings such as 'optim.lr_g', got {_show(old_key)}"
                )
            key = migrate_key(old_key, raw)
            _set_dotted(values, key, raw, type(self))
            schedule = values["schedule"]
            if key == "schedule.epochs" and schedule["epochs"] is not None:
                schedule["iterations"] = None
            if key == "schedule.iterations" and schedule["iterations"] is not None:
                schedule["epochs"] = None
        return TrainConfig.from_dict(values)


def _problems(c: TrainConfig):
    yield from _step_problems(c)
    yield from _schedule_problems(c)
    yield from _model_and_optim_problems(c)
    yield from _regularise_problems(c.regularise)
    yield from _augment_problems(c.augment)
    for dotted, allowed in choice_fields(TrainConfig).items():
        value = _get_dotted(c, dotted)
        if value not in allowed:
            yield f"{dotted} must be one of {', '.join(allowed)} (got {_show(value)})"
    yield from _data_problems(c.data)
    if not -(2**63) <= c.seed < 2**63:
        yield f"seed must fit in 64 bits (got {_show(c.seed)})"
    yield from _execution_problems(c)


def _positive(name: str, value: float | int | None, allow_none: bool = False):
    if value is None and allow_none:
        return
    if (
        value is None
        or not isinstance(value, (int, float))
        or value <= 0
        # only floats: math.isfinite(10**400) overflows
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        yield f"{name} must be a positive number (got {_show(value)})"


def _step_problems(c: TrainConfig):
    s = c.step
    if s.update == "simultaneous" and s.d_separate_updates:
        yield (
            "step.update=simultaneous takes one D step on the real and fake losses together; "
            "set step.d_separate_updates=false"
        )
    if s.update == "simultaneous" and s.d_fakes_from_eval_g:
        yield (
            "step.update=simultaneous trains G through the fakes D saw, which must come from G "
            "in training mode; set step.d_fakes_from_eval_g=false"
        )
    if s.shared_noise and s.d_half_batch:
        yield (
            "step.shared_noise feeds the same noise batch to D and G, which step.d_half_batch "
            "sizes differently; drop one of them"
        )
    if s.d_half_batch and c.schedule.batch_size < 2:
        yield (
            "schedule.batch_size must be at least 2 with step.d_half_batch (D sees half real, "
            "half fake)"
        )


def _schedule_problems(c: TrainConfig):
    s = c.schedule
    if (s.epochs is None) == (s.iterations is None):
        yield "give exactly one of schedule.epochs or schedule.iterations"
    yield from _positive("schedule.epochs", s.epochs, allow_none=True)
    yield from _positive("schedule.iterations", s.iterations, allow_none=True)
    yield from _positive("schedule.batch_size", s.batch_size)
    yield from _positive("schedule.grid_size", s.grid_size)
    for name in ("sample_every", "checkpoint_every", "log_every", "keep_checkpoints"):
        yield from _positive(f"schedule.{name}", getattr(s, name))
    if not (isinstance(s.sample_offset, int) and s.sample_offset >= 0):
        yield f"schedule.sample_offset must be an integer >= 0 (got {s.sample_offset!r})"
    if s.eval_every < 0:
        yield f"schedule.eval_every must be 0 (off) or positive (got {s.eval_every})"


def _optim_ramp_problems(o: OptimConfig):
    if isinstance(o.ramp, bool) or not isinstance(o.ramp, int) or o.ramp < 0:
        yield f"optim.ramp must be 0 (off) or a number of iterations (got {o.ramp!r})"
    if not 0.0 < o.lr_end <= 1.0:
        yield f"optim.lr_end must be a share of the starting rate in (0, 1] (got {o.lr_end})"
    if o.beta2_end is not None and not 0.0 <= o.beta2_end < 1.0:
        yield f"optim.beta2_end must be in [0, 1) (got {o.beta2_end!r})"


def _model_and_optim_problems(c: TrainConfig):
    yield from _positive("model.latent_dim", c.model.latent_dim)
    yield from _positive("optim.lr_g", c.optim.lr_g)
    yield from _positive("optim.lr_d", c.optim.lr_d)
    yield from _positive("optim.eps", c.optim.eps)
    for name in ("beta1", "beta2"):
        beta = getattr(c.optim, name)
        if not (isinstance(beta, (int, float)) and 0.0 <= beta < 1.0):
            yield f"optim.{name} must be in [0, 1) (got {beta!r})"
    yield from _optim_ramp_problems(c.optim)
    yield from _positive("latent.std", c.latent.std)
    batchnorm = c.model.options.get("batchnorm", "torch")
    if c.distributed.sync_bn and batchnorm != "torch":
        yield (
            f"distributed.sync_bn replaces every BatchNorm with PyTorch's SyncBatchNorm, which "
            f"would drop model.options.batchnorm: {batchnorm} (the documents' moving "
            "statistics); turn one of them off"
        )
    for name, options in (("model.options", c.model.options), ("data.options", c.data.options)):
        # options end up in config.json and checkpoints: plain JSON values only
        try:
            json.dumps(options)
        except (TypeError, ValueError, RecursionError):
            yield (
                f"{name} must hold numbers, strings, lists and mappings only (got {_show(options)})"
            )


def _regularise_problems(r: RegulariseConfig):
    if not 0.0 <= r.label_smoothing < 0.5:
        yield f"regularise.label_smoothing must be in [0, 0.5) (got {r.label_smoothing})"
    yield from _positive("regularise.r1_interval", r.r1_interval)
    for name in ("r1_gamma", "r2_gamma"):
        gamma = getattr(r, name)
        if not (isinstance(gamma, (int, float)) and gamma >= 0 and math.isfinite(gamma)):
            yield f"regularise.{name} must be a finite number >= 0 (got {gamma})"
    if isinstance(r.gamma_ramp, bool) or not isinstance(r.gamma_ramp, int) or r.gamma_ramp < 0:
        yield (
            "regularise.gamma_ramp must be 0 (off) or a number of iterations "
            f"(got {r.gamma_ramp!r})"
        )
    if not 0.0 <= r.gamma_end <= 1.0:
        yield (
            "regularise.gamma_end must be a share of the starting gamma in [0, 1] "
            f"(got {r.gamma_end})"
        )
    if not (r.ema_decay == 0.0 or 0.0 < r.ema_decay < 1.0):
        yield f"regularise.ema_decay must be 0 (off) or in (0, 1) (got {r.ema_decay})"


def _augment_problems(a: AugmentConfig):
    if not 0.0 <= a.p <= 1.0:
        yield f"augment.p must be a probability in [0, 1] (got {a.p})"
    if not 0.0 <= a.ada_target < 1.0:
        yield f"augment.ada_target must be 0 (off) or in (0, 1), e.g. 0.6 (got {a.ada_target})"
    yield from _positive("augment.ada_interval", a.ada_interval)
    yield from _positive("augment.ada_speed", a.ada_speed)


def _data_problems(d: DataConfig):
    res = d.resolution
    if res is not None and (not isinstance(res, int) or res < 8):
        yield f"data.resolution must be an integer of at least 8 (got {res!r})"
    if d.channels not in (None, 1, 3):
        yield f"data.channels must be 1 or 3 (got {d.channels!r})"
    if d.limit is not None and d.limit <= 0:
        yield f"data.limit must be positive (got {d.limit})"


def _execution_problems(c: TrainConfig):
    device = c.execution.device
    if not device or not (device in ("auto", "cpu", "cuda", "mps") or device.startswith("cuda:")):
        yield f"execution.device must be auto, cpu, cuda, cuda:N or mps (got {device!r})"


def choice_fields(cls: type, prefix: str = "") -> dict[str, tuple[Any, ...]]:
    """Every Literal-typed field of a config dataclass, dotted, with its valid values."""
    found: dict[str, tuple[Any, ...]] = {}
    for name, hint in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(hint):
            found.update(choice_fields(hint, f"{prefix}{name}."))
        elif typing.get_origin(hint) is Literal:
            found[f"{prefix}{name}"] = typing.get_args(hint)
    return found


def _show(value: Any) -> str:
    """A value for an error message: repr, cut short, one line (a 5,000-digit int has no repr)."""
    try:
        text = repr(value)
    except ValueError:
        return (
            f"a {value.bit_length()}-bit number" if isinstance(value, int) else type(value).__name__
        )
    return text if len(text) <= 80 else text[:77] + "..."


def _get_dotted(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _set_dotted(values: dict[str, Any], key: str, raw: Any, cls: type) -> None:
    for owner in ("model", "data"):
        # free-form options, checked by their owner (the architecture, the data source)
        if key.startswith(f"{owner}.options."):
            options = values[owner].setdefault("options", {})
            if not isinstance(options, dict):
                raise ConfigError(
                    f"{owner}.options must be a mapping of option names to values "
                    f"(got {_show(options)})"
                )
            options[key.removeprefix(f"{owner}.options.")] = _parse_scalar(raw)
            return
    parts = key.split(".")
    target = values
    for depth, part in enumerate(parts):
        hints = typing.get_type_hints(cls)
        if part not in hints:
            valid = ", ".join(f.name for f in dataclasses.fields(cls))
            raise ConfigError(
                f"unknown setting {_show(key)}{_did_you_mean(key)}; valid names here: {valid}"
            )
        if depth == len(parts) - 1 and dataclasses.is_dataclass(hints[part]):
            # part of a group, e.g. --set 'optim={lr_g: 0.001}': merged into the group, so the
            # settings not named keep their values; from_dict checks the names
            group = _parse_scalar(raw)
            if not isinstance(group, dict):
                raise ConfigError(
                    f"{key} is a group of settings: give a mapping, or set one of "
                    f"them ({key}.NAME=VALUE), got {_show(raw)}"
                )
            current = target.get(part)
            target[part] = {**current, **group} if isinstance(current, dict) else group
        elif depth == len(parts) - 1:
            target[part] = _coerce(raw, hints[part], key)
        elif dataclasses.is_dataclass(hints[part]):
            target, cls = target[part], hints[part]
        else:
            raise ConfigError(f"unknown setting {_show(key)}")


def _did_you_mean(key: Any) -> str:
    """ " (did you mean schedule.batch_size?)" for a near miss of a setting's name, else ""."""
    import difflib

    if not isinstance(key, str):
        return ""
    paths = _leaf_paths(TrainConfig)
    by_name = {path.rsplit(".", 1)[-1]: path for path in paths}
    close = difflib.get_close_matches(key, paths, n=1) or [
        by_name[name] for name in difflib.get_close_matches(key.rsplit(".", 1)[-1], by_name, n=1)
    ]
    if not close:
        return ""
    group, _, _ = close[0].rpartition(".")
    if not group or group.count("."):
        return f" (did you mean {close[0]}?)"
    names = [path.rsplit(".", 1)[-1] for path in paths if path.startswith(group + ".")]
    return f" (did you mean {close[0]}? {group} holds: {', '.join(names)})"


def _leaf_paths(cls: type, prefix: str = "") -> list[str]:
    paths = []
    for name, hint in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(hint):
            paths += _leaf_paths(hint, f"{prefix}{name}.")
        else:
            paths.append(f"{prefix}{name}")
    return paths


def _parse_scalar(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        return (
            float(raw) if any(ch in raw for ch in ".eE") and _is_float(raw) else yaml.safe_load(raw)
        )
    # ValueError: an integer too long for Python to convert
    except (yaml.YAMLError, ValueError):
        return raw


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _coerce(raw: Any, hint: Any, key: str) -> Any:
    """Convert a YAML or command-line value to the annotated type, or raise ConfigError."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    # a choice: read as text; the checks name the valid values
    if origin is Literal:
        return _coerce(raw, type(args[0]), key)
    if origin in (typing.Union, types.UnionType):
        if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null", "")):
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(raw, inner[0], key)
    try:
        if hint is bool:
            if isinstance(raw, str):
                lowered = raw.lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError(raw)
            if isinstance(raw, (bool, int)) and raw in (0, 1):
                return bool(raw)
            raise ValueError(raw)
        if hint is int:
            if isinstance(raw, bool):
                raise ValueError(raw)
            if isinstance(raw, float):
                if not raw.is_integer():
                    raise ValueError(raw)
                return int(raw)
            return int(str(raw).replace("_", ""))
        if hint is float:
            if isinstance(raw, bool):
                raise ValueError(raw)
            return float(raw)
        if hint is str:
            # YAML 1.1 reads a bare on/off/yes/no as a boolean
            if isinstance(raw, bool):
                return "on" if raw else "off"
            if not isinstance(raw, (str, int, float)):
                raise ValueError(raw)
            return str(raw)
        if origin is tuple:
            items = raw
            if isinstance(raw, str):
                items = [p for p in raw.strip("()[] ").split(",") if p.strip()]
            items = list(items)
            if len(items) != len(args):
                raise ValueError(raw)
            return tuple(_coerce(item, a, key) for item, a in zip(items, args))
        # a list of names: "a,b" on the command line, a YAML list in a file
        if origin is list:
            if isinstance(raw, str):
                parsed = yaml.safe_load(raw) if raw.strip().startswith("[") else raw.split(",")
                raw = [item.strip() for item in parsed] if isinstance(parsed, list) else parsed
            if not isinstance(raw, (list, tuple)):
                raise ValueError(raw)
            return [_coerce(item, args[0], key) for item in raw if item != ""]
        if origin is dict:
            if isinstance(raw, str):
                raw = yaml.safe_load(raw) or {}
            if not isinstance(raw, dict):
                raise ValueError(raw)
            # stored as JSON (config.json, checkpoints): no YAML dates, no self-references
            try:
                json.dumps(raw)
            except (TypeError, ValueError, RecursionError):
                raise ConfigError(
                    f"{key} must hold numbers, strings, lists and mappings only (got {_show(raw)})"
                ) from None
            return {str(k): v for k, v in raw.items()}
    except (ValueError, TypeError, OverflowError, yaml.YAMLError):
        raise ConfigError(
            f"{key} expects {getattr(hint, '__name__', hint)}, got {_show(raw)}"
        ) from None
    return raw


def _build(cls: type, values: Any, prefix: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {_show(values)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    # keys from YAML need not be strings
    unknown = sorted(set(values) - names, key=str)
    if unknown:
        raise ConfigError(
            f"unknown setting {prefix}{_show(unknown[0])}{_did_you_mean(unknown[0])}; "
            f"valid names here: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name, raw in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, raw, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(raw, hint, f"{prefix}{name}")
    return cls(**kwargs)


def build_options(cls: type | None, values: Any, owner: str) -> Any:
    """Declared options (a dataclass of :func:`setting` fields) from a mapping, or ConfigError.

    How a data source reads ``data.options``: an unknown name or a value of the wrong type
    is one line that names the owner and lists its options; left-out options keep their
    declared defaults. ``cls`` None declares no options.
    """
    declared = typing.get_type_hints(cls) if cls is not None else {}
    listing = ", ".join(f"{name} ({_type_name(hint)})" for name, hint in declared.items())
    listing = listing or "none"
    if not isinstance(values, dict):
        raise ConfigError(f"data.options must be a mapping of option names to values for {owner}")
    kwargs = {}
    for name, raw in values.items():
        if name not in declared:
            raise ConfigError(f"{owner} has no option {_show(name)}; its options: {listing}")
        try:
            kwargs[name] = _coerce(raw, declared[name], f"data.options.{name}")
        except ConfigError as exc:
            raise ConfigError(f"{exc}; the options of {owner}: {listing}") from None
    return cls(**kwargs) if cls is not None else None


def _type_name(hint: Any) -> str:
    """A type annotation as a reader writes it: int, float or None, tuple[float, float]."""
    if typing.get_origin(hint) is Literal:
        return " | ".join(str(v) for v in typing.get_args(hint))
    return getattr(hint, "__name__", None) if isinstance(hint, type) else str(hint)
