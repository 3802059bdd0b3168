"""Class labels for conditional models: which classes a model knows, which it is asked for.

A conditional architecture (``resnet`` with ``num_classes`` > 0) exposes ``num_classes`` on
its generator; a generator without it (or with 0) is unconditional. Training draws the
classes of the fakes uniformly from a stream of its own, seeded by the run's seed and the
iteration number, so that a resumed run asks for exactly the classes the uninterrupted run
would have asked for, and the noise streams are the same with or without classes. Sample
grids put one class per row.
"""

from __future__ import annotations

import torch
from torch import nn

from ganforge.errors import ConfigError

LABEL_STREAM = 5  # the fake-label stream is seeded with seed + 5 + iteration (others use +1..+4)


def num_classes_of(generator: nn.Module) -> int:
    """How many classes `generator` is conditioned on (0: unconditional)."""
    return int(getattr(generator, "num_classes", 0) or 0)


def balanced_labels(count: int, num_classes: int, device: torch.device | str) -> torch.Tensor:
    """0, 1, ..., K-1, 0, 1, ...: every class in turn, the labels of a conditional model called
    without any and of the images `ganforge eval` asks a conditional generator for."""
    return torch.arange(count, device=device) % num_classes


def fake_labels(
    num_classes: int, count: int, seed: int, step: int, device: torch.device | str
) -> torch.Tensor:
    """Uniform classes [count] for iteration `step`: the same for the same (seed, step)."""
    rng = torch.Generator(device="cpu").manual_seed((seed + LABEL_STREAM + step) % 2**63)
    return torch.randint(0, num_classes, (count,), generator=rng).to(device, non_blocking=True)


def grid_labels(
    count: int, columns: int, num_classes: int, device: torch.device | str
) -> torch.Tensor:
    """One class per grid row (row r shows class r mod num_classes): [count]."""
    return (torch.arange(count, device=device) // max(columns, 1)) % num_classes


def class_labels(
    requested: int | None, num_classes: int, count: int, what: str
) -> torch.Tensor | None:
    """The labels for ``--class``: None when no class was asked for; a one-line error when
    the model is unconditional or the class is out of range (nothing written yet)."""
    if requested is None:
        return None
    if num_classes == 0:
        raise ConfigError(
            f"{what} is unconditional (trained without classes); drop --class, or "
            "sample a model trained with model.options.num_classes"
        )
    if not 0 <= requested < num_classes:
        raise ConfigError(
            f"--class {requested} is out of range for {what}; valid classes: 0-{num_classes - 1}"
        )
    return torch.full((count,), requested, dtype=torch.long)


def data_problems(num_classes: int, labels: torch.Tensor | None, dataset: str) -> list[str]:
    """Can a model with `num_classes` train on these labels? One line per problem."""
    if num_classes == 0:
        return []
    if labels is None:
        return [
            (
                f"the model is conditional (num_classes={num_classes}) but {dataset} has no "
                "labels; use a labelled source (mnist, a folder of class folders) or set "
                "model.options.num_classes=0"
            )
        ]
    highest = int(labels.max()) if labels.numel() else -1
    if highest >= num_classes:
        return [
            (
                f"{dataset} has labels up to {highest}, more than num_classes={num_classes} "
                f"allows; set model.options.num_classes={highest + 1}"
            )
        ]
    return []


@torch.no_grad()
def images_for_latents_and_labels(
    generator: nn.Module, latents: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """uint8 images [N, C, H, W], one forward pass per (latent, class), as
    ganforge.latent.images_for_latents does, so an image does not depend on its neighbours."""
    from ganforge.data import to_uint8

    device = next(generator.parameters()).device
    return torch.cat(
        [
            to_uint8(generator(z[None].to(device), y[None].to(device))).cpu()
            for z, y in zip(latents, labels)
        ]
    )
