"""Brain MRI data: image folders (OASIS, Kaggle slices), NIfTI volumes, the decoded cache, errors.

The data is made here or ships with the tests: phantom slices in the Kaggle layout and a
phantom NIfTI head (conftest.py, "brain phantoms"), the OASIS layout with its real file names
from a 36-row sample of its manifest (tests/fixtures/oasis-slices-manifest), tiny PNGs written
into tmp_path. Facts of the real sets (their counts and classes) are the data tier, run with
``python -m pytest -m data``. The autouse fixture in conftest.py gives every test its own cache.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import pickle
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.config import DataConfig
from ganforge.data import cache as data_cache
from ganforge.data import load_images, locations
from ganforge.data.discovery import is_image_file, is_mask_folder, list_files, select_split
from ganforge.data.nifti import NiftiOptions, normalise_volume, read_volume
from ganforge.errors import ConfigError, DataError

# The first four and last two rows of each folder of the OASIS manifest (see the README there).
MANIFEST_SAMPLE = (
    Path(__file__).resolve().parent
    / "fixtures"
    / "oasis-slices-manifest"
    / "keras_png_slices_manifest_sample.tsv"
)
# The full manifest's name in the real data's oasis-slices-manifest/ folder (data tier).
MANIFEST_NAME = "keras_png_slices_lfs_manifest.tsv"
MASK_FOLDERS = {
    "keras_png_slices_seg_train",
    "keras_png_slices_seg_validate",
    "keras_png_slices_seg_test",
}
DIAGNOSES = ("MildDemented", "ModerateDemented", "NonDemented", "VeryMildDemented")


# ---- helpers -------------------------------------------------------------------------------------
def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def gray(value: int, height: int = 12, width: int = 12) -> np.ndarray:
    return np.full((height, width), value, np.uint8)


def flat_folder(root: Path, count: int = 20, size: int = 12) -> list[Path]:
    """`count` distinct grayscale PNGs (pixel value = 10 * index + 5)."""
    return [
        write_png(root / f"img_{i:03d}.png", gray(10 * i + 5, size, size)) for i in range(count)
    ]


def folder_config(path: Path, **kw) -> DataConfig:
    return DataConfig(dataset="folder", path=str(path), **with_options(kw))


def with_options(kw: dict) -> dict:
    """DataConfig keywords, with the NIfTI settings moved into data.options (their place)."""
    names = {f.name for f in dataclasses.fields(NiftiOptions)}
    options = {key: kw.pop(key) for key in list(kw) if key in names}
    return {**kw, "options": options}


def manifest_rows(manifest: Path = MANIFEST_SAMPLE) -> dict[str, list[str]]:
    """OASIS manifest: split folder -> file names, in manifest order."""
    folders: dict[str, list[str]] = {}
    with open(manifest, newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            _, split_folder, name = row["path"].split("/")
            folders.setdefault(split_folder, []).append(name)
    return folders


SPLIT_VALUE = {
    "keras_png_slices_train": 60,
    "keras_png_slices_validate": 120,
    "keras_png_slices_test": 180,
}


@pytest.fixture
def oasis_tree(tmp_path) -> tuple[Path, dict[str, list[str]]]:
    """keras_png_slices_data with the manifest's real names (4 per folder); masks are white."""
    rows = manifest_rows()
    root = tmp_path / "downloads" / "keras_png_slices_data"
    chosen = {}
    for split_folder, names in rows.items():
        chosen[split_folder] = sorted(names[:4])
        for name in names[:4]:
            write_png(root / split_folder / name, gray(SPLIT_VALUE.get(split_folder, 255), 16, 16))
    return root, chosen


# ---- folder discovery ----------------------------------------------------------------------------
def test_manifest_names_mask_folders_and_only_those():
    folders = manifest_rows()
    assert len(folders) == 6
    assert {f for f in folders if is_mask_folder(f)} == MASK_FOLDERS
    assert not is_mask_folder("Alzheimer_s Dataset") and not is_mask_folder("NonDemented")


@pytest.mark.data
def test_the_full_manifest_has_its_published_counts_and_mask_folders(real_data):
    folders = manifest_rows(real_data("oasis-slices-manifest") / MANIFEST_NAME)
    assert len(folders) == 6
    assert {f for f in folders if is_mask_folder(f)} == MASK_FOLDERS
    assert (
        len(folders["keras_png_slices_train"]),
        len(folders["keras_png_slices_validate"]),
        len(folders["keras_png_slices_test"]),
    ) == (9664, 1120, 544)


@pytest.mark.data
def test_the_manifest_sample_is_rows_of_the_full_manifest(real_data):
    full = (real_data("oasis-slices-manifest") / MANIFEST_NAME).read_text().splitlines()
    sample = MANIFEST_SAMPLE.read_text().splitlines()
    assert sample[0] == full[0] and len(sample) == 37
    assert set(sample[1:]) <= set(full[1:])


@pytest.mark.parametrize(
    "split, folders",
    [
        ("train", ["keras_png_slices_train"]),
        ("test", ["keras_png_slices_test"]),
        ("all", ["keras_png_slices_train", "keras_png_slices_validate", "keras_png_slices_test"]),
    ],
)
def test_oasis_layout_selects_split_and_never_reads_masks(oasis_tree, split, folders):
    root, chosen = oasis_tree
    data = load_images(folder_config(root, split=split))
    expected = [SPLIT_VALUE[f] for f in folders for _ in chosen[f]]
    assert data.images[:, 0, 0, 0].tolist() == expected  # right split, sorted order, no white masks
    assert data.name == f"keras_png_slices_data/{split}"
    listed = list_files(select_split(root, split)[0], is_image_file)
    assert [p.name for p in listed] == [n for f in folders for n in chosen[f]]


