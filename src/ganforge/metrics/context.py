"""What metrics share: the dataset's feature networks, a seed, and cached embeddings.

Several metrics use the same embedding (FID, KID, precision/recall, density/coverage, in
the classifier's space and in the contrastive encoder's) or the same logits (IS, class
coverage, class KL). The context computes each set's embedding once per space and hands
it to every metric that asks, so a full evaluation embeds each image once per network.
During training the reference set is the same tensor at every evaluation, so its
embedding is computed once per run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ganforge.errors import ConfigError
from ganforge.metrics.classifier import (
    CLASSIFIER_DATASETS,
    FEATURE_DATA,
    FeatureData,
    SmallClassifier,
    embed,
    load_classifier,
)
from ganforge.metrics.encoder import ContrastiveEncoder, encode, load_encoder
from ganforge.metrics.registry import SPACES

FEATURE_CHOICES = ("auto", *CLASSIFIER_DATASETS, "none")
# what needs no feature network: the metrics that still apply where none fits
PRETRAINED_FREE = "swd, msssim and memorisation (in pixels, with --split test)"


def dataset_family(name: str) -> str:
    """'mnist/train' -> 'mnist'; 'fashion-mnist/test' -> 'fashion-mnist'; 'folder:...' ->
    'folder:...'.
    """
    return name.split("/", 1)[0]


def network_for(dataset: str) -> FeatureData | None:
    """The shipped feature networks whose training data `dataset` belongs to (by family)."""
    family = dataset_family(dataset)
    return next((spec for spec in FEATURE_DATA.values() if family in spec.families), None)


def default_features(dataset: str, image_shape: tuple[int, ...] | None = None) -> str:
    """The networks that fit a dataset (and its images' shape, when known), or 'none' when
    ganforge has none for it or the images are not of the kind they were trained on."""
    spec = network_for(dataset)
    return spec.name if spec is not None and spec.unfit(image_shape) is None else "none"


def unfit_reason(
    dataset: str, image_shape: tuple[int, ...] | None, source: str | None, features: str = "auto"
) -> str | None:
    """Why the feature networks meant for this data cannot judge it, or None when they can (or
    none are meant for it): images of another size or channel count, or a run of a source that
    has networks (a brain-mri run) trained on other data (another modality or set)."""
    if features == "none":
        return None
    spec = network_for(dataset) if features == "auto" else FEATURE_DATA[features]
    if spec is not None:
        return spec.unfit(image_shape)
    meant = next((s for s in FEATURE_DATA.values() if source in s.sources), None)
    if meant is None:
        return None
    return (
        f"the {meant.name} feature networks were trained on {meant.what}, and {dataset} is "
        "other data (another set or modality)"
    )


@dataclass
class MetricContext:
    """Shared state of one evaluation (or of all evaluations of one training run)."""

    # the reference data's name, e.g. "mnist/train"
    dataset: str
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    # a classifier name, "none", or "auto" (by dataset)
    features: str = "auto"
    # feature spaces for feature metrics, where the data has them
    spaces: tuple[str, ...] = tuple(SPACES)
    training: torch.Tensor | None = (
        # the generator's training images, when the reference is unseen data
        None
    )
    # [N] classes a conditional generator was asked for
    fake_labels: torch.Tensor | None = None
    # the generator's class names (label i is class_names[i]), to match the classifier's by name
    class_names: tuple[str, ...] = ()
    # [C, H, W] of the images, so that a feature space judges only the kind it was trained on
    image_shape: tuple[int, ...] | None = None
    # the data source the run trained on (DataConfig.dataset)
    source: str | None = None
    _classifier: SmallClassifier | None = field(default=None, repr=False)
    _classifier_classes: tuple[str, ...] = field(default=(), repr=False)
    _encoder: ContrastiveEncoder | None = field(default=None, repr=False)
    _features: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, repr=False
    )
    _cache: dict[int, tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]] = field(
        default_factory=dict, repr=False
    )
    _memo: dict[tuple[str, int], tuple[torch.Tensor, Any]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.features not in FEATURE_CHOICES:
            raise ConfigError(
                f"features must be one of {', '.join(FEATURE_CHOICES)} (got {self.features!r})"
            )
        unknown = [s for s in self.spaces if s not in SPACES]
        if unknown:
            raise ConfigError(
                f"unknown feature space {unknown[0]!r}; choose from {', '.join(SPACES)}"
            )
        self.device = torch.device(self.device)

    @property
    def unfit(self) -> str | None:
        """Why the feature networks meant for this data cannot judge these images, or None."""
        return unfit_reason(self.dataset, self.image_shape, self.source, self.features)

    @property
    def extractor(self) -> str:
        """The classifier used for feature metrics, or 'none'."""
        if self.unfit is not None:
            return "none"
        if self.features == "auto":
            return default_features(self.dataset, self.image_shape)
        return self.features

    def classifier(self, metric: str) -> SmallClassifier:
        """The feature network, loaded once; a clear error when the data has none."""
        if self.features == "none":
            raise ConfigError(
                f"metric {metric!r} needs a classifier, but features 'none' was asked for; "
                "drop --features none or ask only for swd and msssim"
            )
        if self.unfit is not None:
            raise ConfigError(
                f"metric {metric!r} needs a classifier, and {self.unfit}; "
                f"{PRETRAINED_FREE} apply to these images"
            )
        if self.extractor == "none":
            raise ConfigError(
                f"metric {metric!r} needs a classifier and ganforge has none for {self.dataset!r} "
                f"(classifiers: {', '.join(CLASSIFIER_DATASETS)}); use swd and msssim, which need "
                "no "
                "pretrained network, or fid-inception with local Inception weights"
            )
        if self._classifier is None:
            self._classifier, info = load_classifier(self.extractor, self.device)
            self._classifier_classes = tuple(info.record.get("classes", ()))
        return self._classifier

    def classifier_classes(self, metric: str) -> tuple[str, ...]:
        """The class names the classifier was trained on, in its output order (() if unnamed)."""
        self.classifier(metric)
        return self._classifier_classes

    @property
    def active_spaces(self) -> tuple[str, ...]:
        """The feature spaces feature metrics run in: none without a classifier for the data."""
        return () if self.extractor == "none" else self.spaces

    def encoder(self, metric: str) -> ContrastiveEncoder:
        """The contrastive encoder of the same dataset as the classifier, loaded once."""
        # same availability rules and messages
        self.classifier(metric)
        if self._encoder is None:
            self._encoder, _ = load_encoder(self.extractor, self.device)
        return self._encoder

    def space_features(self, images: torch.Tensor, space: str, metric: str) -> torch.Tensor:
        """Features [N, D] (float64, CPU) of uint8 images in one feature space, once per tensor."""
        if space == "classifier":
            return self.embedding(images, metric)[0]
        key = (space, id(images))
        hit = self._features.get(key)
        if hit is not None and hit[0] is images:
            return hit[1]
        result = encode(self.encoder(metric), images)
        self._features[key] = (images, result)
        return result

    def embedding(self, images: torch.Tensor, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(features [N, 128], logits [N, K]) of uint8 images, computed once per tensor."""
        hit = self._cache.get(id(images))
        if hit is not None and hit[0] is images:
            return hit[1]
        result = embed(self.classifier(metric), images)
        # holding the tensor keeps its id unique
        self._cache[id(images)] = (images, result)
        return result

    def memo(self, name: str, images: torch.Tensor, compute: Callable[[], Any]) -> Any:
        """A value computed once per (name, tensor), e.g. a statistic of the fixed reference set."""
        key = (name, id(images))
        hit = self._memo.get(key)
        if hit is not None and hit[0] is images:
            return hit[1]
        value = compute()
        self._memo[key] = (images, value)
        return value

    def release(self, images: torch.Tensor) -> None:
        """Forget what was computed for one tensor (generated images change at every evaluation)."""
        self._cache.pop(id(images), None)
        for key in [k for k in self._features if k[1] == id(images)]:
            del self._features[key]
        for key in [k for k in self._memo if k[1] == id(images)]:
            del self._memo[key]

    def rng(self, offset: int = 0) -> torch.Generator:
        """A CPU generator seeded from the context, so every metric is repeatable."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + offset)
