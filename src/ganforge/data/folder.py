"""Image-folder datasets: PNG/JPEG/TIFF slices in a folder tree, decoded once into memory.

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
import re
import struct
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from ganforge.config import DataConfig
from ganforge.data import cache
from ganforge.data.base import ImageData
from ganforge.data.transforms import fit_square, to_channels
from ganforge.errors import ConfigError, DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
MAX_UNREADABLE_FRACTION = 0.10  # more unreadable files than this: the copy is damaged, stop
CHUNK = 512  # files decoded per batch: bounds the memory of full-size copies
DECODER_VERSION = 1  # bump when decoding changes, so old caches are not reused
SPLIT_FOLDERS = {  # folder names (lower case) that mark a split, per split
    "train": ("keras_png_slices_train", "train", "training"),
    "validate": ("keras_png_slices_validate", "validate", "validation", "valid", "val"),
    "test": ("keras_png_slices_test", "test", "testing"),
}
SPLIT_PARTS = {"train": ("train",), "test": ("test",), "all": ("train", "validate", "test")}
LAYOUT_DEPTH = 2  # how far below the given folder split folders are looked for

# Where the brain-mri source looks when no path is given (relative entries: to cwd, then the repo).
BRAIN_DATASETS = ("keras_png_slices_data", "brain-mri-slices")
BRAIN_LOCAL_ROOTS = ("../shared/datasets", "shared/datasets")
REPO_ROOT = Path(__file__).resolve().parents[3]  # a source checkout: <repo>/src/ganforge/data


# ---- finding files ---------------------------------------------------------------------------
def is_mask_folder(name: str) -> bool:
    """True for folders of segmentation masks, which must not be read as images."""
    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]
    return any(w.startswith("seg") or w in ("mask", "masks") for w in words)


def is_image_file(path: Path) -> bool:
    return path.name.lower().endswith(IMAGE_SUFFIXES) and not path.name.startswith(".")


def is_nifti_file(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES) and not path.name.startswith(".")


def _child_dirs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def find_layout(root: Path) -> dict[str, Path] | None:
    """The split folders (train/validate/test -> path) at or below `root`, shallowest first.

    A folder counts as a split layout when it has a train folder; searching two levels
    down finds ``brain-mri-slices/Alzheimer_s Dataset/train`` from ``brain-mri-slices``.
    """
    level = [root]
    for _ in range(LAYOUT_DEPTH + 1):
        for folder in level:
            children = {p.name.lower(): p for p in _child_dirs(folder)}
            found = {split: next((children[n] for n in names if n in children), None)
                     for split, names in SPLIT_FOLDERS.items()}
            if found["train"] is not None:
                return {split: path for split, path in found.items() if path is not None}
        level = [c for folder in level for c in _child_dirs(folder) if not is_mask_folder(c.name)]
    return None


def select_split(root: Path, split: str) -> tuple[list[Path], str]:
    """The folders to read for `split`, and the split's label for the dataset name."""
    layout = find_layout(root)
    if layout is None:
        if split == "test" and root.name.lower() not in SPLIT_FOLDERS["test"]:
            raise DataError(f"{root} has no test split (no test/ or keras_png_slices_test/ folder): a flat folder is "
                            "one dataset; point --data at the test images and use --set data.split=all")
        return [root], "test" if split == "test" else "all"  # the whole folder, whatever train/all says
    wanted = [layout[part] for part in SPLIT_PARTS[split] if part in layout]
    if not wanted:
        found = ", ".join(p.name for p in layout.values())
        raise DataError(f"{root} has no {split} folder (found split folders: {found})")
    return wanted, split


def list_files(folders: Iterable[Path], keep: Callable[[Path], bool]) -> list[Path]:
    """Matching files under `folders`, recursively, skipping mask and hidden folders; sorted."""
    found: list[Path] = []
    for folder in folders:
        for current, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not is_mask_folder(d))
            found.extend(Path(current) / f for f in sorted(filenames) if keep(Path(current) / f))
    return found


def _nothing_found(root: Path, folders: Sequence[Path]) -> DataError:
    """Say what the folder does hold, so the user sees why nothing was read."""
    everything = [Path(c) / f for folder in folders for c, _, files in os.walk(folder) for f in files]
    if not everything:
        return DataError(f"{root} is empty: no image files (PNG, JPEG, TIFF) or NIfTI volumes (.nii, .nii.gz) in it")
    masks = [p for p in everything if is_image_file(p) and any(is_mask_folder(part) for part in
                                                                p.relative_to(root).parts[:-1])]
    if masks:
        return DataError(f"{root}: no images outside mask folders ({len(masks)} files in *seg*/*mask* folders are "
                         "skipped as segmentation masks); point --data at the image folder")
    kinds = sorted({p.suffix.lower() or p.name for p in everything})[:5]
    return DataError(f"no images (PNG, JPEG, TIFF) or NIfTI volumes in {root} (searched recursively): found "
                     f"{len(everything)} other file(s) ({', '.join(kinds)})")


