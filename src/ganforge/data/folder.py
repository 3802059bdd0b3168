"""The folder and brain-mri sources: PNG/JPEG/TIFF slices in a folder tree, decoded once.

Finding the files is ganforge.data.discovery's job, decoding and stacking them
ganforge.data.decode's, the search without --data ganforge.data.locations'; a folder of NIfTI
volumes (or one volume) is handed to ganforge.data.nifti.

What is read
    Every ``.png .jpg .jpeg .tif .tiff`` file under the folder, recursively, in sorted
    path order. Folders that hold segmentation masks are skipped: any folder below the
    given one whose name has a word starting with ``seg`` or the word ``mask``/``masks``
    (``keras_png_slices_seg_train``, ``seg``, ``masks``), so masks are never mixed into the
    images. Hidden files and folders (``.xyz``, macOS ``._name.png``) are skipped too.

Splits (``data.split``)
    If the folder, or a folder up to two levels below it, holds split folders, only those
    are read: ``keras_png_slices_train/_validate/_test`` (the OASIS layout) or
    ``train/val(idate)/test`` (e.g. ``Alzheimer_s Dataset/{train,test}/<class>/``).
    ``train`` reads the train folder, ``test`` the test folder, ``all`` train + validate +
    test. A *flat* folder (no split folders) is one dataset: ``train`` and ``all`` read all
    of it; ``test`` is refused unless the folder itself is a test folder, so evaluation never
    silently runs on training images.

Shaping
    Grayscale stays 1 channel, colour becomes RGB; an RGB file whose three channels are
    equal counts as grayscale. 16-bit and float images are stretched to 0..255 per image.
    With ``channels`` unset the dataset is 1-channel if every image is grayscale, else 3.
    Every image is brought to ``resolution`` by ``data.fit`` (see transforms.fit_square:
    ``pad`` keeps the whole brain and its aspect ratio, the default), with antialiasing;
    sources of mixed sizes are each resized on their own. The trainer scales to [-1, 1].

Unreadable files (corrupt, truncated, not an image)
    are skipped with one warning naming how many and the first three, as long as they are
    at most 10% of the files tried; above that the copy is damaged and the run stops with a
    DataError. The warning is repeated when the dataset comes from the cache.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch

from ganforge.config import DataConfig
from ganforge.data import cache
from ganforge.data.base import ImageData
from ganforge.data.decode import (
    check_unreadable,
    decode_image,
    join_parts,
    require_one_size,
    stack_fitted,
)
from ganforge.data.discovery import (
    class_folders,
    class_labels_of,
    is_image_file,
    is_nifti_file,
    list_files,
    nothing_found,
    path_problems,
    relative,
    select_split,
)
from ganforge.data.locations import search_places
from ganforge.data.nifti import NiftiOptions, load_nifti, nifti_options, volume_problems
from ganforge.data.registry import register_source
from ganforge.errors import ConfigError, DataError

# files decoded per batch: bounds the memory of full-size copies
CHUNK = 512
# The folder names the brain-mri source looks for without --data (see ganforge.data.locations).
BRAIN_DATASETS = ("keras_png_slices_data", "brain-mri-slices")


def decode_files(
    files: Sequence[Path], root: Path, config: DataConfig, labels: Sequence[int] | None = None
) -> cache.Decoded:
    """Decode, shape and stack images, skipping unreadable ones (policy applied by the caller);
    `labels` (one per file) are kept for the images that could be read."""
    parts: list[torch.Tensor] = []
    kept_labels: list[int] = []
    skipped: list[str] = []
    sizes: dict[tuple[int, int], str] = {}
    attempted = have = 0
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        while attempted < len(files) and (config.limit is None or have < config.limit):
            take = CHUNK if config.limit is None else min(CHUNK, config.limit - have)
            chunk = files[attempted : attempted + take]
            attempted += len(chunk)
            arrays = []
            decoded = zip(chunk, pool.map(decode_image, chunk))
            for offset, (path, (pixels, why)) in enumerate(decoded, attempted - len(chunk)):
                if pixels is None:
                    skipped.append(f"{relative(path, root)} ({why})")
                    continue
                sizes.setdefault(pixels.shape[:2], relative(path, root))
                arrays.append(pixels)
                if labels is not None:
                    kept_labels.append(labels[offset])
            require_one_size(sizes, config.resolution, root)
            if arrays:
                parts.append(stack_fitted(arrays, config.channels, config.resolution, config.fit))
                have += len(arrays)
    check_unreadable(skipped, attempted, root)
    if not parts:
        return cache.Decoded(torch.zeros(0, 1, 1, 1, dtype=torch.uint8), skipped, attempted)
    label_tensor = torch.tensor(kept_labels, dtype=torch.int64) if labels is not None else None
    return cache.Decoded(
        join_parts(parts, config.channels), skipped, attempted, labels=label_tensor
    )


def load_image_files(
    root: Path, files: Sequence[Path], split_label: str, config: DataConfig, folders: Sequence[Path]
) -> ImageData:
    """Decode `files` (or read them from the cache) into an ImageData named <folder>/<split>,
    labelled by class folder when the files are sorted into class folders (see class_labels_of).
    """
    classes = class_folders(root, folders)
    labels = class_labels_of(files, folders, classes)
    settings = cache.cache_settings(config, "images", split_label)
    settings["classes"] = list(classes) if labels is not None else None
    decoded = cache.cached(
        root,
        files,
        settings,
        lambda: decode_files(files, root, config, labels),
        enabled=config.cache,
    )
    if decoded.from_cache:
        # never silent, cached or not
        check_unreadable(decoded.skipped, decoded.attempted, root)
    if len(decoded.images) == 0:
        raise DataError(f"{root}: none of the {len(files)} image files could be read")
    note = ", from the decoded-image cache" if decoded.from_cache else ""
    labelled = labels is not None and decoded.labels is not None
    if labelled:
        note += f", {len(classes)} classes: {', '.join(classes)}"
    return ImageData(
        decoded.images,
        f"{root.name}/{split_label}",
        f"{root} ({len(decoded.images)} images{note})",
        labels=decoded.labels if labelled else None,
        num_classes=len(classes) if labelled else None,
        class_names=classes if labelled else None,
    )


def folder_problems(config: DataConfig) -> list[str]:
    """What the folder source refuses before reading: no --data, a missing path, bad slicing."""
    wanted = "FOLDER (of PNG/JPEG/TIFF images or NIfTI volumes) or --data FILE.nii.gz"
    return path_problems(config.path, config.dataset, wanted) + volume_problems(config)


def brain_mri_problems(config: DataConfig) -> list[str]:
    """As for folders when --data is given; without it the search happens at load time."""
    if config.path:
        return folder_problems(config)
    return volume_problems(config)


@register_source("folder", fits=True, problems=folder_problems, options=NiftiOptions)
def load_folder(config: DataConfig) -> ImageData:
    """The `folder` source: a folder of images, a folder of NIfTI volumes, or one NIfTI file."""
    if not config.path:
        raise ConfigError(
            "dataset 'folder' needs a path: --data FOLDER (of PNG/JPEG/TIFF images "
            "or NIfTI volumes) or --data FILE.nii.gz"
        )
    root = Path(config.path).expanduser()
    if not root.exists():
        raise DataError(
            f"{root} does not exist; pass a folder of images or a NIfTI volume with --data"
        )
    if root.is_file():
        if is_nifti_file(root):
            return load_nifti(config)
        if is_image_file(root):
            raise DataError(
                f"{root} is a single image; pass the folder that holds the images with --data"
            )
        raise DataError(f"{root} is neither a folder of images nor a NIfTI volume (.nii, .nii.gz)")
    # only volumes are split by subject
    if nifti_options(config).subject_split is not None:
        return load_nifti(config)
    folders, label = select_split(root, config.split)
    files = list_files(folders, is_image_file)
    if files:
        return load_image_files(root, files, label, config, folders)
    if list_files(folders, is_nifti_file):
        return load_nifti(config)
    raise nothing_found(root, folders)


OASIS_SPLITS = ("keras_png_slices_train", "keras_png_slices_validate", "keras_png_slices_test")
OASIS_HOWTO = (
    "get OASIS (keras_png_slices_data.zip of the course project, 11,328 slices in "
    "keras_png_slices_train/_validate/_test; docs/brain-mri.md) and pass --data "
    "keras_png_slices_data or put it in $GANFORGE_DATA/keras_png_slices_data"
)


def is_oasis_layout(root: Path) -> bool:
    """An OASIS keras_png_slices_data folder (it holds a split folder), or one split folder."""
    return root.name in OASIS_SPLITS or any((root / split).is_dir() for split in OASIS_SPLITS)


def oasis_substitute(config: DataConfig) -> str | None:
    """The note a run owes its user when a preset that requires OASIS (`require_oasis`)
    trains on other data named with --data; None when nothing is substituted."""
    if not config.require_oasis or not config.path:
        return None
    root = Path(config.path).expanduser()
    if config.dataset == "brain-mri" and is_oasis_layout(root):
        return None
    return (
        f"note: {root} is not the OASIS data of the brain-MRI document (no "
        "keras_png_slices_train/_validate/_test folders): training on these slices, as "
        "named with --data"
    )


def brain_mri_candidates() -> list[Path]:
    """Where brain slices are looked for without --data, in order (first existing folder wins)."""
    return search_places(BRAIN_DATASETS)


@register_source("brain-mri", fits=True, problems=brain_mri_problems, options=NiftiOptions)
def load_brain_mri(config: DataConfig) -> ImageData:
    """The `brain-mri` source: --data when given, else the first known copy of brain slices."""
    if config.path:
        return load_folder(config)
    candidates = brain_mri_candidates()
    for place in candidates:
        if place.is_dir() and (is_oasis_layout(place) or not config.require_oasis):
            return load_folder(replace(config, path=str(place.resolve())))
    searched = ", ".join(str(p) for p in candidates)
    if config.require_oasis:
        raise DataError(
            f"OASIS brain slices not found (looked in {searched}); this preset trains on "
            f"the document's data only: {OASIS_HOWTO}. To train on other slices, name "
            "them: --data FOLDER"
        )
    raise DataError(
        f"brain MRI slices not found: looked in {searched}; pass a folder of slices with "
        "--data (OASIS keras_png_slices_data, Kaggle 'Alzheimer's Dataset (4 class of "
        "Images)', any folder of PNG/JPEG slices, or NIfTI volumes) or set GANFORGE_DATA "
        "to a folder that holds brain-mri-slices/"
    )
