"""FID and KID on a feature space's embedding (classifier or contrastive encoder), by torchmetrics.

torchmetrics implements both statistics (FID's matrix square root in float64, KID's
unbiased polynomial-kernel MMD over random subsets). Its metrics call a feature network
on images; here the "network" is the identity on features the context already computed,
so one embedding serves FID, KID and precision/recall alike. Neither space is
Inception-v3's, so these are not the FID numbers papers quote.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from ganforge.metrics.context import MetricContext
from ganforge.metrics.registry import INFO, LOWER, register


class PrecomputedFeatures(nn.Module):
    """Identity 'feature extractor': torchmetrics receives features instead of images."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


@register(
    "fid",
    outputs={"fid": LOWER},
    min_samples=500,
    needs="features",
    main_rank=1,
    summary="Fréchet distance of embeddings (not Inception FID)",
)
def frechet_distance(f_real: torch.Tensor, f_fake: torch.Tensor, context: MetricContext) -> float:
    """FID: distance between Gaussians fitted to real and generated embeddings (lower is better)."""
    metric = FrechetInceptionDistance(feature=PrecomputedFeatures(f_real.shape[1]))
    metric.update(f_real, real=True)
    metric.update(f_fake, real=False)
    return float(metric.compute())


@register(
    "kid",
    outputs={"kid": LOWER, "kid_std": INFO},
    min_samples=100,
    needs="features",
    summary="kernel (MMD) distance of embeddings; unbiased in the sample count",
)
def kernel_distance(
    f_real: torch.Tensor, f_fake: torch.Tensor, context: MetricContext
) -> dict[str, float]:
    """KID: unbiased MMD with a cubic kernel, mean and spread over 20 subsets (lower is better).

    Unlike FID it has no bias from the sample count, so it is the number to trust when
    comparing evaluations of different sizes.
    """
    size = min(1000, len(f_real), len(f_fake))
    # its "features are kept in memory" note is moot for 2,000 x 128 floats
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(
            feature=PrecomputedFeatures(f_real.shape[1]), subsets=20, subset_size=size
        )
    metric.update(f_real.float(), real=True)
    metric.update(f_fake.float(), real=False)
    # its subsets come from the global RNG: seed it, then restore
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(context.seed)
        mean, std = metric.compute()
    return {"kid": float(mean), "kid_std": float(std)}
