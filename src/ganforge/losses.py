"""Adversarial objectives, registered by name. The objective only; no optimiser steps.

Each loss splits the discriminator's objective into a real and a fake term, because the
documented recipes update D on the real batch and then on the fake batch as two steps.
All terms are computed in fp32 from D's logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ganforge.errors import unknown_name

Term = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class GANLoss:
    name: str
    d_real: Callable[[torch.Tensor, float], torch.Tensor]  # (logits, label_smoothing) -> loss
    d_fake: Term
    g: Term
    summary: str


KERAS_EPSILON = 1e-7  # keras.backend.epsilon()


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def _bce_keras(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Keras 2's binary_crossentropy on a sigmoid output: the probability is clipped to
    [1e-7, 1 - 1e-7] and turned back into a logit, so the loss caps near 16.1 and its gradient
    is zero past the clip (the documented notebook trains with this)."""
    probability = torch.sigmoid(logits.float()).clamp(KERAS_EPSILON, 1.0 - KERAS_EPSILON)
    return _bce(torch.log(probability / (1.0 - probability)), target)


LOSSES: dict[str, GANLoss] = {
    loss.name: loss
    for loss in (
        GANLoss(
            "bce",
            lambda x, s: _bce(x, 1.0 - s),
            lambda x: _bce(x, 0.0),
            lambda x: _bce(x, 1.0),
            "binary cross-entropy with the non-saturating G loss (the documented recipes)",
        ),
        GANLoss(
            "bce-keras",
            lambda x, s: _bce_keras(x, 1.0 - s),
            lambda x: _bce_keras(x, 0.0),
            lambda x: _bce_keras(x, 1.0),
            "bce as Keras 2 computes it: probabilities clipped to [1e-7, 1-1e-7] "
            "(faithful presets)",
        ),
        GANLoss(
            "hinge",
            lambda x, s: F.relu(1.0 - s - x.float()).mean(),
            lambda x: F.relu(1.0 + x.float()).mean(),
            lambda x: -x.float().mean(),
            "hinge loss (SAGAN, BigGAN)",
        ),
        GANLoss(
            "lsgan",
            lambda x, s: 0.5 * (x.float() - (1.0 - s)).pow(2).mean(),
            lambda x: 0.5 * x.float().pow(2).mean(),
            lambda x: 0.5 * (x.float() - 1.0).pow(2).mean(),
            "least squares (Mao et al. 2017)",
        ),
    )
}


def get_loss(name: str) -> GANLoss:
    if name not in LOSSES:
        raise unknown_name("loss", name, list(LOSSES))
    return LOSSES[name]


def loss_names() -> list[str]:
    return sorted(LOSSES)


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): squared gradient norm of D on real images, per image."""
    (grad,) = torch.autograd.grad(real_logits.float().sum(), real_images, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


class R1:
    """The R1 penalty as a regulariser of D's loss on real images: gamma/2 * R1.

    Lazy (Karras et al. 2020): with ``interval`` k > 1 it is applied every k-th iteration,
    multiplied by k so that its average strength stays the same, which saves most of its cost.
    """

    needs_real_grad = True

    def __init__(self, gamma: float, interval: int = 1):
        self.gamma, self.interval = gamma, interval

    def penalty(
        self, real: torch.Tensor, real_logits: torch.Tensor, index: int
    ) -> torch.Tensor | None:
        if index % self.interval:
            return None
        return (0.5 * self.gamma * self.interval) * r1_penalty(real_logits, real)
