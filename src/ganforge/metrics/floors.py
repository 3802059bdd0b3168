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
    """The floor record measured on this data at exactly `count` images per set (and at
    `image_shape` when given), else None: FID and precision/recall depend on the count and
    every metric on the image size, so a floor from other settings would mislead.

    A test-split reference ("mnist/test") takes only a floor measured against that split;
    any other takes one measured on the same dataset family's training data. Records are
    found by what they say they measured, whatever their key in floors.json.
    """
    test = dataset.endswith("/test")
    for record in load_floors().values():
        name = str(record.get("dataset", ""))
        same_data = (
            name == dataset
            if test
            else not name.endswith("/test") and dataset_family(name) == dataset_family(dataset)
        )
        if not same_data or record.get("count") != count:
            continue
        if image_shape is None or tuple(record.get("image_shape", ())) == tuple(image_shape):
            return record
    return None