def test_oasis_layout_found_from_the_folder_above(oasis_tree):
    root, chosen = oasis_tree
    data = load_images(folder_config(root.parent, split="train"))  # .../downloads
    assert len(data) == len(chosen["keras_png_slices_train"])


def test_pointing_at_a_split_folder_reads_it_whole(oasis_tree):
    root, chosen = oasis_tree
    data = load_images(folder_config(root / "keras_png_slices_validate", split="all"))
    assert data.images[:, 0, 0, 0].tolist() == [120] * len(chosen["keras_png_slices_validate"])


def test_mask_subfolders_inside_a_flat_folder_are_skipped(tmp_path):
    flat_folder(tmp_path / "slices", count=3)
    write_png(tmp_path / "slices" / "seg" / "a.png", gray(255))
    write_png(tmp_path / "slices" / "brain_masks" / "b.png", gray(255))
    write_png(tmp_path / "slices" / ".hidden" / "c.png", gray(255))
    data = load_images(folder_config(tmp_path / "slices"))
    assert len(data) == 3 and int(data.images.max()) < 255


def split_counts(root: Path) -> dict[str, int]:
    return {
        split: len(list_files(select_split(root, split)[0], is_image_file))
        for split in ("train", "test", "all")
    }


def test_brain_slices_layout_is_found_two_levels_down_and_split(brain_slices):
    # the phantom set's counts (conftest.py): brain-mri-slices/Alzheimer_s Dataset/<split>/<class>
    assert split_counts(brain_slices) == {"train": 480, "test": 65, "all": 545}


@pytest.mark.data
def test_shared_brain_slices_layout_counts(real_data):
    # the dataset README's counts
    assert split_counts(real_data("brain-mri-slices")) == {"train": 5121, "test": 1279, "all": 6400}


def test_flat_folder_is_one_dataset_and_refuses_a_test_split(tmp_path):
    flat_folder(tmp_path / "mine", count=5)
    whole = load_images(folder_config(tmp_path / "mine", split="train"))
    assert len(whole) == 5 and whole.name == "mine/all"
    assert len(load_images(folder_config(tmp_path / "mine", split="all"))) == 5
    with pytest.raises(DataError, match="no test split"):
        load_images(folder_config(tmp_path / "mine", split="test"))
    flat_folder(tmp_path / "test", count=2)  # a folder that *is* a test split
    assert len(load_images(folder_config(tmp_path / "test", split="test"))) == 2


def test_brain_mri_source_finds_installed_slices_without_a_path(brain_mri_installed):
    data = load_images(DataConfig(dataset="brain-mri", resolution=32, limit=8))
    assert data.name == "brain-mri-slices/train" and data.images.shape == (8, 1, 32, 32)


def test_brain_mri_source_without_data_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(locations, "REPO_ROOT", tmp_path / "repo")
    with pytest.raises(DataError) as info:
        load_images(DataConfig(dataset="brain-mri"))
    message = str(info.value)
    assert "\n" not in message and "looked in" in message and "--data" in message
    # the team's local copy is one of the places searched, from the working folder
    assert str(tmp_path / locations.SHARED_ROOTS[0] / "brain-mri-slices") in message


# ---- fitting 176x208 slices to a square ----------------------------------------------------------
def _bbox(image: np.ndarray, level: int = 20) -> tuple[int, int, int, int]:
    rows, cols = np.where((image > level).any(1))[0], np.where((image > level).any(0))[0]
    return rows[0], rows[-1], cols[0], cols[-1]


@pytest.fixture(scope="module")
def tall_slices(brain_slices) -> tuple[np.ndarray, list[Path]]:
    """Four 208x176 slices spread over the phantom test split, and their files."""
    files = list_files(select_split(brain_slices, "test")[0], is_image_file)[::16][:4]
    return np.stack([np.asarray(Image.open(f)) for f in files]), files


def _load_slices(files, tmp_path: Path, fit: str) -> np.ndarray:
    folder = tmp_path / fit
    folder.mkdir()
    for i, f in enumerate(files):
        os.symlink(f, folder / f"{i:02d}_{f.name}")  # keep the fixture's order
    return load_images(folder_config(folder, resolution=128, fit=fit)).images[:, 0].numpy()


def test_pad_keeps_the_whole_brain_and_its_shape(tall_slices, tmp_path):
    originals, files = tall_slices
    assert originals.shape[1:] == (208, 176)
    padded = _load_slices(files, tmp_path, "pad")
    scale = 128 / 208
    for original, image in zip(originals, padded):
        assert image.shape == (128, 128)
        assert (image[:, :9] == 0).all() and (
            image[:, -9:] == 0
        ).all()  # 176*scale = 108 wide: black sides
        # nothing cut off: all the brain's signal survives the resize (antialiasing keeps the mean)
        assert image.astype(float).sum() == pytest.approx(
            original.astype(float).sum() * scale**2, rel=0.02
        )
        r0, r1, c0, c1 = _bbox(original)
        p0, p1, q0, q1 = _bbox(image)
        assert (p1 - p0) / (q1 - q0) == pytest.approx(
            (r1 - r0) / (c1 - c0), rel=0.05
        )  # not squashed
        assert p0 > 0 and q0 > 0 and p1 < 127 and q1 < 127  # brain inside the frame


