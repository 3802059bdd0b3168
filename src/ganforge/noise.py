"""The noise law: latent vectors for training, grids and generation, drawn in one place.

Training, the sample grids and ``ganforge sample`` must draw z the same way (a generator
trained on N(0, 0.5) makes poor images from N(0, 1)), so every caller uses this function
with the one description of the law, a :class:`ganforge.settings.LatentConfig`: the run's
``config.latent``, or ``GeneratorInfo.latent`` (the exported generator's metadata).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ganforge.settings import LatentConfig


def draw_noise(
    count: int,
    latent_dim: int,
    law: LatentConfig,
    generator: torch.Generator,
    device: torch.device | str,
    truncation: float | None = None,
) -> torch.Tensor:
    """Latent vectors [count, latent_dim]: N(0, std^2) for ``law.law`` "normal" (std:
    ``law.std``), U(-1, 1) for "uniform".

    ``truncation`` psi (normal law only; latent.check_truncation says so to a user) draws
    from the standard normal truncated to [-psi, psi] before scaling by std.
    """
    if law.law == "uniform":
        return torch.rand(count, latent_dim, generator=generator, device=device).mul_(2).sub_(1)
    z = torch.randn(count, latent_dim, generator=generator, device=device)
    if truncation is not None:
        z = _truncate(z, truncation, generator)
    return z.mul_(law.std)


def _truncate(z: torch.Tensor, psi: float, rng: torch.Generator) -> torch.Tensor:
    """Resample the components outside [-psi, psi] from the normal truncated to that range.

    Inverse-CDF sampling (u uniform between Phi(-psi) and Phi(psi), z = Phi^-1(u)) gives the
    truncated normal in one draw, however small psi is; a rejection loop would not end for
    psi near zero. One uniform per component is drawn, so the count of draws is fixed.
    """
    u = torch.rand(z.shape, generator=rng, dtype=torch.float64, device=z.device)
    # Phi(-psi)
    low = 0.5 * math.erfc(psi / math.sqrt(2.0))
    redrawn = torch.special.ndtri(low + u * (1.0 - 2.0 * low)).to(z.dtype).clamp_(-psi, psi)
    return torch.where(z.abs() > psi, redrawn, z)
