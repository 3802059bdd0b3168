"""Class labels for conditional models: which classes a model knows, which it is asked for.

A conditional architecture (``resnet`` with ``num_classes`` > 0) exposes ``num_classes`` on
its generator; a generator without it (or with 0) is unconditional. Training draws the
classes of the fakes uniformly from a stream of its own, seeded by the run's seed and the
iteration number, so that a resumed run asks for exactly the classes the uninterrupted run
would have asked for, and the noise streams are the same with or without classes. Sample
grids put one class per row.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ganforge.errors import ConfigError

# the fake-label stream is seeded with seed + 5 + iteration (others use +1..+4)
LABEL_STREAM = 5


def num_classes_of(generator: nn.Module) -> int:
    """How many classes `generator` is conditioned on (0: unconditional)."""
    return int(getattr(generator, "num_classes", 0) or 0)


def balanced_labels(count: int, num_classes: int, device: torch.device | str) -> torch.Tensor:
    """0, 1, ..., K-1, 0, 1, ...: every class in turn, the labels of a conditional model called
    without any and of the images `ganforge eval` asks a conditional generator for."""
    return torch.arange(count, device=device) % num_classes


def projection_logits(
    features: torch.Tensor,
    linear: nn.Module,
    embed: nn.Module | None,
    labels: torch.Tensor | None,
    num_classes: int,
) -> torch.Tensor:
    """A discriminator's logits [N] from pooled features [N, F]: the linear score, plus the
    projection term <embed(y), features> when conditional (Miyato & Koyama 2018); without
    labels, a balanced cycle of classes, as for the generator."""
    logits = linear(features).squeeze(1)
    if embed is None:
        return logits
    if labels is None:
        labels = balanced_labels(features.shape[0], num_classes, features.device)
    return logits + (embed(labels) * features).sum(1)


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
    requested: int | str | None,
    num_classes: int,
    count: int,
    what: str,
    names: Sequence[str] = (),
) -> torch.Tensor | None:
    """The labels for ``--class`` (a number, or a class name the data gave the model): None
    when no class was asked for; a one-line error when the model is unconditional or the
    class does not exist (nothing written yet)."""
    if requested is None:
        return None
    if num_classes == 0:
        raise ConfigError(
            f"{what} is unconditional (trained without classes); drop --class, or "
            "sample a model trained with model.options.num_classes"
        )
    index = class_index(requested, num_classes, names)
    if index is None:
        raise ConfigError(
            f"--class {requested} is not a class of {what}; {valid_classes(num_classes, names)}"
        )
    return torch.full((count,), index, dtype=torch.long)


def class_index(requested: int | str, num_classes: int, names: Sequence[str]) -> int | None:
    """The class number `requested` names (its number, or its name in any letter case)."""
    text = str(requested).strip()
    # isdecimal, not isdigit: isdigit() passes "²", which int() refuses
    if text.lstrip("-").isdecimal():
        index = int(text)
        return index if 0 <= index < num_classes else None
    usable = list(names)[:num_classes]
    if text in usable:
        return usable.index(text)
    folded = [i for i, name in enumerate(usable) if name.casefold() == text.casefold()]
    return folded[0] if len(folded) == 1 else None


def valid_classes(num_classes: int, names: Sequence[str]) -> str:
    """'valid classes: 0-3 (0 MildDemented, 1 ...)', without names that only repeat numbers."""
    listed = list(names)[:num_classes]
    text = f"valid classes: 0-{num_classes - 1}"
    if listed and listed != [str(i) for i in range(len(listed))]:
        text += " (" + ", ".join(f"{i} {name}" for i, name in enumerate(listed)) + ")"
    return text


def class_title(index: int, names: Sequence[str]) -> str:
    """'class 2 (NonDemented)', or 'class 7' when the name is the number."""
    name = names[index] if 0 <= index < len(names) else str(index)
    return f"class {index}" if name == str(index) else f"class {index} ({name})"


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