def test_stretch_squashes_and_crop_enlarges(tall_slices, tmp_path):
    originals, files = tall_slices
    stretched, cropped = (
        _load_slices(files, tmp_path, "stretch"),
        _load_slices(files, tmp_path, "crop"),
    )
    for original, s, c in zip(originals, stretched, cropped):
        r0, r1, c0, c1 = _bbox(original)
        aspect = (r1 - r0) / (c1 - c0)
        a0, a1, b0, b1 = _bbox(s)
        assert (a1 - a0) / (b1 - b0) == pytest.approx(aspect * 176 / 208, rel=0.05)
        a0, a1, b0, b1 = _bbox(c)
        assert (b1 - b0) == pytest.approx(
            (c1 - c0) * 128 / 176, abs=2
        )  # width scaled by 128/176, not 128/208


# ---- NIfTI: a phantom head, 64 x 76 x 60 voxels of 3 mm (conftest.py, head_volume) -------------
def nifti_config(path: Path, **kw) -> DataConfig:
    return DataConfig(dataset="nifti", path=str(path), **with_options(kw))


def test_axial_slices_are_oriented_normalised_and_not_empty(head_volume):
    # native size: 64 x 76 axial planes
    data = load_images(nifti_config(head_volume))
    images = data.images[:, 0].numpy()
    # rows run anterior-posterior, columns left-right
    assert data.images.shape[1:] == (1, 76, 64)
    # empty slices below and above the head are dropped
    assert 30 < len(images) < 60
    foreground = (images > 0.05 * 255).mean(axis=(1, 2))
    assert foreground.min() >= 0.1
    # full range, black background
    assert images.max() == 255 and (images[:, :5, :5] == 0).all()
    # the top 0.5% saturate, not whole regions
    assert (images == 255).mean() < 0.01
    # the lesion (the only voxels this bright) at the patient's left, anterior: top left
    lesion = load_images(nifti_config(head_volume, normalise="minmax")).images[:, 0] > 200
    _, rows, cols = torch.nonzero(lesion, as_tuple=True)
    assert len(rows) > 0 and rows.max() < 76 // 2 and cols.max() < 64 // 2


@pytest.mark.data
def test_mni152_axial_slices_are_oriented_normalised_and_not_empty(real_data):
    mni = real_data("mni152") / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    images = load_images(nifti_config(mni)).images[:, 0].numpy()
    # native size: 197 x 233 axial planes, rows anterior-posterior, columns left-right
    assert images.shape[1:] == (233, 197)
    # empty slices below and above the brain are dropped
    assert 100 < len(images) < 189
    assert (images > 0.05 * 255).mean(axis=(1, 2)).min() >= 0.1
    assert images.max() == 255 and (images[:, :5, :5] == 0).all()
    assert (images == 255).mean() < 0.01


def test_nifti_min_foreground_zero_keeps_every_slice_in_range(head_volume):
    data = load_images(
        nifti_config(
            head_volume,
            nifti_axis=0,
            nifti_range=(0.4, 0.6),
            nifti_min_foreground=0.0,
            resolution=64,
        )
    )
    # floor(0.4 * 64) .. ceil(0.6 * 64)
    assert len(data) == 14 and data.images.shape[1:] == (1, 64, 64)


def test_slices_are_the_same_whatever_voxel_order_the_file_uses(head_volume, tmp_path):
    image = nib.load(str(head_volume))
    # store it left-to-right and top-to-bottom
    flipped_data = np.asarray(image.dataobj)[::-1, :, ::-1]
    # the phantom is not symmetric: reading the voxels in file order would differ
    assert not np.array_equal(flipped_data, np.asarray(image.dataobj))
    flip = np.diag([-1.0, 1.0, -1.0, 1.0])
    flip[0, 3], flip[2, 3] = image.shape[0] - 1, image.shape[2] - 1
    nib.save(
        nib.Nifti1Image(np.ascontiguousarray(flipped_data), image.affine @ flip),
        tmp_path / "las.nii",
    )
    for axis in (0, 1, 2):
        original = load_images(
            nifti_config(head_volume, nifti_axis=axis, resolution=64, nifti_range=(0.3, 0.7))
        )
        flipped = load_images(
            nifti_config(
                tmp_path / "las.nii", nifti_axis=axis, resolution=64, nifti_range=(0.3, 0.7)
            )
        )
        assert torch.equal(original.images, flipped.images)


