"""Measure every metric's real-vs-real floor (and a few degraded references) per dataset.

    python scripts/metric_floors.py                     # mnist, fashion-mnist, brain-mri
    python scripts/metric_floors.py --datasets mnist

For each dataset, set A is the reference subset that `ganforge eval` and the training
evaluator use (``reference_subset``: 2,000 training images chosen by a fixed seed) and
set B is 2,000 *other* training images. A perfect generator would score like B, so
these are the best values to expect at 2,000 samples. The same A is then compared with
B plus Gaussian noise, B blurred, and one image of B repeated, to show the scale of a
clearly bad result. Writes ``src/ganforge/metrics/weights/floors.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F

from ganforge.artefacts.files import write_text
from ganforge.config import DataConfig
from ganforge.data import load_images
from ganforge.metrics import MetricContext, dataset_family, evaluate, reference_subset, resolve_metrics
from ganforge.metrics.floors import FLOORS_FILE

DATASETS = {
    "mnist": DataConfig(dataset="mnist", split="train"),
    "fashion-mnist": DataConfig(dataset="fashion-mnist", split="train"),
    "brain-mri": DataConfig(dataset="brain-mri", split="train", resolution=128, channels=1, fit="pad"),
}


def other_images(images: torch.Tensor, count: int) -> torch.Tensor:
    """`count` images not in the reference subset (the complement, in a fixed random order)."""
    chosen = torch.zeros(len(images), dtype=torch.bool)
    chosen[torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:count]] = True
    rest = torch.nonzero(~chosen).squeeze(1)
    return images[rest[torch.randperm(len(rest), generator=torch.Generator().manual_seed(1))[:count]]]


def degrade(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Noise (std 50 grey levels), a Gaussian blur (sigma 1.2 px at 28 px, scaled with size), one image repeated."""
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(2)) * 50
    sigma = 1.2 * images.shape[-1] / 28
    radius = int(3 * sigma)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-x**2 / (2 * sigma**2))
    kernel /= kernel.sum()
    c = images.shape[1]
    padded = F.pad(images.float(), (radius,) * 4, mode="replicate")
    blur = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    blur = F.conv2d(blur, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return {"noise": (images.float() + noise).round().clamp(0, 255).to(torch.uint8),
            "blur": blur.round().clamp(0, 255).to(torch.uint8),
            "repeated": images[:1].expand(len(images), -1, -1, -1).contiguous()}


def rounded(scores: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in scores.items()}


def measure(name: str, count: int) -> dict:
    data = load_images(DATASETS[name])
    if len(data) < 2 * count:
        raise SystemExit(f"{name}: {len(data)} images, fewer than two disjoint sets of {count}")
    context = MetricContext(data.name)
    names = resolve_metrics("auto", context)
    a, b = reference_subset(data.images, count), other_images(data.images, count)
    start = time.perf_counter()
    floor = evaluate(a, b, names, context)
    seconds = time.perf_counter() - start
    degraded = {kind: rounded(evaluate(a, images, names, context)) for kind, images in degrade(b).items()}
    print(f"{name}: floor {rounded(floor)} ({seconds:.1f} s)", flush=True)
    return {"dataset": data.name, "count": count, "image_shape": list(data.image_shape), "features": context.extractor,
            "metrics": rounded(floor), "degraded": degraded, "seconds": round(seconds, 1),
            "note": f"Real vs real: two disjoint sets of {count} {data.name} images."}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated: " + ", ".join(DATASETS))
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args(argv)
    floors = json.loads(FLOORS_FILE.read_text()) if FLOORS_FILE.is_file() else {}
    for name in args.datasets.split(","):
        record = measure(name, args.count)
        floors[dataset_family(record["dataset"])] = record  # keyed as floor_for looks them up
        write_text(FLOORS_FILE, json.dumps(floors, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
