"""MNIST / Fashion-MNIST: finding, downloading, validating and reading the IDX files."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import shutil
import threading
import warnings
from dataclasses import replace

import pytest
import torch

from ganforge.config import DataConfig
from ganforge.data import load_images
from ganforge.data.idx import MNIST, IdxDataset, load_idx_dataset
from ganforge.errors import DataError


def test_reads_idx_files_with_labels_and_shape(mnist_dir, mnist_test_split):
    data = load_idx_dataset("mnist", "test", str(mnist_dir))
    assert data.images.shape == (2_500, 1, 28, 28) and data.images.dtype == torch.uint8
    assert torch.equal(data.images, mnist_test_split.images[2_500:])
    assert torch.equal(data.labels, mnist_test_split.labels[2_500:])
    assert data.name == "mnist/test" and data.class_names == MNIST.class_names


def test_train_split_is_found_without_a_path_where_ganforge_data_points(mnist_test_split):
    data = load_images(DataConfig(dataset="mnist", allow_bundled_slice=False))
    assert data.name == "mnist/train" and len(data) == 2_500
    assert torch.equal(data.labels, mnist_test_split.labels[:2_500])


@pytest.mark.data
def test_reads_real_mnist_with_labels_and_shape(real_data):
    data = load_idx_dataset("mnist", "test", str(real_data("mnist")))
    assert data.images.shape == (10_000, 1, 28, 28) and data.images.dtype == torch.uint8
    assert data.labels[:5].tolist() == [7, 2, 1, 0, 4]  # the well-known first test labels
    assert torch.bincount(data.labels).tolist()[0] == 980
    assert data.name == "mnist/test"


@pytest.mark.data
def test_train_split_found_in_shared_copy_and_matches_documented_counts(real_data):
    data = load_images(DataConfig(dataset="mnist", path=str(real_data("mnist"))))
    assert len(data) == 60_000
    assert torch.bincount(data.labels).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]


def test_resolution_and_channels_are_applied(mnist_dir):
    data = load_images(
        DataConfig(
            dataset="mnist", path=str(mnist_dir), split="test", limit=10, resolution=32, channels=3
        )
    )
    assert data.images.shape == (10, 3, 32, 32)


def _copy_split(src, dst, split="t10k"):
    dst.mkdir(parents=True, exist_ok=True)
    for kind in ("images-idx3", "labels-idx1"):
        shutil.copy(src / f"{split}-{kind}-ubyte.gz", dst / f"{split}-{kind}-ubyte.gz")
    return dst


def test_truncated_file_is_reported_by_name(mnist_dir, tmp_path):
    folder = _copy_split(mnist_dir, tmp_path / "m")
    raw = gzip.open(folder / "t10k-images-idx3-ubyte.gz").read()
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz.*truncated"):
        load_idx_dataset("mnist", "test", str(folder))


def test_wrong_magic_number_is_reported(mnist_dir, tmp_path):
    folder = _copy_split(mnist_dir, tmp_path / "m")
    shutil.copy(folder / "t10k-labels-idx1-ubyte.gz", folder / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(DataError, match="wrong magic number"):
        load_idx_dataset("mnist", "test", str(folder))


def test_corrupt_gzip_is_reported(mnist_dir, tmp_path):
    folder = _copy_split(mnist_dir, tmp_path / "m")
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="corrupt or truncated"):
        load_idx_dataset("mnist", "test", str(folder))


def test_missing_dataset_names_every_place_searched(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    nowhere = IdxDataset("fashion-mnist", (), {}, (str(tmp_path / "no-such-copy"),), "install it")
    with pytest.raises(DataError) as info:
        load_idx_dataset(nowhere, "train")
    message = str(info.value)
    assert "no-such-copy" in message and "cache" in message and "install it" in message


def test_explicit_path_that_lacks_the_files_is_an_error_not_a_fallback(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "empty")):
        load_images(DataConfig(dataset="mnist", path=str(tmp_path / "empty")))


def test_bundled_slice_is_the_announced_fallback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GANFORGE_DATA")
    nothing_local = replace(MNIST, local_copies=())
    with pytest.warns(UserWarning, match="5,000-digit slice"):
        data = load_idx_dataset(nothing_local, "train")
    assert data.images.shape == (5000, 1, 28, 28) and data.name == "mnist/bundled-slice"
    assert set(data.labels.unique().tolist()) == set(range(10))


@pytest.fixture()
def no_local_mnist(tmp_path, monkeypatch):
    """A machine without MNIST: local copies hidden (cwd and the repo root moved), downloads off."""
    from ganforge.data import locations

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(locations, "REPO_ROOT", tmp_path / "repo")
    monkeypatch.delenv("GANFORGE_DATA")
    monkeypatch.setenv("GANFORGE_OFFLINE", "1")


def test_refused_slice_stops_with_where_it_looked_and_how_to_get_mnist(no_local_mnist):
    config = DataConfig(dataset="mnist", allow_bundled_slice=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no slice warning: nothing falls back
        with pytest.raises(DataError) as info:
            load_images(config)
    message = str(info.value)
    assert "\n" not in message and message.startswith("mnist train split not found: looked in")
    assert "datasets/mnist" in message and "GANFORGE_OFFLINE=1" in message
    assert "download the four IDX gz files" in message
    assert "--set data.allow_bundled_slice=true" in message and "5,000-digit slice" in message


def test_allowed_slice_is_used_when_full_mnist_is_missing(no_local_mnist):
    with pytest.warns(UserWarning, match="5,000-digit slice"):
        data = load_images(DataConfig(dataset="mnist", limit=10))
    assert data.name == "mnist/bundled-slice" and data.images.shape == (10, 1, 28, 28)


def test_a_missing_data_path_is_an_error_whatever_the_slice_setting(no_local_mnist, tmp_path):
    for allow in (True, False):
        with pytest.raises(DataError, match="looked in " + str(tmp_path / "gone")):
            load_images(
                DataConfig(dataset="mnist", path=str(tmp_path / "gone"), allow_bundled_slice=allow)
            )


@pytest.fixture()
def mirror(mnist_dir, tmp_path):
    """A real HTTP server on loopback serving the MNIST test split, like a public mirror."""
    root = _copy_split(mnist_dir, tmp_path / "mirror")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_download_verifies_checksum_and_fills_the_cache(mirror, tmp_path, monkeypatch):
    root, url = mirror
    monkeypatch.setenv("GANFORGE_OFFLINE", "0")
    monkeypatch.delenv("GANFORGE_DATA")
    monkeypatch.chdir(tmp_path)
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in root.iterdir()}
    served = IdxDataset("mnist", (url,), md5, (), "")
    data = load_idx_dataset(served, "test", allow_bundled=False)
    # every image the mirror serves (conftest's test split: 2,500 real digits)
    assert len(data) == 2_500
    from ganforge.data.locations import cache_root

    cache = cache_root() / "datasets" / "mnist"
    assert data.source == str(cache)
    assert sorted(p.name for p in cache.iterdir()) == [
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    offline_again = replace(served, mirrors=("http://127.0.0.1:9/",))
    assert (
        len(load_idx_dataset(offline_again, "test", allow_bundled=False)) == 2_500
    )  # from the cache


def test_download_with_wrong_checksum_keeps_nothing(mirror, tmp_path, monkeypatch):
    root, url = mirror
    monkeypatch.setenv("GANFORGE_OFFLINE", "0")
    monkeypatch.delenv("GANFORGE_DATA")
    monkeypatch.chdir(tmp_path)
    bad = IdxDataset(
        "mnist", (url,), {p.name: "0" * 32 for p in root.iterdir()}, (), "get it elsewhere"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match="get it elsewhere"):
            load_idx_dataset(bad, "test", allow_bundled=False)
    from ganforge.data.locations import cache_root

    leftovers = list((cache_root() / "datasets" / "mnist").glob("*"))
    assert leftovers == []
