"""The command line as a user meets it: bad input gets one clear line, never a traceback.

Every case runs ``ganforge.cli.main`` in this process (the ``cli`` fixture); one smoke test
runs the real program to show that the exit status and the error line survive the trip
through ``python -m ganforge``.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys

import pytest
import torch

NO_CUDA_DEVICE = ["--device", "cuda"] if not torch.cuda.is_available() else ["--device", "tpu"]


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--preset", "mnist"], ["unknown preset 'mnist'", "mnist-dcgan"]),
        (["--model", "vgg"], ["unknown model 'vgg'", "dcgan-mnist"]),
        (["--batch-size", "0"], ["batch_size must be a positive number"]),
        (["--lr", "-0.001"], ["optim.lr_g must be a positive number"]),
        (["--latent-dim", "0"], ["model.latent_dim must be a positive number"]),
        (["--set", "epochs"], ["--set wants KEY=VALUE"]),
        (["--set", "colour=blue"], ["unknown setting 'colour'"]),
        (NO_CUDA_DEVICE, ["device"]),
        (["--device", "cpu", "--precision", "fp16"], ["precision fp16 needs a CUDA GPU"]),
        (
            ["--preset", "mnist-gan", "--config", "x.yaml"],
            ["only one of --preset, --config and --resume"],
        ),
    ],
)
def test_bad_train_settings_are_one_line_errors(cli, user_error, args, fragments, tmp_path):
    result = cli("train", *args, "--out", tmp_path)
    user_error(result, *fragments)
    assert list(tmp_path.iterdir()) == []  # nothing was created for a run that never started


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--loss", "foo"], "'foo'"),
        (["--model", "vgg"], "'vgg'"),
        (["--dataset", "nosuch"], "'nosuch'"),
        (["--resolution", "100"], "100"),
        (["--set", "model.options.widht=0.5"], "widht"),
        (["--dataset", "nifti", "--set", "data.nifti_axis=5"], "nifti_axis"),
        (["--device", "cpu", "--precision", "fp16"], "precision fp16 needs a CUDA GPU"),
    ],
)
def test_dry_run_rejects_what_training_would_reject(cli, user_error, args, fragment, tmp_path):
    """--dry-run checks everything a run would: it answers "this would fail" before any work."""
    result = cli("train", *args, "--out", tmp_path, "--dry-run")
    assert result.out == ""
    user_error(result, fragment)


def test_set_on_a_group_changes_only_the_named_settings(cli):
    result = cli(
        "train",
        "--preset",
        "mnist-gan",
        "--set",
        "optim.lr_d=0.003",
        "--set",
        "optim.beta1=0.7",
        "--set",
        "optim={lr_g: 0.001}",
        "--dry-run",
    )
    assert result.code == 0, result.err
    optim = json.loads(result.out)["optim"]
    assert (optim["lr_g"], optim["lr_d"], optim["beta1"]) == (
        0.001,
        0.003,
        0.7,
    )  # merged, not reset


def test_bf16_on_a_cpu_without_native_bf16_trains_and_says_it_will_be_slow(
    cli, tmp_path, monkeypatch
):
    from ganforge.training import runtime

    # the detection's input: a CPU whose flags name no bf16 unit (AVX2 only)
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    result = cli(
        "train",
        *("--device", "cpu", "--precision", "bf16", "--iterations", "2", "--batch-size", "8"),
        *("--limit", "64", "--sample-every", "2", "--checkpoint-every", "2", "--quiet"),
        *("--out", tmp_path, "--name", "slow"),
    )
    assert result.code == 0, result.err
    assert "no native bf16" in result.err and "will be slower than fp32" in result.err
    assert "bf16 autocast" in result.err  # the start line names the path taken
    assert (tmp_path / "slow" / "generator.safetensors").is_file()


def test_sampling_a_run_that_does_not_exist(cli, user_error):
    user_error(cli("sample", "no/such/run"), "not found")


def test_missing_dataset_names_the_places_searched(cli, user_error, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("train", "--dataset", "fashion-mnist", "--data", empty, "--out", tmp_path / "runs")
    user_error(result, "fashion-mnist train split not found", str(empty))
    assert not (tmp_path / "runs").exists()  # no run folder for a run that could not start


def test_a_data_path_that_does_not_exist_is_named(cli, user_error, tmp_path):
    result = cli("train", "--data", tmp_path / "nothing", "--out", tmp_path / "runs")
    user_error(result, str(tmp_path / "nothing"))
    assert not (tmp_path / "runs").exists()


def test_corrupt_idx_file_is_named(cli, user_error, mnist_dir, tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        shutil.copy(mnist_dir / name, folder / name)
    with gzip.open(folder / "train-labels-idx1-ubyte.gz", "wb") as handle:
        handle.write(b"\x00\x00\x08\x01\x00\x00\xea\x60" + b"\x01" * 100)  # 60,000 labels? 100
    result = cli("train", "--data", folder, "--out", tmp_path / "runs")
    user_error(result, "train-labels-idx1-ubyte.gz", "truncated")


def test_sampling_a_file_that_is_not_a_checkpoint(cli, user_error, tmp_path):
    fake = tmp_path / "model.pt"
    fake.write_text("hello")
    user_error(cli("sample", fake), "not a readable checkpoint", str(fake))
    fake_st = tmp_path / "model.safetensors"
    fake_st.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    user_error(cli("sample", fake_st), str(fake_st))


def test_dry_run_prints_the_resolved_config(cli, tmp_path):
    result = cli(
        "train",
        "--preset",
        "mnist-dcgan",
        "--epochs",
        "3",
        "--lr-g",
        "0.001",
        "--out",
        tmp_path,
        "--dry-run",
    )
    assert result.code == 0, result.err
    config = json.loads(result.out)
    assert config["schedule"]["epochs"] == 3 and config["optim"]["lr_g"] == 0.001
    assert config["model"]["arch"] == "dcgan-mnist"  # the preset's other settings are kept
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing


def test_presets_command_lists_recipes_and_models(cli):
    result = cli("presets")
    assert result.code == 0, result.err
    for name in ("demo", "mnist-gan", "mnist-dcgan", "dcgan-mnist", "bce"):
        assert name in result.out


def test_version_is_printed(cli):
    from ganforge import __version__

    result = cli("--version")
    assert result.code == 0 and f"ganforge {__version__}" in result.out


def test_the_real_program_exits_2_with_one_line(tmp_path):
    """One real process: `python -m ganforge` turns a user error into status 2 and one line."""
    done = subprocess.run(
        [sys.executable, "-m", "ganforge", "sample", str(tmp_path / "no-run")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ganforge: error: "), done.stderr
    assert "not found" in lines[0] and done.stdout == ""
