"""Finding files: which files a folder holds, which folders are splits, which are masks, subjects.

Only names and folder listings are read here, never a file's content, so every source shares
one definition of "an image file", "a mask folder", "the train split" and "a subject".

Mask folders: any folder below the given one whose name has a word starting with ``seg`` or
the word ``mask``/``masks`` (``keras_png_slices_seg_train``, ``seg``, ``masks``). Hidden files
and folders (``.xyz``, macOS ``._name.png``) are skipped too.

Split folders: ``keras_png_slices_train/_validate/_test`` (the OASIS layout) or
``train/val(idate)/test``, in the given folder or up to two levels below it.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ganforge.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
# folder names (lower case) that mark a split, per split
SPLIT_FOLDERS = {
    "train": ("keras_png_slices_train", "train", "training"),
    "validate": ("keras_png_slices_validate", "validate", "validation", "valid", "val"),
    "test": ("keras_png_slices_test", "test", "testing"),
}
SPLIT_PARTS = {"train": ("train",), "test": ("test",), "all": ("train", "validate", "test")}
# how far below the given folder split folders are looked for
LAYOUT_DEPTH = 2
# Subject identifiers in file or folder names: BIDS "sub-<label>", OASIS "OAS1_0001",
# ADNI "002_S_0295". A name without one is its own subject.
SUBJECT_PATTERNS = (
    re.compile(r"(?:^|[^A-Za-z0-9])(sub-[A-Za-z0-9]+)"),
    re.compile(r"(OAS\d_\d{4})", re.IGNORECASE),
    re.compile(r"(?:^|[^0-9])(\d{3}_S_\d{4})"),
)


def is_mask_folder(name: str) -> bool:
    """True for folders of segmentation masks, which must not be read as images."""
    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]
    return any(w.startswith("seg") or w in ("mask", "masks") for w in words)


def is_image_file(path: Path) -> bool:
    """A PNG/JPEG/TIFF file by its name (hidden files excluded)."""
    return path.name.lower().endswith(IMAGE_SUFFIXES) and not path.name.startswith(".")


def is_nifti_file(path: Path) -> bool:
    """A .nii or .nii.gz file by its name (hidden files excluded)."""
    return path.name.lower().endswith(NIFTI_SUFFIXES) and not path.name.startswith(".")


def volume_name(path: Path) -> str:
    """The file name without .nii / .nii.gz."""
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


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
            found = {
                split: next((children[n] for n in names if n in children), None)
                for split, names in SPLIT_FOLDERS.items()
            }
            if found["train"] is not None:
                return {split: path for split, path in found.items() if path is not None}
        level = [c for folder in level for c in _child_dirs(folder) if not is_mask_folder(c.name)]
    return None


def select_split(root: Path, split: str) -> tuple[list[Path], str]:
    """The folders to read for `split`, and the split's label for the dataset name.

    A flat folder (no split folders) is one dataset: ``train`` and ``all`` read all of it;
    ``test`` is refused unless the folder itself is a test folder, so evaluation never
    silently runs on training images.
    """
    layout = find_layout(root)
    if layout is None:
        if split == "test" and root.name.lower() not in SPLIT_FOLDERS["test"]:
            raise DataError(
                f"{root} has no test split (no test/ or keras_png_slices_test/ folder): "
                "a flat folder is one dataset; point --data at the test images and use "
                "--set data.split=all"
            )
        # the whole folder
        return [root], "test" if split == "test" else "all"
    wanted = [layout[part] for part in SPLIT_PARTS[split] if part in layout]
    if not wanted:
        found = ", ".join(p.name for p in layout.values())
        raise DataError(f"{root} has no {split} folder (found split folders: {found})")
    return wanted, split


def class_folders(root: Path, folders: Sequence[Path]) -> tuple[str, ...]:
    """The class names of a folder-per-class layout, sorted: the folders directly inside the
    split folders (every split of the layout, so train and test number the classes alike), or
    inside `folders` when there is no layout. Masks and hidden folders do not count."""
    layout = find_layout(root)
    parents = list(layout.values()) if layout is not None else list(folders)
    return tuple(
        sorted({c.name for p in parents for c in _child_dirs(p) if not is_mask_folder(c.name)})
    )


def class_labels_of(
    files: Sequence[Path], folders: Sequence[Path], classes: Sequence[str]
) -> list[int] | None:
    """Each file's class index (the folder it lies in directly below its split folder), or None
    when the files are not sorted into two or more class folders (some lie loose in a split
    folder): such a dataset is unlabelled, as a folder of one subject's slices is."""
    if len(classes) < 2:
        return None
    index = {name: i for i, name in enumerate(classes)}
    labels = []
    for file in files:
        parent = next((f for f in folders if f in file.parents), None)
        parts = file.relative_to(parent).parts if parent is not None else ()
        if len(parts) < 2 or parts[0] not in index:
            return None
        labels.append(index[parts[0]])
    return labels


