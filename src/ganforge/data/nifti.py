"""NIfTI volumes (.nii, .nii.gz) -> 2-D slices for a 2-D GAN, and generated slices -> a volume.

Each 3-D volume is
1. reoriented to RAS+ (nibabel.as_closest_canonical), so that the same anatomy gives the
   same slices whatever voxel order the file was stored in; its voxel sizes are read from
   the affine (the header's pixdims as nibabel applies them);
2. normalised on its own by ``data.options.normalise``:
   ``percentile`` (default): the ``data.options.percentiles[0]`` percentile of all voxels becomes 0
   (black background) and the ``data.options.percentiles[1]`` percentile of the voxels above it
   becomes 255 (0.5 and 99.5 by default). One hot voxel or a bright vessel cannot darken the
   whole volume, and scans with different scanner scales come out alike;
   ``zscore``: the foreground voxels (above the low percentile) are standardised by their
   mean and standard deviation and mean - 3 std .. mean + 3 std is shown as 0..255;
   ``minmax``: the volume's minimum .. maximum becomes 0..255 (for data already scaled,
   e.g. volumes written by :func:`save_nifti_stack`);
3. cut along ``data.options.nifti_axis`` (0 sagittal, 1 coronal, 2 axial in RAS+) over the part
   ``data.options.nifti_range`` of that axis (fractions, e.g. (0.3, 0.7) for the middle 40%);
4. thinned: slices whose foreground (pixels above 5% of the range) covers less than
   ``data.options.nifti_min_foreground`` of the slice are skipped, which drops the empty slices
   above and below the head;
5. laid out in one convention: the second in-plane axis points up (anterior for axial
   slices, superior for coronal and sagittal ones) and the first points right (patient's
   left on the image's left for axial and coronal slices: the "neurological" convention);
6. resampled to square pixels when the two in-plane voxel sizes differ (the finer size is
   kept), in the same single resize that brings slices to ``data.resolution``.

The slices then go through the same shaping as image folders (channels, resolution by
``data.fit``) and the same decoded-image cache. A 2-D file or a real 4-D series (fMRI,
DWI) is refused with a DataError that says what to do; a 4-D file with a single volume
is read as 3-D.

Splits: a folder with split folders splits as image folders do. A flat folder of volumes
can be split by subject with ``data.options.subject_split`` (the share of subjects held out as the
test split; see discovery.split_by_subject): no subject has slices on both sides.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch

from ganforge.config import DataConfig
from ganforge.data import cache
from ganforge.data.base import ImageData
from ganforge.data.decode import check_unreadable, join_parts, require_one_size, stack_fitted
from ganforge.data.discovery import (
    find_layout,
    is_image_file,
    is_nifti_file,
    list_files,
    path_problems,
    select_split,
    shared_subjects,
    split_by_subject,
    volume_name,
)
from ganforge.data.registry import register_source, source_options
from ganforge.data.transforms import square_pixel_size, to_channels
from ganforge.errors import ConfigError, DataError, first_line
from ganforge.settings import setting

# robust low / high intensity, per volume (data.options.percentiles)
PERCENTILES = (0.5, 99.5)
NORMALISERS = ("percentile", "zscore", "minmax")
# zscore shows mean +- this many standard deviations
ZSCORE_WINDOW = 3.0
# a pixel above this fraction of the normalised range is foreground
FOREGROUND_LEVEL = 0.05
AXIS_NAMES = {0: "sagittal", 1: "coronal", 2: "axial"}


class UnreadableVolume(Exception):
    """A file that nibabel cannot read: skipped under the corrupt-file policy."""


@dataclass
class Volume:
    """A volume's voxels in RAS+ order and the size of one voxel along each axis, in mm."""

    # float32 [X, Y, Z]
    data: np.ndarray
    spacing: tuple[float, float, float]


