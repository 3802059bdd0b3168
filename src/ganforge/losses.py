"""Adversarial objectives, registered by name. The objective only; no optimiser steps.

Each loss splits the discriminator's objective into a real and a fake term, because the
documented recipes update D on the real batch and then on the fake batch as two steps.
A relativistic loss (``rpgan``) cannot be split: it scores each real image against its
fake, so it is a *paired* loss (``GANLoss.pair``) and the step passes it both logits.
All terms are computed in fp32 from D's logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import torch
import torch.nn.functional as F

from ganforge.errors import unknown_name

Term = Callable[[torch.Tensor], torch.Tensor]


PairTerm = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Pairing:
    """A relativistic loss: D's and G's losses as functions of paired real and fake logits.

    ``d(real_logits, fake_logits)`` and ``g(fake_logits, real_logits)``, both [B]; the i-th
    real image is paired with the i-th fake, so both batches have the same size.
    """

    d: PairTerm
    g: PairTerm


@dataclass(frozen=True)
class GANLoss:
    """A loss as separate real and fake terms, or (``pair`` set) as one paired term."""

    name: str
    # (logits, label_smoothing) -> loss
    d_real: Callable[[torch.Tensor, float], torch.Tensor]
    d_fake: Term
    g: Term
    summary: str
    pair: Pairing | None = None
    # the loss's own parameter, set from the config by get_loss: one-sided smoothing, the
    # real target becomes 1 - label_smoothing (d_real is called with it)
    label_smoothing: float = 0.0

    @property
    def paired(self) -> bool:
        return self.pair is not None


# keras.backend.epsilon()
KERAS_EPSILON = 1e-7


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def _bce_keras(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Keras 2's binary_crossentropy on a sigmoid output: the probability is clipped to
    [1e-7, 1 - 1e-7] and turned back into a logit, so the loss caps near 16.1 and its gradient
    is zero past the clip (the documented notebook trains with this)."""
    probability = torch.sigmoid(logits.float()).clamp(KERAS_EPSILON, 1.0 - KERAS_EPSILON)
    return _bce(torch.log(probability / (1.0 - probability)), target)


def _rp_d(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """RpGAN's D loss: softplus(-(D(x_real) - D(x_fake))), per pair, averaged."""
    return F.softplus(fake_logits.float() - real_logits.float()).mean()


def _rp_g(fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """RpGAN's G loss: softplus(-(D(x_fake) - D(x_real))), per pair, averaged."""
    return F.softplus(real_logits.float() - fake_logits.float()).mean()


def _unpaired(name: str) -> Callable[..., torch.Tensor]:
    """The separate terms of a paired loss: they do not exist, and asking for one is a bug."""

    def refuse(*args: object) -> torch.Tensor:
        raise TypeError(f"loss {name!r} is paired: use GANLoss.pair, not its separate terms")

    return refuse


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
        GANLoss(
            "rpgan",
            _unpaired("rpgan"),
            _unpaired("rpgan"),
            _unpaired("rpgan"),
            "relativistic pairing loss (RpGAN; R3GAN with regularise.r1_gamma and r2_gamma): "
            "each real image scored against its fake",
            Pairing(_rp_d, _rp_g),
        ),
    )
}


def get_loss(name: str, label_smoothing: float = 0.0) -> GANLoss:
    """The registered loss `name`, with its parameters set."""
    if name not in LOSSES:
        raise unknown_name("loss", name, list(LOSSES))
    return replace(LOSSES[name], label_smoothing=label_smoothing)


def loss_names() -> list[str]:
    return sorted(LOSSES)


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): squared gradient norm of D on real images, per image."""
    (grad,) = torch.autograd.grad(real_logits.float().sum(), real_images, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


def gamma_at(gamma: float, final: float | None, ramp: int, index: int) -> float:
    """A penalty weight that falls from `gamma` to `final` along a half cosine over the first
    `ramp` iterations, then stays at `final` (R3GAN's gamma schedule); `gamma` without a ramp."""
    if final is None or ramp <= 0:
        return gamma
    progress = min(index, ramp) / ramp
    return final + (gamma - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class Seen:
    """What D saw in the D step a regulariser is added to, and when.

    Each side is the images D was given (carrying a gradient where a penalty asked for one)
    and D's logits on them. A side D has not seen in this step is None: with two D steps per
    iteration (the notebook's real step, then its fake step) the real side is gone by the
    fake step, because its graph was spent on the real step's update.
    """

    index: int
    real: torch.Tensor | None = None
    real_logits: torch.Tensor | None = None
    fake: torch.Tensor | None = None
    fake_logits: torch.Tensor | None = None


class R1:
    """The R1 penalty as a regulariser of D's loss on real images: gamma/2 * R1.

    Lazy (Karras et al. 2020): with ``interval`` k > 1 it is applied every k-th iteration,
    multiplied by k so that its average strength stays the same, which saves most of its cost.
    With ``final`` and ``ramp`` gamma follows :func:`gamma_at`.

    A regulariser says which of D's inputs must carry a gradient, and ``on`` which part of D's
    loss it joins: "real" (it sees the real side), "fake" (it sees the fake side, and the real
    side too where D takes both in one step) or "both" (it needs both sides, so it cannot be
    used with two separate D steps).
    """

    needs_real_grad = True
    needs_fake_grad = False
    on = "real"

    def __init__(self, gamma: float, interval: int = 1, final: float | None = None, ramp: int = 0):
        self.gamma, self.interval, self.final, self.ramp = gamma, interval, final, ramp

    def penalty(self, seen: Seen) -> torch.Tensor | None:
        """The term for this D step, or None on the iterations a lazy penalty skips."""
        if seen.index % self.interval:
            return None
        gamma = gamma_at(self.gamma, self.final, self.ramp, seen.index)
        images, logits = self.side(seen)
        return (0.5 * gamma * self.interval) * r1_penalty(logits, images)

    @staticmethod
    def side(seen: Seen) -> tuple[torch.Tensor, torch.Tensor]:
        """The images the gradient is taken at, and D's logits on them."""
        return seen.real, seen.real_logits


class R2(R1):
    """The R2 penalty (Roth et al. 2017; R3GAN): gamma/2 * |grad D(fake)|², R1 taken on the
    fakes instead of the reals, so D stays smooth around what G makes as well as around the
    data. Added to D's loss on fake images; lazy and scheduled like R1."""

    needs_real_grad = False
    needs_fake_grad = True
    on = "fake"

    @staticmethod
    def side(seen: Seen) -> tuple[torch.Tensor, torch.Tensor]:
        return seen.fake, seen.fake_logits
