"""Shared fixtures and helpers: real digits that ship with ganforge, tiny runs, the CLI in process.

Nothing here reads a data folder beside the repository: the default tier runs on a fresh clone
with nothing beside it. MNIST comes from the 5,000 real digits that ship with ganforge, written
as IDX files into a temporary folder. Tests that only mean something on a full real dataset are
marked ``data``: they are left out unless asked for (``python -m pytest -m data``) and then run
where the datasets are found (``$GANFORGE_DATA``, else ganforge's own search for the team's
local copies), each skipping with one line that says how to get them.

Helpers that tests use as values (config builders, the one-line-error check) are fixtures
that return a function, so test files need no import from this module and pytest's import
mode does not matter. Everything runs on one CPU thread (see ``pytest_configure``).
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
# Read before any test runs: the autouse fixture below hides the variable from every test.
REAL_DATA_ENV = os.environ.get("GANFORGE_DATA")
DATA_TIER_HELP = (
    "needs the full real datasets: put the folder that holds mnist/, brain-mri-slices/, "
    "mni152/ (see README, 'The data tier') in GANFORGE_DATA, then run python -m pytest -m data"
)
# The shipped 5,000 real test digits, split into a small stand-in for full MNIST's files.
FAKE_MNIST_TRAIN = 2_500

# Small enough that a run of a few dozen iterations takes about a second on one core.
TINY_MODELS: dict[str, dict[str, Any]] = {
    "mnist-gan": {"model.options.g_hidden": [32, 64], "model.options.d_hidden": [64, 32]},
    "mnist-dcgan": {"model.options.width": 0.25},
    "demo": {},
}


def pytest_configure(config: pytest.Config) -> None:
    """One intra-op thread for the whole suite, in process and in every subprocess.

    The kernels in these tests are tiny; on a shared 2-core machine a second thread only
    fights the other processes. Measured on such a machine (load 4-6): tests/test_training.py
    took 128 s wall and 82 s CPU with two threads, 50 s and 17 s with one (its demo run
    95 s -> 25 s). The environment variables reach subprocesses and make ganforge's own
    configure_threads() keep one thread in in-process training runs.
    """
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["GANFORGE_THREADS"] = "1"  # ganforge lets it win over OMP_NUM_THREADS
    import torch

    torch.set_num_threads(1)


def _data_tier_asked(config: pytest.Config) -> bool:
    """True when the -m expression names the data tier (``-m data``, ``-m "data and slow"``)."""
    return "data" in (config.getoption("markexpr") or "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave the data tier out unless ``-m`` asks for it, and say so in one line at the end."""
    if _data_tier_asked(config):
        return
    tier = [item for item in items if item.get_closest_marker("data")]
    if tier:
        config.hook.pytest_deselected(items=tier)
        items[:] = [item for item in items if not item.get_closest_marker("data")]
    config.stash[_DATA_TIER_LEFT_OUT] = len(tier)


_DATA_TIER_LEFT_OUT = pytest.StashKey[int]()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """One line on the data tier when it was left out (the count where this process collected;
    under pytest-xdist the workers collect, and the line goes without it)."""
    if _data_tier_asked(config) or hasattr(config, "workerinput"):
        return
    left_out = config.stash.get(_DATA_TIER_LEFT_OUT, None)
    if left_out == 0:
        return
    count = f"{left_out} tests" if left_out is not None else "the tests marked data"
    terminalreporter.write_line(
        f"data tier: {count} not run here; python -m pytest -m data runs them where the full "
        "datasets are found (GANFORGE_DATA, see README)"
    )


def _team_copies() -> list[Path]:
    """ganforge's own places for the team's local copies, from where pytest started (read at
    import, before the fixtures below move the working folder and hide the checkout)."""
    from ganforge.data import locations

    return locations.anchored(locations.SHARED_ROOTS)


TEAM_COPIES = _team_copies()


def real_datasets_root() -> Path | None:
    """The folder of full real datasets: $GANFORGE_DATA, else the team's local copies."""
    places = [Path(REAL_DATA_ENV)] if REAL_DATA_ENV else []
    places += TEAM_COPIES
    return next((place for place in places if place.is_dir()), None)


@pytest.fixture(scope="session")
def real_data() -> Callable[[str], Path]:
    """``real_data("mnist")`` -> that real dataset's folder; skips with how to get it if absent.

    Only for tests marked ``data``: the default tier never reads a data folder.
    """

    def find(name: str) -> Path:
        root = real_datasets_root()
        if root is None or not (root / name).exists():
            pytest.skip(f"{name}: {DATA_TIER_HELP}")
        return root / name

    return find


