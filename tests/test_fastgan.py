"""`fastgan`: the light FastGAN for brain slices at 64-256 px, and the `brain-fast` preset
(one short real training run on phantom slices, conditional by diagnosis)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.models import build_models, count_parameters, get_architecture
from ganforge.models.fastgan import SkipExcitation
from ganforge.presets import load_preset


def _calibrated(generator: torch.nn.Module, latent_dim: int) -> torch.nn.Module:
    """In eval mode with BatchNorm statistics from one batch, as a trained generator has them
    (the initial running statistics, mean 0 and variance 1, are not those of any batch)."""
    for module in generator.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 1.0
    with torch.no_grad():
        generator.train()(torch.randn(64, latent_dim))
    return generator.eval()


@pytest.mark.parametrize("shape", [(1, 64, 64), (1, 128, 128), (3, 64, 64)])
def test_generator_makes_tanh_images_and_discriminator_one_logit(shape):
    generator, discriminator = build_models("fastgan", 32, shape, {"channels": 4})
    images = generator(torch.randn(3, 32))
    assert images.shape == (3, *shape)
    assert images.min() >= -1 and images.max() <= 1
    assert discriminator(images).shape == (3,)


def test_small_features_gate_the_large_ones():
    """Skip-layer excitation: the 4 px features gate the 64 px ones and the 8 px the 128 px
    ones, so changing the gate from the small map changes the image."""
    generator, _ = build_models("fastgan", 16, (1, 128, 128), {"channels": 4})
    assert sorted(int(side) for side in generator.excite) == [64, 128]
    assert all(isinstance(m, SkipExcitation) for m in generator.excite.values())
    _calibrated(generator, 16)
    z = torch.randn(2, 16)
    with torch.no_grad():
        before = generator(z)
        generator.excite["128"].gate[-2].weight.mul_(5.0)
        after = generator(z)
    assert not torch.allclose(before, after)


def test_large_layers_are_narrow_so_128px_costs_less_than_the_dcgan():
    fastgan = sum(count_parameters(m) for m in build_models("fastgan", 128, (1, 128, 128)))
    dcgan = sum(count_parameters(m) for m in build_models("dcgan", 128, (1, 128, 128)))
    assert fastgan < dcgan / 3
    generator, _ = build_models("fastgan", 128, (1, 128, 128))
    assert generator.to_image.in_channels == 16  # the 128 px layer at the default 16 channels


def test_conditional_pair_follows_the_class():
    generator, discriminator = build_models(
        "fastgan", 16, (1, 64, 64), {"channels": 4, "num_classes": 4}
    )
    for name, table in generator.named_parameters():  # as training would make them: per class
        if name.endswith(("gain.weight", "bias.weight")):
            torch.nn.init.normal_(table, 1.0 if "gain" in name else 0.0, 0.3)
    _calibrated(generator, 16)
    z = torch.randn(4, 16)
    with torch.no_grad():
        zeros = generator(z, torch.zeros(4, dtype=torch.long))
        threes = generator(z, torch.full((4,), 3, dtype=torch.long))
        balanced = generator(z)  # no labels: classes 0, 1, 2, 3
        assert not torch.allclose(zeros, threes)
        assert torch.allclose(balanced[0], zeros[0]) and torch.allclose(balanced[3], threes[3])
        assert not torch.allclose(
            discriminator(zeros, torch.zeros(4, dtype=torch.long)),
            discriminator(zeros, torch.full((4,), 3, dtype=torch.long)),
        )


@pytest.mark.parametrize(
    "shape, reason",
    [
        ((1, 32, 32), "64, 128 or 256 px"),
        ((1, 96, 96), "64, 128 or 256 px"),
        ((2, 64, 64), "1- or 3-channel"),
    ],
)
def test_unsupported_shapes_are_refused_with_the_reason(shape, reason):
    found = get_architecture("fastgan").problems(shape)
    assert len(found) == 1 and reason in found[0]


def test_spectral_norm_flag_is_refused_because_d_already_has_it(
    cli, brain_slices, user_error, tmp_path
):
    result = cli(
        "train",
        "--preset",
        "brain-fast",
        "--data",
        brain_slices,
        "--set",
        "spectral_norm=d",
        "--out",
        tmp_path / "runs",
        "--dry-run",
    )
    user_error(result, "already normalises")
    assert not (tmp_path / "runs").exists()


def test_brain_fast_trains_by_diagnosis_and_samples_a_named_class(cli, brain_slices, tmp_path):
    """A few iterations of the preset, conditional on the four diagnosis folders, at 64 px to
    keep the test short; then `sample --class` by name, from the exported generator."""
    assert load_preset("brain-fast").model.arch == "fastgan"
    runs = tmp_path / "runs"
    result = cli(
        "train",
        "--preset",
        "brain-fast",
        "--data",
        brain_slices,
        "--iterations",
        "3",
        "--set",
        "data.limit=64",
        "--set",
        "data.resolution=64",
        "--set",
        "batch_size=8",
        "--set",
        "model.options.channels=4",
        "--set",
        "model.options.num_classes=4",
        "--set",
        "sample_every=3",
        "--set",
        "log_every=1",
        "--set",
        "compile=off",
        "--out",
        runs,
        "--name",
        "brain",
        "--quiet",
    )
    assert result.code == 0, result.err
    run = runs / "brain"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(np.isfinite(r["d_loss"]) and np.isfinite(r["g_loss"]) for r in records)
    out = tmp_path / "moderate.png"
    sampled = cli("sample", run, "--class", "moderatedemented", "--count", "4", "--out", out)
    assert sampled.code == 0, sampled.err
    assert Image.open(out).size[0] >= 64
    unknown = cli("sample", run, "--class", "Healthy", "--count", "4", "--out", tmp_path / "x.png")
    assert unknown.code == 2 and "NonDemented" in unknown.err and "ModerateDemented" in unknown.err
