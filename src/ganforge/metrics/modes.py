"""Mode coverage on StackedMNIST: how many of the 1,000 digit triples a generator makes.

The protocol of VEEGAN, PacGAN and R3GAN: generate 26,000 stacks, read the digit in each
channel with an MNIST classifier (here ganforge's own, ``metrics/classifier.py``, 98.9 %
on the MNIST test digits), and report

* ``modes``: the number of triples generated at least once (out of 1,000);
* ``mode_kl``: KL(p_gen || uniform) = sum p log(1000 p) of the generated triple histogram,
  the reverse KL of the literature (0 for a perfectly even generator, log 1000 = 6.91 for
  one that makes a single triple).

With n samples a perfectly even generator covers about 1000 (1 - exp(-n / 1000)) modes
(26,000: all of them; 2,000: 865), so compare counts only at the same n.

The intervals are bootstrap intervals of the generated stacks, reported like the others
(``metrics/uncertainty.py``): the estimate +- 1.96 bootstrap standard deviations.
"""

from __future__ import annotations

import torch

from ganforge.data.stacked import MODES, PLACE_VALUES
from ganforge.errors import ConfigError
from ganforge.metrics.classifier import embed, load_classifier
from ganforge.metrics.context import MetricContext, dataset_family
from ganforge.metrics.registry import HIGHER, LOWER, register
from ganforge.metrics.uncertainty import Z95

STACKED_DATASET = "stacked-mnist"


def stacked_problem(context: MetricContext, image_shape: tuple[int, ...] | None = None) -> str:
    """Why the mode metric cannot score these images ("" when it can)."""
    if dataset_family(context.dataset) != STACKED_DATASET:
        return (
            f"metric 'stacked-mnist' (modes, mode_kl) counts the 1,000 digit triples of "
            f"StackedMNIST and the reference data here is {context.dataset!r}: evaluate a "
            "generator trained on stacked-mnist, or drop stacked-mnist"
        )
    if image_shape is not None and image_shape[0] != 3:
        return (
            f"metric 'stacked-mnist' reads one digit per colour channel and these images have "
            f"{image_shape[0]} channel(s); it needs 3-channel StackedMNIST images"
        )
    return ""


def predict_modes(images: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """The mode index [N] of uint8 stacks [N, 3, H, W]: each channel classified as a digit."""
    model, _ = load_classifier("mnist", device)
    n, channels, height, width = images.shape
    # [N * 3, 1, H, W]: every channel becomes a grayscale digit for the classifier
    digits = images.reshape(n * channels, 1, height, width)
    _, logits = embed(model, digits)
    return (logits.argmax(1).view(n, channels) * torch.tensor(PLACE_VALUES)).sum(1)


def mode_scores(modes: torch.Tensor) -> dict[str, float]:
    """Modes covered and KL(p_gen || uniform) of a set of mode indices [N]."""
    counts = torch.bincount(modes, minlength=MODES).double()
    p = counts / counts.sum()
    present = p > 0
    kl = (p[present] * (p[present] * MODES).log()).sum()
    return {"modes": float(present.sum()), "mode_kl": float(kl)}


def mode_intervals(
    modes: torch.Tensor, scores: dict[str, float], generator: torch.Generator, resamples: int
) -> dict[str, list[float]]:
    """95 % normal bootstrap intervals of modes and mode_kl, resampling the generated stacks."""
    n = len(modes)
    # [resamples, MODES]: the mode histogram of each resample
    draws = modes[torch.randint(0, n, (resamples, n), generator=generator)]
    counts = torch.zeros(resamples, MODES, dtype=torch.float64).scatter_add_(
        1, draws, torch.ones_like(draws, dtype=torch.float64)
    )
    p = counts / n
    covered = (counts > 0).double().sum(1)
    kl = torch.where(p > 0, p * (p * MODES).log(), torch.zeros_like(p)).sum(1)
    intervals = {}
    for key, values in (("modes", covered), ("mode_kl", kl)):
        spread = Z95 * float(values.std())
        # a count of modes cannot pass 1,000, and neither end can go below 0
        high = min(scores[key] + spread, MODES) if key == "modes" else scores[key] + spread
        intervals[key] = [max(0.0, scores[key] - spread), high]
    return intervals


def _modes_of(fake: torch.Tensor, context: MetricContext) -> torch.Tensor:
    problem = stacked_problem(context, tuple(fake.shape[1:]))
    if problem:
        raise ConfigError(problem)
    return context.memo("stacked-modes", fake, lambda: predict_modes(fake, context.device))


def _intervals(
    real: torch.Tensor,
    fake: torch.Tensor,
    context: MetricContext,
    scores: dict[str, float],
    generator: torch.Generator,
    resamples: int,
) -> dict[str, list[float]]:
    return mode_intervals(_modes_of(fake, context), scores, generator, resamples)


@register(
    "stacked-mnist",
    outputs={"modes": HIGHER, "mode_kl": LOWER},
    min_samples=1000,
    needs="stacked",
    summary="StackedMNIST: digit triples generated (of 1,000) and KL(generated triples || "
    "uniform); protocol: --count 26000",
    intervals=_intervals,
)
def stacked_modes(
    real: torch.Tensor, fake: torch.Tensor, context: MetricContext
) -> dict[str, float]:
    """Modes covered (higher is better) and reverse KL to uniform (lower is better) of the
    generated stacks; the reference images are not needed (the target is uniform)."""
    return mode_scores(_modes_of(fake, context))
