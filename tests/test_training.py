"""A short real run: every artefact appears, the generator learns, sampling is reproducible."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import ganforge
from ganforge import ImageData, RunOptions, load_preset, train
from ganforge.checkpoint import load_checkpoint
from ganforge.data.transforms import fit_square
from ganforge.errors import ConfigError
from ganforge.models import build_models


@pytest.fixture(scope="module")
def digits32(mnist_test_split) -> ImageData:
    """2,000 real MNIST digits at 32x32, the demo's resolution."""
    data = mnist_test_split.subset(2000)
    return ImageData(fit_square(data.images, 32), data.name, data.source, data.labels, 10)


def _mean_image_correlation(images: torch.Tensor, reference: torch.Tensor) -> float:
    means = torch.stack([images.float().mean(0).flatten(), reference.float().mean(0).flatten()])
    return torch.corrcoef(means)[0, 1].item()


@pytest.fixture(scope="module")
def demo_run(digits32, tmp_path_factory):
    """The demo recipe, cut to 150 iterations on 2,000 digits."""
    out = tmp_path_factory.mktemp("runs")
    config = load_preset("demo").with_overrides(
        {
            "iterations": 150,
            "out_dir": str(out),
            "sample_every": 50,
            "checkpoint_every": 50,
            "log_every": 10,
            "keep_checkpoints": 2,
        }
    )
    return train(config, run=RunOptions(data=digits32, show_progress=False))


@pytest.mark.slow
def test_run_folder_holds_every_artefact(demo_run):
    run = demo_run.run_dir
    config = json.loads((run / "config.json").read_text())
    assert config["schedule"]["iterations"] == 150 and config["model"]["arch"] == "dcgan"
    grids = sorted(p.name for p in (run / "samples").glob("*.png"))
    assert grids == [
        "iteration_000000.png",
        "iteration_000050.png",
        "iteration_000100.png",
        "iteration_000150.png",
    ]
    with Image.open(run / "samples" / grids[-1]) as grid:
        assert grid.size[0] > 8 * 32  # an 8x8 grid of 32x32 images with padding
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    records = [r for r in lines if "warning" not in r]
    assert [r["step"] for r in records] == list(range(10, 151, 10))
    assert {"d_loss", "g_loss", "d_acc", "d_real", "d_fake", "images_per_s", "elapsed_s"} <= set(
        records[0]
    )
    with Image.open(run / "losses.png") as plot:
        assert plot.format == "PNG" and plot.size[0] > 500
    with Image.open(run / "training.gif") as gif:
        assert gif.n_frames == 4
    checkpoints = sorted(p.name for p in (run / "checkpoints").glob("ckpt-*.pt"))
    assert checkpoints == ["ckpt-00000100.pt", "ckpt-00000150.pt"]  # keep_checkpoints=2
    state = load_checkpoint(run / "checkpoints" / checkpoints[-1])
    assert state["step"] == 150 and {"generator", "discriminator", "opt_g", "opt_d", "rng"} <= set(
        state
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 150 and summary["images"] == 2000


@pytest.mark.slow
def test_generator_measurably_learns_the_data(demo_run, digits32):
    generator, info = ganforge.load_generator(demo_run.run_dir)
    torch.manual_seed(0)
    untrained, _ = build_models(info.arch, info.latent_dim, info.image_shape, info.options)
    before = _mean_image_correlation(
        ganforge.generate(untrained.eval(), info, 500), digits32.images
    )
    after = _mean_image_correlation(ganforge.generate(generator, info, 500), digits32.images)
    assert before < 0.3 and after > 0.6, (before, after)  # the average digit emerges from noise
    assert demo_run.final_stats["d_acc"] > 0.5  # D tells real from fake better than chance


@pytest.mark.slow
def test_sampling_is_reproducible_for_a_seed(demo_run):
    first = ganforge.sample(demo_run.run_dir, count=8, seed=3)
    again = ganforge.sample(demo_run.run_dir, count=8, seed=3)
    other = ganforge.sample(demo_run.run_dir, count=8, seed=4)
    assert first.shape == (8, 32, 32, 1) and first.dtype == np.uint8
    assert np.array_equal(first, again) and not np.array_equal(first, other)


@pytest.mark.slow
def test_checkpoint_and_export_give_the_same_images(demo_run):
    from_export = ganforge.sample(demo_run.run_dir / "generator.safetensors", count=4, seed=1)
    from_checkpoint = ganforge.sample(
        demo_run.run_dir / "checkpoints" / "ckpt-00000150.pt", count=4, seed=1
    )
    assert np.array_equal(from_export, from_checkpoint)


@pytest.mark.slow
def test_existing_run_folder_is_refused_and_left_untouched(demo_run, digits32):
    before = {p: p.stat().st_mtime_ns for p in demo_run.run_dir.rglob("*")}
    config = ganforge.load_config_file(demo_run.run_dir / "config.json")
    with pytest.raises(ConfigError, match="already exists.*--resume.*--overwrite"):
        train(config, run=RunOptions(data=digits32, show_progress=False))
    assert {p: p.stat().st_mtime_ns for p in demo_run.run_dir.rglob("*")} == before


def test_notebook_gan_recipe_trains_with_half_batches(mnist_test_split, tmp_path):
    config = load_preset("mnist-gan").with_overrides(
        {
            "iterations": 20,
            "out_dir": str(tmp_path),
            "sample_every": 10,
            "log_every": 10,
            "checkpoint_every": 20,
            "model.options": {"g_hidden": [32, 64], "d_hidden": [64, 32]},
        }
    )
    result = train(config, run=RunOptions(data=mnist_test_split.subset(500), show_progress=False))
    assert result.steps == 20
    assert result.images_per_second > 0
    samples = sorted(p.name for p in (result.run_dir / "samples").glob("*.png"))
    # the notebook's cadence (a grid after its iteration e = 0, 10, ...: sample_offset 1),
    # plus ganforge's grids before training and at the end
    assert samples == [
        "iteration_000000.png",
        "iteration_000001.png",
        "iteration_000011.png",
        "iteration_000020.png",
    ]


def test_notebook_dcgan_recipe_counts_epochs(mnist_test_split, tmp_path):
    config = load_preset("mnist-dcgan").with_overrides(
        {
            "epochs": 2,
            "batch_size": 50,
            "out_dir": str(tmp_path),
            "log_every": 5,
            "model.options": {"width": 0.125},
        }
    )
    result = train(config, run=RunOptions(data=mnist_test_split.subset(200), show_progress=False))
    assert result.steps == 8  # 200 images / 50 per batch = 4 iterations per epoch
    samples = sorted(p.name for p in (result.run_dir / "samples").glob("*.png"))
    assert samples == ["epoch_000000.png", "epoch_000001.png", "epoch_000002.png"]