@dataclass(frozen=True)
class NiftiOptions:
    """The options (``data.options``) of sources that read NIfTI volumes: nifti, folder and
    brain-mri (a folder may hold volumes). Ranges are checked by :func:`volume_problems`."""

    nifti_axis: int = setting(
        2, help="slicing axis of the volumes: 0 sagittal, 1 coronal, 2 axial (RAS+)"
    )
    nifti_range: tuple[float, float] = setting(
        (0.0, 1.0), help="part of the axis to slice, as fractions, e.g. (0.3, 0.7)"
    )
    nifti_min_foreground: float = setting(
        0.1, help="skip slices with less non-background than this share"
    )
    normalise: Literal["percentile", "zscore", "minmax"] = setting(
        "percentile",
        help="intensity scaling per volume: percentile (percentiles -> 0..255), zscore "
        "(foreground mean +- 3 std -> 0..255) or minmax (volume min..max -> 0..255)",
    )
    percentiles: tuple[float, float] = setting(
        PERCENTILES, help="low -> black, high (of the voxels above low) -> white"
    )
    subject_split: float | None = setting(
        None,
        help="a flat folder of volumes: hold out this share of subjects as the test split",
    )


def nifti_options(config: DataConfig) -> NiftiOptions:
    """The NIfTI options of this data config, defaults filled in (checked by the registry)."""
    return source_options(config)


def read_volume(path: Path) -> np.ndarray:
    """A float32 3-D array in RAS+ orientation (see load_volume)."""
    return load_volume(path).data


def load_volume(path: Path) -> Volume:
    """Voxels in RAS+ order and their sizes; DataError for 2-D or 4-D, UnreadableVolume if damaged.

    A voxel size that is zero, negative or not finite (a carelessly written header) counts as
    1 mm, like the rest of the toolchain treats it.
    """
    import nibabel as nib

    try:
        image = nib.load(str(path))
        shape = tuple(int(s) for s in image.shape)
    # a damaged header raises ImageFileError, HeaderDataError, ...
    except Exception as exc:
        raise UnreadableVolume(first_line(exc, 80)) from None
    if len(shape) < 3:
        raise DataError(
            f"{path}: a {len(shape)}-D NIfTI image {shape}, not a volume; ganforge cuts slices "
            "from 3-D volumes: save a 2-D image as PNG and use --dataset folder"
        )
    if len(shape) > 3 and math.prod(shape[3:]) > 1:
        raise DataError(
            f"{path}: a 4-D NIfTI series {shape} ({math.prod(shape[3:])} volumes, "
            "e.g. fMRI or DWI); ganforge cuts slices from one 3-D volume per file: save one "
            "volume first, e.g. "
            "nibabel.save(img.slicer[..., 0], 'volume0.nii.gz')"
        )
    if 0 in shape:
        raise UnreadableVolume(f"an empty volume {shape}")
    try:
        canonical = nib.as_closest_canonical(image)
        data = np.asarray(canonical.get_fdata(dtype=np.float32)).reshape(canonical.shape[:3])
        sizes = nib.affines.voxel_sizes(canonical.affine)[:3]
    # damaged data raises HeaderDataError, TypeError, ...
    except Exception as exc:
        raise UnreadableVolume(first_line(exc, 80)) from None
    spacing = tuple(float(s) if math.isfinite(s) and s > 0 else 1.0 for s in sizes)
    return Volume(np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0), spacing)  # type: ignore[arg-type]


def normalise_volume(
    volume: np.ndarray,
    where: Path | str = "volume",
    method: str = "percentile",
    percentiles: tuple[float, float] = PERCENTILES,
) -> np.ndarray:
    """Per-volume intensity scaling to uint8 (see the module doc, step 2)."""
    low = float(np.percentile(volume, percentiles[0]))
    above = volume[volume > low]
    if above.size == 0:
        raise DataError(
            f"{where}: the volume is constant ({low:g} everywhere): nothing to cut slices from"
        )
    if method == "minmax":
        low, high = float(volume.min()), float(volume.max())
        scaled = (volume - low) / (high - low)
    elif method == "zscore":
        mean, std = float(above.mean()), float(above.std())
        std = std if std > 0 else 1.0
        scaled = ((volume - mean) / std + ZSCORE_WINDOW) / (2 * ZSCORE_WINDOW)
        # the background stays black
        scaled[volume <= low] = 0.0
    else:
        high = float(np.percentile(above, percentiles[1]))
        if high <= low:
            high = float(above.max())
        scaled = (volume - low) / (high - low)
    return np.round(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)


