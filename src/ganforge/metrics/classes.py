"""Metrics from the classifier's class predictions: IS analogue, class coverage, class KL.

For labelled data the question "does the generator make every class, as often as the
data does?" has a direct answer: classify the generated images and compare the class
histogram with the reference's. The Inception Score analogue (computed by torchmetrics
on the classifier's logits) rewards confident and varied predictions at once.
"""

from __future__ import annotations

import warnings

import torch
from torchmetrics.image.inception import InceptionScore

from ganforge.errors import ConfigError
from ganforge.metrics.context import MetricContext
from ganforge.metrics.frechet import PrecomputedFeatures
from ganforge.metrics.registry import HIGHER, INFO, LOWER, register

# a class counts as covered at half or more of its reference share
COVERAGE_SHARE = 0.5


@register(
    "is",
    outputs={"is": HIGHER, "is_std": INFO},
    min_samples=500,
    needs="classifier",
    summary="Inception-Score analogue from the classifier's predictions",
)
def inception_score(
    real: torch.Tensor, fake: torch.Tensor, context: MetricContext
) -> dict[str, float]:
    """exp(E KL(p(y|x) || p(y))) over 10 splits (higher is better; real MNIST scores about 9.9)."""
    _, logits = context.embedding(fake, "is")
    # its "features are kept in memory" note is moot for 2,000 x 10 logits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        metric = InceptionScore(feature=PrecomputedFeatures(logits.shape[1]), splits=10)
    metric.update(logits)
    # it shuffles with the global RNG: seed it, then restore
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(context.seed)
        mean, std = metric.compute()
    return {"is": float(mean), "is_std": float(std)}


def class_histogram(logits: torch.Tensor) -> torch.Tensor:
    """The mean predicted class distribution (softmax averaged over images)."""
    return logits.softmax(dim=1).mean(dim=0)


@register(
    "class-balance",
    outputs={"class_coverage": HIGHER, "class_kl": LOWER},
    min_samples=200,
    needs="classifier",
    summary="share of classes generated at least half as often as in the data; "
    "KL to the class prior",
)
def class_balance(
    real: torch.Tensor, fake: torch.Tensor, context: MetricContext
) -> dict[str, float]:
    """Class coverage (higher is better) and KL(generated classes || reference classes) (lower is
    better).

    Coverage is the fraction of classes whose share of the generated images (by the
    classifier's arg-max) is at least half their share of the reference images: a
    dropped or starved class lowers it by 1/K. The KL uses the mean softmax, which has
    no empty bins, so it stays finite; it is at most log K (every image one class).
    """
    _, real_logits = context.embedding(real, "coverage")
    _, fake_logits = context.embedding(fake, "coverage")
    k = real_logits.shape[1]
    real_share = torch.bincount(real_logits.argmax(1), minlength=k).double() / len(real_logits)
    fake_share = torch.bincount(fake_logits.argmax(1), minlength=k).double() / len(fake_logits)
    present = real_share > 0
    covered = (fake_share[present] >= COVERAGE_SHARE * real_share[present]).double().mean()
    p, q = class_histogram(fake_logits), class_histogram(real_logits)
    kl = (p * (p.clamp_min(1e-12).log() - q.clamp_min(1e-12).log())).sum()
    return {"class_coverage": float(covered), "class_kl": float(kl)}


@register(
    "class-accuracy",
    outputs={"class_accuracy": HIGHER},
    min_samples=200,
    needs="labels",
    summary="share of a conditional generator's images that the classifier names as the class "
    "asked for",
)
def class_accuracy(
    real: torch.Tensor, fake: torch.Tensor, context: MetricContext
) -> dict[str, float]:
    """How well a conditional generator follows the requested class: the classifier's arg-max
    against context.fake_labels (the classifier's own test accuracy is the real-data value)."""
    labels = context.fake_labels
    if labels is None or len(labels) != len(fake):
        raise ConfigError(
            "metric 'class-accuracy' needs the class of every generated image (context.fake_labels)"
        )
    _, logits = context.embedding(fake, "class-accuracy")
    labels = by_name(labels, context)
    if int(labels.max()) >= logits.shape[1]:
        raise ConfigError(
            f"the generator has classes up to {int(labels.max())} but the {context.extractor} "
            f"classifier knows {logits.shape[1]}; drop class-accuracy"
        )
    return {"class_accuracy": float((logits.argmax(1).cpu() == labels.cpu()).double().mean())}


def by_name(labels: torch.Tensor, context: MetricContext) -> torch.Tensor:
    """The generator's labels in the classifier's class order, matched by name where both name
    their classes (a folder's classes and the classifier's need not be numbered alike)."""
    known = context.classifier_classes("class-accuracy")
    if not known or not context.class_names:
        return labels
    missing = [name for name in context.class_names if name not in known]
    if missing:
        raise ConfigError(
            f"the generator's class {missing[0]!r} is not one the {context.extractor} "
            f"classifier knows ({', '.join(known)}); drop class-accuracy"
        )
    order = torch.tensor([known.index(name) for name in context.class_names])
    return order[labels.cpu()]
