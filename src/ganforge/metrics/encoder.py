"""A self-supervised contrastive encoder: the second feature space (MNIST, Fashion, brain slices).

One feature space is one opinion. The classifier was trained to tell classes apart, so
its embedding cares about "which digit" and punishes anything that disturbs the class
evidence (salt-and-pepper pixels) far more than misshapen but recognisable strokes. This
encoder never saw a label: it was trained SimCLR-style (Chen et al. 2020) to map two
random augmentations of the same image (crops and translations, small rotations and
scalings, a little noise, contrast jitter) close together and different images apart.
Its 64-d representation therefore describes how an image looks up to those small
changes, which is a different judgement from the classifier's, and when the two spaces
rank two generators differently the difference is worth a look.

Like the classifier it is tiny (about 0.1 M parameters, under 0.5 MB as float32; the 64x64
brain encoder has one more strided block) and is
trained here, offline and deterministically, by ``scripts/train_encoder.py``; neither is
Inception-v3, so no number in either space is comparable with a published FID.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ganforge.metrics.classifier import (
    INPUT_SIZE,
    WEIGHTS_DIR,
    load_committed_network,
    prepare,
)

ENCODER_DIM = 64
PROJECTION_DIM = 64
# the strided convolutions' widths per input size: 28 -> 14 -> 7 -> 4; 64 -> 32 -> 16 -> 8 -> 4
ENCODER_WIDTHS = {28: (32, 64, 64), 64: (32, 64, 64, 64)}


class ContrastiveEncoder(nn.Module):
    """Strided conv blocks (32-64-64 channels at 28x28, 32-64-64-64 at 64x64) and a 64-d
    representation.

    The projection head exists only for training (SimCLR computes its loss on the
    projection and keeps the layer before it, which holds more information).
    """

    def __init__(self, input_size: int = INPUT_SIZE) -> None:
        super().__init__()
        self.input_size = input_size
        layers: list[nn.Module] = []
        channels, side = 1, input_size
        for width in ENCODER_WIDTHS[input_size]:
            layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.LeakyReLU(0.1)]
            channels, side = width, (side + 1) // 2
        self.body = nn.Sequential(
            *layers, nn.Flatten(), nn.Linear(channels * side * side, ENCODER_DIM)
        )
        self.projection = nn.Sequential(nn.LeakyReLU(0.1), nn.Linear(ENCODER_DIM, PROJECTION_DIM))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The 64-d representation of float images in [-1, 1], [N, 1, input_size, input_size]."""
        return self.body(x)


def encoder_weights_path(dataset: str) -> Path:
    return WEIGHTS_DIR / f"{dataset}-encoder.safetensors"


def encoder_record_path(dataset: str) -> Path:
    return WEIGHTS_DIR / f"{dataset}-encoder.json"


def load_encoder(
    dataset: str, device: str | torch.device = "cpu"
) -> tuple[ContrastiveEncoder, dict]:
    """The committed encoder for `dataset` (eval mode) and its training record."""
    model, record = load_committed_network(
        "encoder",
        dataset,
        lambda record: ContrastiveEncoder(int(record["input_size"])),
        "train_encoder.py",
    )
    return model.to(device).eval(), record


@torch.no_grad()
def encode(model: ContrastiveEncoder, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Representations [N, 64] (float64, CPU) of uint8 images, in batches."""
    device = next(model.parameters()).device
    return torch.cat(
        [
            model(prepare(chunk.to(device), model.input_size)).double().cpu()
            for chunk in images.split(batch_size)
        ]
    )


@torch.no_grad()
def knn_accuracy(features: torch.Tensor, labels: torch.Tensor, k: int = 5) -> int:
    """Leave-one-out k-NN (cosine) label agreement: how many images share the majority label
    of their k nearest neighbours. A label-free encoder that groups digits by class scores high."""
    unit = torch.nn.functional.normalize(features.float(), dim=1)
    similarity = unit @ unit.T
    similarity.fill_diagonal_(-2.0)
    neighbours = similarity.topk(k, dim=1).indices
    votes = torch.nn.functional.one_hot(labels[neighbours], int(labels.max()) + 1).sum(1)
    return int((votes.argmax(1) == labels).sum())
