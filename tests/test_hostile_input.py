"""Hostile input: random settings, arguments and files.

Whatever a user (or a damaged download, or an attacker) feeds ganforge, the outcome is either
a correct result or a GanforgeError with a one-line message, which the CLI prints as one line
with exit status 2. Never a traceback, never another exception type. The properties below
feed random and corrupted input to each parser and reader and check exactly that; where a
result comes back, they also check it is the right one.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import gzip
import io
import json
import math
import os
import re
import struct
import tempfile
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ganforge.checkpoint import (
    FORMAT,
    GeneratorInfo,
    export_generator,
    load_checkpoint,
    read_generator_file,
)
from ganforge.cli.train import FLAGS
from ganforge.config import DataConfig, ModelConfig, OptimConfig, TrainConfig
from ganforge.data import load_images, source_options, source_problems
from ganforge.data.idx import IMAGE_MAGIC, LABEL_MAGIC, read_idx
from ganforge.data.nifti import NiftiOptions
from ganforge.errors import CheckpointError, ConfigError, DataError, GanforgeError
from ganforge.generate import load_generator
from ganforge.models import build_models
from ganforge.presets import load_preset, preset_names

# GANFORGE_FUZZ_EXAMPLES=2000 explores much further (minutes); the default keeps the suite quick.
EXAMPLES = int(os.environ.get("GANFORGE_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)
FEW = settings(FUZZ, max_examples=max(1, EXAMPLES // 4))


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert message and "\n" not in message and "Traceback" not in message, message
    return message


@contextlib.contextmanager
def scratch_dir():
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


# ==== configuration ===============================================================================
def field_paths(cls: type, prefix: str = "") -> list[str]:
    paths = []
    for f in dataclasses.fields(cls):
        paths.append(prefix + f.name)
        if f.name in ("data", "model", "optim"):
            paths += field_paths(
                {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig}[f.name],
                f"{prefix}{f.name}.",
            )
    return paths


PATHS = field_paths(TrainConfig) + [
    "model.options.width",
    "model.options.dropout",
    "model.options.g_hidden",
    "data.options.nifti_min_foreground",
    "data.options.nifti_range",
]
TRICKY_TEXT = [
    "",
    "auto",
    "on",
    "off",
    "none",
    "null",
    "nan",
    "inf",
    "-inf",
    "-1",
    "0",
    "1",
    "1e400",
    "1e-400",
    "0x10",
    "1_000",
    "3.5",
    "[1, 2]",
    "(0.2, 0.8)",
    "{a: 1}",
    "2001-01-01",
    "!!binary aGk=",
    "!!python/object/apply:os.system ['true']",
    "&a [*a]",
    "yes",
    "cuda:0",
    "cuda:x",
    "bf16",
    "crop",
    "9" * 30,
    "9" * 5000,
    "\x00",
    "a\nb",
    "é",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**64 + 2),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(TRICKY_TEXT),
    st.dates(),
    st.binary(max_size=6),
    st.just(10**400),
    st.just(-(10**400)),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.one_of(st.text(max_size=5), st.integers()), inner, max_size=3)
    ),
    max_leaves=6,
)
PRESET_DICTS = [load_preset(name).to_dict() for name in preset_names()]


@st.composite
def config_mappings(draw) -> object:
    """A preset's settings with a few of them (or unknown ones) replaced by hostile values."""
    if draw(st.integers(0, 19)) == 0:
        return draw(VALUES)  # not even a mapping
    values = copy.deepcopy(draw(st.sampled_from(PRESET_DICTS)))
    for _ in range(draw(st.integers(1, 4))):
        key = draw(st.one_of(st.sampled_from(PATHS), st.text(max_size=8), st.integers()))
        parts = key.split(".") if isinstance(key, str) else [key]
        target = values
        for part in parts[:-1]:
            target = target.get(part) if isinstance(target, dict) else None
        if isinstance(target, dict):
            target[parts[-1]] = draw(VALUES)
    return values


def float_settings(config: TrainConfig) -> list[float]:
    return [
        config.optim.lr_g,
        config.optim.lr_d,
        config.optim.beta1,
        config.optim.beta2,
        config.latent.std,
        config.regularise.label_smoothing,
        config.regularise.r1_gamma,
        config.regularise.ema_decay,
        *nifti_floats(config),
    ]