def test_normalisation_is_robust_to_a_hot_voxel(head_volume):
    volume = read_volume(head_volume)
    hot = volume.copy()
    # a voxel in the middle of the brain
    centre = tuple(size // 2 for size in volume.shape)
    hot[centre] = 1e6
    difference = np.abs(normalise_volume(volume).astype(int) - normalise_volume(hot).astype(int))
    # the hot voxel itself saturates, as it should
    difference[centre] = 0
    assert difference.max() <= 1
    # another scanner's scale and offset
    scaled = normalise_volume(volume * 37.0 + 1000.0)
    assert np.abs(scaled.astype(int) - normalise_volume(volume).astype(int)).max() <= 1


def test_folder_source_reads_a_folder_of_volumes_with_split(head_volume, tmp_path):
    for split in ("train", "test"):
        (tmp_path / "vols" / split).mkdir(parents=True)
        os.symlink(head_volume, tmp_path / "vols" / split / "sub-01_T1w.nii.gz")
    data = load_images(
        folder_config(tmp_path / "vols", split="all", resolution=32, nifti_range=(0.45, 0.55))
    )
    single = load_images(folder_config(head_volume, resolution=32, nifti_range=(0.45, 0.55)))
    assert len(data) == 2 * len(single) and data.name == "vols/all"


def test_2d_and_4d_nifti_are_refused_but_a_singleton_4th_axis_is_fine(tmp_path):
    affine = np.eye(4)
    nib.save(nib.Nifti1Image(np.ones((20, 20), np.float32), affine), tmp_path / "flat.nii")
    nib.save(
        nib.Nifti1Image(np.random.rand(16, 16, 16, 5).astype(np.float32), affine),
        tmp_path / "fmri.nii.gz",
    )
    with pytest.raises(DataError, match="2-D NIfTI") as info:
        load_images(nifti_config(tmp_path / "flat.nii"))
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match=r"4-D NIfTI series .*\(5 volumes"):
        load_images(nifti_config(tmp_path / "fmri.nii.gz"))
    ball = (np.indices((16, 16, 16)) - 7.5) ** 2
    one = (ball.sum(0) < 40).astype(np.float32)[..., None]  # a sphere, 4-D with one volume
    nib.save(nib.Nifti1Image(one, affine), tmp_path / "one.nii.gz")
    assert len(load_images(nifti_config(tmp_path / "one.nii.gz", resolution=32))) > 0


def test_truncated_nifti_is_a_clear_error(head_volume, tmp_path):
    broken = tmp_path / "broken.nii.gz"
    content = head_volume.read_bytes()
    broken.write_bytes(content[: len(content) // 8])
    with pytest.raises(DataError, match="1 of 1 volumes are unreadable"):
        load_images(nifti_config(broken))


# ---- the decoded-image cache ---------------------------------------------------------------------
def cache_files() -> list[Path]:
    return sorted(data_cache.cache_dir().glob("*.pt"))


def test_second_load_comes_from_the_cache_without_decoding(tmp_path):
    files = flat_folder(tmp_path / "d", count=6)
    first = load_images(folder_config(tmp_path / "d", resolution=16))
    assert "cache" not in first.source and len(cache_files()) == 1
    # Same size and mtime but garbage inside: a cache hit must not decode, so nothing changes.
    stat = files[2].stat()
    files[2].write_bytes(b"x" * stat.st_size)
    os.utime(files[2], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = load_images(folder_config(tmp_path / "d", resolution=16))
    assert "from the decoded-image cache" in second.source and torch.equal(
        first.images, second.images
    )
    assert not list(data_cache.cache_dir().glob("*.tmp"))  # atomic write left nothing behind


def test_changed_or_touched_source_rebuilds_the_cache(tmp_path):
    files = flat_folder(tmp_path / "d", count=6)
    load_images(folder_config(tmp_path / "d", resolution=16))
    write_png(files[1], gray(250))  # new content
    os.utime(files[1], ns=(files[1].stat().st_atime_ns, files[1].stat().st_mtime_ns + 10**9))
    rebuilt = load_images(folder_config(tmp_path / "d", resolution=16))
    assert "cache" not in rebuilt.source and int(rebuilt.images[1, 0, 0, 0]) == 250
    cached_stamp = cache_files()[0].stat().st_mtime_ns
    os.utime(
        files[3], ns=(files[3].stat().st_atime_ns, files[3].stat().st_mtime_ns + 10**9)
    )  # touch only
    touched = load_images(folder_config(tmp_path / "d", resolution=16))
    assert "cache" not in touched.source and torch.equal(touched.images, rebuilt.images)
    assert (
        cache_files()[0].stat().st_mtime_ns != cached_stamp and len(cache_files()) == 1
    )  # replaced, not piled up
    (tmp_path / "d" / "img_000.png").unlink()  # a removed file
    assert len(load_images(folder_config(tmp_path / "d", resolution=16))) == 5


def test_each_setting_has_its_own_cache_and_cache_false_writes_none(tmp_path):
    flat_folder(tmp_path / "d", count=4)
    assert load_images(folder_config(tmp_path / "d", resolution=16)).images.shape[-1] == 16
    assert load_images(folder_config(tmp_path / "d", resolution=32)).images.shape[-1] == 32
    assert (
        load_images(folder_config(tmp_path / "d", resolution=32, channels=3)).images.shape[1] == 3
    )
    assert len(cache_files()) == 3
    load_images(folder_config(tmp_path / "d", resolution=64, cache=False))
    assert len(cache_files()) == 3


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['GANFORGE_CACHE']}/pwned",))


def test_a_tampered_or_damaged_cache_file_is_never_unpickled_just_rebuilt(tmp_path):
    flat_folder(tmp_path / "d", count=4)
    good = load_images(folder_config(tmp_path / "d", resolution=16))
    path = cache_files()[0]
    path.write_bytes(pickle.dumps({"format": data_cache.FORMAT, "images": _Exploit()}))
    again = load_images(folder_config(tmp_path / "d", resolution=16))
    assert torch.equal(again.images, good.images) and "cache" not in again.source
    assert not (Path(os.environ["GANFORGE_CACHE"]) / "pwned").exists()
    path.write_bytes(path.read_bytes()[:100])  # truncated
    assert torch.equal(
        load_images(folder_config(tmp_path / "d", resolution=16)).images, good.images
    )


def test_cache_root_follows_ganforge_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "elsewhere"))
    flat_folder(tmp_path / "d", count=2)
    load_images(folder_config(tmp_path / "d"))
    assert len(list((tmp_path / "elsewhere" / "decoded").glob("*.pt"))) == 1


