"""Image-quality metrics, registered by name, and the evaluations built on them.

Every metric is a function ``(real_uint8, fake_uint8, context) -> float | dict`` over
uint8 images [N, C, H, W]; :data:`METRICS` maps names to :class:`Metric` records that say
which outputs it produces, which way each is better, and how many samples it needs.

    fid, kid, is, precision-recall, class-balance   need a classifier (MNIST, Fashion-MNIST)
    swd, msssim                                    need nothing (any grayscale or RGB data)
    fid-inception                                  needs local Inception-v3 weights (optional)

:func:`evaluate` runs a list of them; :func:`training_evaluator` is the hook the trainer
calls every ``eval_every`` epochs or iterations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ganforge.config import TrainConfig
from ganforge.data.base import ImageData
from ganforge.errors import ConfigError, DataError, unknown_name
from ganforge.metrics.classes import class_balance, inception_score
from ganforge.metrics.context import MetricContext, dataset_family, default_features
from ganforge.metrics.frechet import frechet_distance, kernel_distance
from ganforge.metrics.inception import check_inception_available, inception_fid
from ganforge.metrics.msssim import msssim_diversity
from ganforge.metrics.precision_recall import precision_recall
from ganforge.metrics.swd import pyramid_swd

MetricFn = Callable[[torch.Tensor, torch.Tensor, MetricContext], "float | dict[str, float]"]
LOWER, HIGHER, MATCH, INFO = "lower", "higher", "match", "info"  # MATCH: closest to the real-pairs value


@dataclass(frozen=True)
class Metric:
    """A registered metric: its function and what a reader needs to interpret its numbers."""

    name: str
    compute: MetricFn
    outputs: dict[str, str]  # output key -> LOWER | HIGHER | MATCH | INFO
    min_samples: int  # below this many images per set the number is noise
    needs_classifier: bool
    summary: str

    def __call__(self, real: torch.Tensor, fake: torch.Tensor, context: MetricContext) -> float | dict[str, float]:
        return self.compute(real, fake, context)


_REGISTRY = (
    Metric("fid", frechet_distance, {"fid": LOWER}, 500, True,
           "Fréchet distance of classifier embeddings (Inception-free FID)"),
    Metric("kid", kernel_distance, {"kid": LOWER, "kid_std": INFO}, 100, True,
           "kernel (MMD) distance of classifier embeddings; unbiased in the sample count"),
    Metric("is", inception_score, {"is": HIGHER, "is_std": INFO}, 500, True,
           "Inception-Score analogue from the classifier's predictions"),
    Metric("precision-recall", precision_recall, {"precision": HIGHER, "recall": HIGHER}, 200, True,
           "improved precision (realism) and recall (coverage of the data), k=3"),
    Metric("class-balance", class_balance, {"coverage": HIGHER, "class_kl": LOWER}, 200, True,
           "share of classes generated at least half as often as in the data; KL to the class prior"),
    Metric("swd", pyramid_swd, {"swd": LOWER}, 100, False,
           "sliced Wasserstein distance of Laplacian-pyramid patches (x1000), per level swd_<size>"),
    Metric("msssim", msssim_diversity, {"msssim": MATCH, "msssim_real": INFO}, 50, False,
           "mean MS-SSIM of random pairs (diversity); compare with msssim_real"),
    Metric("fid-inception", inception_fid, {"fid_inception": LOWER}, 2048, False,
           "standard FID on Inception-v3 features (needs local weights)"),
)
_PREREQUISITES: dict[str, Callable[[], object]] = {"fid-inception": check_inception_available}
METRICS: dict[str, Metric] = {m.name: m for m in _REGISTRY}
OUTPUT_TO_METRIC = {key: m.name for m in _REGISTRY for key in m.outputs}
CLASSIFIER_SET = ("fid", "kid", "is", "precision-recall", "class-balance", "swd", "msssim")
FREE_SET = ("swd", "msssim")
TRAINING_SET = {True: ("fid", "precision-recall", "class-balance"), False: ("swd", "msssim")}


def direction(key: str) -> str:
    """Which way an output is better; per-level keys such as swd_28 are lower-is-better like swd."""
    if key in OUTPUT_TO_METRIC:
        return METRICS[OUTPUT_TO_METRIC[key]].outputs[key]
    return LOWER if key.startswith("swd_") else INFO


def resolve_metrics(spec: str | list[str] | None, context: MetricContext) -> list[str]:
    """Metric names from 'fid,recall,swd' (output names allowed) or the default set for the data."""
    if spec is None or spec in ("", "auto", "all"):
        return list(CLASSIFIER_SET if context.extractor != "none" else FREE_SET)
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for part in (p.strip() for p in parts if p.strip()):
        name = part if part in METRICS else OUTPUT_TO_METRIC.get(part.replace("-", "_"))
        if name is None:
            raise unknown_name("metric", part, list(METRICS))
        if name not in names:
            names.append(name)
    return names


def main_metric(names: list[str]) -> str:
    """The number a run is judged by: classifier FID where available, else SWD."""
    for candidate in ("fid", "swd", "fid-inception"):
        if candidate in names:
            return next(iter(METRICS[candidate].outputs))
    return next(iter(METRICS[names[0]].outputs))


def check_available(names: list[str], context: MetricContext) -> None:
    """Fail before any images are made when a metric's network or weights file is missing."""
    for name in names:
        if METRICS[name].needs_classifier:
            context.classifier(name)
        if name in _PREREQUISITES:
            _PREREQUISITES[name]()


