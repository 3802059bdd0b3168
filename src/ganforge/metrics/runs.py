"""Evaluate a run folder, exported generator, checkpoint, or any images against reference data.

The reference data is rebuilt the way the run was trained: from the run folder's
config.json when there is one (same source, path and shaping), else from the dataset
name the generator file records (e.g. ``mnist/train``). For MNIST and Fashion-MNIST the
reference is the **test split** by default (images the generator never saw, so copying the
training set is not rewarded, and the memorisation figure can be measured); ``split="train"``
keeps the run's training images. ``data`` overrides it with a dataset name
(``mnist/test``) or a local path. Reference images are always brought to the generator's
channels and size, and a mismatch is an error, never a silent resize of numbers that mean
something else.

Images made by any tool (a folder of PNGs, or an .npy array) are scored the same way
with ``dataset`` naming the data they imitate.
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
from ganforge.conditional import balanced_labels, num_classes_of
from ganforge.config import DataConfig, TrainConfig
from ganforge.data import SOURCES, ImageData, load_images
from ganforge.errors import ConfigError, DataError
from ganforge.metrics import (
    NOT_INCEPTION,
    SPACES,
    MetricContext,
    check_available,
    check_samples,
    dataset_family,
    direction,
    evaluate_with_intervals,
    main_metric,
    reference_subset,
    resolve_metrics,
    split_key,
    unfit_note,
)
from ganforge.metrics.floors import floor_for

SPLITS = ("train", "test", "all")
# sources with a held-out test split to measure against
TEST_SPLIT_DATASETS = ("mnist", "fashion-mnist", "stacked-mnist")
SPLIT_CHOICES = ("auto", "test", "train")
# training images searched for the memorisation figure
TRAINING_SUBSET = 10_000
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# 2: two feature spaces, intervals, density/coverage, class_coverage (was coverage)
EVAL_FORMAT = 2


def describe_spaces(context: MetricContext, keys: list[str]) -> dict[str, str]:
    """What each feature space used is, in the words every report shows (never 'Inception')."""
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
            accuracy = record.get("test_accuracy", 0)
            detail = f"ganforge's {dataset} classifier, {accuracy:.2%} test accuracy"
        else:
            record = _json(encoder_record_path(dataset))
            detail = (
                f"ganforge's {dataset} SimCLR-style encoder trained without labels, "
                f"{record.get('knn_accuracy', 0):.1%} 5-NN label agreement"
            )
        out[space] = f"{SPACES[space].label} ({detail}; {NOT_INCEPTION})"
    return out


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def find_run_dir(source: str | Path) -> Path | None:
    """The run folder of a source (the folder itself, a file in it, or a checkpoint in it)."""
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
        return TrainConfig.from_dict(
            json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        )
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"{run_dir / 'config.json'}: unreadable ({exc}); pass the reference data with --data"
        ) from None


def _name_split(spec: str) -> tuple[str, str]:
    name, _, split = spec.partition("/")
    return name, split if split in SPLITS else "train"


def training_config(info: GeneratorInfo, config: TrainConfig | None) -> DataConfig | None:
    """The DataConfig the generator was trained on (None when it cannot be rebuilt)."""
    if config is not None:
        return config.data
    name, split = _name_split(info.dataset)
    return DataConfig(dataset=name, split=split) if name in SOURCES else None


def reference_config(
    info: GeneratorInfo, config: TrainConfig | None, data: str | None, split: str = "auto"
) -> DataConfig:
    """The DataConfig of the reference images: --data, else the run's data (its test split for
    MNIST and Fashion-MNIST unless split='train'), else the recorded name."""
    if split not in SPLIT_CHOICES:
        raise ConfigError(f"split must be one of {', '.join(SPLIT_CHOICES)} (got {split!r})")
    base = config.data if config is not None else None
    if data is None:
        if base is None:
            base = training_config(info, None)
            if base is None:
                raise ConfigError(
                    f"the generator records dataset {info.dataset!r}, which ganforge cannot "
                    "rebuild "
                    "without its run folder; pass the reference images with --data"
                )
        wanted = (
            ("test" if base.dataset in TEST_SPLIT_DATASETS else base.split)
            if split == "auto"
            else split
        )
        # another split: all of it, not the training run's --limit
        if wanted != base.split:
            base = dataclasses.replace(base, split=wanted, limit=None)
    elif _name_split(data)[0] in SOURCES and not Path(data).exists():
        name, split = _name_split(data)
        base = DataConfig(dataset=name, split=split, fit=base.fit if base else "pad")
    elif Path(data).exists():
        family = dataset_family(info.dataset)
        dataset = base.dataset if base else (family if family in SOURCES else "folder")
        base = dataclasses.replace(
            base or DataConfig(), dataset=dataset, path=str(data), limit=None
        )
    else:
        raise ConfigError(
            f"--data {data!r} is neither a dataset ({', '.join(sorted(SOURCES))}, optionally "
            "with /train or /test) nor an existing path"
        )
    channels, height, _ = info.image_shape
    return dataclasses.replace(base, resolution=height, channels=channels)


def load_reference(
    info: GeneratorInfo, config: TrainConfig | None, data: str | None, split: str = "auto"
) -> ImageData:
    """Reference images shaped like the generator's output, or a DataError saying why not.

    With split 'auto' a test split that cannot be found (a local copy without the test files)
    falls back to the training data, as evaluation did before test splits were the default;
    the record's reference name says which was used.
    """
    try:
        reference = load_images(reference_config(info, config, data, split))
    except DataError:
        if split != "auto" or data is not None:
            raise
        reference = load_images(reference_config(info, config, data, "train"))
    if reference.image_shape != tuple(info.image_shape):
        raise DataError(
            f"reference data {reference.name} is {reference.image_shape} but the generator makes "
            f"{tuple(info.image_shape)} images; pass matching data with --data"
        )
    return reference


def _floor(reference: ImageData, count: int) -> dict[str, float] | None:
    """The documented real-vs-real numbers for this data, size and count, if measured."""
    record = floor_for(reference.name, count, reference.image_shape)
    return record["metrics"] if record else None


def default_output(
    source: str | Path, seed: int, pretrained: str | None = None, split: str = "auto"
) -> Path:
    """eval-<seed>.json in the run folder (eval-<checkpoint>-<seed>.json for a checkpoint),
    <file>-eval-<seed>.json next to a loose generator file, and <name>-eval-<seed>.json in
    the working folder for a shipped generator (the installed package is not written to).

    A split asked for by name goes into the name (eval-test-<seed>.json), so measuring the
    same run against another split never overwrites the default record."""
    seed_part = f"{seed}" if split == "auto" else f"{split}-{seed}"
    if pretrained is not None:
        return Path(f"{pretrained}-eval-{seed_part}.json")
    path = Path(source)
    run_dir = find_run_dir(path)
    if path.is_file() and path.suffix == ".pt":
        return (run_dir or path.parent) / f"eval-{path.stem}-{seed_part}.json"
    if run_dir is not None:
        return run_dir / f"eval-{seed_part}.json"
    return path.with_name(f"{path.stem}-eval-{seed_part}.json")


def is_image_source(source: str | Path) -> bool:
    """A .npy array or a folder of image files (not a run or model folder): images to score
    as they are."""
    path = Path(source)
    if path.suffix.lower() == ".npy":
        return True
    if (
        not path.is_dir()
        or (path / "config.json").is_file()
        or (path / "generator.safetensors").is_file()
    ):
        return False
    return any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir())


def read_images(source: str | Path) -> torch.Tensor:
    """uint8 [N, C, H, W] from an .npy array ([N, H, W], [N, H, W, C] or [N, C, H, W]; uint8,
    or floats in [0, 1] or [-1, 1]) or a folder of same-sized images (sorted by name;
    grayscale stays one channel)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    path = Path(source)
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: not a readable .npy array ({str(exc)[:100]})") from None
        if array.ndim == 3:
            array = array[:, None]
        elif array.ndim == 4 and array.shape[1] not in (1, 3) and array.shape[-1] in (1, 3):
            array = array.transpose(0, 3, 1, 2)
        if (
            array.ndim != 4
            or array.shape[1] not in (1, 3)
            or not (
                np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
            )
        ):
            raise DataError(
                f"{path}: expected images [N, H, W], [N, H, W, C] or [N, C, H, W] with 1 or 3 "
                f"channels, got an array of shape {array.shape} and type {array.dtype}"
            )
        if np.issubdtype(array.dtype, np.floating):
            low = float(np.nanmin(array)) if array.size else 0.0
            array = (
                (array + 1) * 127.5
                if low < 0
                else array * 255
                if float(np.nanmax(array)) <= 1
                else array
            )
        return torch.from_numpy(
            np.ascontiguousarray(np.clip(np.nan_to_num(array), 0, 255).astype(np.uint8))
        )
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    images = []
    for file in files:
        try:
            with Image.open(file) as image:
                mode = "L" if image.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
                images.append(np.array(image.convert(mode)))
        except (OSError, UnidentifiedImageError):
            raise DataError(
                f"{file}: not a readable image; remove it or convert it to PNG"
            ) from None
    shapes = {a.shape for a in images}
    if len(shapes) != 1:
        raise DataError(
            f"{path}: images of different sizes or channels "
            f"({', '.join(map(str, sorted(shapes)))}); "
            "score one size at a time"
        )
    stacked = np.stack(images)
    return torch.from_numpy(
        stacked[:, None] if stacked.ndim == 3 else stacked.transpose(0, 3, 1, 2).copy()
    )