# ---- bad input -----------------------------------------------------------------------------------
def one_line_error(config: DataConfig, kind=DataError) -> str:
    with pytest.raises(kind) as info:
        load_images(config)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_empty_folder_and_folder_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    assert "is empty" in one_line_error(folder_config(tmp_path / "empty"))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello")
    (tmp_path / "notes" / "table.csv").write_text("a,b")
    assert "no images" in one_line_error(folder_config(tmp_path / "notes"))
    write_png(
        tmp_path / "only_masks" / "keras_png_slices_seg_train" / "seg_001_slice_0.nii.png",
        gray(255),
    )
    assert "mask" in one_line_error(folder_config(tmp_path / "only_masks"))
    assert "does not exist" in one_line_error(folder_config(tmp_path / "missing"))
    assert "needs a path" in one_line_error(DataConfig(dataset="folder"), ConfigError)
    single = write_png(tmp_path / "one.png", gray(3))
    assert "single image" in one_line_error(folder_config(single))


def _corrupt(folder: Path, names: list[str]) -> None:
    good = (folder / "img_000.png").read_bytes()
    for i, name in enumerate(names):
        target = folder / name
        if i % 3 == 0:
            target.write_bytes(good[: len(good) // 2])  # truncated PNG
        elif i % 3 == 1:
            target.write_bytes(b"")  # empty file
        else:
            target.write_text("this is not a JPEG")


def test_a_few_unreadable_files_are_skipped_with_a_warning(tmp_path):
    big = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    folder = tmp_path / "d"
    for i in range(29):
        write_png(folder / f"img_{i:03d}.png", big)
    _corrupt(folder, ["bad_a.png", "bad_b.png", "bad_c.jpg"])  # 3 of 32 = 9%
    with pytest.warns(
        UserWarning, match=r"skipped 3 unreadable file\(s\) of 32: bad_a.png \("
    ) as record:
        data = load_images(folder_config(folder))
    assert len(data) == 29
    assert "\n" not in str(record[0].message)
    with pytest.warns(
        UserWarning, match="skipped 3 unreadable"
    ):  # said again when the cache is used
        assert len(load_images(folder_config(folder))) == 29


def test_many_unreadable_files_stop_the_run(tmp_path):
    folder = tmp_path / "d"
    flat_folder(folder, count=17)
    _corrupt(folder, ["x1.png", "x2.png", "x3.jpg"])  # 3 of 20 = 15%
    message = one_line_error(folder_config(folder))
    assert "3 of 20 files are unreadable (15%" in message and "x1.png" in message
    assert not cache_files()  # a damaged dataset is never cached


def test_mixed_sizes_and_modes_are_resized_each(tmp_path):
    folder = tmp_path / "mixed"
    write_png(folder / "a_gray.png", gray(100, 20, 30))
    write_png(folder / "b_rgb_as_gray.png", np.stack([gray(100, 40, 40)] * 3, axis=-1))
    sixteen = np.full((25, 25), 4000, np.uint16)
    sixteen[5:20, 5:20] = 12000
    write_png(folder / "c_16bit.png", sixteen)
    assert Image.open(folder / "c_16bit.png").mode.startswith("I")
    Image.fromarray(gray(7, 10, 10)).convert("P").save(folder / "d_palette.png")
    Image.fromarray(gray(100, 30, 30)).convert("1").save(folder / "e_bilevel.tif")
    data = load_images(folder_config(folder, resolution=16))
    assert data.images.shape == (5, 1, 16, 16)  # all grayscale content -> 1 channel
    assert (
        data.images[2, 0, 8, 8] == 255 and data.images[2, 0, 1, 1] == 0
    )  # 16-bit stretched to 0..255
    colour = np.zeros((24, 32, 3), np.uint8)
    colour[..., 0] = 200
    Image.fromarray(colour).convert("RGBA").save(folder / "f_colour.png")
    data = load_images(folder_config(folder, resolution=16))
    assert data.images.shape == (6, 3, 16, 16)
    assert data.images[5, :, 8, 8].tolist() == [200, 0, 0]
    assert load_images(folder_config(folder, resolution=16, channels=1)).images.shape == (
        6,
        1,
        16,
        16,
    )
    message = one_line_error(folder_config(folder))
    assert "differ in size" in message and "--resolution" in message


def test_limit_decodes_only_what_is_used(tmp_path):
    files = flat_folder(tmp_path / "d", count=10)
    files[9].write_bytes(b"broken, but past the limit")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_images(folder_config(tmp_path / "d", limit=4))
    assert data.images[:, 0, 0, 0].tolist() == [5, 15, 25, 35]


# ---- medical-image care: voxel spacing, intensity normalisation, subject splits, NIfTI stacks ----
def test_anisotropic_voxels_are_resampled_to_square_pixels(head_volume, tmp_path):
    image = nib.load(str(head_volume))
    # 6 mm along y, 3 mm along x and z
    thick = np.ascontiguousarray(np.asarray(image.dataobj)[:, ::2, :])
    affine = image.affine @ np.diag([1.0, 2.0, 1.0, 1.0])
    nib.save(nib.Nifti1Image(thick, affine), tmp_path / "thick.nii.gz")
    # spacing lost
    nib.save(nib.Nifti1Image(thick, image.affine), tmp_path / "squashed.nii.gz")
    axial = {"nifti_range": (0.5, 0.56), "nifti_min_foreground": 0.0}
    native = load_images(nifti_config(tmp_path / "thick.nii.gz", **axial))
    # 38 rows of 6 mm -> 76 rows of 3 mm
    assert native.images.shape[2:] == (76, 64)
    original, resampled, squashed = (
        load_images(nifti_config(path, resolution=64, **axial)).images.float()
        for path in (head_volume, tmp_path / "thick.nii.gz", tmp_path / "squashed.nii.gz")
    )
    error = (resampled - original).abs().mean()
    assert error < 4 and error < (squashed - original).abs().mean() / 3


def test_normalise_options_and_percentiles(head_volume):
    volume = read_volume(head_volume)
    minmax = normalise_volume(volume, method="minmax")
    assert minmax.min() == 0 and minmax.max() == 255
    zscore = normalise_volume(volume, method="zscore")
    rescanned = normalise_volume(volume * 37.0 + 1000.0, method="zscore")
    assert np.abs(zscore.astype(int) - rescanned.astype(int)).max() <= 1  # scanner scale drops out
    foreground = volume > np.percentile(volume, 0.5)
    assert abs(float(zscore[foreground].mean()) - 127.5) < 3  # the tissue mean is mid-grey
    assert (zscore[~foreground] == 0).all()
    saturated = {
        p: float((normalise_volume(volume, percentiles=p)[foreground] == 255).mean())
        for p in ((0.5, 99.5), (1.0, 99.0))
    }
    assert 0.003 < saturated[(0.5, 99.5)] < 0.007 and 0.008 < saturated[(1.0, 99.0)] < 0.013


def test_normalisation_settings_change_the_cache_key(head_volume):
    narrow = {"nifti_range": (0.5, 0.53), "resolution": 32}
    default = load_images(nifti_config(head_volume, **narrow))
    zscore = load_images(nifti_config(head_volume, normalise="zscore", **narrow))
    wider = load_images(nifti_config(head_volume, percentiles=(2.0, 98.0), **narrow))
    assert not torch.equal(default.images, zscore.images)
    assert not torch.equal(default.images, wider.images)
    assert len(cache_files()) == 3
    again = load_images(nifti_config(head_volume, **narrow))
    assert "cache" in again.source and torch.equal(again.images, default.images)


def test_bad_normalisation_settings_are_source_problems():
    from ganforge.data import source_problems

    problems = source_problems(
        DataConfig(dataset="brain-mri", options={"percentiles": (99.0, 1.0), "subject_split": 1.5})
    )
    assert problems == [
        "data.options.percentiles must be two percentiles 0 <= low < high <= 100 (got (99.0, 1.0))",
        "data.options.subject_split must be a share of subjects between 0 and 1, "
        "e.g. 0.2 (got 1.5)",
    ]


SUBJECT_FILES = [
    "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz",
    "sub-01/ses-2/anat/sub-01_ses-2_T1w.nii.gz",
    "sub-02_T1w.nii.gz",
    "sub-03_T1w.nii.gz",
    "sub-04_T1w.nii.gz",
    "OAS1_0005_MR1_mpr_anon.nii.gz",
    "scan_06.nii.gz",
]


@pytest.fixture
def subject_folder(head_volume, tmp_path) -> Path:
    """A flat folder of phantom head copies named as BIDS, OASIS and plain files."""
    root = tmp_path / "vols"
    for name in SUBJECT_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(head_volume, root / name)
    return root


def test_subject_split_keeps_every_subject_on_one_side(subject_folder):
    from ganforge.data.discovery import split_by_subject, subject_of

    files = list_files([subject_folder], lambda p: p.name.endswith(".nii.gz"))
    sides = {
        split: split_by_subject(files, subject_folder, 0.3, split)
        for split in ("train", "test", "all")
    }
    subjects = {
        split: {subject_of(f, subject_folder) for f in found} for split, found in sides.items()
    }
    assert subjects["all"] == {"sub-01", "sub-02", "sub-03", "sub-04", "OAS1_0005", "scan_06"}
    assert subjects["train"].isdisjoint(subjects["test"]) and len(subjects["test"]) == 2
    assert sorted(sides["train"] + sides["test"]) == sorted(files) == sorted(sides["all"])
    assert split_by_subject(files[::-1], subject_folder, 0.3, "test") == sides["test"][::-1]
    assert subjects["test"] == {"sub-02", "sub-04"}  # by the names alone: same on any machine


def test_subject_split_loads_only_the_held_out_subjects(subject_folder, tmp_path):
    config = folder_config(
        subject_folder, split="test", subject_split=0.3, resolution=16, nifti_range=(0.5, 0.52)
    )
    test = load_images(config)
    single = load_images(
        nifti_config(subject_folder / "sub-02_T1w.nii.gz", resolution=16, nifti_range=(0.5, 0.52))
    )
    assert test.name == "vols/test" and len(test) == 2 * len(single)
    flat_folder(tmp_path / "pngs", count=3)
    assert "holds image files" in one_line_error(
        folder_config(tmp_path / "pngs", subject_split=0.3)
    )
    (tmp_path / "split" / "train").mkdir(parents=True)
    assert "already has split folders" in one_line_error(
        nifti_config(tmp_path / "split", subject_split=0.3)
    )


def test_nifti_stack_of_brain_slices_reads_back_as_the_same_images(brain_mri_installed, tmp_path):
    from ganforge.data.nifti import save_nifti_stack

    slices = load_images(
        DataConfig(dataset="brain-mri", split="test", resolution=48, limit=6, cache=False)
    ).images.clone()
    slices[0, 0, 0, 0], slices[1, 0, 5, 5] = 0, 255  # full range: minmax reading is the identity
    path = save_nifti_stack(slices, tmp_path / "out" / "slices.nii.gz", spacing=(1.0, 1.0, 2.5))
    header = nib.load(str(path)).header
    assert header.get_data_shape() == (48, 48, 6) and header.get_zooms() == (1.0, 1.0, 2.5)
    back = load_images(nifti_config(path, normalise="minmax", nifti_min_foreground=0.0))
    assert torch.equal(back.images, slices)
    thin = save_nifti_stack(slices[:, :, :, :24], tmp_path / "thin.nii", spacing=(0.5, 1.0, 1.0))
    assert load_images(
        nifti_config(thin, normalise="minmax", nifti_min_foreground=0.0)
    ).images.shape == (6, 1, 96, 24)  # rows of 1 mm become two of 0.5 mm
    with pytest.raises(DataError, match="needs a .nii or .nii.gz name"):
        save_nifti_stack(slices, tmp_path / "slices.png")


def test_a_subject_in_both_split_folders_is_announced(head_volume, tmp_path):
    for name in ("train/sub-01_T1w.nii.gz", "train/sub-02_T1w.nii.gz", "test/sub-01_T1w.nii.gz"):
        (tmp_path / "vols" / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(head_volume, tmp_path / "vols" / name)
    config = folder_config(tmp_path / "vols", split="test", resolution=16, nifti_range=(0.5, 0.52))
    with pytest.warns(UserWarning, match=r"1 subject\(s\) have volumes in both .*\(sub-01\)"):
        load_images(config)
    os.rename(
        tmp_path / "vols" / "test" / "sub-01_T1w.nii.gz",
        tmp_path / "vols" / "test" / "sub-03_T1w.nii.gz",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_images(config)) > 0


# ---- class folders: a folder-per-class layout labels its images --------------------------------
def class_tree(root: Path) -> None:
    """train/{a,b,c} and test/{a,c} (test lacks class b); each image's grey level names its class
    (a: 40, b: 120, c: 200), and train/c holds one file that is not an image."""
    for split, classes in (("train", "abc"), ("test", "ac")):
        for k, name in enumerate("abc"):
            if name in classes:
                for i in range(3):
                    write_png(root / split / name / f"{i}.png", gray(40 + 80 * k))
    (root / "train" / "c" / "3.png").write_bytes(b"not a png")


def test_class_folders_label_images_and_number_classes_alike_in_every_split(tmp_path):
    class_tree(tmp_path / "d")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the one unreadable file is reported, and skipped
        train = load_images(folder_config(tmp_path / "d", resolution=12, split="train"))
    test = load_images(folder_config(tmp_path / "d", resolution=12, split="test"))
    assert train.class_names == test.class_names == ("a", "b", "c")
    assert train.num_classes == test.num_classes == 3
    for data in (train, test):  # the label follows the image even past the skipped file
        assert torch.equal(data.labels, (data.images[:, 0, 0, 0].long() - 40) // 80)
    assert torch.bincount(train.labels).tolist() == [3, 3, 3]
    assert sorted(set(test.labels.tolist())) == [0, 2]  # c is 2 in the test split too
    again = load_images(folder_config(tmp_path / "d", resolution=12, split="test"))
    assert "from the decoded-image cache" in again.source
    assert torch.equal(again.labels, test.labels) and again.class_names == ("a", "b", "c")


def test_a_flat_folder_or_loose_images_beside_class_folders_are_unlabelled(tmp_path):
    flat_folder(tmp_path / "flat", count=4)
    assert load_images(folder_config(tmp_path / "flat", resolution=12)).labels is None
    class_tree(tmp_path / "mixed")
    write_png(tmp_path / "mixed" / "train" / "loose.png", gray(9))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mixed = load_images(folder_config(tmp_path / "mixed", resolution=12, split="train"))
    assert mixed.labels is None and mixed.class_names is None


def test_brain_slices_are_labelled_by_their_four_diagnosis_folders(brain_slices):
    data = load_images(DataConfig(dataset="folder", path=str(brain_slices), split="test"))
    assert data.class_names == DIAGNOSES
    # the phantom test split (conftest.py): 32 NonDemented, 22 VeryMild, 9 Mild, 2 Moderate
    assert torch.bincount(data.labels).tolist() == [9, 2, 32, 22]


@pytest.mark.data
def test_the_shared_brain_slices_have_their_four_diagnosis_classes(real_data):
    data = load_images(
        DataConfig(dataset="folder", path=str(real_data("brain-mri-slices")), split="test")
    )
    assert data.class_names == DIAGNOSES
    # the dataset README's
    assert torch.bincount(data.labels).tolist() == [179, 12, 640, 448]


def test_a_conditional_model_trains_on_class_folders_and_samples_by_class(cli, tmp_path):
    """Folder-per-class data needs no code: the resnet with num_classes = the number of class
    folders trains on it, and `ganforge sample --class` draws from one of its classes."""
    class_tree(tmp_path / "d")
    flags = ["--dataset", "folder", "--data", tmp_path / "d", "--resolution", "32"]
    flags += ["--model", "resnet", "--set", "model.options={channels: 4, num_classes: 3}"]
    flags += ["--iterations", "2", "--batch-size", "4", "--out", tmp_path / "runs"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = cli("train", *flags, "--name", "cond", "--quiet", "--device", "cpu")
    assert result.code == 0, result.err
    out = tmp_path / "c.npy"
    result = cli("sample", tmp_path / "runs" / "cond", "--class", "2", "--count", "3", "--out", out)
    assert result.code == 0, result.err
    assert np.load(out).shape == (3, 32, 32, 1)
    result = cli("sample", tmp_path / "runs" / "cond", "--class", "3", "--out", tmp_path / "x.npy")
    assert result.code == 2 and "valid classes: 0-2 (0 a, 1 b, 2 c)" in result.err
    # the folder names are the class names, in the generator file and in the checkpoints
    checkpoint = tmp_path / "runs" / "cond" / "checkpoints" / "ckpt-00000002.pt"
    for source in (tmp_path / "runs" / "cond", checkpoint):
        result = cli("sample", source, "--class", "c", "--count", "3", "--out", tmp_path / "c.npy")
        assert result.code == 0 and "class 2 (c)" in result.err, result.err


# ---- oasis-dcgan: the document's data, or other slices only when named ---------------------------
def _write_slices(folder: Path, count: int = 8) -> Path:
    folder.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(np.full((20, 24), 10 + 20 * i, np.uint8)).save(folder / f"{i}.png")
    return folder


def _only_here(tmp_path: Path, monkeypatch) -> Path:
    """The brain-mri source looks in $GANFORGE_DATA = tmp_path/data, never in a team copy."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(locations, "REPO_ROOT", tmp_path / "repo")
    monkeypatch.setenv("GANFORGE_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


def test_oasis_preset_without_data_refuses_other_slices_it_finds(
    tmp_path, monkeypatch, cli, user_error
):
    """Kaggle-style slices where the source looks are not OASIS: one line that says how to
    get OASIS and how to name other slices, exit 2, no run folder."""
    data = _only_here(tmp_path, monkeypatch)
    _write_slices(data / "brain-mri-slices" / "train")
    result = cli("train", "--preset", "oasis-dcgan", "--out", tmp_path / "runs", "--device", "cpu")
    user_error(result, "OASIS brain slices not found", "keras_png_slices_data", "--data FOLDER")
    assert not (tmp_path / "runs").exists()
    # the same search without the requirement still takes them (the brain-mri source's default)
    assert len(load_images(DataConfig(dataset="brain-mri"))) == 8


def test_oasis_preset_finds_oasis_without_data(tmp_path, monkeypatch):
    data = _only_here(tmp_path, monkeypatch)
    _write_slices(data / "brain-mri-slices" / "train")
    _write_slices(data / "keras_png_slices_data" / "keras_png_slices_train", count=4)
    loaded = load_images(DataConfig(dataset="brain-mri", require_oasis=True))
    assert loaded.name == "keras_png_slices_data/train" and len(loaded) == 4


def test_oasis_preset_trains_on_named_slices_and_says_so_first(tmp_path, monkeypatch, cli):
    import json

    _only_here(tmp_path, monkeypatch)
    slices = _write_slices(tmp_path / "kaggle")
    result = cli(
        *("train", "--preset", "oasis-dcgan", "--data", slices, "--resolution", "32"),
        *("--set", "model.options.width=0.125", "--batch-size", "4", "--iterations", "1"),
        *("--out", tmp_path / "runs", "--name", "kaggle", "--device", "cpu", "--quiet"),
    )
    assert result.code == 0, result.err
    first = result.err.splitlines()[0]
    assert first.startswith(f"note: {slices} is not the OASIS data") and "--data" in first
    saved = json.loads((tmp_path / "runs" / "kaggle" / "config.json").read_text())
    assert saved["data"]["substitute"] == first


def test_the_nifti_cache_key_is_the_one_of_before_data_options(head_volume):
    """Moving the NIfTI settings into data.options keeps the decoded-image cache's key: the
    file is where the flat settings (data.nifti_range, ...) put it, so old caches are reused."""
    load_images(nifti_config(head_volume, resolution=32, nifti_range=(0.5, 0.53)))
    settings = {
        **data_cache.cache_settings(DataConfig(resolution=32), "nifti", "all"),
        "axis": 2,
        "range": [0.5, 0.53],
        "min_foreground": 0.1,
        "normalise": "percentile",
        "percentiles": [0.5, 99.5],
        "subject_split": None,
        "pixels": "square",
    }
    assert cache_files() == [data_cache.cache_file(head_volume, settings)]