def nifti_floats(config: TrainConfig) -> list[float]:
    """The NIfTI slicing numbers, as the data source reads them from data.options."""
    options = source_options(config.data)
    if not isinstance(options, NiftiOptions):
        return []
    return [options.nifti_min_foreground, *options.nifti_range]


def validated(config: TrainConfig) -> TrainConfig:
    """TrainConfig's own checks, then the data source's checks of its options (data.options)."""
    config.validate()
    problems = source_problems(config.data)
    if problems:
        raise ConfigError("; ".join(problems))
    return config


def check_config_outcome(make) -> None:
    """A valid config (finite numbers, JSON that reads back as itself) or a one-line ConfigError."""
    try:
        config = validated(make())
    except ConfigError as exc:
        one_line(exc)
        return
    assert all(math.isfinite(v) for v in float_settings(config)), config
    text = config.to_json()  # what --dry-run prints and config.json stores
    again = validated(TrainConfig.from_dict(json.loads(text)))
    assert again.to_json() == text


@FUZZ
@given(config_mappings())
def test_random_config_mappings_give_a_valid_config_or_a_config_error(values):
    check_config_outcome(lambda: TrainConfig.from_dict(values))


@FUZZ
@given(
    st.sampled_from(preset_names()),
    st.dictionaries(
        st.one_of(st.sampled_from(PATHS), st.text(max_size=10), st.integers()),
        st.one_of(st.sampled_from(TRICKY_TEXT), st.text(max_size=10), VALUES),
        max_size=4,
    ),
)
def test_random_overrides_give_a_valid_config_or_a_config_error(preset, overrides):
    check_config_outcome(lambda: load_preset(preset).with_overrides(overrides))


@pytest.mark.parametrize(
    "yaml_text",
    [
        "epochs: 99999999999999999999999999999999999999\nbatch_size: 1e400\n",
        "iterations: 10\nmodel: {options: {width: 2001-01-01}}\n",
        "iterations: 10\nmodel: {options: {width: &a [*a]}}\n",
        "{1: 2, a: 3}\n",
        "iterations: 10\nr1_gamma: .nan\n",
        "iterations: 10\nseed: 99999999999999999999999\n",
        "iterations: " + "9" * 5000 + "\n",
        "- a list\n",
        "!!python/object/apply:os.system ['true']\n",
    ],
)
def test_hostile_config_files_are_one_line_config_errors(cli, error_line, tmp_path, yaml_text):
    path = tmp_path / "config.yaml"
    path.write_text(yaml_text)
    code, out, err = cli("train", "--config", str(path), "--dry-run")
    assert code == 2 and out == ""
    error_line(err, alone=True)