@pytest.fixture(scope="session", autouse=True)
def _a_machine_with_nothing_beside_the_repo(tmp_path_factory, fake_datasets):
    """Every fixture and test sees a fresh clone's world, set before any other fixture runs.

    No network (``GANFORGE_OFFLINE``), no user cache, and no data folder beside the repo: the
    working folder and ganforge's idea of its checkout move to an empty temporary folder, so
    data discovery finds what a fresh clone would, plus ``GANFORGE_DATA`` pointing at
    ``fake_datasets``: MNIST is "installed" (as the faithful presets require) but small. The
    variables reach every subprocess. A test of a machine without MNIST removes the variable.
    """
    from ganforge.data import locations

    patch = pytest.MonkeyPatch()
    patch.setenv("GANFORGE_OFFLINE", "1")
    patch.setenv("GANFORGE_CACHE", str(tmp_path_factory.mktemp("cache")))
    patch.setenv("GANFORGE_DATA", str(fake_datasets))
    alone = tmp_path_factory.mktemp("cwd")
    patch.chdir(alone)
    patch.setattr(locations, "REPO_ROOT", alone / "repo")
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def _private_cache_and_folder(tmp_path_factory, monkeypatch):
    """Each test gets its own cache and working folder, so no test sees another's files."""
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


def write_idx(path: Path, array) -> Path:
    """Write a uint8 array as a gzipped IDX file (magic, dimensions, bytes), as MNIST ships."""
    import numpy as np

    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb", compresslevel=1) as handle:
        handle.write(header + array.tobytes())
    return path


@pytest.fixture(scope="session")
def mnist_test_split():
    """The 5,000 real MNIST test digits that ship with ganforge, with labels, loaded once."""
    from dataclasses import replace

    from ganforge.data.idx import read_bundled_slice

    return replace(read_bundled_slice(), name="mnist/test")


@pytest.fixture(scope="session")
def fake_datasets(tmp_path_factory, mnist_test_split) -> Path:
    """A datasets folder holding ``mnist/`` as the four IDX files full MNIST has.

    Its train split is the first 2,500 shipped digits, its test split the other 2,500: real
    digits, disjoint splits, every reader and discovery path of full MNIST, in megabytes.
    """
    root = tmp_path_factory.mktemp("datasets")
    folder = root / "mnist"
    folder.mkdir()
    images = mnist_test_split.images[:, 0].numpy()
    labels = mnist_test_split.labels.numpy()
    parts = {"train": slice(0, FAKE_MNIST_TRAIN), "t10k": slice(FAKE_MNIST_TRAIN, None)}
    for prefix, part in parts.items():
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images[part])
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels[part])
    return root


@pytest.fixture(scope="session")
def mnist_dir(fake_datasets) -> Path:
    """A folder with MNIST's four IDX files (real digits, 2,500 per split): pass it as --data."""
    return fake_datasets / "mnist"


