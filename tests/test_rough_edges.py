"""First-contact details a user meets: exit codes, help, notebooks, public APIs only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ganforge"


def test_divergence_exits_3_not_the_usage_error_status(cli, mnist_dir, tmp_path):
    """A diverged run is not a usage error: scripts can tell the two apart."""
    code, _, err = cli(
        "train", "--preset", "mnist-gan", "--data", mnist_dir, "--limit", "256",
        "--iterations", "6", "--lr", "1e20", "--loss", "lsgan", "--batch-size", "16",
        "--set", "log_every=2", "--set", "model.options.g_hidden=[16]",
        "--set", "model.options.d_hidden=[16]", "--device", "cpu", "--out", tmp_path, "--quiet",
    )  # fmt: skip
    assert code == 3, err
    assert "training diverged" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["train", "sample", "eval", "compare", "export", "interpolate"])
def test_every_command_shows_examples_in_its_help(cli, command):
    code, out, _ = cli(command, "--help")
    assert code == 0 and "examples:" in out


def test_bare_ganforge_prints_help_instead_of_training(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli()
    assert code == 0 and "usage: ganforge" in out
    assert not (tmp_path / "runs").exists()


def test_progress_bar_adapts_to_notebooks():
    """tqdm.auto draws a widget in Jupyter and a terminal bar elsewhere."""
    import tqdm.auto

    from ganforge.training import progress

    assert progress.tqdm is tqdm.auto.tqdm


def test_no_private_torch_api_in_ganforge():
    """torch._something may change without notice; ganforge uses public APIs only."""
    private = re.compile(r"(?<![\"'\w.])torch\._[a-z]")  # code, not a logger's name in quotes
    offenders = [
        f"{path.relative_to(SRC)}:{number}"
        for path in SRC.rglob("*.py")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if private.search(line.split("#")[0])
    ]
    assert offenders == []


def test_every_run_starts_with_a_grid_of_the_real_images_as_training_sees_them(
    train_tiny, tiny_images
):
    """reals.png shows the preprocessed data at once (a flipped or badly windowed set is
    seen before any training time is spent)."""
    import numpy as np
    from PIL import Image

    data = tiny_images(count=64, size=28)
    result = train_tiny("reals", data=data, grid_size=2)
    grid = np.asarray(Image.open(result.run_dir / "reals.png"))
    first = data.images[0, 0].numpy()
    scale = grid.shape[0] // (2 * 28)  # grids enlarge small images
    assert grid.ndim == 2 or grid.shape[-1] in (1, 3)
    top_left = grid[2 * scale : (2 + 28) * scale : scale, 2 * scale : (2 + 28) * scale : scale]
    assert np.array_equal(top_left.reshape(28, 28, -1)[..., 0], first)
