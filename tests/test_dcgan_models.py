"""The `dcgan` and `dcgan-oasis` architectures, the oasis presets, one short real training run
(on phantom brain slices: conftest.py, "brain phantoms")."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ganforge import RunOptions, train
from ganforge.config import DataConfig
from ganforge.data import load_images
from ganforge.errors import ConfigError
from ganforge.generate import load_generator
from ganforge.models import build_models, get_architecture
from ganforge.presets import load_preset


def _forward(arch: str, shape: tuple[int, int, int], width: float, batch: int = 2):
    generator, discriminator = build_models(arch, 16, shape, {"width": width})
    generator.eval()
    discriminator.eval()
    with torch.no_grad():
        images = generator(torch.randn(batch, 16))
        logits = discriminator(images)
    return images, logits


@pytest.mark.parametrize("resolution", [32, 64, 128, 256])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_makes_every_power_of_two_size_and_returns_logits(resolution, channels):
    images, logits = _forward("dcgan", (channels, resolution, resolution), width=0.125)
    assert images.shape == (2, channels, resolution, resolution)
    assert images.abs().max() <= 1.0  # tanh output, the range of the scaled data
    assert logits.shape == (2,)


@pytest.mark.parametrize("resolution", [32, 64, 256])
def test_dcgan_oasis_scales_to_other_sizes_for_small_runs(resolution):
    images, logits = _forward("dcgan-oasis", (1, resolution, resolution), width=0.125)
    assert images.shape == (2, 1, resolution, resolution) and logits.shape == (2,)


def test_dcgan_oasis_is_the_documented_architecture():
    generator, discriminator = build_models("dcgan-oasis", 100, (1, 128, 128))
    generator.eval()
    with torch.no_grad():
        images = generator(torch.randn(3, 100))
    assert images.shape == (3, 1, 128, 128)
    layers = list(generator.modules())
    assert isinstance(layers[2], nn.Linear)  # Dense first
    assert (
        sum(isinstance(m, nn.ConvTranspose2d) and m.stride == (2, 2) for m in layers) == 3
    )  # 16->32->64->128
    assert sum(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in layers) == 3
    assert {m.negative_slope for m in layers if isinstance(m, nn.LeakyReLU)} == {0.2}
    assert isinstance(layers[-1], nn.Tanh)
    d_layers = list(discriminator.modules())
    convs = [m for m in d_layers if isinstance(m, nn.Conv2d)]
    assert len(convs) == 2 and all(c.stride == (2, 2) for c in convs)
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in d_layers)  # no pooling
    # "BatchNorm in both networks", LeakyReLU(0.2) after the convolution and BatchNorm
    kinds = [type(m).__name__ for m in discriminator.net]
    assert kinds[:6] == ["KerasConv2d", "BatchNorm2d", "LeakyReLU"] * 2
    assert not any(isinstance(m, nn.Dropout) for m in d_layers)  # the document has none
    assert (
        isinstance(d_layers[-1], nn.Linear) and d_layers[-1].out_features == 1
    )  # Dense output, a logit
    assert discriminator.eval()(images).shape == (3,)  # one logit per image
    assert get_architecture("dcgan-oasis").default_resolution == 128


def test_dcgan_oasis_keeps_the_tutorial_discriminator_as_an_option():
    _, tutorial = build_models("dcgan-oasis", 100, (1, 64, 64), {"d_norm": "none", "dropout": 0.3})
    assert not any(isinstance(m, nn.BatchNorm2d) for m in tutorial.modules())
    assert [m.p for m in tutorial.modules() if isinstance(m, nn.Dropout)] == [0.3, 0.3]
    assert tutorial.eval()(torch.zeros(2, 1, 64, 64)).shape == (2,)


def test_dcgan_uses_the_papers_initialisation():
    generator, discriminator = build_models("dcgan", 100, (3, 64, 64))
    weights = torch.cat(
        [
            m.weight.detach().flatten()
            for m in list(generator.modules()) + list(discriminator.modules())
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
        ]
    )
    assert abs(float(weights.mean())) < 1e-3 and float(weights.std()) == pytest.approx(
        0.02, rel=0.05
    )
    assert not any(isinstance(m, (nn.MaxPool2d, nn.Linear)) for m in discriminator.modules())


@pytest.mark.parametrize("arch", ["dcgan", "dcgan-oasis"])
@pytest.mark.parametrize(
    "shape, words",
    [
        ((1, 100, 100), "100 is not a power of two"),
        ((1, 48, 48), "48 is not a power of two"),
        ((1, 16, 16), "from 32 to 256"),
        ((1, 512, 512), "from 32 to 256"),
        ((1, 128, 64), "square"),
        ((2, 64, 64), "1- or 3-channel"),
    ],
)
def test_unsupported_shapes_are_refused_with_the_reason(arch, shape, words):
    with pytest.raises(ConfigError) as info:
        build_models(arch, 100, shape)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_training_at_a_non_power_of_two_resolution_stops_with_a_config_error(tmp_path):
    folder = tmp_path / "slices"
    folder.mkdir()
    for i in range(8):
        Image.fromarray(np.full((30, 30), 20 * i, np.uint8)).save(folder / f"{i}.png")
    config = load_preset("oasis-dcgan").with_overrides(
        {
            "data.path": str(folder),
            "data.resolution": 100,
            "batch_size": 4,
            "iterations": 1,
            "out_dir": str(tmp_path / "runs"),
            "device": "cpu",
        }
    )
    with pytest.raises(ConfigError, match="resolution 100 is not a power of two"):
        train(config, run=RunOptions(show_progress=False))


def test_oasis_preset_is_the_documented_recipe():
    config = load_preset("oasis-dcgan").validate()
    assert (
        config.model.arch == "dcgan-oasis"
        and config.loss == "bce"
        and config.schedule.batch_size == 128
    )
    assert (config.optim.lr_g, config.optim.lr_d) == (1e-3, 1e-3)
    assert (config.data.resolution, config.data.channels, config.data.fit) == (128, 1, "pad")
    assert config.schedule_unit == "epoch" and config.schedule.sample_every == 1
    assert config.schedule.epochs == 100  # "generated images at 100th epoch"
    # BN in both networks, with tf.keras 2's moving statistics
    assert config.model.options == {"d_norm": "batch", "dropout": 0.0, "batchnorm": "tf2"}
    stable = load_preset("oasis-dcgan-stable").validate()
    assert (stable.optim.lr_g, stable.optim.lr_d, stable.optim.beta1) == (2e-4, 2e-4, 0.5)
    assert (stable.model, stable.data, stable.loss, stable.schedule.batch_size) == (
        config.model,
        config.data,
        config.loss,
        128,
    )


def test_oasis_dcgan_trains_on_brain_slices_and_writes_every_artefact(brain_slices, tmp_path):
    config = load_preset("oasis-dcgan").with_overrides(
        {
            "data.path": str(brain_slices),
            "data.limit": 64,
            "data.resolution": 32,
            "model.options.width": 0.125,
            "batch_size": 16,
            "iterations": 3,
            "log_every": 1,
            "sample_every": 1,
            "out_dir": str(tmp_path / "runs"),
            "run_name": "brain",
            "device": "cpu",
            "compile": "off",
        }
    )
    result = train(config, run=RunOptions(show_progress=False))
    run = result.run_dir
    assert result.steps == 3
    assert (
        len(list((run / "samples").glob("*.png"))) == 4
    )  # before training and after each iteration
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3] and all(
        np.isfinite(r["d_loss"]) for r in records
    )
    for name in (
        "generator.safetensors",
        "losses.png",
        "training.gif",
        "summary.json",
        "config.json",
    ):
        assert (run / name).is_file(), name
    assert list((run / "checkpoints").glob("ckpt-*.pt"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["dataset"] == "brain-mri-slices/train" and summary["image_shape"] == [1, 32, 32]
    generator, info = load_generator(run)  # the exported file rebuilds from the registry
    assert info.arch == "dcgan-oasis" and generator(torch.randn(2, info.latent_dim)).shape == (
        2,
        1,
        32,
        32,
    )
    grid = Image.open(sorted((run / "samples").glob("*.png"))[-1])
    assert grid.size[0] > 32 * 5  # a 6x6 grid of 32x32 samples


def test_training_data_is_the_same_whether_decoded_or_cached(brain_slices):
    config = DataConfig(dataset="brain-mri", path=str(brain_slices), resolution=64, limit=16)
    first, second = load_images(config), load_images(config)
    assert "cache" in second.source and torch.equal(first.images, second.images)