# ==== the command line ============================================================================
@pytest.fixture(scope="module")
def config_files(tmp_path_factory) -> list[str]:
    """Files a user might pass to --config or --resume by mistake, and good ones."""
    folder = tmp_path_factory.mktemp("configs")
    (folder / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (folder / "list.yaml").write_text("- 1\n- 2\n")
    (folder / "bad.yaml").write_text("epochs: [unclosed\n")
    (folder / "good.yaml").write_text("iterations: 5\nbatch_size: 8\n")
    (folder / "empty.yaml").write_text("")
    for name, saved in (
        ("run-ok", load_preset("demo").to_json()),
        ("run-bad", "{not json"),
        ("run-list", "[1]"),
    ):
        (
            folder / name
        ).mkdir()  # run folders for --resume: its config.json is read (a dry run trains nothing)
        (folder / name / "config.json").write_text(saved)
    return [str(p) for p in sorted(folder.iterdir())] + [str(folder / "missing.yaml"), "a\x00b"]


@FUZZ
@given(st.data())
def test_random_train_arguments_exit_0_or_2_without_a_traceback(
    cli, error_line, config_files, monkeypatch, data
):
    import ganforge.api

    # a dry run must never reach training (ganforge.api.train is its one entry point)
    monkeypatch.setattr(ganforge.api, "train", None)
    flags = ["--" + name.replace("_", "-") for name in FLAGS] + [
        "--preset",
        "--config",
        "--set",
        "--resume",
        "--overwrite",
        "--quiet",
        "--help",
        "--bogus",
        "-x",
        "--",
    ]
    values = st.one_of(
        st.sampled_from(TRICKY_TEXT),
        st.text(max_size=10),
        st.sampled_from(preset_names()),
        st.sampled_from(config_files),
        st.builds(
            "{}={}".format,
            st.one_of(st.sampled_from(PATHS), st.text(max_size=6)),
            st.one_of(st.sampled_from(TRICKY_TEXT), st.text(max_size=6)),
        ),
    )
    tokens = data.draw(st.lists(st.one_of(st.sampled_from(flags), values), max_size=8))
    result = cli("train", *tokens, "--dry-run")
    code, out, err = result
    if result.argparse_exit:
        assert code in (0, 2), f"argparse exited with {code!r}"
        return  # argparse's own usage error (status 2) or --help (status 0)
    if code == 0:
        TrainConfig.from_dict(
            json.loads(out)
        ).validate()  # what was printed is a complete, valid config
    else:
        assert code == 2 and out == ""
        error_line(err, alone=True)


def _four_tiny_images(tmp_path: Path) -> Path:
    """A folder of four 16x16 grayscale PNGs: the smallest real dataset a run can train on."""
    images = tmp_path / "images"
    images.mkdir()
    for i in range(4):
        Image.fromarray(np.full((16, 16), 40 * i, np.uint8)).save(images / f"{i}.png")
    return images


def test_train_into_an_output_path_that_is_a_file_is_a_one_line_error(cli, error_line, tmp_path):
    images = _four_tiny_images(tmp_path)
    target = tmp_path / "results"
    target.write_text("my notes, not a folder\n")
    code, _, err = cli(
        "train",
        "--dataset",
        "folder",
        "--data",
        str(images),
        "--resolution",
        "32",
        "--iterations",
        "1",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(target),
    )
    assert code == 2 and str(target) in error_line(err, alone=True)
    assert target.read_text() == "my notes, not a folder\n"


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes through chmod"
)
def test_train_into_a_read_only_folder_is_a_one_line_error(cli, error_line, tmp_path):
    images = _four_tiny_images(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, _, err = cli(
            "train",
            "--dataset",
            "folder",
            "--data",
            str(images),
            "--resolution",
            "32",
            "--iterations",
            "1",
            "--batch-size",
            "4",
            "--device",
            "cpu",
            "--quiet",
            "--out",
            str(locked),
        )
        assert code == 2 and str(locked) in error_line(err, alone=True)
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory) -> Path:
    """An exported demo-shaped generator (dcgan, width 0.25, 32x32), untrained."""
    generator, _ = build_models("dcgan", 100, (1, 32, 32), {"width": 0.25})
    info = GeneratorInfo("dcgan", 100, (1, 32, 32), {"width": 0.25}, dataset="noise/train", step=3)
    return export_generator(
        tmp_path_factory.mktemp("gen") / "generator.safetensors", generator, info
    )


@pytest.mark.parametrize(
    "out", ["notes.txt/grid.png", "notes.txt/arr.npy", "notes.txt/pngs", "notes.txt"]
)
def test_sample_into_an_unwritable_place_is_a_one_line_error(
    cli, error_line, generator_file, tmp_path, out
):
    (tmp_path / "notes.txt").write_text("keep me\n")
    extra = ["--format", "png"] if out == "notes.txt" else []
    code, _, err = cli(
        "sample", str(generator_file), "--count", "2", "--out", str(tmp_path / out), *extra
    )
    assert code == 2 and "notes.txt" in error_line(err, alone=True)
    assert (tmp_path / "notes.txt").read_text() == "keep me\n"


@pytest.mark.parametrize("seed", ["99999999999999999999999", "-99999999999999999999999"])
def test_sample_with_an_impossible_seed_is_a_usage_error(cli, generator_file, tmp_path, seed):
    code, _, err = cli(
        "sample", str(generator_file), "--seed", seed, "--out", str(tmp_path / "g.png")
    )
    assert code == 2 and "seed" in err and not (tmp_path / "g.png").exists()