def _training_images(
    info: GeneratorInfo, config: TrainConfig | None, reference: ImageData
) -> torch.Tensor | None:
    """The generator's training images (a fixed subset) when the reference is unseen data: the
    test split of the data it trained on, for any source with split folders (MNIST and
    Fashion-MNIST by default, brain slices and class folders with --split test)."""
    base = training_config(info, config)
    if base is None or base.split != "train" or not reference.name.endswith("/test"):
        return None
    channels, height, _ = info.image_shape
    training = load_images(
        dataclasses.replace(base, split="train", resolution=height, channels=channels)
    )
    return reference_subset(training.images, TRAINING_SUBSET)


def evaluate_source(
    source: str | Path,
    count: int = 2000,
    seed: int = 0,
    metrics: str | None = None,
    data: str | None = None,
    device: str | torch.device = "cpu",
    features: str = "auto",
    resamples: int = 100,
    split: str = "auto",
    dataset: str | None = None,
) -> dict[str, Any]:
    """Generate `count` images with noise seed `seed` (or take a folder's or array's images), score
    them, and return a JSON-ready record."""
    from ganforge.generate import generate, load_generator, resolve_source
    from ganforge.version import __version__

    start = time.perf_counter()
    images = None
    if is_image_source(source):
        if dataset is None:
            raise ConfigError(
                f"{source} holds images, not a generator: say which data they imitate with "
                f"--dataset ({', '.join(sorted(SOURCES))})"
            )
        if dataset not in SOURCES:
            raise ConfigError(
                f"unknown dataset {dataset!r}; choose from {', '.join(sorted(SOURCES))}"
            )
        images = read_images(source)
        if len(images) == 0:
            raise DataError(f"{source} holds no images")
        count = min(count, len(images))
        info = GeneratorInfo(
            arch="images",
            latent_dim=0,
            image_shape=tuple(images.shape[1:]),
            options={},
            dataset=f"{dataset}/train",
            step=0,
        )
        config = None
    else:
        generator, info = load_generator(source, device)
        config = run_config(find_run_dir(source))
    reference = load_reference(info, config, data, split)
    training = _training_images(info, config, reference) if data is None else None
    classes = num_classes_of(generator) if images is None else 0
    # a conditional generator is asked for every class in turn, so the class-accuracy figure
    # and the distribution metrics score the same images
    labels = balanced_labels(count, classes, "cpu") if classes else None
    trained_on = training_config(info, config)
    context = MetricContext(
        reference.name,
        seed=seed,
        device=torch.device(device),
        features=features,
        training=training,
        fake_labels=labels,
        class_names=tuple(info.class_names),
        image_shape=tuple(info.image_shape),
        source=trained_on.dataset if trained_on is not None else dataset,
    )
    names = resolve_metrics(metrics, context)
    check_available(names, context)
    real = reference_subset(reference.images, count)
    check_samples(names, len(real), count)
    fake = (
        images[:count]
        if images is not None
        else generate(generator, info, count, seed=seed, labels=labels)
    )
    scores, intervals = evaluate_with_intervals(real, fake, names, context, resamples)
    return {
        "format": EVAL_FORMAT,
        "source": str(source),
        "generator": None if images is not None else str(resolve_source(source)),
        "arch": info.arch,
        "step": None if images is not None else info.step,
        "trained_on": info.dataset if images is None else f"{dataset} (as stated)",
        "reference": reference.name,
        "reference_source": reference.source,
        "image_shape": list(info.image_shape),
        "count": count,
        "reference_count": len(real),
        "seed": seed,
        "requested": metrics or "auto",
        "split": split,
        "features": context.extractor,
        "features_note": unfit_note(names, context),
        "spaces": describe_spaces(context, list(scores)),
        "metrics": scores,
        "intervals": intervals,
        "resamples": resamples,
        "main": main_metric(names),
        "better": {key: direction(key) for key in scores},
        "floor": _floor(reference, count) if context.features == "auto" else None,
        "classes": classes or None,
        "seconds": round(time.perf_counter() - start, 2),
        "ganforge": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