@pytest.fixture(scope="module")
def one_thread():
    """Kept for the files that ask for it; pytest_configure already sets one thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---- tiny data and configs ------------------------------------------------------------------
def _tiny_images(count: int = 64, size: int = 28, channels: int = 1, seed: int = 0):
    """Random uint8 images as ImageData: enough for the training loop, no files involved."""
    import torch

    from ganforge import ImageData

    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(
        0, 256, (count, channels, size, size), dtype=torch.uint8, generator=generator
    )
    return ImageData(images, f"synthetic/{size}", "test")


def _tiny_config(
    preset: str = "mnist-gan", settings: dict[str, Any] | None = None, **overrides: Any
):
    """A preset cut down to seconds: small model, few iterations, CPU, no compilation.

    Top-level settings as keywords (``iterations=12``), dotted ones in ``settings``
    (``{"optim.lr_g": 1e-3}``), exactly as ``TrainConfig.with_overrides`` takes them.
    """
    from ganforge import load_preset

    values: dict[str, Any] = {
        **TINY_MODELS.get(preset, {}),
        "device": "cpu",
        "compile": "off",
        "iterations": 6,
        "batch_size": 8,
        "log_every": 2,
        "sample_every": 3,
        "checkpoint_every": 3,
    }
    values.update(overrides)
    values.update(settings or {})
    return load_preset(preset).with_overrides(values)


@pytest.fixture(scope="session")
def tiny_images() -> Callable[..., Any]:
    """``tiny_images(count=64, size=28, channels=1, seed=0)`` -> ImageData of random pixels."""
    return _tiny_images


@pytest.fixture(scope="session")
def tiny_config() -> Callable[..., Any]:
    """``tiny_config(preset="mnist-gan", settings=None, **overrides)`` -> a TrainConfig that
    trains in seconds."""
    return _tiny_config


@pytest.fixture
def train_tiny(tmp_path) -> Callable[..., Any]:
    """Train a tiny config into ``tmp_path / "runs" / name``; returns the TrainResult.

    ``train_tiny(name, preset="mnist-gan", settings=None, data=None, resume=False,
    **overrides)``: settings and overrides as for ``tiny_config``; ``data`` defaults to 64
    random images (28x28, or 32x32 for the demo). The same name with ``resume=True``
    continues that run.
    """
    from ganforge import RunOptions, train

    def run(
        name: str = "tiny",
        preset: str = "mnist-gan",
        settings: dict[str, Any] | None = None,
        data=None,
        resume: bool = False,
        allow_data_change: bool = False,
        **overrides: Any,
    ):
        config = _tiny_config(
            preset, settings, out_dir=str(tmp_path / "runs"), run_name=name, **overrides
        )
        size = 32 if preset == "demo" else 28
        images = data if data is not None else _tiny_images(size=size)
        return train(
            config,
            run=RunOptions(
                data=images, resume=resume, show_progress=False, allow_data_change=allow_data_change
            ),
        )

    return run


# ---- the command line in process ----------------------------------------------------------------
@dataclass
class CliResult:
    """What `ganforge ...` returned and printed; unpacks as ``code, out, err``."""

    code: int
    out: str
    err: str
    argparse_exit: bool = False  # argparse stopped it (--help, --version, a usage error)

    def __iter__(self):
        return iter((self.code, self.out, self.err))


def one_error_line(err: str, *fragments: str, alone: bool = False) -> str:
    """The single ``ganforge: error:`` line of a user error, which holds every fragment.

    No traceback, exactly one error line; with ``alone`` nothing else was printed either.
    """
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ganforge: error: ")]
    assert len(errors) == 1, err
    assert not alone or lines == errors, err
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


def assert_user_error(result: CliResult, *fragments: str, alone: bool = False) -> str:
    """Exit status 2 and one ``ganforge: error:`` line holding every fragment; returns the line."""
    assert result.code == 2, result
    return one_error_line(result.err, *fragments, alone=alone)


@pytest.fixture(scope="session")
def user_error() -> Callable[..., str]:
    """``user_error(result, *fragments, alone=False)``: see :func:`assert_user_error`."""
    return assert_user_error


@pytest.fixture(scope="session")
def error_line() -> Callable[..., str]:
    """``error_line(stderr, *fragments, alone=False)``: see :func:`one_error_line`."""
    return one_error_line


@pytest.fixture
def cli(capsys) -> Callable[..., CliResult]:
    """``cli("train", "--dry-run", ...)`` runs ``ganforge.cli.main`` in this process.

    An argparse exit (SystemExit, e.g. --version or a usage error) counts as the exit
    status, as it would for the real program.
    """
    from ganforge.cli import main

    def run(*argv: str) -> CliResult:
        capsys.readouterr()  # drop whatever the test printed before
        try:
            code, argparse_exit = main([str(arg) for arg in argv]), False
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
            argparse_exit = True
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err, argparse_exit)

    return run


# ---- brain phantoms ----
# Brain MRI stand-ins that the tests make themselves, so the brain tests run on a fresh clone:
# 2-D "phantom" slices (ellipses for the skull ring, grey and white matter, ventricles and a few
# blobs, every parameter drawn at random, plus texture and noise, so no two slices are near
# each other in pixel space) in the Kaggle "Alzheimer's Dataset" layout, and a 3-D NIfTI head.
# Facts of the real sets (their counts, their classes) are checked by the data tier only.
BRAIN_CLASSES = ("NonDemented", "VeryMildDemented", "MildDemented", "ModerateDemented")
# The real set's train file-name stems, per class (test files are named like "26 (19).jpg").
BRAIN_STEMS = ("nonDem", "verymildDem", "mildDem", "moderateDem")
# Slices per split and class: the real set (train 2560/1792/717/52, test 640/448/179/12) cut to
# about a tenth in train and a twentieth in test, every class in both splits.
PHANTOM_BRAIN_COUNTS = {"train": (240, 168, 67, 5), "test": (32, 22, 9, 2)}


def _phantom_grid(height: int, width: int):
    import numpy as np

    return np.mgrid[0:height, 0:width].astype(np.float32)


def _paint_ellipse(image, grid, centre, axes, angle, value, within=None, add=False) -> None:
    """Set (or add) `value` inside a rotated ellipse, touching only its bounding box."""
    import numpy as np

    reach = max(axes)
    top, bottom = max(0, int(centre[0] - reach)), min(image.shape[0], int(centre[0] + reach) + 2)
    left, right = max(0, int(centre[1] - reach)), min(image.shape[1], int(centre[1] + reach) + 2)
    dy = grid[0, top:bottom, left:right] - centre[0]
    dx = grid[1, top:bottom, left:right] - centre[1]
    cos, sin = np.cos(angle), np.sin(angle)
    inside = ((dy * cos + dx * sin) / axes[0]) ** 2 + ((dx * cos - dy * sin) / axes[1]) ** 2 < 1
    if within is not None:
        inside &= within[top:bottom, left:right]
    box = image[top:bottom, left:right]
    if add:
        box[inside] += value
    else:
        box[inside] = value


def phantom_slice(rng, height: int = 208, width: int = 176, grid=None):
    """One uint8 axial "slice" [height, width]: a head on a black background, all at random.

    Skull ring, grey matter, white matter, two ventricles, 2-5 lighter or darker blobs, a
    low-frequency texture and noise; the head fills most of the frame and never touches it.
    """
    import numpy as np

    grid = _phantom_grid(height, width) if grid is None else grid
    shift = rng.uniform(-0.03, 0.03, 2)
    centre = (height * (0.5 + shift[0]), width * (0.5 + shift[1]))
    axes = (rng.uniform(0.38, 0.44) * height, rng.uniform(0.36, 0.43) * width)
    angle = rng.uniform(-0.15, 0.15)
    image = np.zeros((height, width), np.float32)
    _paint_ellipse(image, grid, centre, axes, angle, rng.uniform(150, 210))
    head = image > 0
    inner = 1 - rng.uniform(0.05, 0.09)
    _paint_ellipse(image, grid, centre, (axes[0] * inner, axes[1] * inner), angle, 1.0)
    brain = image == 1.0
    image[brain] = rng.uniform(70, 100)
    white = rng.uniform(0.6, 0.78)
    _paint_ellipse(
        image, grid, centre, (axes[0] * white, axes[1] * white), angle, rng.uniform(110, 140)
    )
    for side in (-1, 1):
        where = (
            centre[0] + rng.uniform(-0.12, 0.05) * axes[0],
            centre[1] + side * rng.uniform(0.06, 0.16) * axes[1],
        )
        size = (rng.uniform(0.12, 0.3) * axes[0], rng.uniform(0.04, 0.1) * axes[1])
        _paint_ellipse(
            image, grid, where, size, angle + side * rng.uniform(0, 0.4), rng.uniform(15, 35)
        )
    for _ in range(rng.integers(2, 6)):
        reach, turn = rng.uniform(0, 0.7), rng.uniform(0, 2 * np.pi)
        where = (
            centre[0] + reach * axes[0] * np.sin(turn),
            centre[1] + reach * axes[1] * np.cos(turn),
        )
        size = tuple(rng.uniform(0.03, 0.1, 2) * np.array(axes))
        _paint_ellipse(
            image, grid, where, size, rng.uniform(0, np.pi), rng.uniform(-40, 40), brain, add=True
        )
    waves = rng.uniform(0.02, 0.1, 2)
    image += 8 * np.sin(grid[0] * waves[0] + grid[1] * waves[1] + rng.uniform(0, 2 * np.pi))
    image += rng.standard_normal(image.shape, dtype=np.float32) * 4
    image[~head] = 0
    return np.clip(image, 0, 255).astype(np.uint8)


def write_brain_slices(
    root: Path,
    counts: dict[str, tuple[int, ...]] | None = None,
    size: tuple[int, int] = (208, 176),
    seed: int = 0,
    suffix: str = ".jpg",
) -> Path:
    """Phantom slices in the real set's layout: ``root/Alzheimer_s Dataset/<split>/<Class>/``.

    `counts` maps each split to slices per class, in BRAIN_CLASSES order (default
    PHANTOM_BRAIN_COUNTS); `size` is (height, width), the real set's 208x176 by default. Train
    files are named as the real ones (``nonDem0.jpg``), test files with spaces and parentheses
    (``26 (0).jpg``). Returns `root`.
    """
    import numpy as np
    from PIL import Image

    grid = _phantom_grid(*size)
    for s, (split, per_class) in enumerate((counts or PHANTOM_BRAIN_COUNTS).items()):
        for c, (name, stem, count) in enumerate(zip(BRAIN_CLASSES, BRAIN_STEMS, per_class)):
            folder = root / "Alzheimer_s Dataset" / split / name
            folder.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng([seed, s, c])
            for i in range(count):
                file = f"{stem}{i}" if split == "train" else f"{26 + i // 4} ({i})"
                image = Image.fromarray(phantom_slice(rng, *size, grid=grid))
                image.save(folder / f"{file}{suffix}", quality=90)
    return root


@pytest.fixture(scope="session")
def brain_slices_writer() -> Callable[..., Path]:
    """``brain_slices_writer(root, counts=None, size=(208, 176), seed=0, suffix=".jpg")``:
    see :func:`write_brain_slices`."""
    return write_brain_slices


@pytest.fixture(scope="session")
def brain_datasets(tmp_path_factory) -> Path:
    """A datasets folder holding ``brain-mri-slices/``: phantom slices as the real set lays them
    out, 208x176 JPEGs in four classes, train 480 (240/168/67/5) and test 65 (32/22/9/2)."""
    root = tmp_path_factory.mktemp("brain-datasets")
    write_brain_slices(root / "brain-mri-slices")
    return root


@pytest.fixture(scope="session")
def brain_slices(brain_datasets) -> Path:
    """The phantom ``brain-mri-slices`` folder (read-only for tests): pass it as --data."""
    return brain_datasets / "brain-mri-slices"


@pytest.fixture
def brain_mri_installed(brain_datasets, monkeypatch) -> Path:
    """Brain slices found without --data (GANFORGE_DATA), as for a user who has them:
    ``DataConfig(dataset="brain-mri")`` reads the phantom ``brain-mri-slices``."""
    monkeypatch.setenv("GANFORGE_DATA", str(brain_datasets))
    return brain_datasets / "brain-mri-slices"


def write_head_volume(
    path: Path, shape: tuple[int, int, int] = (64, 76, 60), spacing: float = 3.0, seed: int = 0
) -> Path:
    """A phantom T1 head as NIfTI: int16 in RAS+, by default 64 x 76 x 60 voxels of 3 mm
    (192 x 228 x 180 mm) with the origin near the centre of the head; skull-and-scalp shell,
    grey and white matter, two ventricles and a bright lesion at the patient's left, anterior,
    superior (so no flip maps the volume onto itself), a smooth texture and noise; empty
    slices below and above the head. Like a real scan it has more voxels across than a
    64-pixel slice has pixels, which the resampling tests rely on."""
    import nibabel as nib
    import numpy as np

    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=np.float32)
    extent = np.array(shape, np.float32)
    centre = extent * np.array([0.5, 0.52, 0.56]) + rng.uniform(-1, 1, 3)
    axes = extent * np.array([0.40, 0.42, 0.38])

    def share(middle, half) -> np.ndarray:
        """How much of each voxel an ellipsoid fills: edges blur over about two voxels, as
        partial volumes do in a scan."""
        radius = np.sqrt(sum(((grid[i] - middle[i]) / half[i]) ** 2 for i in range(3)))
        return np.clip((1 - radius) * min(half) / 2 + 0.5, 0, 1)

    def paint(middle, half, value) -> None:
        weight = share(middle, half)
        volume[...] = volume * (1 - weight) + value * weight

    volume = np.zeros(shape, np.float32)
    for scale, value in ((1.0, 420.0), (0.88, 560.0), (0.6, 800.0)):
        paint(centre, axes * scale, value)
    for side in (-1, 1):
        paint(centre + axes * np.array([side * 0.12, -0.05, 0.05]), axes * [0.08, 0.3, 0.12], 160)
    paint(centre + axes * np.array([-0.35, 0.3, 0.25]), axes * 0.12, 1200.0)
    head = volume > 0
    texture = sum(
        np.sin(grid[i] * rng.uniform(0.2, 0.5) + rng.uniform(0, 2 * np.pi)) for i in range(3)
    )
    volume[head] += 25 * texture[head] + rng.normal(0, 8, int(head.sum()))
    volume[head] = np.maximum(volume[head], 20.0)
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = -(extent - 1) / 2 * spacing + np.array([0.0, -18.0, 10.0])
    image = nib.Nifti1Image(np.round(volume).astype(np.int16), affine)
    image.header.set_xyzt_units("mm")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))
    return path


@pytest.fixture(scope="session")
def head_volume(tmp_path_factory) -> Path:
    """A phantom T1 head, ``head_T1w.nii.gz`` (64 x 76 x 60 voxels of 3 mm, int16; see
    :func:`write_head_volume`), written once; tests copy or link it, never change it."""
    return write_head_volume(tmp_path_factory.mktemp("head") / "head_T1w.nii.gz")