# ==== IDX files (MNIST) ===========================================================================
@st.composite
def idx_files(draw) -> tuple[bytes, int]:
    """Random bytes, often behind a right magic number and plausible (or absurd) dimensions."""
    magic = draw(st.sampled_from([IMAGE_MAGIC, LABEL_MAGIC]))
    ndim = magic & 0xFF
    kind = draw(st.sampled_from(["random", "magic", "dims", "consistent"]))
    body = draw(st.binary(max_size=200))
    if kind == "random":
        return body, magic
    head = struct.pack(">I", draw(st.sampled_from([magic, magic ^ 0x100, magic ^ 1])))
    if kind == "magic":
        return head + body, magic
    if kind == "dims":
        dims = draw(
            st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 30), min_size=ndim, max_size=ndim)
        )
    else:
        dims = draw(st.lists(st.integers(0, 6), min_size=ndim, max_size=ndim))
        body = draw(st.binary(min_size=math.prod(dims), max_size=math.prod(dims)))
    return head + struct.pack(f">{ndim}I", *dims) + body, magic


@FUZZ
@given(idx_files(), st.booleans())
def test_read_idx_on_random_bytes_gives_the_data_or_a_data_error(blob, compress):
    content, magic = blob
    with scratch_dir() as folder:
        path = folder / ("x.idx.gz" if compress else "x.idx")
        path.write_bytes(gzip.compress(content) if compress else content)
        try:
            array = read_idx(path, magic)
        except DataError as exc:
            one_line(exc)
            return
    ndim = magic & 0xFF  # a result is exactly what the header describes
    dims = struct.unpack(f">{ndim}I", content[4 : 4 + 4 * ndim])
    assert content[:4] == struct.pack(">I", magic) and array.shape == dims
    assert array.tobytes() == content[4 + 4 * ndim :]


@FUZZ
@given(st.data())
def test_truncated_or_corrupted_mnist_is_a_data_error(mnist_dir, data):
    labels = mnist_dir / "t10k-labels-idx1-ubyte.gz"
    labels_gz = labels.read_bytes()
    raw = gzip.decompress(labels_gz)
    full = read_idx(labels, LABEL_MAGIC)
    kind = data.draw(st.sampled_from(["cut-gz", "cut-raw", "flip-gz", "flip-raw"]))
    content = labels_gz if kind.endswith("gz") else raw
    if kind.startswith("cut"):
        content = content[: data.draw(st.integers(0, len(content) - 1))]
    else:
        at = data.draw(st.integers(0, len(content) - 1))
        content = (
            content[:at] + bytes([content[at] ^ data.draw(st.integers(1, 255))]) + content[at + 1 :]
        )
    with scratch_dir() as folder:
        path = folder / ("t10k-labels-idx1-ubyte" + (".gz" if kind.endswith("gz") else ""))
        path.write_bytes(content)
        try:
            array = read_idx(path, LABEL_MAGIC)
        except DataError as exc:
            assert str(path) in one_line(exc)
            return
    assert kind.startswith("flip")  # a truncated file never passes
    assert (
        array.shape == full.shape
    )  # a flip that survives is in the gzip header or the label bytes
    if kind == "flip-gz":
        assert np.array_equal(array, full)  # the gzip CRC catches any flip in the compressed data


@FEW
@given(st.floats(0.0, 0.9999))
def test_truncated_mnist_images_are_a_data_error(mnist_dir, fraction):
    content = (mnist_dir / "t10k-images-idx3-ubyte.gz").read_bytes()
    with scratch_dir() as folder:
        path = folder / "t10k-images-idx3-ubyte.gz"
        path.write_bytes(content[: int(fraction * len(content))])
        with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz") as caught:
            read_idx(path, IMAGE_MAGIC)
        one_line(caught.value)


def test_idx_decompression_bomb_is_refused_without_reading_it_all(tmp_path):
    """A 64 KB file that inflates to 64 MB behind a header for 10 digits: read up to the
    declared size plus one byte, not the whole stream."""
    path = tmp_path / "bomb-idx3-ubyte.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(struct.pack(">IIII", IMAGE_MAGIC, 10, 28, 28))
        zeros = bytes(1 << 20)
        for _ in range(64):
            handle.write(zeros)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="holds more"):
            read_idx(path, IMAGE_MAGIC)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


