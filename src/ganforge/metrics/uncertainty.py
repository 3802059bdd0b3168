"""Bootstrap intervals: how far a number would move with other images of the same kind.

An FID of 70 against one of 72 means nothing if a second draw of 2,000 images moves
either by 5. Each interval here is the estimate ± 1.96 bootstrap standard deviations
(a normal interval, centred on the reported number: FID and KID resampled with
replacement are biased, so percentile intervals would sit beside the estimate, not
around it).

* FID and KID: both image sets are resampled (multinomial weights on the fixed feature
  rows, so no feature is computed twice); FID from the weighted means and covariances,
  KID as the full-set unbiased polynomial-kernel MMD from precomputed kernel matrices.
* precision and density: the generated images' per-image outcomes are resampled;
  recall and coverage: the reference images' outcomes (the k-NN balls stay fixed, since
  resampling a set with replacement would put duplicates at distance 0 and shrink them).

All of it runs on features the evaluation already has, in well under a second per
space for 2,000 images and 100 resamples.
"""

from __future__ import annotations

import torch

from ganforge.metrics.precision_recall import per_image_outcomes

RESAMPLES = 100
Z95 = 1.96


def _weights(n: int, resamples: int, generator: torch.Generator) -> torch.Tensor:
    """[B, n] bootstrap counts: how often each row is drawn in each resample."""
    index = torch.randint(0, n, (resamples, n), generator=generator)
    return torch.zeros(resamples, n, dtype=torch.float64).scatter_add_(
        1, index, torch.ones_like(index, dtype=torch.float64)
    )


def _moments(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n = w.sum()
    mu = w @ x / n
    centred = x - mu
    return mu, (centred * w.unsqueeze(1)).T @ centred / (n - 1)


def frechet_from_moments(
    mu1: torch.Tensor, s1: torch.Tensor, mu2: torch.Tensor, s2: torch.Tensor
) -> float:
    """||mu1 - mu2||² + tr(S1 + S2 - 2 (S1 S2)^½), the root's trace from S1 S2's eigenvalues."""
    root = torch.linalg.eigvals(s1 @ s2).real.clamp_min(0).sqrt().sum()
    return float((mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * root)


def fid_spread(
    f_real: torch.Tensor, f_fake: torch.Tensor, resamples: int, generator: torch.Generator
) -> float:
    """Standard deviation of FID over bootstrap resamples of both sets."""
    wr, wf = (
        _weights(len(f_real), resamples, generator),
        _weights(len(f_fake), resamples, generator),
    )
    values = [
        frechet_from_moments(*_moments(f_real, a), *_moments(f_fake, b)) for a, b in zip(wr, wf)
    ]
    return float(torch.tensor(values).std())


# kernel-matrix rows held at once: 10,000 images never need a 10,000² matrix
KERNEL_ROWS = 1024


def _kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # torchmetrics' KID kernel: polynomial, degree 3, gamma 1/d, coefficient 1
    return (a @ b.T / a.shape[1] + 1) ** 3


def _weighted_sum(
    x: torch.Tensor, wx: torch.Tensor, y: torch.Tensor, wy: torch.Tensor
) -> torch.Tensor:
    """sum_pq wx_p k(x_p, y_q) wy_q per resample, the kernel built a block of rows at a time."""
    total = torch.zeros(len(wx), dtype=torch.float64)
    for start in range(0, len(x), KERNEL_ROWS):
        rows = slice(start, start + KERNEL_ROWS)
        total += ((wx[:, rows] @ _kernel(x[rows], y)) * wy).sum(1)
    return total


def _within(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Sum over pairs of distinct draws: w K w - sum_p w_p K_pp, per resample, / (n (n-1))."""
    n = w.sum(1)
    diagonal = ((x * x).sum(1) / x.shape[1] + 1) ** 3
    return (_weighted_sum(x, w, x, w) - w @ diagonal) / (n * (n - 1))


def kid_spread(
    f_real: torch.Tensor, f_fake: torch.Tensor, resamples: int, generator: torch.Generator
) -> float:
    """Standard deviation of the full-set unbiased MMD² over bootstrap resamples of both sets."""
    wr = _weights(len(f_real), resamples, generator)
    wf = _weights(len(f_fake), resamples, generator)
    cross = _weighted_sum(f_real, wr, f_fake, wf) / (wr.sum(1) * wf.sum(1))
    return float((_within(f_real, wr) + _within(f_fake, wf) - 2 * cross).std())


def mean_spread(values: torch.Tensor, resamples: int, generator: torch.Generator) -> float:
    """Standard deviation of the mean of per-image outcomes over bootstrap resamples."""
    w = _weights(len(values), resamples, generator)
    return float((w @ values.double() / len(values)).std())


def feature_intervals(
    f_real: torch.Tensor,
    f_fake: torch.Tensor,
    scores: dict[str, float],
    suffix: str,
    generator: torch.Generator,
    resamples: int = RESAMPLES,
) -> dict[str, list[float]]:
    """[low, high] for each of fid, kid, precision, recall, density, coverage present in `scores`
    (keys with the space's suffix), computed on one feature space's features."""
    f_real, f_fake = f_real.double(), f_fake.double()
    spreads: dict[str, float] = {}
    if "fid" + suffix in scores:
        spreads["fid"] = fid_spread(f_real, f_fake, resamples, generator)
    if "kid" + suffix in scores:
        spreads["kid"] = kid_spread(f_real, f_fake, resamples, generator)
    wanted = [k for k in ("precision", "recall", "density", "coverage") if k + suffix in scores]
    if wanted:
        outcomes = per_image_outcomes(f_real, f_fake)
        spreads.update({k: mean_spread(outcomes[k], resamples, generator) for k in wanted})
    bounds = {
        "fid": (0.0, None),
        "precision": (0.0, 1.0),
        "recall": (0.0, 1.0),
        "coverage": (0.0, 1.0),
        "density": (0.0, None),
    }
    out = {}
    for key, spread in spreads.items():
        low, high = scores[key + suffix] - Z95 * spread, scores[key + suffix] + Z95 * spread
        floor, ceiling = bounds.get(key, (None, None))
        # a share cannot leave [0, 1]
        low = max(low, floor) if floor is not None else low
        high = min(high, ceiling) if ceiling is not None else high
        out[key + suffix] = [round(low, 6), round(high, 6)]
    return out


def within_noise(
    a: float, b: float, interval_a: list[float] | None, interval_b: list[float] | None
) -> bool | None:
    """Whether two runs' values differ by less than their combined 95 % half-widths (None: no
    intervals).
    """
    if not interval_a or not interval_b:
        return None
    half_a, half_b = (interval_a[1] - interval_a[0]) / 2, (interval_b[1] - interval_b[0]) / 2
    return abs(a - b) < Z95 * ((half_a / Z95) ** 2 + (half_b / Z95) ** 2) ** 0.5