# ---- decoding --------------------------------------------------------------------------------
def _stretch(values: np.ndarray) -> np.ndarray:
    """High-bit-depth pixels -> uint8 by the image's own min..max (16-bit MRI rarely fills 0..65535)."""
    values = np.nan_to_num(values.astype(np.float64))
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, np.uint8)
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)


def _pixels(image: Image.Image) -> np.ndarray:
    """uint8 [H, W] for grayscale content, [H, W, 3] for colour."""
    mode = image.mode
    if mode == "L":
        return np.asarray(image)
    if mode in ("1", "LA", "La"):
        return np.asarray(image.convert("L"))
    if mode.startswith("I") or mode == "F":
        return _stretch(np.asarray(image))
    rgb = np.asarray(image.convert("RGB"))
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return np.ascontiguousarray(rgb[..., 0])  # grayscale stored as RGB (common for MRI PNGs)
    return rgb


def decode_image(path: Path) -> tuple[np.ndarray | None, str]:
    """(pixels, "") or (None, why it cannot be read). Never raises for a bad file."""
    try:
        with Image.open(path) as image:
            image.load()  # decode now: a truncated file fails here, not later
            return _pixels(image), ""
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, Image.DecompressionBombError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, text[:80]


def stack_fitted(arrays: Sequence[np.ndarray], channels: int | None, resolution: int | None,
                 fit: str) -> torch.Tensor:
    """Same-size-or-resized uint8 arrays -> [N, C, R, R], resizing each source size as one batch."""
    target = channels or (3 if any(a.ndim == 3 for a in arrays) else 1)
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, array in enumerate(arrays):
        groups.setdefault(array.shape, []).append(index)
    out: torch.Tensor | None = None
    for shape, indices in groups.items():
        batch = torch.from_numpy(np.stack([arrays[i] for i in indices]))
        batch = batch.unsqueeze(1) if len(shape) == 2 else batch.permute(0, 3, 1, 2)
        batch = fit_square(to_channels(batch, target), resolution, fit)
        if len(groups) == 1:
            return batch.contiguous()
        if out is None:  # several source sizes: all were resized to the same square
            out = torch.empty((len(arrays), *batch.shape[1:]), dtype=torch.uint8)
        out[torch.tensor(indices)] = batch
    assert out is not None
    return out


def join_parts(parts: Sequence[torch.Tensor], channels: int | None) -> torch.Tensor:
    """Concatenate chunks; with channels unset, any colour chunk makes the whole set RGB."""
    target = channels or max(p.shape[1] for p in parts)
    return torch.cat([to_channels(p, target) for p in parts]).contiguous()


def require_one_size(sizes: dict[tuple[int, int], str], resolution: int | None, where: Path) -> None:
    """Without a target resolution every source must have the same size: say which differ."""
    if resolution is None and len(sizes) > 1:
        (s1, n1), (s2, n2) = list(sizes.items())[:2]
        raise DataError(f"{where}: images differ in size ({s1[1]}x{s1[0]} in {n1}, {s2[1]}x{s2[0]} in {n2}); "
                        "set a target size with --resolution N (each image is resized with data.fit)")


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return path.name


def decode_files(files: Sequence[Path], root: Path, config: DataConfig) -> cache.Decoded:
    """Decode, shape and stack images, skipping unreadable ones (policy applied by the caller)."""
    parts: list[torch.Tensor] = []
    skipped: list[str] = []
    sizes: dict[tuple[int, int], str] = {}
    attempted = have = 0
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        while attempted < len(files) and (config.limit is None or have < config.limit):
            take = CHUNK if config.limit is None else min(CHUNK, config.limit - have)
            chunk = files[attempted : attempted + take]
            attempted += len(chunk)
            arrays = []
            for path, (pixels, why) in zip(chunk, pool.map(decode_image, chunk)):
                if pixels is None:
                    skipped.append(f"{_relative(path, root)} ({why})")
                    continue
                sizes.setdefault(pixels.shape[:2], _relative(path, root))
                arrays.append(pixels)
            require_one_size(sizes, config.resolution, root)
            if arrays:
                parts.append(stack_fitted(arrays, config.channels, config.resolution, config.fit))
                have += len(arrays)
    check_unreadable(skipped, attempted, root)
    images = join_parts(parts, config.channels) if parts else torch.zeros(0, 1, 1, 1, dtype=torch.uint8)
    return cache.Decoded(images, skipped, attempted)