# ==== image folders ===============================================================================
def png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


GOOD_IMAGES = (
    30  # with up to 3 bad files the share stays within the 10% that is skipped with a warning
)
REAL_PNG = png_bytes(np.tile(np.arange(24, dtype=np.uint8) * 10, (24, 1)))
REAL_JPEG = png_bytes(np.tile(np.arange(24, dtype=np.uint8) * 10, (24, 1)), "JPEG")
MAGICS = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"II*\x00", b"MM\x00*", b"GIF89a", b"BM"]


@st.composite
def bad_image_files(draw) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from([".png", ".jpg", ".jpeg", ".tif", ".PNG"]))
    kind = draw(st.sampled_from(["random", "magic", "cut", "flip"]))
    real = draw(st.sampled_from([REAL_PNG, REAL_JPEG]))
    if kind == "random":
        content = draw(st.binary(max_size=300))
    elif (
        kind == "magic"
    ):  # a real signature, then garbage: the decoder is chosen and must fail cleanly
        content = draw(st.sampled_from(MAGICS)) + draw(st.binary(max_size=300))
    elif kind == "cut":
        content = real[: draw(st.integers(0, len(real) - 1))]
    else:
        at = draw(st.integers(0, len(real) - 1))
        content = real[:at] + bytes([real[at] ^ draw(st.integers(1, 255))]) + real[at + 1 :]
    return suffix, content


@FUZZ
@given(st.lists(bad_image_files(), min_size=1, max_size=8))
def test_folder_with_damaged_files_skips_them_with_a_warning_or_stops(bad):
    with scratch_dir() as folder:
        for i in range(GOOD_IMAGES):
            (folder / f"good_{i:02d}.png").write_bytes(REAL_PNG)
        for i, (suffix, content) in enumerate(bad):
            (folder / f"bad_{i:02d}{suffix}").write_bytes(content)
        config = DataConfig(dataset="folder", path=str(folder), resolution=16, cache=False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                data = load_images(config)
            except DataError as exc:
                assert "unreadable" in one_line(exc) and "bad_" in str(exc)
                return
    total = GOOD_IMAGES + len(bad)
    notes = [str(w.message) for w in caught if "unreadable" in str(w.message)]
    skipped = (
        int(re.search(r"skipped (\d+) unreadable file\(s\) of (\d+)", notes[0]).group(1))
        if notes
        else 0
    )
    assert len(data) + skipped == total  # every file is either an image or counted as skipped
    assert skipped <= 0.1 * total and len(notes) <= 1
    assert data.images.shape[1:] == (1, 16, 16)


# ==== NIfTI volumes ===============================================================================
def small_nifti(shape=(6, 7, 5)) -> bytes:
    import nibabel as nib

    volume = np.arange(math.prod(shape), dtype=np.float32).reshape(shape)
    return nib.Nifti1Image(volume, np.eye(4)).to_bytes()


NIFTI = small_nifti()


@st.composite
def nifti_files(draw) -> bytes:
    """Random bytes, or a small real volume whose header fields or body were tampered with."""
    kind = draw(st.sampled_from(["random", "header", "cut", "flip"]))
    if kind == "random":
        return draw(st.binary(max_size=600))
    content = bytearray(NIFTI)
    if kind == "cut":
        return bytes(content[: draw(st.integers(0, len(content) - 1))])
    if kind == "flip":
        at = draw(st.integers(0, len(content) - 1))
        content[at] ^= draw(st.integers(1, 255))
        return bytes(content)
    # header fields: dim[0..7] at 40 (int16), datatype at 70, bitpix at 72, vox_offset at 108,
    # scl_slope/scl_inter at 112/116 (float32)
    for _ in range(draw(st.integers(1, 3))):
        field = draw(st.sampled_from(["dim", "datatype", "bitpix", "vox_offset", "scl"]))
        if field == "dim":
            index = draw(st.integers(0, 7))
            struct.pack_into("<h", content, 40 + 2 * index, draw(st.integers(-(2**15), 2**15 - 1)))
        elif field in ("datatype", "bitpix"):
            struct.pack_into(
                "<h",
                content,
                70 if field == "datatype" else 72,
                draw(
                    st.sampled_from([0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1536, 2304, 7])
                ),
            )
        elif field == "vox_offset":
            struct.pack_into("<f", content, 108, draw(st.floats(width=32)))
        else:
            struct.pack_into(
                "<ff", content, 112, draw(st.floats(width=32)), draw(st.floats(width=32))
            )
    return bytes(content)


@FUZZ
@given(nifti_files(), st.booleans())
def test_damaged_nifti_is_a_data_error_or_a_valid_volume(content, compress):
    with scratch_dir() as folder:
        path = folder / ("volume.nii.gz" if compress else "volume.nii")
        path.write_bytes(gzip.compress(content) if compress else content)
        config = DataConfig(
            dataset="nifti",
            path=str(path),
            resolution=16,
            cache=False,
            options={"nifti_min_foreground": 0.0},
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                data = load_images(config)
            except DataError as exc:
                one_line(exc)
                return
    assert (
        data.images.dtype == torch.uint8 and data.images.shape[1:] == (1, 16, 16) and len(data) > 0
    )


@pytest.mark.parametrize("content", [b"", b"\x00" * 352, os.urandom(2000)])
def test_random_bytes_named_nifti_are_a_data_error(tmp_path, content):
    for name in ("v.nii", "v.nii.gz"):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DataError) as caught:
            load_images(DataConfig(dataset="nifti", path=str(tmp_path / name), cache=False))
        assert name in one_line(caught.value)


def test_nifti_with_an_empty_axis_is_a_data_error(tmp_path):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((0, 4, 4), np.float32), np.eye(4)), tmp_path / "empty.nii")
    with pytest.raises(DataError) as caught:
        load_images(DataConfig(dataset="nifti", path=str(tmp_path / "empty.nii"), cache=False))
    assert "empty.nii" in one_line(caught.value)


