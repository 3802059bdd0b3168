"""Runs that survive: SIGKILL and resume is bitwise, SIGTERM stops cleanly, divergence keeps
the last good state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ganforge import RunOptions, load_preset, train
from ganforge.artefacts.files import write_with
from ganforge.checkpoint import load_checkpoint, save_checkpoint
from ganforge.errors import TrainingDiverged

ITERATIONS = 400
TINY_GAN = [
    "--preset",
    "mnist-gan",
    "--iterations",
    str(ITERATIONS),
    "--limit",
    "512",
    "--checkpoint-every",
    "10",
    "--sample-every",
    "100",
    "--set",
    "log_every=10",
    "--set",
    "deterministic=true",
    "--set",
    "model.options.g_hidden=[32,64]",
    "--set",
    "model.options.d_hidden=[64,32]",
]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ganforge", "train", "--quiet", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "GANFORGE_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _wait_for_checkpoint(run: Path, process: subprocess.Popen, at_least: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        steps = (
            [int(p.stem.split("-")[1]) for p in (run / "checkpoints").glob("ckpt-*.pt")]
            if run.exists()
            else []
        )
        if steps and max(steps) >= at_least:
            return
        time.sleep(0.01)
    pytest.fail("the run finished or stalled before it could be interrupted")


def _final_state(run: Path) -> dict:
    return load_checkpoint(run / "checkpoints" / f"ckpt-{ITERATIONS:08d}.pt")


def _assert_same_weights(a: Path, b: Path) -> None:
    first, second = load_file(a / "generator.safetensors"), load_file(b / "generator.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    state_a, state_b = _final_state(a), _final_state(b)
    for part in ("discriminator", "generator"):
        assert all(torch.equal(state_a[part][k], state_b[part][k]) for k in state_a[part])
    moments_a = [s["exp_avg"] for s in state_a["opt_d"]["state"].values()]
    moments_b = [s["exp_avg"] for s in state_b["opt_d"]["state"].values()]
    assert all(torch.equal(x, y) for x, y in zip(moments_a, moments_b))


def _losses(run: Path) -> list[tuple]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["d_loss"], r["g_loss"]) for r in records if "d_loss" in r]


@pytest.fixture(scope="module")
def reference_run(mnist_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    done = subprocess.run(
        _cli(*TINY_GAN, "--data", str(mnist_dir), "--out", str(out), "--name", "ref"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return out / "ref"


@pytest.mark.slow
def test_sigkill_then_resume_ends_bitwise_equal(reference_run, mnist_dir, tmp_path):
    run = tmp_path / "killed"
    process = subprocess.Popen(
        _cli(*TINY_GAN, "--data", str(mnist_dir), "--out", str(tmp_path), "--name", "killed"),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for_checkpoint(run, process, at_least=40)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run / "generator.safetensors").exists(), "the kill came too late to test anything"
    resumed = subprocess.run(
        _cli("--resume", str(run)), env=_env(), capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    _assert_same_weights(reference_run, run)
    assert _losses(run) == _losses(reference_run)  # the log has no gap and no duplicate


@pytest.mark.slow
def test_sigterm_stops_after_saving_and_resume_finishes_identically(
    reference_run, mnist_dir, tmp_path
):
    run = tmp_path / "stopped"
    process = subprocess.Popen(
        _cli(*TINY_GAN, "--data", str(mnist_dir), "--out", str(tmp_path), "--name", "stopped"),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_checkpoint(run, process, at_least=20)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, (
        stderr
    )  # the shell's code for a stop by SIGTERM
    assert "stopped (checkpoint saved; continue with: ganforge train --resume" in stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped_early"] and summary["steps"] < ITERATIONS
    assert (run / "checkpoints" / f"ckpt-{summary['steps']:08d}.pt").is_file()
    resumed = subprocess.run(
        _cli("--resume", str(run)), env=_env(), capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_weights(reference_run, run)


@pytest.mark.slow
def test_resume_skips_a_damaged_latest_checkpoint(reference_run, tmp_path):
    import shutil

    run = tmp_path / "damaged"
    shutil.copytree(reference_run, run)
    for later in sorted((run / "checkpoints").glob("ckpt-*.pt"))[-2:-1]:
        later.unlink()
    latest = sorted((run / "checkpoints").glob("ckpt-*.pt"))[-1]
    latest.write_bytes(
        latest.read_bytes()[:1000]
    )  # cut short, as by a disk failure outside ganforge
    resumed = subprocess.run(
        _cli("--resume", str(run), "--iterations", str(ITERATIONS + 10)),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "skipping damaged checkpoint" in resumed.stderr
    assert (run / "checkpoints" / f"ckpt-{ITERATIONS + 10:08d}.pt").is_file()


def test_divergence_stops_with_the_last_good_checkpoint_intact(mnist_test_split, tmp_path):
    config = load_preset("mnist-gan").with_overrides(
        {
            "iterations": 10,
            "out_dir": str(tmp_path),
            "run_name": "diverge",
            "log_every": 1,
            "checkpoint_every": 5,
            "loss": "lsgan",
            "model.options": {"g_hidden": [32], "d_hidden": [32]},
        }
    )
    data = mnist_test_split.subset(256)
    train(config, run=RunOptions(data=data, show_progress=False))
    exploding = config.with_overrides({"iterations": 20, "optim.lr_g": 1e20, "optim.lr_d": 1e20})
    with pytest.raises(
        TrainingDiverged, match="iteration 11.*ckpt-00000010.pt, is intact.*--resume"
    ):
        train(exploding, run=RunOptions(data=data, resume=True, show_progress=False))
    survivors = sorted((tmp_path / "diverge" / "checkpoints").glob("ckpt-*.pt"))
    assert survivors[-1].name == "ckpt-00000010.pt"
    state = load_checkpoint(survivors[-1])
    assert all(torch.isfinite(t).all() for t in state["generator"].values())


def test_failed_write_leaves_the_previous_file_intact(tmp_path):
    target = tmp_path / "ckpt.pt"
    target.write_bytes(b"previous good checkpoint")

    def disk_fills_up(handle):
        handle.write(b"half of a new checkpoint")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_with(target, disk_fills_up)
    assert target.read_bytes() == b"previous good checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary file left behind


def test_artefacts_get_ordinary_file_permissions(tmp_path):
    from ganforge.artefacts.files import write_text

    write_text(tmp_path / "report.html", "<html></html>")
    mode = (tmp_path / "report.html").stat().st_mode & 0o777
    assert mode & 0o044, oct(
        mode
    )  # readable by group and others under the usual umask, not mkstemp's 0600


def test_resume_refuses_data_that_changed_unless_asked(train_tiny, tiny_images):
    from ganforge.errors import CheckpointError

    first = train_tiny("moved", iterations=4, data=tiny_images(seed=0))
    with pytest.raises(CheckpointError, match="the data changed since ckpt-00000004.pt"):
        train_tiny("moved", iterations=6, data=tiny_images(seed=1), resume=True)
    result = train_tiny(
        "moved", iterations=6, data=tiny_images(seed=1), resume=True, allow_data_change=True
    )
    assert result.steps == 6 and first.run_dir == result.run_dir


def test_resuming_a_finished_run_says_there_is_nothing_to_do(train_tiny):
    finished = train_tiny("done", iterations=4)
    summary = (finished.run_dir / "summary.json").read_text()
    again = train_tiny("done", iterations=4, resume=True)
    assert again.nothing_to_do and again.steps == 4 and again.images_per_second == 0.0
    assert (finished.run_dir / "summary.json").read_text() == summary  # nothing was rewritten


# config.json of a run made just before the settings' groups (tests/test_config.py says how)
CONFIG_BEFORE_GROUPS = Path(__file__).parent / "fixtures" / "config-before-groups.json"


def test_a_run_and_its_checkpoints_from_before_the_groups_sample_and_resume(cli, tmp_path):
    """A run folder as the flat version wrote it (its config.json, and the config inside each
    checkpoint) is sampled and resumed; the resumed run records only what the command changed."""
    flat = {
        **json.loads(CONFIG_BEFORE_GROUPS.read_text(encoding="utf-8")),
        "out_dir": str(tmp_path),
        "run_name": "old",
    }
    (tmp_path / "old.json").write_text(json.dumps(flat))
    assert cli("train", "--config", tmp_path / "old.json", "--quiet").code == 0
    run = tmp_path / "old"
    text = json.dumps(flat, indent=2)
    (run / "config.json").write_text(text)
    for path in (run / "checkpoints").glob("ckpt-*.pt"):
        save_checkpoint(path, {**load_checkpoint(path), "config": text})
    for source in (run, run / "checkpoints" / "ckpt-00000002.pt"):
        code, out, err = cli("sample", source, "--count", "4", "--out", tmp_path / "s.png")
        assert code == 0, err
    code, out, err = cli("train", "--resume", run, "--iterations", "3", "--quiet")
    assert code == 0, err
    changes = (run / "config-changes.jsonl").read_text().splitlines()
    assert json.loads(changes[-1]) == {"step": 2, "changed": {"schedule.iterations": [2, 3]}}
    resumed = json.loads((run / "config.json").read_text())
    assert resumed["schedule"]["iterations"] == 3 and resumed["regularise"]["r1_gamma"] == 0.5
    assert resumed["data"]["options"] == {"stacks": 100, "stack_seed": 3}