def check_unreadable(skipped: Sequence[str], attempted: int, where: Path, noun: str = "file") -> None:
    """The corrupt-file policy: warn about up to 10% unreadable files, stop above that."""
    if not skipped:
        return
    first = ", ".join(skipped[:3]) + (", ..." if len(skipped) > 3 else "")
    share = len(skipped) / max(attempted, 1)
    if share > MAX_UNREADABLE_FRACTION:
        raise DataError(f"{where}: {len(skipped)} of {attempted} {noun}s are unreadable ({share:.0%}, more than "
                        f"{MAX_UNREADABLE_FRACTION:.0%}): {first}; the copy looks damaged, fetch it again")
    warnings.warn(f"{where}: skipped {len(skipped)} unreadable {noun}(s) of {attempted}: {first}", stacklevel=4)


# ---- sources -----------------------------------------------------------------------------------
def cache_settings(config: DataConfig, kind: str, split_label: str) -> dict[str, object]:
    """Everything besides the source files that changes the decoded tensor: the cache key."""
    return {"kind": kind, "decoder": DECODER_VERSION, "split": split_label, "resolution": config.resolution,
            "channels": config.channels, "fit": config.fit, "limit": config.limit}


def load_image_files(root: Path, files: Sequence[Path], split_label: str, config: DataConfig) -> ImageData:
    """Decode `files` (or read them from the cache) into an ImageData named <folder>/<split>."""
    decoded = cache.cached(root, files, cache_settings(config, "images", split_label),
                           lambda: decode_files(files, root, config), enabled=config.cache)
    if decoded.from_cache:
        check_unreadable(decoded.skipped, decoded.attempted, root)  # never silent, cached or not
    if len(decoded.images) == 0:
        raise DataError(f"{root}: none of the {len(files)} image files could be read")
    note = ", from the decoded-image cache" if decoded.from_cache else ""
    return ImageData(decoded.images, f"{root.name}/{split_label}", f"{root} ({len(decoded.images)} images{note})")


def load_folder(config: DataConfig) -> ImageData:
    """The `folder` source: a folder of images, a folder of NIfTI volumes, or one NIfTI file."""
    if not config.path:
        raise ConfigError("dataset 'folder' needs a path: --data FOLDER (of PNG/JPEG/TIFF images or NIfTI volumes) "
                          "or --data FILE.nii.gz")
    root = Path(config.path).expanduser()
    if not root.exists():
        raise DataError(f"{root} does not exist; pass a folder of images or a NIfTI volume with --data")
    if root.is_file():
        if is_nifti_file(root):
            from ganforge.data.nifti import load_nifti
            return load_nifti(config)
        if is_image_file(root):
            raise DataError(f"{root} is a single image; pass the folder that holds the images with --data")
        raise DataError(f"{root} is neither a folder of images nor a NIfTI volume (.nii, .nii.gz)")
    folders, label = select_split(root, config.split)
    files = list_files(folders, is_image_file)
    if files:
        return load_image_files(root, files, label, config)
    if list_files(folders, is_nifti_file):
        from ganforge.data.nifti import load_nifti
        return load_nifti(config)
    raise _nothing_found(root, folders)


def brain_mri_candidates() -> list[Path]:
    """Where brain slices are looked for without --data, in order (first existing folder wins)."""
    places: list[Path] = []
    if os.environ.get("GANFORGE_DATA"):
        places += [Path(os.environ["GANFORGE_DATA"]) / name for name in BRAIN_DATASETS]
    places += [cache.cache_root() / "datasets" / name for name in BRAIN_DATASETS]
    for base in BRAIN_LOCAL_ROOTS:
        for anchor in (Path.cwd(), REPO_ROOT):
            places += [anchor / base / name for name in BRAIN_DATASETS]
    unique: list[Path] = []
    for place in places:
        if all(place.resolve() != seen.resolve() for seen in unique):
            unique.append(place)
    return unique


def load_brain_mri(config: DataConfig) -> ImageData:
    """The `brain-mri` source: --data when given, else the first known copy of brain slices."""
    if config.path:
        return load_folder(config)
    candidates = brain_mri_candidates()
    for place in candidates:
        if place.is_dir():
            return load_folder(replace(config, path=str(place.resolve())))
    searched = ", ".join(str(p) for p in candidates)
    raise DataError(f"brain MRI slices not found: looked in {searched}; pass a folder of slices with --data "
                    "(OASIS keras_png_slices_data, Kaggle 'Alzheimer's Dataset (4 class of Images)', any folder of "
                    "PNG/JPEG slices, or NIfTI volumes) or set GANFORGE_DATA to a folder that holds brain-mri-slices/")
