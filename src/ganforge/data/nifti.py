"""NIfTI volumes (.nii, .nii.gz) -> 2-D slices for a 2-D GAN.

Each 3-D volume is
1. reoriented to RAS+ (nibabel.as_closest_canonical), so that the same anatomy gives the
   same slices whatever voxel order the file was stored in;
2. normalised on its own, robustly: the 0.5th percentile of all voxels becomes 0 (black
   background) and the 99.5th percentile of the voxels above it becomes 255. One hot voxel
   or a bright vessel cannot darken the whole volume, and scans with different scanner
   scales come out alike;
3. cut along ``data.nifti_axis`` (0 sagittal, 1 coronal, 2 axial in RAS+) over the part
   ``data.nifti_range`` of that axis (fractions, e.g. (0.3, 0.7) for the middle 40%);
4. thinned: slices whose foreground (pixels above 5% of the range) covers less than
   ``data.nifti_min_foreground`` of the slice are skipped, which drops the empty slices
   above and below the head;
5. laid out in one convention: the second in-plane axis points up (anterior for axial
   slices, superior for coronal and sagittal ones) and the first points right (patient's
   left on the image's left for axial and coronal slices: the "neurological" convention).

The slices then go through the same shaping as image folders (channels, resolution by
``data.fit``) and the same decoded-image cache. A 2-D file or a real 4-D series (fMRI,
DWI) is refused with a DataError that says what to do; a 4-D file with a single volume
is read as 3-D.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ganforge.config import DataConfig
from ganforge.data import cache
from ganforge.data.base import ImageData
from ganforge.data.decode import check_unreadable, join_parts, require_one_size, stack_fitted
from ganforge.data.discovery import (is_nifti_file, list_files, path_problems, select_split,
                                     volume_name)
from ganforge.data.registry import register_source
from ganforge.errors import ConfigError, DataError

PERCENTILES = (0.5, 99.5)  # robust low / high intensity, per volume
FOREGROUND_LEVEL = 0.05  # a pixel above this fraction of the normalised range is foreground
AXIS_NAMES = {0: "sagittal", 1: "coronal", 2: "axial"}


class UnreadableVolume(Exception):
    """A file that nibabel cannot read: skipped under the corrupt-file policy."""


def read_volume(path: Path) -> np.ndarray:
    """A float32 3-D array in RAS+ orientation. DataError for 2-D or 4-D; UnreadableVolume if damaged."""
    import nibabel as nib

    try:
        image = nib.load(str(path))
        shape = tuple(int(s) for s in image.shape)
    except Exception as exc:  # a damaged header raises many types: ImageFileError, HeaderDataError, OverflowError
        raise UnreadableVolume(_first_line(exc)) from None
    if len(shape) < 3:
        raise DataError(f"{path}: a {len(shape)}-D NIfTI image {shape}, not a volume; ganforge cuts slices from 3-D "
                        "volumes: save a 2-D image as PNG and use --dataset folder")
    if len(shape) > 3 and math.prod(shape[3:]) > 1:
        raise DataError(f"{path}: a 4-D NIfTI series {shape} ({math.prod(shape[3:])} volumes, e.g. fMRI or DWI); "
                        "ganforge cuts slices from one 3-D volume per file: save one volume first, e.g. "
                        "nibabel.save(img.slicer[..., 0], 'volume0.nii.gz')")
    if 0 in shape:
        raise UnreadableVolume(f"an empty volume {shape}")
    try:
        canonical = nib.as_closest_canonical(image)
        data = np.asarray(canonical.get_fdata(dtype=np.float32)).reshape(canonical.shape[:3])
    except Exception as exc:  # nibabel raises many types on damaged data (HeaderDataError, TypeError, ...)
        raise UnreadableVolume(_first_line(exc)) from None
    return np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:80]


def normalise_volume(volume: np.ndarray, where: Path | str = "volume") -> np.ndarray:
    """Robust per-volume intensity scaling to uint8 (see the module doc, step 2)."""
    low = float(np.percentile(volume, PERCENTILES[0]))
    above = volume[volume > low]
    if above.size == 0:
        raise DataError(f"{where}: the volume is constant ({low:g} everywhere): nothing to cut slices from")
    high = float(np.percentile(above, PERCENTILES[1]))
    if high <= low:
        high = float(above.max())
    scaled = np.clip((volume - low) / (high - low), 0.0, 1.0)
    return np.round(scaled * 255.0).astype(np.uint8)


def axis_indices(length: int, fraction_range: tuple[float, float]) -> range:
    """Slice indices covering the fractions [low, high) of an axis of `length` (at least one)."""
    low, high = fraction_range
    start = min(int(math.floor(low * length)), length - 1)
    stop = min(max(start + 1, int(math.ceil(high * length))), length)
    return range(start, stop)


def orient_slice(plane: np.ndarray) -> np.ndarray:
    """A RAS+ slice [first axis, second axis] -> image rows/cols: second axis up, first axis right."""
    return np.ascontiguousarray(np.flipud(plane.T))


def foreground_fraction(image: np.ndarray) -> float:
    return float((image > FOREGROUND_LEVEL * 255).mean())


def volume_slices(volume: np.ndarray, axis: int, fraction_range: tuple[float, float],
                  min_foreground: float) -> list[np.ndarray]:
    """uint8 slices of a normalised volume along `axis`, oriented, near-empty ones skipped."""
    slices = []
    planes = np.moveaxis(volume, axis, 0)  # a view: planes[k] is slice k (np.take copies the volume per slice)
    for index in axis_indices(volume.shape[axis], fraction_range):
        image = orient_slice(planes[index])
        if foreground_fraction(image) >= min_foreground:
            slices.append(image)
    return slices


def decode_volumes(files: Sequence[Path], root: Path, config: DataConfig) -> cache.Decoded:
    """Read, normalise and slice every volume, then shape the slices like image files."""
    arrays: list[np.ndarray] = []
    skipped: list[str] = []
    sizes: dict[tuple[int, int], str] = {}
    attempted = 0
    for path in files:
        if config.limit is not None and len(arrays) >= config.limit:
            break
        attempted += 1
        try:
            volume = normalise_volume(read_volume(path), path)
        except UnreadableVolume as exc:
            skipped.append(f"{path.name} ({exc})")
            continue
        for image in volume_slices(volume, config.nifti_axis, config.nifti_range, config.nifti_min_foreground):
            sizes.setdefault(image.shape, path.name)
            arrays.append(image)
        require_one_size(sizes, config.resolution, root)
    check_unreadable(skipped, attempted, root, noun="volume")
    arrays = arrays[: config.limit] if config.limit is not None else arrays
    if not arrays:
        return cache.Decoded(torch.zeros(0, 1, 1, 1, dtype=torch.uint8), skipped, attempted)
    parts = [stack_fitted(arrays[i : i + 512], config.channels, config.resolution, config.fit)
             for i in range(0, len(arrays), 512)]
    return cache.Decoded(join_parts(parts, config.channels), skipped, attempted)


def volume_problems(config: DataConfig) -> list[str]:
    """The slicing settings of NIfTI volumes that cannot work, whatever the files hold."""
    found = []
    if config.nifti_axis not in AXIS_NAMES:
        found.append(f"data.nifti_axis must be 0 (sagittal), 1 (coronal) or 2 (axial) "
                     f"(got {config.nifti_axis!r})")
    try:
        low, high = (float(v) for v in config.nifti_range)
        ordered = 0.0 <= low < high <= 1.0
    except (TypeError, ValueError):
        ordered = False
    if not ordered:
        found.append(f"data.nifti_range must be two fractions 0 <= low < high <= 1 "
                     f"(got {config.nifti_range!r})")
    share = config.nifti_min_foreground
    if not (isinstance(share, (int, float)) and 0.0 <= share <= 1.0):
        found.append(f"data.nifti_min_foreground must be a fraction in [0, 1] (got {share!r})")
    return found


def nifti_problems(config: DataConfig) -> list[str]:
    """What the nifti source refuses before reading: no --data, a missing path, bad slicing."""
    wanted = "FILE.nii.gz or --data FOLDER of NIfTI volumes"
    return path_problems(config.path, config.dataset, wanted) + volume_problems(config)


def nifti_shape(config: DataConfig) -> tuple[int, int, int] | None:
    """Slices are grayscale; their size is known only when a resolution is set."""
    return None if config.resolution is None else (1, config.resolution, config.resolution)


@register_source("nifti", fits=True, problems=nifti_problems, shape=nifti_shape)
def load_nifti(config: DataConfig) -> ImageData:
    """The `nifti` source: one .nii/.nii.gz file, or a folder of them (split layout as for images)."""
    if not config.path:
        raise ConfigError("dataset 'nifti' needs a path: --data FILE.nii.gz or --data FOLDER of NIfTI volumes")
    if config.nifti_axis not in AXIS_NAMES:
        raise ConfigError(f"data.nifti_axis must be 0 (sagittal), 1 (coronal) or 2 (axial) (got {config.nifti_axis})")
    root = Path(config.path).expanduser()
    if not root.exists():
        raise DataError(f"{root} does not exist; pass a NIfTI volume or a folder of them with --data")
    if root.is_file():
        if not is_nifti_file(root):
            raise DataError(f"{root} is not a NIfTI volume (.nii or .nii.gz)")
        files, label, name = [root], "all", volume_name(root)
    else:
        folders, label = select_split(root, config.split)
        files, name = list_files(folders, is_nifti_file), root.name
        if not files:
            raise DataError(f"no NIfTI volumes (.nii, .nii.gz) in {root} (searched recursively, mask folders skipped)")
    settings = {**cache.cache_settings(config, "nifti", label), "axis": config.nifti_axis,
                "range": list(config.nifti_range), "min_foreground": config.nifti_min_foreground}
    decoded = cache.cached(root, files, settings, lambda: decode_volumes(files, root, config), enabled=config.cache)
    if decoded.from_cache:
        check_unreadable(decoded.skipped, decoded.attempted, root, noun="volume")
    if len(decoded.images) == 0:
        raise DataError(f"{root}: no slices left: every {AXIS_NAMES[config.nifti_axis]} slice in "
                        f"data.nifti_range {tuple(config.nifti_range)} has less than {config.nifti_min_foreground:.0%} "
                        "foreground; lower data.nifti_min_foreground or widen data.nifti_range")
    note = ", from the decoded-image cache" if decoded.from_cache else ""
    source = f"{root} ({len(files)} volume(s), {len(decoded.images)} {AXIS_NAMES[config.nifti_axis]} slices{note})"
    return ImageData(decoded.images, f"{name}/{label}", source)
