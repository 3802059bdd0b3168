"""Precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020).

FID mixes two failures into one number. Precision asks "how many generated images look
real?" (each falls inside the k-NN ball of some real image); recall asks "how much of the
real data does the generator reach?" (each real image falls inside the k-NN ball of some
generated image). Both are built on k-NN balls, so a single outlier widens a ball and
makes them lenient: one generated image far from everything gets a huge ball and "covers"
real images around it.

Density and coverage (Naeem et al. 2020) use only the *real* images' balls, which are
reliable: density counts how many real balls each generated image falls into (about 1 for
real data, above 1 when samples crowd into dense real regions, towards 0 when they are
unrealistic), and coverage is the share of real images whose ball holds at least one
generated image (mode dropping lowers it, outliers cannot raise it). No maintained
library computes them for custom features, so they are written here; each works in every
feature space.
"""

from __future__ import annotations

import torch

from ganforge.metrics.context import MetricContext
from ganforge.metrics.registry import HIGHER, register

# k in Kynkäänniemi et al.
NEIGHBOURS = 3
# k in Naeem et al.
DC_NEIGHBOURS = 5
# rows of the distance matrix held at once
CHUNK = 2048


def knn_radii(points: torch.Tensor, k: int = NEIGHBOURS) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point of the same set."""
    radii = []
    for chunk in points.split(CHUNK):
        distances = torch.cdist(chunk, points)
        # +1: the point itself is at distance 0
        radii.append(distances.kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def balls_hit(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """For each query, how many `support` balls (centre, radius) contain it."""
    counts = []
    for chunk in queries.split(CHUNK):
        counts.append((torch.cdist(chunk, support) <= radii.unsqueeze(0)).sum(dim=1))
    return torch.cat(counts)


def nearest_distance(queries: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """Distance from each query to its nearest `support` point."""
    return torch.cat(
        [torch.cdist(chunk, support).min(dim=1).values for chunk in queries.split(CHUNK)]
    )


def inside_manifold(
    queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor
) -> torch.Tensor:
    """Fraction of `queries` within the k-NN ball of at least one `support` point."""
    return (balls_hit(queries, support, radii) > 0).double().mean()


def real_radii(f_real: torch.Tensor, k: int, context: MetricContext | None) -> torch.Tensor:
    """k-NN radii of the reference features, computed once per reference set and space."""
    if context is None:
        return knn_radii(f_real.float(), k)
    return context.memo(f"radii{k}", f_real, lambda: knn_radii(f_real.float(), k))


def per_image_outcomes(
    f_real: torch.Tensor, f_fake: torch.Tensor, context: MetricContext | None = None
) -> dict[str, torch.Tensor]:
    """The per-image terms whose means are precision, recall, density and coverage.

    precision and density are averaged over generated images, recall and coverage over
    real ones; the bootstrap intervals resample these terms.
    """
    real_k3, real_k5 = (
        real_radii(f_real, NEIGHBOURS, context),
        real_radii(f_real, DC_NEIGHBOURS, context),
    )
    f_real, f_fake = f_real.float(), f_fake.float()
    return {
        "precision": (balls_hit(f_fake, f_real, real_k3) > 0).double(),
        "recall": (balls_hit(f_real, f_fake, knn_radii(f_fake, NEIGHBOURS)) > 0).double(),
        "density": balls_hit(f_fake, f_real, real_k5).double() / DC_NEIGHBOURS,
        "coverage": (nearest_distance(f_real, f_fake) <= real_k5).double(),
    }


@register(
    "precision-recall",
    outputs={"precision": HIGHER, "recall": HIGHER},
    min_samples=200,
    needs="features",
    summary="improved precision (realism) and recall (coverage of the data), k=3",
)
def precision_recall(
    f_real: torch.Tensor, f_fake: torch.Tensor, context: MetricContext
) -> dict[str, float]:
    """Precision and recall with k=3 (both higher is better; identical sets score 1, 1)."""
    radii = real_radii(f_real, NEIGHBOURS, context)
    f_real, f_fake = f_real.float(), f_fake.float()
    precision = inside_manifold(f_fake, f_real, radii)
    recall = inside_manifold(f_real, f_fake, knn_radii(f_fake))
    return {"precision": float(precision), "recall": float(recall)}


@register(
    "density-coverage",
    outputs={"density": HIGHER, "coverage": HIGHER},
    min_samples=200,
    needs="features",
    summary="density (realism, about 1 for real data) and coverage (share of real "
    "images with a generated neighbour), k=5, outlier-robust",
)
def density_coverage(
    f_real: torch.Tensor, f_fake: torch.Tensor, context: MetricContext
) -> dict[str, float]:
    """Density and coverage with k=5 from the real images' balls only (Naeem et al. 2020)."""
    radii = real_radii(f_real, DC_NEIGHBOURS, context)
    f_real, f_fake = f_real.float(), f_fake.float()
    density = balls_hit(f_fake, f_real, radii).double().mean() / DC_NEIGHBOURS
    coverage = (nearest_distance(f_real, f_fake) <= radii).double().mean()
    return {"density": float(density), "coverage": float(coverage)}