@FEW
@given(st.floats(0.0, 0.999))
def test_truncated_head_volume_is_a_data_error(head_volume, fraction):
    # a phantom T1 head, .nii.gz (conftest.py, "brain phantoms")
    content = head_volume.read_bytes()
    with scratch_dir() as folder:
        path = folder / head_volume.name
        path.write_bytes(content[: int(fraction * len(content))])
        with pytest.raises(DataError) as caught:
            load_images(DataConfig(dataset="nifti", path=str(path), resolution=32, cache=False))
        assert head_volume.name in one_line(caught.value)


# ==== checkpoints and generator files =============================================================
@st.composite
def junk_files(draw) -> bytes:
    """Random bytes, some behind a zip or safetensors-like prefix so that the parsers engage."""
    body = draw(st.binary(max_size=400))
    prefix = draw(
        st.sampled_from(
            [
                b"",
                b"PK\x03\x04",
                b"\x80\x02",
                b"\x80\x04\x95",
                struct.pack("<Q", len(body)) + b"{",
                struct.pack("<Q", 2) + b"{}",
            ]
        )
    )
    return prefix + body


@FUZZ
@given(junk_files())
def test_random_bytes_are_never_a_checkpoint_or_a_generator(cli, error_line, content):
    with scratch_dir() as folder:
        for name in ("ckpt-00000001.pt", "generator.safetensors"):
            path = folder / name
            path.write_bytes(content)
            loaders = [load_generator] + (
                [load_checkpoint] if name.endswith(".pt") else [read_generator_file]
            )
            for loader in loaders:
                with pytest.raises(CheckpointError) as caught:
                    loader(path)
                assert str(path) in one_line(caught.value)
            code, _, err = cli("sample", str(path), "--out", str(folder / "s.png"))
            assert code == 2 and str(path) in error_line(
                err, alone=True
            )  # the error, and nothing else