def axis_indices(length: int, fraction_range: tuple[float, float]) -> range:
    """Slice indices covering the fractions [low, high) of an axis of `length` (at least one)."""
    low, high = fraction_range
    start = min(int(math.floor(low * length)), length - 1)
    stop = min(max(start + 1, int(math.ceil(high * length))), length)
    return range(start, stop)


def orient_slice(plane: np.ndarray) -> np.ndarray:
    """A RAS+ slice [first axis, second axis] -> image rows/cols: second axis up, first right."""
    return np.ascontiguousarray(np.flipud(plane.T))


def foreground_fraction(image: np.ndarray) -> float:
    """The share of a slice's pixels that are not background."""
    return float((image > FOREGROUND_LEVEL * 255).mean())


def volume_slices(
    volume: np.ndarray, axis: int, fraction_range: tuple[float, float], min_foreground: float
) -> list[np.ndarray]:
    """uint8 slices of a normalised volume along `axis`, oriented, near-empty ones skipped."""
    slices = []
    # a view: planes[k] is slice k (np.take would copy)
    planes = np.moveaxis(volume, axis, 0)
    for index in axis_indices(volume.shape[axis], fraction_range):
        image = orient_slice(planes[index])
        if foreground_fraction(image) >= min_foreground:
            slices.append(image)
    return slices


def slice_spacing(spacing: tuple[float, float, float], axis: int) -> tuple[float, float]:
    """The (row, column) pixel size of slices along `axis` after orient_slice."""
    first, second = (a for a in range(3) if a != axis)
    return spacing[second], spacing[first]


def decode_volumes(files: Sequence[Path], root: Path, config: DataConfig) -> cache.Decoded:
    """Read, normalise and slice every volume, then shape the slices like image files."""
    arrays: list[np.ndarray] = []
    spacings: list[tuple[float, float]] = []
    skipped: list[str] = []
    sizes: dict[tuple[int, int], str] = {}
    attempted = 0
    opts = nifti_options(config)
    percentiles = (float(opts.percentiles[0]), float(opts.percentiles[1]))
    for path in files:
        if config.limit is not None and len(arrays) >= config.limit:
            break
        attempted += 1
        try:
            volume = load_volume(path)
        except UnreadableVolume as exc:
            skipped.append(f"{path.name} ({exc})")
            continue
        scaled = normalise_volume(volume.data, path, opts.normalise, percentiles)
        spacing = slice_spacing(volume.spacing, opts.nifti_axis)
        for image in volume_slices(
            scaled, opts.nifti_axis, opts.nifti_range, opts.nifti_min_foreground
        ):
            sizes.setdefault(square_pixel_size(*image.shape, spacing), path.name)
            arrays.append(image)
            spacings.append(spacing)
        require_one_size(sizes, config.resolution, root)
    check_unreadable(skipped, attempted, root, noun="volume")
    if config.limit is not None:
        arrays, spacings = arrays[: config.limit], spacings[: config.limit]
    if not arrays:
        return cache.Decoded(torch.zeros(0, 1, 1, 1, dtype=torch.uint8), skipped, attempted)
    parts = [
        stack_fitted(
            arrays[i : i + 512],
            config.channels,
            config.resolution,
            config.fit,
            spacings[i : i + 512],
        )
        for i in range(0, len(arrays), 512)
    ]
    return cache.Decoded(join_parts(parts, config.channels), skipped, attempted)