def list_files(folders: Iterable[Path], keep: Callable[[Path], bool]) -> list[Path]:
    """Matching files under `folders`, recursively, skipping mask and hidden folders; sorted."""
    found: list[Path] = []
    for folder in folders:
        for current, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(
                d for d in dirnames if not d.startswith(".") and not is_mask_folder(d)
            )
            found.extend(Path(current) / f for f in sorted(filenames) if keep(Path(current) / f))
    return found


def relative(path: Path, root: Path) -> str:
    """`path` relative to `root` for messages, or its bare name when it is elsewhere."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return path.name


def subject_id(path: Path, root: Path) -> str | None:
    """The subject named in a file's path below `root`, or None when no known pattern is there.

    A BIDS ``sub-<label>``, OASIS ``OAS1_0001`` or ADNI ``002_S_0295`` anywhere in the
    relative path names the subject (so two sessions of one subject stay together).
    """
    text = relative(path, root)
    for pattern in SUBJECT_PATTERNS:
        match = pattern.search(text)
        if match:
            return match.group(1)
    return None


def subject_of(path: Path, root: Path) -> str:
    """The subject a file belongs to: its subject_id, else the file is its own subject."""
    return subject_id(path, root) or volume_name(path)


def shared_subjects(layout: dict[str, Path], keep: Callable[[Path], bool]) -> list[str]:
    """Subjects (named by subject_id) with files in both the train and the test folder."""
    if "train" not in layout or "test" not in layout:
        return []
    sides = [
        {subject_id(f, layout[part]) for f in list_files([layout[part]], keep)} - {None}
        for part in ("train", "test")
    ]
    return sorted(str(s) for s in sides[0] & sides[1])


def split_by_subject(
    files: Sequence[Path], root: Path, test_fraction: float, split: str
) -> list[Path]:
    """The files of `split` when a share of the subjects is held out for testing.

    Subjects are ordered by a hash of their identifier (not by name, so held-out subjects
    are spread over the naming order) and the first ``round(test_fraction * subjects)``
    (at least one, and never all) form the test split. The split depends only on the
    subjects' names: the same folder always splits the same way, on any machine, and no
    subject has files on both sides.
    """
    subjects = sorted({subject_of(f, root) for f in files})
    if len(subjects) < 2:
        raise DataError(
            f"{root}: data.options.subject_split needs at least two subjects, found "
            f"{len(subjects)} ({', '.join(subjects) or 'none'})"
        )
    order = sorted(subjects, key=lambda s: hashlib.sha256(s.encode()).hexdigest())
    count = min(len(subjects) - 1, max(1, round(test_fraction * len(subjects))))
    held_out = set(order[:count])
    if split == "all":
        return list(files)
    return [f for f in files if (subject_of(f, root) in held_out) == (split == "test")]


def path_problems(config_path: str | None, dataset: str, wanted: str) -> list[str]:
    """A missing or nonexistent --data path, found with one stat call (nothing is read)."""
    if not config_path:
        return [f"dataset {dataset!r} needs a path: --data {wanted}"]
    if not Path(config_path).expanduser().exists():
        return [f"--data {config_path} does not exist"]
    return []


def nothing_found(root: Path, folders: Sequence[Path]) -> DataError:
    """Say what the folder does hold, so the user sees why nothing was read."""
    everything = [
        Path(c) / f for folder in folders for c, _, files in os.walk(folder) for f in files
    ]
    if not everything:
        return DataError(
            f"{root} is empty: no image files (PNG, JPEG, TIFF) or NIfTI volumes "
            "(.nii, .nii.gz) in it"
        )
    masks = [
        p
        for p in everything
        if is_image_file(p) and any(is_mask_folder(part) for part in p.relative_to(root).parts[:-1])
    ]
    if masks:
        return DataError(
            f"{root}: no images outside mask folders ({len(masks)} files in "
            "*seg*/*mask* folders are skipped as segmentation masks); point --data at "
            "the image folder"
        )
    kinds = sorted({p.suffix.lower() or p.name for p in everything})[:5]
    return DataError(
        f"no images (PNG, JPEG, TIFF) or NIfTI volumes in {root} (searched "
        f"recursively): found {len(everything)} other file(s) ({', '.join(kinds)})"
    )
