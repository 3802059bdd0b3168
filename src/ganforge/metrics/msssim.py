"""MS-SSIM diversity (Odena et al. 2017): how alike random pairs of generated images are.

A collapsed generator makes near-copies, so its random pairs score a high MS-SSIM (one
image repeated scores 1.0); noise scores near 0. Neither extreme is right: the target is
the value of random pairs of *real* images, reported next to it. MS-SSIM itself comes from
torchmetrics; only the pairing and the choice of scales for small images are written here.
"""

from __future__ import annotations

import warnings

import torch
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

from ganforge.metrics.context import MetricContext
from ganforge.metrics.registry import INFO, MATCH, register

MAX_PAIRS, MIN_PAIRS = 1000, 250
# pixels per image x pairs: 1,000 pairs of digits, 250 pairs of 128x128 slices
PIXEL_BUDGET = 1000 * 32 * 32
STANDARD_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def msssim_settings(size: int) -> tuple[int, float, tuple[float, ...]]:
    """(kernel size, sigma, betas) for images of side `size`.

    The standard setting (5 scales, 11x11 Gaussian, sigma 1.5) needs at least 161 pixels.
    Smaller images keep as many scales as torchmetrics allows with a kernel of 11 or 7
    (28x28 MNIST: 3 scales, 7x7), renormalising the standard scale weights.
    """
    for kernels in ((11, 7), (5, 3)):
        for scales in (5, 4, 3, 2, 1):
            for kernel in kernels:
                if (
                    size >= 2**scales
                    and size // max(1, scales - 1) ** 2 > kernel - 1
                    and size // 2 ** (scales - 1) > kernel // 2
                ):
                    betas = STANDARD_BETAS[:scales]
                    return kernel, 1.5 * kernel / 11, tuple(b / sum(betas) for b in betas)
    raise ValueError(f"images of {size} pixels are too small for MS-SSIM")


def random_pairs(count: int, pairs: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`pairs` index pairs (i, j) with i != j, drawn uniformly."""
    first = torch.randint(count, (pairs,), generator=rng)
    shift = torch.randint(1, count, (pairs,), generator=rng)
    return first, (first + shift) % count


def pair_count(height: int, width: int) -> int:
    """Fewer pairs for larger images keeps the cost to seconds; 250 pairs still pin the mean to
    about +-0.01.
    """
    return max(MIN_PAIRS, min(MAX_PAIRS, PIXEL_BUDGET // (height * width)))


def mean_pair_msssim(images: torch.Tensor, rng: torch.Generator) -> float:
    """Mean MS-SSIM over random distinct pairs of uint8 images."""
    kernel, sigma, betas = msssim_settings(min(images.shape[-2:]))
    first, second = random_pairs(len(images), pair_count(*images.shape[-2:]), rng)
    scores = []
    # toggling oneDNN warns about Intel-GPU TF32, irrelevant here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        # oneDNN's grouped 7x7/11x11 convolution is about twice as slow as PyTorch's own here
        with torch.backends.mkldnn.flags(enabled=False):
            for a, b in zip(first.split(250), second.split(250)):
                scores.append(
                    multiscale_structural_similarity_index_measure(
                        images[a].float(),
                        images[b].float(),
                        kernel_size=kernel,
                        sigma=sigma,
                        betas=betas,
                        data_range=255.0,
                        reduction="none",
                        normalize="relu",
                    )
                )
    return float(torch.cat(scores).mean())


@register(
    "msssim",
    outputs={"msssim": MATCH, "msssim_real": INFO},
    min_samples=50,
    summary="mean MS-SSIM of random pairs (diversity); compare with msssim_real",
)
def msssim_diversity(
    real: torch.Tensor, fake: torch.Tensor, context: MetricContext
) -> dict[str, float]:
    """msssim (generated pairs) next to msssim_real (real pairs); closer to the real value is
    better.

    The real value is computed once per reference set (it does not change between the
    evaluations of a training run)."""
    real_value = context.memo("msssim_real", real, lambda: mean_pair_msssim(real, context.rng(37)))
    return {"msssim": mean_pair_msssim(fake, context.rng(31)), "msssim_real": real_value}
