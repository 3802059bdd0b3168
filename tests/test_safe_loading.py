"""Loading never runs code, and a checkpoint from another model says what does not fit.

The malicious files here are real: each test first proves, with an *unsafe* load, that its
file does run the payload (creates a marker file), then shows that ganforge refuses the
same file with a one-line CheckpointError and that the marker never appears.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import pickle
import shlex
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from ganforge import RunOptions, train
from ganforge.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from ganforge.errors import CheckpointError
from ganforge.generate import generate, load_generator


# ---- payloads ------------------------------------------------------------------------------------
class RunsShellCommand:
    """Unpickling this calls os.system("touch MARKER")."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


class OpensFileForWriting:
    """Unpickling this calls open(MARKER, "w"), which creates the file: no shell needed."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


PAYLOADS = {"os.system": RunsShellCommand, "open": OpensFileForWriting}
FORMATS = ("raw-pickle", "torch-legacy", "torch-zip")


def write_malicious(path: Path, fmt: str, payload: str, marker: Path) -> Path:
    """A file that looks like a ganforge checkpoint and carries a code-running payload."""
    state = {
        "format": FORMAT,
        "step": 7,
        "generator": {"net.0.weight": torch.zeros(2, 2)},
        "config": "{}",
        "payload": PAYLOADS[payload](marker),
    }
    if fmt == "raw-pickle":
        path.write_bytes(pickle.dumps(state, protocol=2))
    elif fmt == "torch-legacy":
        torch.save(state, path, _use_new_zipfile_serialization=False)
    else:
        torch.save(state, path)
        with zipfile.ZipFile(path) as archive:  # the payload sits in the archive's data.pkl
            pickled = next(archive.read(n) for n in archive.namelist() if n.endswith("data.pkl"))
        assert b"system" in pickled or b"open" in pickled
    return path


def assert_payload_is_live(path: Path, marker: Path) -> None:
    """Control: an unsafe load of the file really runs the payload."""
    with contextlib.suppress(Exception):
        torch.load(path, weights_only=False)
    assert marker.exists(), "the crafted file should run its payload when unpickled unsafely"
    marker.unlink()


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
@pytest.mark.parametrize("fmt", FORMATS)
def test_malicious_checkpoint_is_refused_and_runs_nothing(cli, error_line, tmp_path, fmt, payload):
    marker = tmp_path / "pwned"
    path = write_malicious(tmp_path / "ckpt-00000007.pt", fmt, payload, marker)
    assert_payload_is_live(path, marker)

    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    assert "refused" in message  # says why: not plain tensors and data, not "file damaged"
    assert not marker.exists()

    code, _, stderr = cli("sample", str(path), "--out", str(tmp_path / "s.png"))
    assert code == 2 and "refused" in error_line(stderr)
    assert not marker.exists() and not (tmp_path / "s.png").exists()


def test_malicious_checkpoint_in_a_run_folder_is_refused_by_sample(cli, error_line, tmp_path):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    write_malicious(run / "checkpoints" / "ckpt-00000010.pt", "torch-zip", "os.system", marker)
    code, _, stderr = cli("sample", str(run), "--out", str(tmp_path / "s.png"))
    assert code == 2 and "ckpt-00000010.pt" in error_line(stderr)
    assert not marker.exists()


def test_environment_cannot_switch_the_safe_loader_off(cli, error_line, tmp_path, monkeypatch):
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 disables torch's safe loading where weights_only is not
    given (torch reads it at each load); ganforge passes it explicitly, so sample still refuses."""
    marker = tmp_path / "pwned"
    path = write_malicious(tmp_path / "model.pt", "torch-zip", "os.system", marker)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    code, _, stderr = cli("sample", str(path), "--out", str(tmp_path / "s.png"))
    assert code == 2 and "refused" in error_line(stderr)
    assert not marker.exists()


# ---- a real run to tamper with -------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_config) -> Path:
    """The demo recipe (dcgan, width 0.25, 32x32) on 64 noise images, cut to two iterations with
    a checkpoint each: a real run folder with checkpoints and an exported generator."""
    images = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(64):
        Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(
            images / f"{i:02d}.png"
        )
    config = tiny_config(
        "demo",
        {
            "data.dataset": "folder",
            "data.path": str(images),
            "data.cache": False,
            "iterations": 2,
            "batch_size": 16,
            "checkpoint_every": 1,
            "sample_every": 2,
            "log_every": 1,
            "out_dir": str(tmp_path_factory.mktemp("runs")),
            "run_name": "tiny",
        },
    )
    return train(config, run=RunOptions(show_progress=False)).run_dir


