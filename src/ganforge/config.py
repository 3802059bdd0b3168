"""Run configuration: plain dataclasses, filled from a preset and then from overrides.

A config is pure data. It is validated once, up front, so that an impossible setting is
reported before any data is read or any model is built (:meth:`TrainConfig.validate`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from ganforge.errors import ConfigError

SCHEDULE_UNITS = ("epoch", "iteration")

# Choice fields are typed as Literal: the annotation is the one list of valid values, read by
# the checks, the command-line help and the error messages.
Split = Literal["train", "test", "all"]
Fit = Literal["pad", "crop", "stretch"]
NoiseLaw = Literal["normal", "uniform"]
GridNoise = Literal["train", "normal", "uniform"]
BatchOrder = Literal["shuffle", "sequential", "random"]
UpdateMode = Literal["alternating", "simultaneous"]
Switch = Literal["auto", "on", "off"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]


@dataclass
class DataConfig:
    """Where images come from and how they are shaped before training."""

    dataset: str = "mnist"  # a name in ganforge.data.SOURCES
    path: str | None = None  # an explicit local copy; searched first, and alone when given
    split: Split = "train"
    resolution: int | None = None  # None keeps the source size (28 for MNIST)
    channels: int | None = None  # None keeps the source channels
    fit: Fit = "pad"  # how a non-square image reaches a square size
    limit: int | None = None  # use only the first N images (quick experiments, tests)
    nifti_axis: int = 2  # slicing axis of NIfTI volumes (2 = axial for RAS volumes)
    nifti_range: tuple[float, float] = (0.0, 1.0)  # part of the axis to slice, as fractions
    nifti_min_foreground: float = 0.1  # skip slices with less non-background than this
    # NIfTI intensity scaling, per volume: percentile (data.percentiles -> 0..255), zscore
    # (foreground mean +- 3 std -> 0..255) or minmax (volume min..max -> 0..255)
    normalise: Literal["percentile", "zscore", "minmax"] = "percentile"
    percentiles: tuple[float, float] = (0.5, 99.5)  # low -> black, high (above low) -> white
    # a flat folder of NIfTI volumes: hold out this share of subjects as the test split
    subject_split: float | None = None
    cache: bool = True  # keep decoded images in the user cache, keyed by source and settings
    # MNIST without the full files: train on the 5,000-digit slice shipped with ganforge (the
    # demo), or stop and say how to get full MNIST (the faithful presets).
    allow_bundled_slice: bool = True
    # The brain-MRI document's data or nothing: without --data, train only on OASIS slices
    # (the keras_png_slices_train/_validate/_test layout) and stop when none are found,
    # never on other slices that happen to be around (oasis-dcgan). Other slices are trained
    # on when named with --data, and the run says so (`substitute`).
    require_oasis: bool = False
    # stacked-mnist: how many three-digit stacks to draw (None: as many as the split has
    # images) and the seed that picks the three digits of each, so a stack set is repeatable
    stacks: int | None = None
    stack_seed: int = 0
    # Written by ganforge, not by hand: why the data are not the preset's documented data
    # (--data naming other slices than OASIS); the run's first line and config.json say it.
    substitute: str | None = None


@dataclass
class ModelConfig:
    """Which registered architecture to build, and its options."""

    arch: str = "dcgan-mnist"  # a name in ganforge.models.ARCHITECTURES
    latent_dim: int = 100
    options: dict[str, Any] = field(default_factory=dict)  # architecture keyword arguments


@dataclass
class OptimConfig:
    """Adam settings for both networks (the notebook's Adam(2e-4, beta1=0.5) by default)."""

    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    eps: float = 1e-8  # PyTorch's default; Keras' Adam uses 1e-7
    keras_epsilon: bool = False  # add eps where Keras does (before bias correction), not PyTorch
    # One Adam iteration counter for D and G, as when one Keras Adam object is passed to both
    # models (the notebook's GAN): bias correction then advances once per optimiser step of
    # either network.
    shared_counter: bool = False
    # R3GAN's optimiser schedule: over the first `ramp` iterations both learning rates fall
    # along a half cosine to lr_end times their value and beta2 moves the same way to
    # beta2_end (R3GAN: 0.25 and 0.9 -> 0.99), then they stay; 0: constant
    ramp: int = 0
    lr_end: float = 1.0
    beta2_end: float | None = None


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

    preset: str | None = None
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: str = "bce"  # a name in ganforge.losses.LOSSES
    # Schedule: give exactly one of epochs or iterations. Intervals below count in that unit.
    epochs: int | None = None
    iterations: int | None = None
    batch_size: int = 128
    # The iteration (training/step.py). alternating: D step(s), then G through the updated D;
    # simultaneous: both losses from one forward pass, both optimisers stepped together (a
    # Keras GradientTape loop).
    update: UpdateMode = "alternating"
    d_half_batch: bool = False  # D sees batch/2 real + batch/2 fake (the notebook's GAN)
    d_separate_updates: bool = True  # one D step on the real batch, then one on the fake batch
    d_fakes_from_eval_g: bool = False  # Keras generator.predict(): BatchNorm in inference mode
    shared_noise: bool = False  # one noise batch per iteration for D's fakes and the G step
    # shuffle: a new permutation per pass; sequential: in order (the notebook's DCGAN);
    # random: independent draws with replacement (the notebook's GAN)
    batch_order: BatchOrder = "shuffle"
    noise: NoiseLaw = "normal"  # normal, or uniform in [-1, 1]
    noise_std: float = 1.0  # standard deviation of normal training noise
    grid_noise: GridNoise = "train"  # train: same law as training
    grid_size: int = 5  # sample grids are grid_size x grid_size
    sample_every: int = 1
    # a grid after unit u when (u - sample_offset) % sample_every == 0: 1 puts the notebook's
    # `if e % 200 == 0` after iterations 1, 201, 401, ... (its loop counts e from 0)
    sample_offset: int = 0
    checkpoint_every: int = 1
    keep_checkpoints: int = 3
    eval_every: int = 0  # 0 disables evaluation during training
    eval_samples: int = 2000
    log_every: int = 50  # iterations between reads of the on-device loss accumulators
    # also keep every iteration's statistics (metrics.jsonl "raw", read with the means, no
    # extra sync) and plot them raw, as the notebook plots its losses
    raw_losses: bool = False
    # Stabilisers (all off in the documented recipes).
    label_smoothing: float = 0.0  # one-sided: real targets become 1 - label_smoothing
    r1_gamma: float = 0.0  # R1 gradient penalty on real images
    r1_interval: int = 1  # lazy R1 and R2: apply them every N iterations (scaled by N)
    r2_gamma: float = 0.0  # R2 gradient penalty on generated images (R3GAN: r1_gamma = r2_gamma)
    # gamma schedule of R1 and R2 (R3GAN): over the first gamma_ramp iterations both weights
    # fall along a half cosine to gamma_end times their value, then stay there; 0: constant
    gamma_ramp: int = 0
    gamma_end: float = 0.1
    ema_decay: float = 0.0  # exponential moving average of G weights, e.g. 0.999
    spectral_norm: Literal["off", "d"] = "off"  # d: spectral norm on D's conv/linear layers
    # Differentiable augmentation of every image D sees, real and fake (ganforge.augment):
    # comma-separated names, e.g. "translation,cutout"; "" is off.
    augment: str = ""
    augment_p: float = 1.0  # probability of each transform per image (fixed, without ADA)
    ada_target: float = 0.0  # > 0: adapt p (from 0) to keep E[sign(D(real))] near it (ADA: 0.6)
    ada_interval: int = 4  # D steps between adjustments of p
    ada_speed: float = 20000.0  # real images over which p can move from 0 to 1
    # Execution.
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    # auto: bf16 autocast on a GPU with native bf16, fp16 with gradient scaling on other GPUs
    precision: Precision = "auto"
    compile: Switch = "auto"  # torch.compile
    channels_last: Switch = "auto"
    # Fast-path switches; "auto" = on for a CUDA GPU, off elsewhere. Each one can be turned
    # off alone (--set key=off) to measure its effect (bench/train_speed.py --variants).
    compile_mode: CompileMode = "default"  # reduce-overhead: CUDA graphs per model
    fused_optim: Switch = "auto"  # fused Adam kernels (CUDA only; the CPU uses foreach)
    cuda_graphs: Literal["off", "on"] = "off"  # replay the whole training step as one CUDA graph
    async_artefacts: Switch = "auto"  # sample grids written by a background thread
    deterministic: bool = False
    # Several processes (torchrun; docs/distributed.md). batch_size stays the global batch.
    sync_bn: bool = False  # BatchNorm statistics of the global batch, not of each process's part
    dist_backend: Literal["auto", "gloo", "nccl"] = "auto"  # auto: nccl on CUDA, gloo on the CPU
    dist_timeout_s: float = 300.0  # longest wait for another process: joining, each collective
    out_dir: str = "runs"
    run_name: str | None = None
    # Experiment loggers besides metrics.jsonl and its CSV twin metrics.csv (always written):
    # names in ganforge.loggers.LOGGERS, e.g. [tensorboard].
    loggers: list[str] = field(default_factory=list)

    # ---- derived values -------------------------------------------------------------
    @property
    def schedule_unit(self) -> str:
        return "epoch" if self.epochs is not None else "iteration"

    @property
    def schedule_length(self) -> int:
        return self.epochs if self.epochs is not None else int(self.iterations or 0)

    # ---- validation -----------------------------------------------------------------
    def batch_sizes(self, world_size: int = 1) -> BatchSizes:
        """One process's batches: D sees half real, half fake with ``d_half_batch``."""
        real = self.batch_size // 2 if self.d_half_batch else self.batch_size
        return BatchSizes(
            real // world_size, real // world_size, self.batch_size // world_size, world_size
        )

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
        return _build(cls, values, prefix="")

    def with_overrides(self, overrides: dict[str, Any]) -> "TrainConfig":
        """Return a copy with dotted keys replaced, e.g. {"optim.lr_g": 1e-3}.

        String values (from the command line) are converted to the field's type.
        Setting ``epochs`` clears ``iterations`` and vice versa, so a user can switch
        the schedule of any preset with one flag.
        """
        values = self.to_dict()
        for key, raw in overrides.items():
            if not isinstance(key, str):
                raise ConfigError(
                    f"setting names are dotted strings such as 'optim.lr_g', got {_show(key)}"
                )
            _set_dotted(values, key, raw, type(self))
            if key == "epochs" and values["epochs"] is not None:
                values["iterations"] = None
            if key == "iterations" and values["iterations"] is not None:
                values["epochs"] = None
        return TrainConfig.from_dict(values)


def _problems(c: TrainConfig):
    def positive(name: str, value: float | int | None, allow_none: bool = False):
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

    if c.update == "simultaneous" and c.d_separate_updates:
        yield (
            "update=simultaneous takes one D step on the real and fake losses together; "
            "set d_separate_updates=false"
        )
    if c.update == "simultaneous" and c.d_fakes_from_eval_g:
        yield (
            "update=simultaneous trains G through the fakes D saw, which must come from G in "
            "training mode; set d_fakes_from_eval_g=false"
        )
    if c.shared_noise and c.d_half_batch:
        yield (
            "shared_noise feeds the same noise batch to D and G, which d_half_batch sizes "
            "differently; drop one of them"
        )
    if (c.epochs is None) == (c.iterations is None):
        yield "give exactly one of epochs or iterations"
    yield from positive("epochs", c.epochs, allow_none=True)
    yield from positive("iterations", c.iterations, allow_none=True)
    yield from positive("batch_size", c.batch_size)
    if c.d_half_batch and c.batch_size < 2:
        yield "batch_size must be at least 2 with d_half_batch (D sees half real, half fake)"
    yield from positive("model.latent_dim", c.model.latent_dim)
    yield from positive("optim.lr_g", c.optim.lr_g)
    yield from positive("optim.lr_d", c.optim.lr_d)
    yield from positive("optim.eps", c.optim.eps)
    for name in ("beta1", "beta2"):
        beta = getattr(c.optim, name)
        if not (isinstance(beta, (int, float)) and 0.0 <= beta < 1.0):
            yield f"optim.{name} must be in [0, 1) (got {beta!r})"
    if isinstance(c.optim.ramp, bool) or not isinstance(c.optim.ramp, int) or c.optim.ramp < 0:
        yield f"optim.ramp must be 0 (off) or a number of iterations (got {c.optim.ramp!r})"
    if not 0.0 < c.optim.lr_end <= 1.0:
        yield f"optim.lr_end must be a share of the starting rate in (0, 1] (got {c.optim.lr_end})"
    if c.optim.beta2_end is not None and not 0.0 <= c.optim.beta2_end < 1.0:
        yield f"optim.beta2_end must be in [0, 1) (got {c.optim.beta2_end!r})"
    yield from positive("noise_std", c.noise_std)
    yield from positive("grid_size", c.grid_size)
    for name in ("sample_every", "checkpoint_every", "log_every", "keep_checkpoints"):
        yield from positive(name, getattr(c, name))
    if not (isinstance(c.sample_offset, int) and c.sample_offset >= 0):
        yield f"sample_offset must be an integer >= 0 (got {c.sample_offset!r})"
    if c.eval_every < 0:
        yield f"eval_every must be 0 (off) or positive (got {c.eval_every})"
    batchnorm = c.model.options.get("batchnorm", "torch")
    if c.sync_bn and batchnorm != "torch":
        yield (
            f"sync_bn replaces every BatchNorm with PyTorch's SyncBatchNorm, which would drop "
            f"model.options.batchnorm: {batchnorm} (the documents' moving statistics); "
            "turn one of them off"
        )
    if not 0.0 <= c.label_smoothing < 0.5:
        yield f"label_smoothing must be in [0, 0.5) (got {c.label_smoothing})"
    yield from positive("r1_interval", c.r1_interval)
    for name in ("r1_gamma", "r2_gamma"):
        gamma = getattr(c, name)
        if not (isinstance(gamma, (int, float)) and gamma >= 0 and math.isfinite(gamma)):
            yield f"{name} must be a finite number >= 0 (got {gamma})"
    if isinstance(c.gamma_ramp, bool) or not isinstance(c.gamma_ramp, int) or c.gamma_ramp < 0:
        yield f"gamma_ramp must be 0 (off) or a number of iterations (got {c.gamma_ramp!r})"
    if not 0.0 <= c.gamma_end <= 1.0:
        yield f"gamma_end must be a share of the starting gamma in [0, 1] (got {c.gamma_end})"
    if not (c.ema_decay == 0.0 or 0.0 < c.ema_decay < 1.0):
        yield f"ema_decay must be 0 (off) or in (0, 1) (got {c.ema_decay})"
    if not 0.0 <= c.augment_p <= 1.0:
        yield f"augment_p must be a probability in [0, 1] (got {c.augment_p})"
    if not 0.0 <= c.ada_target < 1.0:
        yield f"ada_target must be 0 (off) or in (0, 1), e.g. 0.6 (got {c.ada_target})"
    yield from positive("ada_interval", c.ada_interval)
    yield from positive("ada_speed", c.ada_speed)
    for dotted, allowed in choice_fields(TrainConfig).items():
        value = _get_dotted(c, dotted)
        if value not in allowed:
            yield f"{dotted} must be one of {', '.join(allowed)} (got {_show(value)})"
    res = c.data.resolution
    if res is not None and (not isinstance(res, int) or res < 8):
        yield f"data.resolution must be an integer of at least 8 (got {res!r})"
    if c.data.channels not in (None, 1, 3):
        yield f"data.channels must be 1 or 3 (got {c.data.channels!r})"
    if c.data.limit is not None and c.data.limit <= 0:
        yield f"data.limit must be positive (got {c.data.limit})"
    if not -(2**63) <= c.seed < 2**63:
        yield f"seed must fit in 64 bits (got {_show(c.seed)})"
    try:  # options end up in config.json and checkpoints: plain JSON values only
        json.dumps(c.model.options)
    except (TypeError, ValueError, RecursionError):
        yield (
            "model.options must hold numbers, strings, lists and mappings only "
            f"(got {_show(c.model.options)})"
        )
    if not c.device or not (
        c.device in ("auto", "cpu", "cuda", "mps") or c.device.startswith("cuda:")
    ):
        yield f"device must be auto, cpu, cuda, cuda:N or mps (got {c.device!r})"


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
    if key.startswith("model.options."):  # free-form architecture options
        options = values["model"].setdefault("options", {})
        if not isinstance(options, dict):
            raise ConfigError(
                f"model.options must be a mapping of option names to values (got {_show(options)})"
            )
        options[key.removeprefix("model.options.")] = _parse_scalar(raw)
        return
    parts = key.split(".")
    target = values
    for depth, part in enumerate(parts):
        hints = typing.get_type_hints(cls)
        if part not in hints:
            valid = ", ".join(f.name for f in dataclasses.fields(cls))
            raise ConfigError(f"unknown setting {_show(key)}; valid names here: {valid}")
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


def _parse_scalar(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        return (
            float(raw) if any(ch in raw for ch in ".eE") and _is_float(raw) else yaml.safe_load(raw)
        )
    except (yaml.YAMLError, ValueError):  # ValueError: an integer too long for Python to convert
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
    if origin is Literal:  # a choice: read as text; the checks name the valid values
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
            if isinstance(raw, bool):  # YAML 1.1 reads a bare on/off/yes/no as a boolean
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
        if origin is list:  # a list of names: "a,b" on the command line, a YAML list in a file
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
            try:  # stored as JSON (config.json, checkpoints): no YAML dates, no self-references
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
    unknown = sorted(set(values) - names, key=str)  # keys from YAML need not be strings
    if unknown:
        raise ConfigError(
            f"unknown setting {prefix}{_show(unknown[0])}; "
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