def volume_problems(config: DataConfig) -> list[str]:
    """The NIfTI settings that cannot work, whatever the files hold."""
    opts = nifti_options(config)
    found = []
    if opts.nifti_axis not in AXIS_NAMES:
        found.append(
            f"data.options.nifti_axis must be 0 (sagittal), 1 (coronal) or 2 (axial) "
            f"(got {opts.nifti_axis!r})"
        )
    if not _ordered(opts.nifti_range, 1.0):
        found.append(
            f"data.options.nifti_range must be two fractions 0 <= low < high <= 1 "
            f"(got {opts.nifti_range!r})"
        )
    share = opts.nifti_min_foreground
    if not (isinstance(share, (int, float)) and 0.0 <= share <= 1.0):
        found.append(
            f"data.options.nifti_min_foreground must be a fraction in [0, 1] (got {share!r})"
        )
    if not _ordered(opts.percentiles, 100.0):
        found.append(
            f"data.options.percentiles must be two percentiles 0 <= low < high <= 100 "
            f"(got {opts.percentiles!r})"
        )
    held = opts.subject_split
    if held is not None and not (isinstance(held, (int, float)) and 0.0 < held < 1.0):
        found.append(
            f"data.options.subject_split must be a share of subjects between 0 and 1, "
            f"e.g. 0.2 (got {held!r})"
        )
    if opts.normalise not in NORMALISERS:
        found.append(
            f"data.options.normalise must be one of {', '.join(NORMALISERS)} "
            f"(got {opts.normalise!r})"
        )
    return found


def _ordered(pair: object, top: float) -> bool:
    """True for two numbers with 0 <= low < high <= top."""
    try:
        low, high = (float(v) for v in pair)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return False
    return 0.0 <= low < high <= top


def nifti_problems(config: DataConfig) -> list[str]:
    """What the nifti source refuses before reading: no --data, a missing path, bad settings."""
    wanted = "FILE.nii.gz or --data FOLDER of NIfTI volumes"
    return path_problems(config.path, config.dataset, wanted) + volume_problems(config)


def nifti_shape(config: DataConfig) -> tuple[int, int, int] | None:
    """Slices are grayscale; their size is known only when a resolution is set."""
    return None if config.resolution is None else (1, config.resolution, config.resolution)


def select_volumes(root: Path, config: DataConfig) -> tuple[list[Path], str]:
    """The volumes of the configured split under folder `root`, and the split's label."""
    held = nifti_options(config).subject_split
    if held is None:
        folders, label = select_split(root, config.split)
        layout = find_layout(root)
        leaked = shared_subjects(layout, is_nifti_file) if layout and label != "all" else []
        if leaked:
            shown = ", ".join(leaked[:3]) + (", ..." if len(leaked) > 3 else "")
            warnings.warn(
                f"{root}: {len(leaked)} subject(s) have volumes in both the train and the test "
                f"folder ({shown}): a test score would see training subjects; keep each subject "
                "in one folder, or use one flat folder with --set data.options.subject_split=0.2",
                stacklevel=4,
            )
        return list_files(folders, is_nifti_file), label
    layout = find_layout(root)
    if layout is not None:
        raise DataError(
            f"{root} already has split folders ({', '.join(p.name for p in layout.values())}): "
            "data.options.subject_split splits a flat folder of volumes; drop it, or point --data "
            "at one split folder"
        )
    files = list_files([root], is_nifti_file)
    if not files and list_files([root], is_image_file):
        raise DataError(
            f"{root} holds image files, not NIfTI volumes: data.options.subject_split splits "
            "folders of volumes by subject; drop it and use split folders"
        )
    return split_by_subject(files, root, float(held), config.split), config.split


