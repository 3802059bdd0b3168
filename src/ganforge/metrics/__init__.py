"""Image-quality metrics, registered where they are defined, and the evaluations built on them.

Every metric is a function over uint8 images [N, C, H, W] (or, for feature metrics, over
two feature matrices) registered with :func:`ganforge.metrics.registry.register`, which
records its outputs and which way each is better, how many samples it needs and its rank
as the main metric; :data:`METRICS` maps names to those records.

    fid, kid, precision-recall, density-coverage   feature metrics: run in the classifier's space
                                                    and the contrastive encoder's (MNIST, Fashion,
                                                    brain slices: classifier.FEATURE_DATA)
    is, class-balance                               need the classifier's logits
    stacked-mnist                                   modes and mode_kl of StackedMNIST stacks
    swd, msssim                                     need nothing (any grayscale or RGB data)
    fid-inception                                   needs local Inception-v3 weights (optional)

:func:`evaluate` runs a list of them (:func:`evaluate_with_intervals` adds bootstrap
intervals); :func:`training_evaluator` is the hook the trainer calls every ``schedule.eval_every``
epochs or iterations.
"""

from __future__ import annotations

from typing import Callable

import torch

# Importing the metric modules registers their metrics, in this order (the order of reports).
# isort: off
import ganforge.metrics.frechet  # noqa: F401
import ganforge.metrics.precision_recall  # noqa: F401
import ganforge.metrics.classes  # noqa: F401
import ganforge.metrics.swd  # noqa: F401
import ganforge.metrics.msssim  # noqa: F401
import ganforge.metrics.inception  # noqa: F401
import ganforge.metrics.memorisation  # noqa: F401
import ganforge.metrics.modes  # noqa: F401

# isort: on
from ganforge.config import TrainConfig
from ganforge.data.base import ImageData
from ganforge.errors import ConfigError, DataError, unknown_name
from ganforge.metrics.classifier import FEATURE_DATA, load_classifier
from ganforge.metrics.context import (
    MetricContext,
    dataset_family,
    default_features,
    network_for,
)
from ganforge.metrics.modes import stacked_problem
from ganforge.metrics.registry import (
    HIGHER,
    INFO,
    LOWER,
    MATCH,
    METRICS,
    NOT_INCEPTION,
    SPACES,
    Metric,
    direction,
    main_metric,
    main_output_order,
    split_key,
)
from ganforge.metrics.uncertainty import RESAMPLES, feature_intervals


def usable(metric: Metric, context: MetricContext) -> bool:
    """Whether the data and context give a metric what it needs (for the default set)."""
    if metric.prerequisite is not None:
        return False
    if metric.needs in ("features", "classifier"):
        return context.extractor != "none"
    if metric.needs == "labels":
        return context.extractor != "none" and context.fake_labels is not None
    if metric.needs == "training":
        return context.training is not None
    if metric.needs == "stacked":
        return not stacked_problem(context)
    return True


TRAINING_SET = {
    True: ("fid", "precision-recall", "density-coverage", "class-balance"),
    False: ("swd", "msssim"),
}


def output_keys(names: list[str], context: MetricContext) -> list[str]:
    """Every output key the named metrics produce here (feature metrics once per space)."""
    keys: list[str] = []
    for name in names:
        metric = METRICS[name]
        spaces = context.active_spaces if metric.needs == "features" else (None,)
        keys += [key for space in spaces for key in metric.keys(space)]
    return keys


def resolve_metrics(spec: str | list[str] | None, context: MetricContext) -> list[str]:
    """Metric names from 'fid,recall,swd' (output names allowed) or the default set for the data."""
    if spec is None or spec in ("", "auto", "all"):
        return [name for name, metric in METRICS.items() if usable(metric, context)]
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for part in (p.strip() for p in parts if p.strip()):
        base, _ = split_key(part.replace("-", "_"))
        name = part if part in METRICS else OUTPUT_INDEX.get(base)
        if name is None:
            raise unknown_name("metric", part, list(METRICS))
        if name not in names:
            names.append(name)
    return names


def check_available(names: list[str], context: MetricContext) -> None:
    """Fail before any images are made when a metric's network or weights file is missing."""
    for name in names:
        metric = METRICS[name]
        if metric.needs_classifier:
            context.classifier(name)
        if metric.needs == "features" and "encoder" in context.active_spaces:
            context.encoder(name)
        if metric.prerequisite is not None:
            metric.prerequisite()
        if metric.needs == "labels" and context.fake_labels is None:
            raise ConfigError(
                f"metric {name!r} scores a conditional generator (one trained with "
                f"model.options.num_classes); this one is unconditional: drop {name}"
            )
        if metric.needs == "stacked":
            problem = stacked_problem(context)
            if problem:
                raise ConfigError(problem)
            load_classifier("mnist")
        if metric.needs == "training" and context.training is None:
            raise ConfigError(
                f"metric {name!r} needs reference images the generator did not train on: "
                "evaluate against the test split of its training data (the default for MNIST "
                f"and Fashion-MNIST; --split test for brain slices or a folder) or drop {name}"
            )


def unfit_note(names: list[str], context: MetricContext) -> str | None:
    """The one line a run owes its user when the data's feature networks cannot judge its
    images (another size, channel count, set or modality): why, and which metrics were scored."""
    if context.unfit is None:
        return None
    return (
        f"no feature metrics (FID, KID, precision/recall, density/coverage, class metrics): "
        f"{context.unfit}; scored instead: {', '.join(names) or 'nothing'}"
    )


