"""A small digit/garment classifier: the feature extractor for FID, KID, IS and class metrics.

Inception-v3 features are the standard for FID, but Inception was trained on ImageNet
photographs and its weights cannot be fetched here; for 28x28 grayscale data a classifier
trained on the data itself gives features that separate what matters (which digit, how
well formed) and its logits give the Inception-Score analogue and class histograms.

The network is deliberately tiny (about 0.1 M parameters, 0.4 MB as float32) so that the
weights live in the repository and features for 2,000 images take well under a second on
a CPU. ``scripts/train_classifier.py`` trains it deterministically and records the test
accuracy next to the weights.
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

from ganforge.errors import CheckpointError, ConfigError

WEIGHTS_DIR = Path(__file__).parent / "weights"
CLASSIFIER_DATASETS = ("mnist", "fashion-mnist")
INPUT_SIZE = 28
FEATURE_DIM = 128


class SmallClassifier(nn.Module):
    """Three conv blocks (16-32-64 channels, each halving the size) and a 128-d embedding."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 28 -> 14
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 14 -> 7
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 7 -> 3
            nn.Flatten(),
            nn.Linear(64 * 3 * 3, FEATURE_DIM),
            nn.ReLU(),
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for float images in [-1, 1], [N, 1, 28, 28]."""
        return self.head(self.dropout(self.body(x)))

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The 128-d embedding (FID/KID/precision-recall space) and the class logits."""
        features = self.body(x)
        return features, self.head(features)


def prepare(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, C, H, W] at any size and channel count -> float [N, 1, 28, 28] in [-1, 1].

    RGB becomes luma and other sizes are resized with antialiasing, so a run trained on
    MNIST at 32x32 or as 3-channel images is still measured by the same classifier.
    """
    x = images.float()
    if x.shape[1] == 3:
        x = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)).sum(
            1, keepdim=True
        )
    if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(
            x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True, align_corners=False
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
    with torch.random.fork_rng(devices=[]):  # the throw-away init must not shift training's RNG
        model = build(record)
    model.load_state_dict(state)
    return model, record


def load_classifier(
    dataset: str, device: str | torch.device = "cpu"
) -> tuple[SmallClassifier, ClassifierInfo]:
    """The committed classifier for `dataset` (eval mode), or a one-line error naming the file."""
    model, record = load_committed_network(
        "classifier",
        dataset,
        lambda record: SmallClassifier(int(record.get("num_classes", 10))),
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
        feature, logit = model.features_and_logits(prepare(chunk.to(device)))
        features.append(feature.double().cpu())
        logits.append(logit.double().cpu())
    return torch.cat(features), torch.cat(logits)


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
        correct += int((model(prepare(chunk.to(device))).argmax(1).cpu() == target).sum())
    return correct
