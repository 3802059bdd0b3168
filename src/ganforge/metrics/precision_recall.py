"""Improved precision and recall (Kynkäänniemi et al. 2019), on the classifier embedding.

FID mixes two failures into one number. Precision asks "how many generated images look
real?" (each falls inside the k-NN ball of some real image); recall asks "how much of the
real data does the generator reach?" (each real image falls inside the k-NN ball of some
generated image). Mode collapse lowers recall; blurry or broken images lower precision.
No maintained library computes them for custom features, so they are written here.
"""

from __future__ import annotations

import torch

from ganforge.metrics.context import MetricContext

NEIGHBOURS = 3  # k in the paper
CHUNK = 2048  # rows of the distance matrix held at once


def knn_radii(points: torch.Tensor, k: int = NEIGHBOURS) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point of the same set."""
    radii = []
    for chunk in points.split(CHUNK):
        distances = torch.cdist(chunk, points)
        radii.append(distances.kthvalue(k + 1, dim=1).values)  # +1: the point itself is at distance 0
    return torch.cat(radii)


def inside_manifold(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Fraction of `queries` within the k-NN ball of at least one `support` point."""
    inside = []
    for chunk in queries.split(CHUNK):
        inside.append((torch.cdist(chunk, support) <= radii.unsqueeze(0)).any(dim=1))
    return torch.cat(inside).double().mean()


def precision_recall(real: torch.Tensor, fake: torch.Tensor, context: MetricContext) -> dict[str, float]:
    """Precision and recall with k=3 (both higher is better; identical sets score 1, 1)."""
    f_real, _ = context.embedding(real, "precision")
    f_fake, _ = context.embedding(fake, "precision")
    f_real, f_fake = f_real.float(), f_fake.float()
    precision = inside_manifold(f_fake, f_real, knn_radii(f_real))
    recall = inside_manifold(f_real, f_fake, knn_radii(f_fake))
    return {"precision": float(precision), "recall": float(recall)}
