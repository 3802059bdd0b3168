"""A small classifier per dataset: the feature extractor for FID, KID, IS and class metrics.

Inception-v3 features are the standard for FID, but Inception was trained on ImageNet
photographs and its weights cannot be fetched here; for 28x28 grayscale data a classifier
trained on the data itself gives features that separate what matters (which digit, how
well formed) and its logits give the Inception-Score analogue and class histograms.

The network is deliberately tiny (about 0.1 M parameters, 0.4 MB as float32, for 28x28
digits and garments; one more block for 64x64 brain slices) so that the weights live in the
repository and features for 2,000 images take about a second on a CPU.
``scripts/train_classifier.py`` trains it deterministically and records the test accuracy
next to the weights.

:data:`FEATURE_DATA` is the one place that says which data each shipped pair of networks
(classifier and contrastive encoder) was trained on, which evaluation data they are used
for, and which images they can judge; the metric context picks a pair from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from ganforge.data.base import ImageData
from ganforge.errors import CheckpointError, ConfigError

WEIGHTS_DIR = Path(__file__).parent / "weights"
INPUT_SIZE = 28
FEATURE_DIM = 128


@dataclass(frozen=True)
class FeatureData:
    """One shipped pair of feature networks: what they were trained on and what they can judge.

    A pair is used for evaluation data whose name's family (``brain-mri-slices/test`` ->
    ``brain-mri-slices``) is in `families`, and only for images of the kind it was trained
    on (`channels`, `sizes`): a feature space measures the distance between two sets only
    when both look like its training data, so a run of another size or channel count is
    told which metrics still apply rather than scored in a space that never saw such images.
    """

    # the weights' file prefix and the --features choice
    name: str
    # data-name families measured in this space
    families: tuple[str, ...]
    # images are resized to input_size x input_size
    input_size: int
    num_classes: int
    # image channel counts it accepts (3: RGB read as luma)
    channels: tuple[int, ...]
    # image sizes it accepts (None: any, resized)
    sizes: tuple[int, ...] | None
    # the data in a few words, for one-line messages
    what: str
    # data sources (DataConfig.dataset) whose runs it is meant for
    sources: tuple[str, ...] = ()
    # the training evaluator uses it (else SWD stays the main metric)
    during_training: bool = True

    def unfit(self, image_shape: tuple[int, ...] | None) -> str | None:
        """Why images of `image_shape` ([C, H, W]) are not this space's kind, or None."""
        if image_shape is None:
            return None
        channels, height, width = (int(v) for v in image_shape)
        kinds = " or ".join(f"{s}x{s}" for s in self.sizes) if self.sizes else "any size"
        wanted = f"{'/'.join(map(str, self.channels))}-channel images at {kinds}"
        if channels not in self.channels or (
            self.sizes is not None and (height != width or height not in self.sizes)
        ):
            return (
                f"the {self.name} feature networks were trained on {self.what} and judge "
                f"{wanted}, not {channels}x{height}x{width}"
            )
        return None


FEATURE_DATA: dict[str, FeatureData] = {
    "mnist": FeatureData("mnist", ("mnist",), 28, 10, (1, 3), None, "MNIST digits"),
    "fashion-mnist": FeatureData(
        "fashion-mnist", ("fashion-mnist",), 28, 10, (1, 3), None, "Fashion-MNIST garments"
    ),
    # 128x128 runs are resized to 64x64, the size the brain networks were trained at; their
    # floors are measured at both sizes. During training brain runs keep SWD as the main
    # metric (the presets were tuned on it); `ganforge eval` adds the feature space.
    "brain-mri": FeatureData(
        "brain-mri",
        ("brain-mri-slices", "Alzheimer_s Dataset"),
        64,
        4,
        (1,),
        (64, 128),
        "the Kaggle Alzheimer's brain slices (brain-mri-slices, padded square)",
        sources=("brain-mri",),
        during_training=False,
    ),
}
CLASSIFIER_DATASETS = tuple(FEATURE_DATA)
# the convolution widths per input size: each block halves the size (28 -> 3, 64 -> 4)
CLASSIFIER_WIDTHS = {28: (16, 32, 64), 64: (16, 32, 64, 64)}


class SmallClassifier(nn.Module):
    """Conv blocks (16-32-64 channels at 28x28, 16-32-64-64 with batch norm at 64x64, each
    halving the size) and a 128-d embedding."""

    def __init__(self, num_classes: int = 10, input_size: int = INPUT_SIZE):
        super().__init__()
        self.input_size = input_size
        layers: list[nn.Module] = []
        channels = 1
        for width in CLASSIFIER_WIDTHS[input_size]:
            layers.append(nn.Conv2d(channels, width, 3, padding=1))
            # batch norm for the larger inputs: without it the brain classifier sat at chance
            # (loss ln 4) for its first epochs; the 28x28 networks keep their shipped layout
            layers += [nn.BatchNorm2d(width)] if input_size > INPUT_SIZE else []
            layers += [nn.ReLU(), nn.MaxPool2d(2)]
            channels = width
        side = input_size >> len(CLASSIFIER_WIDTHS[input_size])
        self.body = nn.Sequential(
            *layers, nn.Flatten(), nn.Linear(channels * side * side, FEATURE_DIM), nn.ReLU()
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for float images in [-1, 1], [N, 1, input_size, input_size]."""
        return self.head(self.dropout(self.body(x)))

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The 128-d embedding (FID/KID/precision-recall space) and the class logits."""
        features = self.body(x)
        return features, self.head(features)


def prepare(images: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """uint8 [N, C, H, W] at any size and channel count -> float [N, 1, size, size] in [-1, 1].

    RGB becomes luma and other sizes are resized with antialiasing, so a run trained on
    MNIST at 32x32 or as 3-channel images is still measured by the same classifier (and a
    128x128 brain run by the 64x64 brain networks).
    """
    x = images.float()
    if x.shape[1] == 3:
        x = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)).sum(
            1, keepdim=True
        )
    if x.shape[-2:] != (size, size):
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    return x.div_(127.5).sub_(1.0)