def copy_run(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "runs" / run.name
    shutil.copytree(run, target)
    return target


def test_malicious_newest_checkpoint_is_never_resumed_from(cli, error_line, tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path)
    for good in (run / "checkpoints").glob("ckpt-*.pt"):
        good.unlink()
    marker = tmp_path / "pwned"
    write_malicious(run / "checkpoints" / "ckpt-00000009.pt", "torch-zip", "open", marker)
    code, _, stderr = cli("train", "--resume", str(run), "--quiet")
    assert code == 2 and "resume" in error_line(stderr)
    assert not marker.exists()


def rewrite_generator_info(source: Path, target: Path, **changes) -> Path:
    """A copy of an exported generator whose metadata claims other settings (same weights)."""
    raw = source.read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    metadata = header["__metadata__"]
    info = json.loads(metadata["info"])
    info.update(changes)
    metadata["info"] = json.dumps(info)
    target.write_bytes(safetensors_save(safetensors_load(raw), metadata=metadata))
    return target


def test_exported_generator_loads_and_samples(tiny_run):
    generator, info = load_generator(tiny_run / "generator.safetensors")
    assert (info.arch, info.image_shape, info.options) == ("dcgan", (1, 32, 32), {"width": 0.25})
    assert generate(generator, info, 4, seed=1).shape == (4, 1, 32, 32)


@pytest.mark.parametrize(
    "changes, fragments",
    [
        ({"options": {"width": 0.5}}, ["net.0.weight", "(100, 64, 4, 4)", "(100, 128, 4, 4)"]),
        ({"latent_dim": 128}, ["net.0.weight", "(100, 64, 4, 4)", "(128, 64, 4, 4)"]),
        ({"image_shape": [1, 64, 64]}, ["net."]),  # one stage more: a layer the file does not have
        ({"image_shape": [3, 32, 32]}, ["net.9.weight", "(16, 1, 4, 4)", "(16, 3, 4, 4)"]),
        ({"arch": "dcgan-mnist", "image_shape": [1, 28, 28], "options": {}}, ["generator"]),
    ],
)
def test_generator_from_another_architecture_or_size_names_the_mismatch(
    cli, error_line, tiny_run, tmp_path, changes, fragments
):
    tampered = rewrite_generator_info(
        tiny_run / "generator.safetensors", tmp_path / "g.safetensors", **changes
    )
    with pytest.raises(CheckpointError) as caught:
        load_generator(tampered)
    message = str(caught.value)
    assert "\n" not in message and str(tampered) in message
    for fragment in fragments:
        assert fragment in message

    code, _, stderr = cli("sample", str(tampered), "--out", str(tmp_path / "s.png"))
    assert code == 2 and fragments[0] in error_line(stderr)


def test_metadata_claiming_a_huge_model_is_refused_before_building_it(tiny_run, tmp_path):
    """width 1000 would allocate hundreds of GB of weights; the shapes are compared first."""
    tampered = rewrite_generator_info(
        tiny_run / "generator.safetensors", tmp_path / "g.safetensors", options={"width": 1000.0}
    )
    with pytest.raises(CheckpointError, match="net.0.weight"):
        load_generator(tampered)


def test_training_checkpoint_for_another_model_names_the_mismatch(tiny_run, tmp_path):
    source = max((tiny_run / "checkpoints").glob("ckpt-*.pt"))
    state = load_checkpoint(source)
    config = json.loads(state["config"])
    config["model"]["options"]["width"] = 0.5
    tampered = save_checkpoint(
        tmp_path / "ckpt-00000002.pt",
        {**{k: v for k, v in state.items() if k != "format"}, "config": json.dumps(config)},
    )
    with pytest.raises(
        CheckpointError, match=r"net\.0\.weight.*\(100, 64, 4, 4\).*\(100, 128, 4, 4\)"
    ):
        load_generator(tampered)
    generator, info = load_generator(source)  # the untouched checkpoint still loads
    assert info.step == 2 and generate(generator, info, 2).shape == (2, 1, 32, 32)


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (
            ["--set", "model.options.width=0.5"],
            ["net.0.weight", "(100, 64, 4, 4)", "(100, 128, 4, 4)"],
        ),
        (["--resolution", "64"], ["'dcgan' at (1, 32, 32)", "(1, 64, 64)"]),
        (
            ["--model", "dcgan-mnist", "--set", "model.options={}", "--resolution", "28"],
            ["'dcgan'", "'dcgan-mnist'"],
        ),
    ],
)
def test_resuming_as_another_model_names_the_mismatch(
    cli, error_line, tiny_run, tmp_path, flags, fragments
):
    run = copy_run(tiny_run, tmp_path)
    before = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    code, _, stderr = cli("train", "--resume", str(run), "--quiet", *flags)
    error = error_line(stderr)
    assert code == 2
    for fragment in fragments:
        assert fragment in error
    assert {
        p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()
    } == before  # nothing overwritten
