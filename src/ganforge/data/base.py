"""The one in-memory form every data source produces.

Datasets here are small enough to live in memory (MNIST is 47 MB, 10,000 brain slices at
128x128 are 164 MB), so every source decodes once into a uint8 tensor. The trainer moves
that tensor to the device and cuts batches out of it by index: no DataLoader, no workers,
no per-step decoding.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass
class ImageData:
    """Decoded images, uint8 in [0, 255], shape [N, C, H, W], with optional labels."""

    # [N, C, H, W] uint8
    images: torch.Tensor
    # e.g. "mnist/train"; runs and metrics compare on it
    name: str
    # where the images were read from, for the log
    source: str
    # [N] int64
    labels: torch.Tensor | None = None
    num_classes: int | None = None
    # label i is class_names[i] (folder sources)
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"ImageData wants uint8 [N,C,H,W], got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def subset(self, count: int) -> "ImageData":
        """The first `count` images (all if fewer)."""
        labels = None if self.labels is None else self.labels[:count]
        return replace(self, images=self.images[:count], labels=labels)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float in [-1, 1], the range of the generators' tanh output."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] -> uint8 [0, 255], rounding to the nearest level."""
    return images.detach().float().add(1.0).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)
