"""Shared fixtures and helpers: real MNIST from ../shared, tiny runs, the CLI in process.

Helpers that tests use as values (config builders, the one-line-error check) are fixtures
that return a function, so test files need no import from this module and pytest's import
mode does not matter. Everything runs on one CPU thread (see ``pytest_configure``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
MNIST_DIR = SHARED / "mnist"

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
    from ganforge import train

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
            data=images,
            resume=resume,
            show_progress=False,
            allow_data_change=allow_data_change,
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