@FUZZ
@given(st.data())
def test_damaged_generator_file_is_refused_or_loads_the_same_model(generator_file, data):
    content = bytearray(generator_file.read_bytes())
    kind = data.draw(st.sampled_from(["cut", "flip", "header-flip"]))
    if kind == "cut":
        content = content[: data.draw(st.integers(0, len(content) - 1))]
    else:
        header_end = 8 + int.from_bytes(content[:8], "little")
        at = data.draw(
            st.integers(0, header_end - 1)
            if kind == "header-flip"
            else st.integers(0, len(content) - 1)
        )
        content[at] ^= data.draw(st.integers(1, 255))
    with scratch_dir() as folder:
        path = folder / "generator.safetensors"
        path.write_bytes(bytes(content))
        try:
            _, info = load_generator(path)
        except GanforgeError as exc:
            one_line(exc)
            return
    assert kind != "cut" and info.arch == "dcgan" and info.image_shape == (1, 32, 32)


INFO_FIELDS = [f.name for f in dataclasses.fields(GeneratorInfo)]


@FUZZ
@given(
    st.dictionaries(st.sampled_from(INFO_FIELDS + ["extra"]), VALUES, max_size=4),
    st.sets(st.sampled_from(INFO_FIELDS), max_size=2),
)
def test_forged_generator_metadata_is_refused(generator_file, changes, dropped):
    """Whatever the metadata claims (any arch, size, options, noise), loading fails with a
    one-line GanforgeError, or the claim is the true one and the model loads."""
    from safetensors.torch import load as st_load
    from safetensors.torch import save as st_save

    raw = generator_file.read_bytes()
    metadata = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])["__metadata__"]
    info = {k: v for k, v in json.loads(metadata["info"]).items() if k not in dropped}
    info.update(changes)
    try:
        metadata["info"] = json.dumps(info)
    except (TypeError, ValueError):
        metadata["info"] = repr(info)  # not even JSON
    with scratch_dir() as folder:
        path = folder / "generator.safetensors"
        path.write_bytes(st_save(st_load(raw), metadata=metadata))
        try:
            _, loaded = load_generator(path)
        except GanforgeError as exc:
            one_line(exc)
            return
    assert (loaded.arch, loaded.latent_dim, loaded.image_shape) == ("dcgan", 100, (1, 32, 32))


FORGEABLE = ["config", "image_shape", "dataset", "step", "generator", "ema", "format"]


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _forgery_is_harmless(key: str, value: object, true_state: dict) -> bool:
    """Whether a forged field still tells the truth about the stored generator, so that
    loading it is correct: a free-text dataset name, a plausible step, "no EMA"."""
    if key == "dataset":
        return isinstance(value, str)
    if key == "step":
        return _whole(value) and value >= 0
    if key == "ema":
        return value is None or (isinstance(value, dict) and not value)  # no EMA kept
    if key == "image_shape":
        return (
            isinstance(value, (list, tuple))
            and all(map(_whole, value))
            and list(value) == [1, 32, 32]
        )
    return isinstance(value, str) and value == true_state[key]  # format, config: only the original


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(FORGEABLE),
        st.one_of(VALUES, st.just(torch.zeros(3)), st.just({"net.0.weight": torch.zeros(2)})),
        min_size=1,
        max_size=3,
    )
)
def test_forged_training_checkpoint_is_refused(tmp_path, changes):
    """A training checkpoint whose fields were forged is refused with one line, unless every
    forged field is still true to the stored generator; then exactly that generator loads."""
    generator, _ = build_models("dcgan", 100, (1, 32, 32), {"width": 0.25})
    config = load_preset("demo")
    state = {
        "format": FORMAT,
        "config": config.to_json(),
        "arch": "dcgan",
        "image_shape": [1, 32, 32],
        "dataset": "noise/train",
        "step": 5,
        "generator": generator.state_dict(),
        "ema": {},
    }
    harmless = all(_forgery_is_harmless(key, value, state) for key, value in changes.items())
    state.update(changes)
    path = tmp_path / "ckpt-00000005.pt"
    torch.save(state, path)
    try:
        loaded, info = load_generator(path)
    except GanforgeError as exc:
        one_line(exc)
        return
    assert harmless, f"a forged checkpoint loaded: {sorted(changes)}"
    assert (info.arch, info.latent_dim, info.image_shape, info.options) == (
        "dcgan",
        100,
        (1, 32, 32),
        {"width": 0.25},
    )
    assert (info.dataset, info.step) == (state["dataset"], state["step"])
    weights = loaded.state_dict()
    assert all(torch.equal(weights[k], v) for k, v in generator.state_dict().items())