@dataclass(frozen=True)
class ClassifierInfo:
    """What the training script recorded next to the weights."""

    dataset: str
    test_accuracy: float
    correct: int
    total: int
    record: dict


def load_feature_split(dataset: str, split: str, path: str | None = None) -> ImageData:
    """The real images (and labels) a feature network of `dataset` trains or is measured on:
    the IDX files for MNIST and Fashion-MNIST (never the bundled slice), the brain slices'
    class folders as 1-channel 64x64 squares padded as the brain presets pad them."""
    if dataset in ("mnist", "fashion-mnist"):
        from ganforge.data.idx import load_idx_dataset

        return load_idx_dataset(dataset, split, path, allow_bundled=False)
    from ganforge.config import DataConfig
    from ganforge.data import load_images

    size = FEATURE_DATA[dataset].input_size
    config = DataConfig(
        dataset=dataset, split=split, resolution=size, channels=1, fit="pad", path=path
    )
    return load_images(config)


def weights_path(dataset: str) -> Path:
    return WEIGHTS_DIR / f"{dataset}-classifier.safetensors"


def record_path(dataset: str) -> Path:
    return WEIGHTS_DIR / f"{dataset}-classifier.json"


def load_committed_network(
    kind: str, dataset: str, build: Callable[[dict], nn.Module], script: str
) -> tuple[nn.Module, dict]:
    """A feature network shipped in metrics/weights (``<dataset>-<kind>.safetensors`` and its
    JSON record), built by `build(record)` and loaded; a one-line error naming the file and the
    script that recreates it when it is missing or unreadable."""
    if dataset not in CLASSIFIER_DATASETS:
        raise ConfigError(
            f"no {kind} for dataset {dataset!r}: ganforge ships them for "
            f"{', '.join(CLASSIFIER_DATASETS)}; use the pretrained-free metrics (swd, msssim)"
        )
    path = WEIGHTS_DIR / f"{dataset}-{kind}.safetensors"
    record_file = WEIGHTS_DIR / f"{dataset}-{kind}.json"
    recreate = f"'python scripts/{script} --dataset {dataset}'"
    if not path.is_file():
        raise CheckpointError(
            f"{kind} weights {path} are missing; recreate them with {recreate} "
            "or reinstall ganforge"
        )
    try:
        state = load_file(str(path))
        record = (
            json.loads(record_file.read_text(encoding="utf-8")) if record_file.is_file() else {}
        )
    except (OSError, SafetensorError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"{path}: unreadable {kind} weights ({str(exc)[:120]}); recreate them with {recreate}"
        ) from None
    # the throw-away init must not shift training's RNG
    with torch.random.fork_rng(devices=[]):
        model = build(record | {"input_size": FEATURE_DATA[dataset].input_size})
    model.load_state_dict(state)
    return model, record


def load_classifier(
    dataset: str, device: str | torch.device = "cpu"
) -> tuple[SmallClassifier, ClassifierInfo]:
    """The committed classifier for `dataset` (eval mode), or a one-line error naming the file."""
    model, record = load_committed_network(
        "classifier",
        dataset,
        lambda record: SmallClassifier(
            int(record.get("num_classes", 10)), int(record["input_size"])
        ),
        "train_classifier.py",
    )
    info = ClassifierInfo(
        dataset,
        float(record.get("test_accuracy", float("nan"))),
        int(record.get("correct", 0)),
        int(record.get("total", 0)),
        record,
    )
    return model.to(device).eval(), info


@torch.no_grad()
def embed(
    model: SmallClassifier, images: torch.Tensor, batch_size: int = 1000
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features [N, 128] and logits [N, K] (float64, CPU) of uint8 images, in batches."""
    device = next(model.parameters()).device
    features, logits = [], []
    for chunk in images.split(batch_size):
        feature, logit = model.features_and_logits(prepare(chunk.to(device), model.input_size))
        features.append(feature.double().cpu())
        logits.append(logit.double().cpu())
    return torch.cat(features), torch.cat(logits)


@torch.no_grad()
def correct_per_class(
    model: SmallClassifier, images: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> list[int]:
    """How many images of each class the classifier labels correctly (the card's per-class
    accuracy: overall accuracy hides a rare class that is never recognised)."""
    model.eval()
    device = next(model.parameters()).device
    hits = torch.zeros(num_classes, dtype=torch.long)
    for chunk, target in zip(images.split(1000), labels.split(1000)):
        logits = model(prepare(chunk.to(device), model.input_size))
        right = logits.argmax(1).cpu() == target
        hits += torch.bincount(target[right], minlength=num_classes)
    return hits.tolist()


@torch.no_grad()
def count_correct(
    model: SmallClassifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000
) -> int:
    """How many of `images` the classifier labels correctly (the recorded test accuracy's
    numerator).
    """
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for chunk, target in zip(images.split(batch_size), labels.split(batch_size)):
        logits = model(prepare(chunk.to(device), model.input_size))
        correct += int((logits.argmax(1).cpu() == target).sum())
    return correct
