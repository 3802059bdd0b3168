"""Standard Inception-v3 FID, for users who have the weights file locally.

The FID everyone quotes uses the 2015 TensorFlow Inception-v3 graph, ported to PyTorch by
torch-fidelity; torchmetrics computes it with that port. Neither the package nor its
weights can be fetched on an offline machine, so this metric is optional: it looks for
the weights at a known place and, when they are absent, says which file is missing and
where to put it. It never downloads anything.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch

from ganforge.data.locations import cache_root
from ganforge.errors import CheckpointError, ConfigError
from ganforge.metrics.context import MetricContext
from ganforge.metrics.registry import LOWER, register

WEIGHTS_NAME = "weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{WEIGHTS_NAME}"
ENV_VAR = "GANFORGE_INCEPTION_WEIGHTS"


def inception_weights_path() -> Path:
    """$GANFORGE_INCEPTION_WEIGHTS, else <ganforge cache>/weights/<file name>."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return cache_root() / "weights" / WEIGHTS_NAME


def check_inception_available() -> Path:
    """The weights file, or an error naming what is missing and where it goes."""
    path = inception_weights_path()
    if not path.is_file():
        raise CheckpointError(
            f"fid-inception needs the Inception-v3 FID weights file {WEIGHTS_NAME}, not found at "
            f"{path}; download it on a machine with internet ({WEIGHTS_URL}) and put it there, "
            f"or set {ENV_VAR} to its location"
        )
    if importlib.util.find_spec("torch_fidelity") is None:
        raise ConfigError(
            "fid-inception needs the torch-fidelity package for the Inception-v3 network "
            "(pip install 'ganforge[inception]' or pip install torch-fidelity)"
        )
    return path


@register(
    "fid-inception",
    outputs={"fid_inception": LOWER},
    min_samples=2048,
    main_rank=3,
    summary="standard FID on Inception-v3 features (needs local weights)",
    prerequisite=check_inception_available,
)
def inception_fid(real: torch.Tensor, fake: torch.Tensor, context: MetricContext) -> float:
    """FID on Inception-v3 pool features (2048-d), images upsampled to 299x299 as RGB."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    path = check_inception_available()
    metric = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(path)).to(
        context.device
    )
    for images, is_real in ((real, True), (fake, False)):
        for chunk in images.split(100):
            rgb = chunk.expand(-1, 3, -1, -1) if chunk.shape[1] == 1 else chunk
            metric.update(rgb.to(context.device), real=is_real)
    return float(metric.compute())