def check_samples(names: list[str], real_count: int, fake_count: int) -> None:
    """Refuse before any work when a set is too small for a requested metric to mean anything."""
    for name in names:
        need = METRICS[name].min_samples
        # the mode metric scores the generated stacks alone (its target is uniform)
        have = fake_count if METRICS[name].needs == "stacked" else min(real_count, fake_count)
        if have < need:
            raise ConfigError(
                f"metric {name!r} needs at least {need} generated and {need} reference images to "
                "be "
                f"meaningful (got {fake_count} generated, {real_count} reference); raise the count "
                f"(--count / eval_samples) or drop {name}"
            )


def evaluate(
    real: torch.Tensor, fake: torch.Tensor, names: list[str], context: MetricContext
) -> dict[str, float]:
    """Run the named metrics on uint8 images [N, C, H, W]; one flat dict of floats, in order."""
    return evaluate_with_intervals(real, fake, names, context, resamples=0)[0]


def evaluate_with_intervals(
    real: torch.Tensor,
    fake: torch.Tensor,
    names: list[str],
    context: MetricContext,
    resamples: int = RESAMPLES,
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """The scores, and bootstrap 95 % intervals for FID, KID, precision, recall, density and
    coverage in every feature space (none when resamples is 0)."""
    if real.shape[1:] != fake.shape[1:]:
        raise DataError(
            f"reference images are {tuple(real.shape[1:])} but generated images are "
            f"{tuple(fake.shape[1:])}; evaluate against data of the generator's size and channels"
        )
    check_available(names, context)
    check_samples(names, len(real), len(fake))
    scores: dict[str, float] = {}
    intervals: dict[str, list[float]] = {}
    try:
        for name in names:
            metric = METRICS[name]
            if metric.needs != "features":
                value = metric(real, fake, context)
                scores.update(
                    value if isinstance(value, dict) else {next(iter(metric.outputs)): value}
                )
                continue
            for space in context.active_spaces:
                f_real = context.space_features(real, space, name)
                f_fake = context.space_features(fake, space, name)
                value = metric(f_real, f_fake, context)
                value = value if isinstance(value, dict) else {next(iter(metric.outputs)): value}
                scores.update({key + SPACES[space].suffix: v for key, v in value.items()})
        if resamples > 0:
            for offset, space in enumerate(context.active_spaces):
                suffix = SPACES[space].suffix
                intervals.update(
                    feature_intervals(
                        context.space_features(real, space, "fid"),
                        context.space_features(fake, space, "fid"),
                        scores,
                        suffix,
                        context.rng(101 + offset),
                        resamples,
                    )
                )
            for offset, name in enumerate(names):
                metric = METRICS[name]
                if metric.intervals is not None:
                    generator = context.rng(201 + offset)
                    intervals.update(
                        metric.intervals(real, fake, context, scores, generator, resamples)
                    )
    finally:
        context.release(fake)
    return scores, intervals


def reference_subset(images: torch.Tensor, count: int) -> torch.Tensor:
    """`count` reference images chosen by a fixed seed: every evaluation of the same data and count
    compares against the same images, whatever the noise seed."""
    if count >= len(images):
        return images
    index = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:count]
    return images[index.sort().values]


def _cuda_devices(device: torch.device) -> list[int]:
    return [device.index or 0] if device.type == "cuda" else []


def training_evaluator(
    config: TrainConfig, data: ImageData, device: torch.device | str
) -> Callable[[torch.nn.Module, int], dict[str, float]]:
    """The default Evaluator for ``train()``: a cheap evaluation on
    ``config.schedule.eval_samples`` images.

    Main metric: FID on the classifier embedding for MNIST and Fashion-MNIST, SWD for
    data without a classifier (the registry's main rank). Only the classifier's space is
    used here, to keep evaluation during training cheap; ``ganforge eval`` adds the
    encoder's. The generated images come from the same noise at every evaluation, so the
    quality-versus-time curve shows the generator changing, not the noise.
    """
    from ganforge.checkpoint import GeneratorInfo
    from ganforge.generate import generate

    spec = network_for(data.name)
    context = MetricContext(
        data.name,
        seed=config.seed,
        device=torch.device(device),
        spaces=("classifier",),
        # brain runs keep SWD as their main metric while training (FeatureData.during_training)
        features="auto" if spec is None or spec.during_training else "none",
        image_shape=data.image_shape,
    )
    names = list(TRAINING_SET[context.extractor != "none"])
    count = min(config.schedule.eval_samples, len(data))
    check_available(names, context)
    check_samples(names, count, config.schedule.eval_samples)
    real = reference_subset(data.images, count)
    info = GeneratorInfo.from_config(config, data.image_shape, data.name, 0)
    main = main_metric(names)

    def evaluator(generator: torch.nn.Module, step: int) -> dict[str, float]:
        # training's RNG streams stay untouched
        with torch.random.fork_rng(devices=_cuda_devices(context.device)):
            fake = generate(generator, info, config.schedule.eval_samples, seed=config.seed + 7)
            scores = evaluate(real, fake, names, context)
        return {"main": scores[main], **{k: round(v, 6) for k, v in scores.items()}}

    return evaluator


OUTPUT_INDEX = {key: m.name for m in METRICS.values() for key in m.outputs}

__all__ = [
    "HIGHER",
    "INFO",
    "LOWER",
    "MATCH",
    "METRICS",
    "NOT_INCEPTION",
    "SPACES",
    "Metric",
    "MetricContext",
    "check_available",
    "check_samples",
    "dataset_family",
    "default_features",
    "direction",
    "evaluate",
    "evaluate_with_intervals",
    "FEATURE_DATA",
    "unfit_note",
    "main_metric",
    "main_output_order",
    "output_keys",
    "reference_subset",
    "resolve_metrics",
    "split_key",
    "training_evaluator",
]