@register_source(
    "nifti", fits=True, problems=nifti_problems, shape=nifti_shape, options=NiftiOptions
)
def load_nifti(config: DataConfig) -> ImageData:
    """The `nifti` source: one .nii/.nii.gz file, or a folder of them (splits: module doc)."""
    if not config.path:
        raise ConfigError(
            "dataset 'nifti' needs a path: --data FILE.nii.gz or --data FOLDER of NIfTI volumes"
        )
    problems = volume_problems(config)
    if problems:
        raise ConfigError(problems[0])
    root = Path(config.path).expanduser()
    if not root.exists():
        raise DataError(
            f"{root} does not exist; pass a NIfTI volume or a folder of them with --data"
        )
    if root.is_file():
        if not is_nifti_file(root):
            raise DataError(f"{root} is not a NIfTI volume (.nii or .nii.gz)")
        files, label, name = [root], "all", volume_name(root)
    else:
        files, label = select_volumes(root, config)
        name = root.name
        if not files:
            raise DataError(
                f"no NIfTI volumes (.nii, .nii.gz) in {root} (searched recursively, "
                "mask folders skipped)"
            )
    opts = nifti_options(config)
    settings = {
        **cache.cache_settings(config, "nifti", label),
        "axis": opts.nifti_axis,
        "range": list(opts.nifti_range),
        "min_foreground": opts.nifti_min_foreground,
        "normalise": opts.normalise,
        "percentiles": list(opts.percentiles),
        "subject_split": opts.subject_split,
        "pixels": "square",
    }
    decoded = cache.cached(
        root, files, settings, lambda: decode_volumes(files, root, config), enabled=config.cache
    )
    if decoded.from_cache:
        check_unreadable(decoded.skipped, decoded.attempted, root, noun="volume")
    axis = AXIS_NAMES[opts.nifti_axis]
    if len(decoded.images) == 0:
        raise DataError(
            f"{root}: no slices left: every {axis} slice in data.options.nifti_range "
            f"{tuple(opts.nifti_range)} has less than "
            f"{opts.nifti_min_foreground:.0%} foreground; lower "
            "data.options.nifti_min_foreground or widen data.options.nifti_range"
        )
    note = ", from the decoded-image cache" if decoded.from_cache else ""
    source = f"{root} ({len(files)} volume(s), {len(decoded.images)} {axis} slices{note})"
    return ImageData(decoded.images, f"{name}/{label}", source)


def save_nifti_stack(
    images: torch.Tensor | np.ndarray, path: str | Path, spacing: Sequence[float] = (1.0, 1.0, 1.0)
) -> Path:
    """Write uint8 slices [N, C, H, W] as one axial NIfTI volume that viewers and ganforge read.

    Slice k becomes axial plane k of a RAS+ volume [W, H, N] laid out as the nifti source
    reads slices (rows up = anterior, columns right), so ``--dataset nifti --set
    data.normalise=minmax --set data.options.nifti_min_foreground=0`` gives the images back.
    `spacing` is the (column, row, slice) size in mm; the volume is centred on the origin.
    RGB slices are stored as their luma. Returns the path written (.nii or .nii.gz).
    """
    import nibabel as nib

    target = Path(path)
    if not target.name.lower().endswith((".nii", ".nii.gz")):
        raise DataError(f"{target}: a NIfTI stack needs a .nii or .nii.gz name")
    stack = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
    if stack.dtype != torch.uint8 or stack.ndim != 4 or stack.shape[1] not in (1, 3):
        raise DataError(
            f"save_nifti_stack wants uint8 slices [N, 1 or 3, H, W], got "
            f"{stack.dtype} {tuple(stack.shape)}"
        )
    sizes = [float(s) for s in spacing]
    if len(sizes) != 3 or not all(math.isfinite(s) and s > 0 for s in sizes):
        raise DataError(f"NIfTI spacing must be three positive sizes in mm (got {tuple(spacing)})")
    # [N, H, W]
    gray = to_channels(stack.cpu(), 1)[:, 0].numpy()
    # undo orient_slice: [W, H, N]
    planes = np.flip(gray, axis=1).transpose(2, 1, 0)
    affine = np.diag([*sizes, 1.0])
    affine[:3, 3] = -(np.array(planes.shape) - 1) / 2 * np.array(sizes)
    volume = nib.Nifti1Image(np.ascontiguousarray(planes), affine)
    volume.header.set_xyzt_units("mm")
    target.parent.mkdir(parents=True, exist_ok=True)
    nib.save(volume, str(target))
    return target
