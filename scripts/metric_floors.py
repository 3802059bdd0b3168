"""Measure every metric's real-vs-real floor (and a few degraded references) per dataset.

    python scripts/metric_floors.py                     # mnist, fashion-mnist, brain-mri
    python scripts/metric_floors.py --datasets mnist
    python scripts/metric_floors.py --ladder            # the calibration ladder (docs table)
    python scripts/metric_floors.py --datasets mnist,fashion-mnist --split test --count 10000
    python scripts/metric_floors.py --datasets brain-mri --resolution 64   # brain-demo's size
    python scripts/metric_floors.py --datasets brain-mri                   # brain slices, 128x128

Brain slices are measured in their own feature space (the brain classifier and encoder, which
judge 1-channel slices at 64x64 and 128x128), beside SWD and MS-SSIM.

For each dataset, set A is the reference subset that `ganforge eval` and the training
evaluator use (``reference_subset``: 2,000 training images chosen by a fixed seed) and
set B is 2,000 *other* training images. A perfect generator would score like B, so
these are the best values to expect at 2,000 samples. The same A is then compared with
B plus Gaussian noise, B blurred, and one image of B repeated, to show the scale of a
clearly bad result. Writes ``src/ganforge/metrics/weights/floors.json``.

With ``--split test`` set A is the test split (as `ganforge eval` measures MNIST and
Fashion-MNIST); at 10,000 the whole test split is A, so B is 10,000 training images other
than those the memorisation figure searches (new images of the data, as far as that
figure can tell).

With ``--ladder`` it measures the calibration ladder instead (``ganforge.metrics.ladder``:
1,000 test images as the reference, every damage applied to 1,000 other test images),
writes ``weights/ladder.json`` and prints the sensitivity table of docs/metrics.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import torch
import torch.nn.functional as F

from ganforge.artefacts.files import write_text
from ganforge.config import DataConfig
from ganforge.data import load_images
from ganforge.data.idx import load_idx_dataset
from ganforge.metrics import (
    MetricContext,
    dataset_family,
    evaluate,
    evaluate_with_intervals,
    reference_subset,
    resolve_metrics,
)
from ganforge.metrics.floors import FLOORS_FILE
from ganforge.metrics.ladder import BLIND, LADDER_OUTPUTS, MILD_REWARD, ladder_sets
from ganforge.metrics.runs import TRAINING_SUBSET

LADDER_FILE = FLOORS_FILE.with_name("ladder.json")
LADDER_COUNT = 1000
# floors at other counts or sizes are stored as "<dataset>@<count>@<size>px"
DEFAULT_COUNT = 2000

DATASETS = {
    "mnist": DataConfig(dataset="mnist", split="train"),
    "fashion-mnist": DataConfig(dataset="fashion-mnist", split="train"),
    "brain-mri": DataConfig(
        dataset="brain-mri", split="train", resolution=128, channels=1, fit="pad"
    ),
}


def other_images(images: torch.Tensor, count: int) -> torch.Tensor:
    """`count` images not in the reference subset (the complement, in a fixed random order)."""
    chosen = torch.zeros(len(images), dtype=torch.bool)
    chosen[torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:count]] = True
    rest = torch.nonzero(~chosen).squeeze(1)
    return images[
        rest[torch.randperm(len(rest), generator=torch.Generator().manual_seed(1))[:count]]
    ]


def degrade(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Noise (std 50 grey levels), a Gaussian blur (sigma 1.2 px at 28 px, scaled with size), one
    image repeated.
    """
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(2)) * 50
    sigma = 1.2 * images.shape[-1] / 28
    radius = int(3 * sigma)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    c = images.shape[1]
    padded = F.pad(images.float(), (radius,) * 4, mode="replicate")
    blur = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    blur = F.conv2d(blur, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return {
        "noise": (images.float() + noise).round().clamp(0, 255).to(torch.uint8),
        "blur": blur.round().clamp(0, 255).to(torch.uint8),
        "repeated": images[:1].expand(len(images), -1, -1, -1).contiguous(),
    }


def rounded(scores: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in scores.items()}


def measure(name: str, count: int, split: str = "train", resolution: int | None = None) -> dict:
    """Floors against the training split (as the training evaluator measures) or, with
    split='test', against the test split as `ganforge eval` does for MNIST and Fashion-MNIST:
    there set B is other *test* images (new images of the data, as a perfect generator would
    make), and the memorisation figure is measured against the training images."""
    base = DATASETS[name]
    if resolution is not None:
        base = dataclasses.replace(base, resolution=resolution)
    data = load_images(dataclasses.replace(base, split=split))
    training, set_b = None, "other"
    if split == "test":
        train_images = load_images(base).images
        training = reference_subset(train_images, TRAINING_SUBSET)
        # the whole test split is set A: B is unseen training images
        if len(data) < 2 * count:
            b, set_b = other_images(train_images, count), "training images outside the subset"
    if len(data) < 2 * count and set_b == "other":
        raise SystemExit(f"{name}: {len(data)} images, fewer than two disjoint sets of {count}")
    context = MetricContext(data.name, training=training, image_shape=data.image_shape)
    names = resolve_metrics("auto", context)
    a = reference_subset(data.images, count)
    if set_b == "other":
        b = other_images(data.images, count)
    start = time.perf_counter()
    floor, intervals = evaluate_with_intervals(a, b, names, context)
    seconds = time.perf_counter() - start
    degraded = (
        {kind: rounded(evaluate(a, images, names, context)) for kind, images in degrade(b).items()}
        if set_b == "other"
        else {}
    )
    print(f"{name}: floor {rounded(floor)} ({seconds:.1f} s)", flush=True)
    return {
        "dataset": data.name,
        "count": count,
        "image_shape": list(data.image_shape),
        "features": context.extractor,
        "metrics": rounded(floor),
        "intervals": intervals,
        "degraded": degraded,
        "seconds": round(seconds, 1),
        "note": (
            f"Real vs real: two disjoint sets of {count} {data.name} images."
            if set_b == "other"
            else f"Real vs real: {count} {data.name} images against {count} training images "
            f"that are not among the {TRAINING_SUBSET} the memorisation figure searches"
        )
        + (" Memorisation against the training split." if training is not None else ""),
    }


def measure_ladder(name: str, count: int = LADDER_COUNT) -> dict:
    """Every ladder rung's scores for one labelled dataset (test split)."""
    test = load_idx_dataset(name, "test", None, allow_bundled=False)
    context = MetricContext(test.name)
    names = resolve_metrics("auto", context)
    reference, pool, labels = test.images[:count], test.images[count:], test.labels[count:]
    ladders = {}
    for ladder, rungs in ladder_sets(pool, labels, count).items():
        ladders[ladder] = [
            {"rung": label, "metrics": rounded(evaluate(reference, images, names, context))}
            for label, images in rungs
        ]
        print(f"{name}: {ladder} done", flush=True)
    return {"dataset": test.name, "count": count, "ladders": ladders}


def sensitivity_table(record: dict) -> str:
    """Markdown: one row per metric output, one column per ladder, the values rung by rung after
    the real one; '(ignores)' marks damage the metric is blind to, '(mild: better)' a metric
    that first improves (ganforge.metrics.ladder.BLIND and MILD_REWARD)."""
    ladders = record["ladders"]
    real = ladders["gaussian noise"][0]["metrics"]
    keys = [k + s for s in ("", "_enc") for k in LADDER_OUTPUTS if k + s in real]
    lines = [
        "| output | real | " + " | ".join(ladders) + " |",
        "| --- | ---: |" + " ---: |" * len(ladders),
    ]
    for key in keys:
        cells = []
        for ladder, rungs in ladders.items():
            values = [r["metrics"][key] for r in rungs]
            base = key.removesuffix("_enc")
            mark = (
                " (ignores)"
                if (base, ladder) in BLIND
                else " (mild: better)"
                if (base, ladder) in MILD_REWARD
                else ""
            )
            cells.append(" → ".join(_short(v) for v in values[1:]) + mark)
        lines.append(f"| {key} | {_short(real[key])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _short(value: float) -> str:
    return (
        f"{value:.3f}"
        if abs(value) < 10
        else f"{value:.1f}"
        if abs(value) < 1000
        else f"{value:,.0f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--datasets", default=",".join(DATASETS), help="comma-separated: " + ", ".join(DATASETS)
    )
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT)
    parser.add_argument(
        "--ladder", action="store_true", help="measure the calibration ladder instead"
    )
    parser.add_argument(
        "--resolution", type=int, default=None, help="image size (default: the dataset's)"
    )
    parser.add_argument(
        "--split",
        default="train",
        choices=("train", "test"),
        help="reference split (test: as `ganforge eval` measures MNIST and Fashion-MNIST)",
    )
    args = parser.parse_args(argv)
    if args.ladder:
        ladders = json.loads(LADDER_FILE.read_text()) if LADDER_FILE.is_file() else {}
        for name in [d for d in args.datasets.split(",") if d != "brain-mri"]:
            ladders[name] = measure_ladder(name)
            write_text(LADDER_FILE, json.dumps(ladders, indent=2) + "\n")
            print(sensitivity_table(ladders[name]))
        return 0
    floors = json.loads(FLOORS_FILE.read_text()) if FLOORS_FILE.is_file() else {}
    for name in args.datasets.split(","):
        record = measure(name, args.count, args.split, args.resolution)
        key = record["dataset"] if args.split == "test" else dataset_family(record["dataset"])
        if args.count != DEFAULT_COUNT or args.resolution is not None:
            size = record["image_shape"][-1]
            # beside the default records
            key = f"{record['dataset']}@{args.count}@{size}px"
        # keyed as floor_for looks them up
        floors[key] = record
        write_text(FLOORS_FILE, json.dumps(floors, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