def check_samples(names: list[str], real_count: int, fake_count: int) -> None:
    """Refuse before any work when a set is too small for a requested metric to mean anything."""
    for name in names:
        need = METRICS[name].min_samples
        have = min(real_count, fake_count)
        if have < need:
            raise ConfigError(f"metric {name!r} needs at least {need} generated and {need} reference images to be "
                              f"meaningful (got {fake_count} generated, {real_count} reference); raise the count "
                              f"(--count / eval_samples) or drop {name}")


def evaluate(real: torch.Tensor, fake: torch.Tensor, names: list[str], context: MetricContext) -> dict[str, float]:
    """Run the named metrics on uint8 images [N, C, H, W]; one flat dict of floats, in order."""
    if real.shape[1:] != fake.shape[1:]:
        raise DataError(f"reference images are {tuple(real.shape[1:])} but generated images are "
                        f"{tuple(fake.shape[1:])}; evaluate against data of the generator's size and channels")
    check_available(names, context)
    check_samples(names, len(real), len(fake))
    scores: dict[str, float] = {}
    try:
        for name in names:
            value = METRICS[name](real, fake, context)
            scores.update(value if isinstance(value, dict) else {next(iter(METRICS[name].outputs)): value})
    finally:
        context.release(fake)
    return scores


def reference_subset(images: torch.Tensor, count: int) -> torch.Tensor:
    """`count` reference images chosen by a fixed seed: every evaluation of the same data and count
    compares against the same images, whatever the noise seed."""
    if count >= len(images):
        return images
    index = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:count]
    return images[index.sort().values]


def _cuda_devices(device: torch.device) -> list[int]:
    return [device.index or 0] if device.type == "cuda" else []


def training_evaluator(config: TrainConfig, data: ImageData,
                       device: torch.device | str) -> Callable[[torch.nn.Module, int], dict[str, float]]:
    """The default Evaluator for ``train()``: a cheap evaluation on ``config.eval_samples`` images.

    Main metric: FID on the classifier embedding for MNIST and Fashion-MNIST, SWD for
    data without a classifier. The generated images come from the same noise at every
    evaluation, so the quality-versus-time curve shows the generator changing, not the noise.
    """
    from ganforge.checkpoint import GeneratorInfo
    from ganforge.generate import generate

    context = MetricContext(data.name, seed=config.seed, device=torch.device(device))
    names = list(TRAINING_SET[context.extractor != "none"])
    count = min(config.eval_samples, len(data))
    check_available(names, context)
    check_samples(names, count, config.eval_samples)
    real = reference_subset(data.images, count)
    info = GeneratorInfo.from_config(config, data.image_shape, data.name, 0)
    main = main_metric(names)

    def evaluator(generator: torch.nn.Module, step: int) -> dict[str, float]:
        with torch.random.fork_rng(devices=_cuda_devices(context.device)):  # training's RNG streams stay untouched
            fake = generate(generator, info, config.eval_samples, seed=config.seed + 7)
            scores = evaluate(real, fake, names, context)
        return {"main": scores[main], **{k: round(v, 6) for k, v in scores.items()}}

    return evaluator


__all__ = ["METRICS", "Metric", "MetricContext", "check_available", "check_samples", "dataset_family",
           "default_features", "direction", "evaluate", "main_metric", "reference_subset", "resolve_metrics",
           "training_evaluator"]
