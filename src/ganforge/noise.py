"""The noise law: latent vectors for training, grids and generation, drawn in one place.

Training, the sample grids and ``ganforge sample`` must draw z the same way (a generator
trained on N(0, 0.5) makes poor images from N(0, 1)), so every caller uses this function
with the law stored in the run's config or the exported generator's metadata.
"""

from __future__ import annotations

import torch


def draw_noise(
    count: int,
    latent_dim: int,
    law: str,
    std: float,
    generator: torch.Generator,
    device: torch.device | str,
) -> torch.Tensor:
    """Latent vectors [count, latent_dim]: N(0, std^2) for law "normal", U(-1, 1) for "uniform"."""
    if law == "uniform":
        return torch.rand(count, latent_dim, generator=generator, device=device).mul_(2).sub_(1)
    return torch.randn(count, latent_dim, generator=generator, device=device).mul_(std)
