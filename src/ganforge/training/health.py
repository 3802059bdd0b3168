"""Watch a run for the two slow failures of GAN training and say so while it trains.

* The discriminator wins outright (it is near-certain on real and fake) for a long
  stretch: the generator then gets almost no gradient and stops improving.
* The generator collapses: its samples look alike (their spread falls far below that of
  real images).

Both are warnings, not errors: a run may recover, and the user decides.
"""

from __future__ import annotations

import torch

DOMINANCE_ACCURACY = 0.99
DOMINANCE_FAKE_PROBABILITY = 0.02
# sample spread below this fraction of the real spread
COLLAPSE_RATIO = 0.25


def spread(images: torch.Tensor) -> float:
    """Mean pairwise L2 distance between images (any range), per pixel."""
    flat = images.detach().float().flatten(1)
    if flat.shape[0] < 2:
        return 0.0
    distances = torch.cdist(flat, flat)
    n = flat.shape[0]
    return (distances.sum() / (n * (n - 1)) / flat.shape[1] ** 0.5).item()


class HealthMonitor:
    def __init__(self, real_spread: float, dominance_steps: int):
        self.real_spread = real_spread
        self.dominance_steps = dominance_steps
        self.dominant_since: int | None = None
        self.warned_dominance = False
        self.warned_collapse = False

    def check_stats(self, step: int, stats: dict[str, float]) -> str | None:
        """A warning when D has won outright for `dominance_steps` iterations."""
        dominant = (
            stats["d_acc"] >= DOMINANCE_ACCURACY and stats["d_fake"] <= DOMINANCE_FAKE_PROBABILITY
        )
        if not dominant:
            self.dominant_since, self.warned_dominance = None, False
            return None
        if self.dominant_since is None:
            self.dominant_since = step
        if not self.warned_dominance and step - self.dominant_since >= self.dominance_steps:
            self.warned_dominance = True
            return (
                "warning: the discriminator has won outright since iteration "
                f"{self.dominant_since} (accuracy {stats['d_acc']:.3f}, "
                f"D(G(z)) {stats['d_fake']:.3f}); the generator gets little gradient. "
                "Consider a lower --lr-d, label smoothing "
                "(--set regularise.label_smoothing=0.1) or R1 (--set regularise.r1_gamma=1)"
            )
        return None

    def check_samples(self, step: int, samples: torch.Tensor) -> str | None:
        """A warning when generated samples spread far less than real images do.

        Silent for the first `dominance_steps` iterations: a fresh generator's samples all
        look alike, and that is not a collapse.
        """
        if step < self.dominance_steps:
            return None
        ratio = spread(samples) / max(self.real_spread, 1e-12)
        if ratio >= COLLAPSE_RATIO:
            self.warned_collapse = False
            return None
        if self.warned_collapse:
            return None
        self.warned_collapse = True
        return (
            f"warning: possible mode collapse at iteration {step}: generated samples differ "
            f"from each other {ratio:.0%} as much as real images do; look at the latest grid, "
            "and consider --set regularise.ema_decay=0.999 or a lower learning rate"
        )
