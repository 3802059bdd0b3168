"""Real-vs-real floors: what each metric gives for two disjoint sets of real images.

A generator cannot be expected to beat real data, so these are the best values a metric
can show at a given sample count. ``scripts/metric_floors.py`` measures them and writes
``weights/floors.json``; reports and docs/metrics.md show them next to a run's numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ganforge.metrics.context import dataset_family

FLOORS_FILE = Path(__file__).parent / "weights" / "floors.json"


def load_floors() -> dict[str, Any]:
    """All recorded floors, by dataset family ({} when the file is absent)."""
    if not FLOORS_FILE.is_file():
        return {}
    return json.loads(FLOORS_FILE.read_text(encoding="utf-8"))


def floor_for(
    dataset: str, count: int, image_shape: tuple[int, ...] | None = None
) -> dict[str, Any] | None:
    """The floor record for a dataset measured at exactly `count` images per set (and at
    `image_shape` when given), else None: FID and precision/recall depend on the count and
    every metric on the image size, so a floor from other settings would mislead."""
    floors = load_floors()
    if f"{dataset}@{count}" in floors:  # e.g. "mnist/test@10000": a floor at another count
        record = floors[f"{dataset}@{count}"]
    elif dataset in floors:  # e.g. "mnist/test": measured against the test split
        record = floors[dataset]
    elif dataset.endswith("/test"):
        return None  # a training-split floor would not be the same comparison
    else:
        record = floors.get(dataset_family(dataset))
    if record is None or record.get("count") != count:
        return None
    if image_shape is not None and tuple(record.get("image_shape", ())) != tuple(image_shape):
        return None
    return record
