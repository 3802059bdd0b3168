"""The command line as a user meets it: bad input gets one clear line, never a traceback."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def ganforge(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "GANFORGE_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "ganforge", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ganforge: error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0]


@pytest.mark.parametrize("args, fragments", [
    (["train", "--preset", "mnist"], ["unknown preset 'mnist'", "mnist-dcgan"]),
    (["train", "--model", "resnet"], ["unknown model 'resnet'", "dcgan-mnist"]),
    (["train", "--batch-size", "0"], ["batch_size must be a positive number"]),
    (["train", "--lr", "-0.001"], ["optim.lr_g must be a positive number"]),
    (["train", "--latent-dim", "0"], ["model.latent_dim must be a positive number"]),
    (["train", "--set", "epochs"], ["--set wants KEY=VALUE"]),
    (["train", "--set", "colour=blue"], ["unknown setting 'colour'"]),
    (["train", "--device", "cuda"] if not __import__("torch").cuda.is_available() else ["train", "--device", "tpu"],
     ["device"]),
    (["train", "--preset", "mnist-gan", "--config", "x.yaml"], ["only one of --preset, --config and --resume"]),
    (["sample", "no/such/run"], ["not found"]),
])
def test_bad_settings_are_one_line_errors(args, fragments, tmp_path):
    assert_user_error(ganforge(*args, "--out", str(tmp_path)) if args[0] == "train" else ganforge(*args), *fragments)


def test_missing_dataset_names_the_places_searched(tmp_path):
    result = ganforge("train", "--dataset", "fashion-mnist", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path))
    assert_user_error(result, "fashion-mnist train split not found", str(tmp_path / "nothing"))


def test_corrupt_idx_file_is_named(mnist_dir, tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        shutil.copy(mnist_dir / name, folder / name)
    with gzip.open(folder / "train-labels-idx1-ubyte.gz", "wb") as handle:
        handle.write(b"\x00\x00\x08\x01\x00\x00\xea\x60" + b"\x01" * 100)  # says 60,000 labels, holds 100
    result = ganforge("train", "--data", str(folder), "--out", str(tmp_path / "runs"))
    assert_user_error(result, "train-labels-idx1-ubyte.gz", "truncated")


def test_sampling_a_file_that_is_not_a_checkpoint(tmp_path):
    fake = tmp_path / "model.pt"
    fake.write_text("hello")
    assert_user_error(ganforge("sample", str(fake)), "not a readable checkpoint")
    fake_st = tmp_path / "model.safetensors"
    fake_st.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    assert_user_error(ganforge("sample", str(fake_st)))


def test_dry_run_prints_the_resolved_config():
    result = ganforge("train", "--preset", "mnist-dcgan", "--epochs", "3", "--lr-g", "0.001", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert '"epochs": 3' in result.stdout and '"lr_g": 0.001' in result.stdout


def test_presets_command_lists_recipes_and_models():
    result = ganforge("presets")
    assert result.returncode == 0
    for name in ("demo", "mnist-gan", "mnist-dcgan", "dcgan-mnist", "bce"):
        assert name in result.stdout
