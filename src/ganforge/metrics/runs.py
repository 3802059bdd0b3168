"""Evaluate a run folder, exported generator or checkpoint against its reference data.

The reference data is rebuilt the way the run was trained: from the run folder's
config.json when there is one (same source, split, path, limit and shaping), else from
the dataset name the generator file records (e.g. ``mnist/train``). ``data`` overrides
it with a dataset name (``mnist/test``) or a local path. Reference images are always
brought to the generator's channels and size, and a mismatch is an error, never a silent
resize of numbers that mean something else.
"""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ganforge.checkpoint import GeneratorInfo
from ganforge.config import DataConfig, TrainConfig
from ganforge.data import SOURCES, ImageData, load_images
from ganforge.errors import ConfigError, DataError
from ganforge.metrics import (NOT_INCEPTION, SPACES, MetricContext, check_available, check_samples, dataset_family,
                              direction, evaluate_with_intervals, main_metric, reference_subset, resolve_metrics,
                              split_key)
from ganforge.metrics.floors import floor_for

SPLITS = ("train", "test", "all")
EVAL_FORMAT = 2  # 2: two feature spaces, intervals, density/coverage, class_coverage (was coverage)


def describe_spaces(context: MetricContext, keys: list[str]) -> dict[str, str]:
    """What each feature space used is, in words every report shows (never mistaken for Inception)."""
    from ganforge.metrics.classifier import record_path
    from ganforge.metrics.encoder import encoder_record_path

    used = {split_key(key)[1] for key in keys}
    out = {}
    for space in context.active_spaces:
        if space not in used:
            continue
        dataset = context.extractor
        if space == "classifier":
            record = _json(record_path(dataset))
            detail = f"ganforge's {dataset} classifier, {record.get('test_accuracy', 0):.2%} test accuracy"
        else:
            record = _json(encoder_record_path(dataset))
            detail = (f"ganforge's {dataset} SimCLR-style encoder trained without labels, "
                      f"{record.get('knn_accuracy', 0):.1%} 5-NN label agreement")
        out[space] = f"{SPACES[space].label} ({detail}; {NOT_INCEPTION})"
    return out


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def find_run_dir(source: str | Path) -> Path | None:
    """The run folder a source belongs to (the folder itself, a file in it, or a checkpoint in it)."""
    path = Path(source)
    for candidate in (path, path.parent, path.parent.parent):
        if candidate.is_dir() and (candidate / "config.json").is_file():
            return candidate
    return None


def run_config(run_dir: Path | None) -> TrainConfig | None:
    """The run's resolved TrainConfig, or None without a readable config.json."""
    if run_dir is None:
        return None
    try:
        return TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{run_dir / 'config.json'}: unreadable ({exc}); "
                          "pass the reference data with --data") from None


def _name_split(spec: str) -> tuple[str, str]:
    name, _, split = spec.partition("/")
    return name, split if split in SPLITS else "train"


def reference_config(info: GeneratorInfo, config: TrainConfig | None, data: str | None) -> DataConfig:
    """The DataConfig of the reference images: --data, else the run's config.json, else the recorded name."""
    base = config.data if config is not None else None
    if data is None:
        if base is None:
            name, split = _name_split(info.dataset)
            if name not in SOURCES:
                raise ConfigError(f"the generator records dataset {info.dataset!r}, which ganforge cannot rebuild "
                                  "without its run folder; pass the reference images with --data")
            base = DataConfig(dataset=name, split=split)
    elif _name_split(data)[0] in SOURCES and not Path(data).exists():
        name, split = _name_split(data)
        base = DataConfig(dataset=name, split=split, fit=base.fit if base else "pad")
    elif Path(data).exists():
        family = dataset_family(info.dataset)
        dataset = base.dataset if base else (family if family in SOURCES else "folder")
        base = dataclasses.replace(base or DataConfig(), dataset=dataset, path=str(data), limit=None)
    else:
        raise ConfigError(f"--data {data!r} is neither a dataset ({', '.join(sorted(SOURCES))}, optionally "
                          "with /train or /test) nor an existing path")
    channels, height, _ = info.image_shape
    return dataclasses.replace(base, resolution=height, channels=channels)


def load_reference(info: GeneratorInfo, config: TrainConfig | None, data: str | None) -> ImageData:
    """Reference images shaped like the generator's output, or a DataError saying why not."""
    reference = load_images(reference_config(info, config, data))
    if reference.image_shape != tuple(info.image_shape):
        raise DataError(f"reference data {reference.name} is {reference.image_shape} but the generator makes "
                        f"{tuple(info.image_shape)} images; pass matching data with --data")
    return reference


def _floor(reference: ImageData, count: int) -> dict[str, float] | None:
    """The documented real-vs-real numbers for this data, size and count, if measured."""
    record = floor_for(reference.name, count, reference.image_shape)
    return record["metrics"] if record else None


def default_output(source: str | Path, seed: int) -> Path:
    """eval-<seed>.json in the run folder (eval-<checkpoint>-<seed>.json for a checkpoint),
    else <file>-eval-<seed>.json next to a loose generator file."""
    path = Path(source)
    run_dir = find_run_dir(path)
    if path.is_file() and path.suffix == ".pt":
        return (run_dir or path.parent) / f"eval-{path.stem}-{seed}.json"
    if run_dir is not None:
        return run_dir / f"eval-{seed}.json"
    return path.with_name(f"{path.stem}-eval-{seed}.json")


def evaluate_source(source: str | Path, count: int = 2000, seed: int = 0, metrics: str | None = None,
                    data: str | None = None, device: str | torch.device = "cpu", features: str = "auto",
                    resamples: int = 100) -> dict[str, Any]:
    """Generate `count` images with noise seed `seed`, score them, and return a JSON-ready record."""
    from ganforge import __version__
    from ganforge.generate import generate, load_generator, resolve_source

    start = time.perf_counter()
    generator, info = load_generator(source, device)
    config = run_config(find_run_dir(source))
    reference = load_reference(info, config, data)
    context = MetricContext(reference.name, seed=seed, device=torch.device(device), features=features)
    names = resolve_metrics(metrics, context)
    check_available(names, context)
    real = reference_subset(reference.images, count)
    check_samples(names, len(real), count)
    fake = generate(generator, info, count, seed=seed)
    scores, intervals = evaluate_with_intervals(real, fake, names, context, resamples)
    return {
        "format": EVAL_FORMAT,
        "source": str(source), "generator": str(resolve_source(source)), "arch": info.arch, "step": info.step,
        "trained_on": info.dataset, "reference": reference.name, "reference_source": reference.source,
        "image_shape": list(info.image_shape), "count": count, "reference_count": len(real), "seed": seed,
        "requested": metrics or "auto",
        "features": context.extractor, "spaces": describe_spaces(context, list(scores)), "metrics": scores,
        "intervals": intervals, "resamples": resamples, "main": main_metric(names),
        "better": {key: direction(key) for key in scores},
        "floor": _floor(reference, count) if context.features == "auto" else None,
        "seconds": round(time.perf_counter() - start, 2),
        "ganforge": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
