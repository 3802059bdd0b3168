"""Shared fixtures: real MNIST from ../shared, tiny and fast, and an offline environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
MNIST_DIR = SHARED / "mnist"


@pytest.fixture(autouse=True)
def _offline_and_private_cache(tmp_path_factory, monkeypatch):
    """No test touches the network or the user's real cache."""
    monkeypatch.setenv("GANFORGE_OFFLINE", "1")
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("GANFORGE_DATA", raising=False)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("real MNIST not found beside the repo (../shared/datasets/mnist)")
    return MNIST_DIR


@pytest.fixture(scope="session")
def mnist_test_split(mnist_dir):
    """The real 10,000-image MNIST test split, loaded once."""
    from ganforge.data.idx import load_idx_dataset
    os.environ.setdefault("GANFORGE_OFFLINE", "1")
    return load_idx_dataset("mnist", "test", str(mnist_dir))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny CPU kernels run faster on one thread than two threads fighting other processes."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
