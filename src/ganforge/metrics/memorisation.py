"""Memorisation: how many generated images sit suspiciously close to a training image.

A generator that copies its training set scores perfectly on every distribution metric
measured against that set, and for medical images a copy can be a privacy problem. The
question needs reference images the generator never saw (the test split): for each test
image, the distance to its nearest training image says how close *new* images of the
data typically come to the training set. The threshold is the 5th percentile of those
distances, so by construction 5 % of unseen real images fall below it. The figure is
the share of generated images whose nearest training image is closer than that: about
0.05 for a generator that makes new images of the data, towards 1.0 for one that
reproduces its training images. It is measured in pixel space (near-exact copies) and in
the classifier's feature space (copies up to small shifts and noise).
"""

from __future__ import annotations

import torch

from ganforge.errors import ConfigError
from ganforge.metrics.context import MetricContext
from ganforge.metrics.precision_recall import nearest_distance
from ganforge.metrics.registry import LOWER, register

# share of unseen real images below the threshold, by construction
QUANTILE = 0.05


def memorised_share(real: torch.Tensor, fake: torch.Tensor, training: torch.Tensor) -> float:
    """Share of `fake` rows nearer to a `training` row than the 5 % closest `real` (unseen) rows
    are.
    """
    threshold = torch.quantile(nearest_distance(real, training), QUANTILE)
    return float((nearest_distance(fake, training) < threshold).double().mean())


def _pixels(images: torch.Tensor) -> torch.Tensor:
    return images.flatten(1).float().div_(255.0)


@register(
    "memorisation",
    outputs={"memorised": LOWER, "memorised_pixels": LOWER},
    min_samples=200,
    needs="training",
    summary="share of generated images closer to a training image than the 5 % "
    "closest unseen (test) images are; 0.05 for new images of the data",
)
def memorisation(
    real: torch.Tensor, fake: torch.Tensor, context: MetricContext
) -> dict[str, float]:
    """`memorised` in the classifier's feature space (where the data has one), `memorised_pixels`
    in pixel space; `real` must be images the generator did not train on."""
    training = context.training
    # check_available refuses this before any work; here for direct calls
    if training is None:
        raise ConfigError(
            "metric 'memorisation' needs the generator's training images (context.training)"
        )
    out = {}
    if context.extractor != "none":
        features = [
            context.space_features(x, "classifier", "memorisation").float()
            for x in (real, fake, training)
        ]
        out["memorised"] = memorised_share(*features)
    out["memorised_pixels"] = memorised_share(_pixels(real), _pixels(fake), _pixels(training))
    return out
