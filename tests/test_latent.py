"""Latent tools: one image per seed, truncation, and walks between seeds (GIF and MP4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ganforge.checkpoint import GeneratorInfo
from ganforge.errors import ConfigError

NORMAL = GeneratorInfo("dcgan", 64, (1, 32, 32), {}, noise="normal", noise_std=0.5)
UNIFORM = GeneratorInfo("gan", 64, (1, 28, 28), {}, noise="uniform")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_config, tiny_images) -> Path:
    from ganforge import RunOptions, train

    out = tmp_path_factory.mktemp("latent-runs")
    config = tiny_config(
        "demo",
        {"model.options.width": 0.125},
        iterations=2,
        batch_size=16,
        out_dir=str(out),
        run_name="tiny",
    )
    return train(config, run=RunOptions(data=tiny_images(size=32), show_progress=False)).run_dir


# ---- seeds --------------------------------------------------------------------------------------
def test_parse_seeds_takes_lists_and_ranges_in_order():
    from ganforge.latent import parse_seeds

    assert parse_seeds("3,7,12") == [3, 7, 12]
    assert parse_seeds("0-3, 9") == [0, 1, 2, 3, 9]
    for bad in ("", "a", "5-2", "-1", "1-", "0-99999999"):
        with pytest.raises(ConfigError):
            parse_seeds(bad)


def test_a_seeds_image_does_not_depend_on_the_other_seeds(run_dir, tmp_path, cli):
    assert cli("sample", run_dir, "--seeds", "0-7", "--out", tmp_path / "range").code == 0
    assert cli("sample", run_dir, "--seeds", "5", "--out", tmp_path / "alone").code == 0
    names = sorted(p.name for p in (tmp_path / "range").iterdir())
    assert names == [f"seed-{s:04d}.png" for s in range(8)]
    alone = (tmp_path / "alone" / "seed-0005.png").read_bytes()
    assert alone == (tmp_path / "range" / "seed-0005.png").read_bytes()
    assert alone != (tmp_path / "range" / "seed-0004.png").read_bytes()


def test_seed_latents_follow_the_training_noise_law():
    from ganforge.latent import seed_latents

    normal = seed_latents(NORMAL, list(range(200)))
    assert normal.shape == (200, 64)
    assert abs(normal.std().item() - 0.5) < 0.02  # noise_std is kept
    uniform = seed_latents(UNIFORM, list(range(50)))
    assert uniform.min() >= -1 and uniform.max() <= 1 and uniform.min() < -0.9


# ---- truncation ---------------------------------------------------------------------------------
def test_truncation_resamples_only_the_components_beyond_psi():
    from ganforge.latent import seed_latent

    plain = seed_latent(NORMAL, 11)
    cut = seed_latent(NORMAL, 11, truncation=0.7)
    limit = 0.7 * NORMAL.noise_std
    inside = plain.abs() <= limit
    assert 0 < inside.sum() < len(plain)  # both kinds of component are present
    assert torch.equal(cut[inside], plain[inside])  # components inside psi are kept
    assert cut.abs().max() <= limit + 1e-6  # the others were redrawn inside psi
    clipped = plain[~inside].clamp(-limit, limit)
    assert not torch.equal(cut[~inside], clipped)  # redrawn, not clipped
    assert torch.equal(cut, seed_latent(NORMAL, 11, truncation=0.7))  # and reproducibly


def test_tiny_psi_still_ends_and_keeps_within_bounds():
    from ganforge.latent import seed_latent

    cut = seed_latent(NORMAL, 3, truncation=1e-4)
    assert torch.isfinite(cut).all() and cut.abs().max() <= 1e-4 * NORMAL.noise_std + 1e-9


def test_truncation_is_refused_for_uniform_noise_in_one_line(tmp_path, cli, user_error):
    from ganforge.checkpoint import export_generator
    from ganforge.models import build_models

    options = {"g_hidden": [8], "d_hidden": [8]}
    generator, _ = build_models("gan", 16, (1, 28, 28), options)
    info = GeneratorInfo("gan", 16, (1, 28, 28), options, noise="uniform")
    export_generator(tmp_path / "uniform.safetensors", generator, info)
    result = cli(
        "sample",
        tmp_path / "uniform.safetensors",
        "--truncation",
        "0.7",
        "--out",
        tmp_path / "x.png",
    )
    user_error(result, "Gaussian latents only", "uniform")
    assert not (tmp_path / "x.png").exists()


def test_truncation_with_count_uses_the_seeds_from_seed(run_dir, tmp_path, cli):
    import numpy as np

    assert (
        cli(
            "sample",
            run_dir,
            "--seed",
            "4",
            "-n",
            "3",
            "--truncation",
            "0.5",
            "--out",
            tmp_path / "a.npy",
        ).code
        == 0
    )
    assert (
        cli(
            "sample", run_dir, "--seeds", "4-6", "--truncation", "0.5", "--out", tmp_path / "b.npy"
        ).code
        == 0
    )
    assert np.array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


# ---- interpolation ------------------------------------------------------------------------------
def test_slerp_keeps_the_norm_of_gaussian_latents_and_hits_the_ends():
    from ganforge.latent import lerp, seed_latents, slerp

    a, b = seed_latents(NORMAL, [1, 2])
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-6)
    assert torch.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    middle = slerp(a, b, 0.5)
    assert middle.norm() > 0.95 * min(a.norm(), b.norm())
    assert lerp(a, b, 0.5).norm() < 0.8 * min(a.norm(), b.norm())  # what slerp avoids
    assert torch.allclose(slerp(a, a, 0.3), a)  # same direction: no division by zero


def test_walk_passes_through_each_seed_and_loops_back():
    from ganforge.latent import seed_latents, walk

    keys = seed_latents(NORMAL, [3, 7, 12])
    frames = walk(NORMAL, [3, 7, 12], frames=30)
    assert frames.shape == (30, 64)
    for k in range(3):  # 10 frames per segment; frame 10k is seed k's latent
        assert torch.allclose(frames[10 * k], keys[k], atol=1e-5)
    step_to_start = (frames[-1] - keys[0]).norm()
    assert step_to_start < 2 * (frames[1] - frames[0]).norm()  # no jump when the GIF loops

    open_walk = walk(UNIFORM, [0, 1], frames=5, loop=False)
    ends = seed_latents(UNIFORM, [0, 1])
    assert torch.allclose(open_walk[0], ends[0]) and torch.allclose(open_walk[-1], ends[1])
    assert torch.allclose(open_walk[2], (ends[0] + ends[1]) / 2)  # lerp for uniform latents


def test_interpolate_writes_a_looping_gif(run_dir, tmp_path, cli):
    from PIL import Image

    result = cli(
        "interpolate",
        run_dir,
        "--seeds",
        "3,7,12",
        "--frames",
        "12",
        "--out",
        tmp_path / "walk.gif",
    )
    assert result.code == 0, result.err
    with Image.open(tmp_path / "walk.gif") as gif:
        assert gif.n_frames == 12 and gif.size == (256, 256)  # 32 px enlarged 8x
        assert gif.info.get("loop") == 0


def test_interpolate_writes_mp4_when_imageio_ffmpeg_is_installed(run_dir, tmp_path, cli):
    pytest.importorskip("imageio_ffmpeg")
    import imageio.v2 as imageio

    result = cli(
        "interpolate", run_dir, "--seeds", "0,1", "--frames", "8", "--out", tmp_path / "walk.mp4"
    )
    assert result.code == 0, result.err
    reader = imageio.get_reader(tmp_path / "walk.mp4")
    try:
        frames = [frame for frame in reader]
    finally:
        reader.close()
    assert len(frames) == 8 and frames[0].shape == (256, 256, 3)


def test_mp4_without_the_extra_names_it_in_one_line(
    run_dir, tmp_path, cli, user_error, monkeypatch
):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "imageio_ffmpeg" else real(name, *a),
    )
    result = cli("interpolate", run_dir, "--seeds", "0,1", "--out", tmp_path / "walk.mp4")
    user_error(result, "imageio_ffmpeg", "ganforge[video]")
    assert not (tmp_path / "walk.mp4").exists()


def test_interpolate_needs_two_seeds_and_enough_frames(run_dir, tmp_path, cli, user_error):
    user_error(
        cli("interpolate", run_dir, "--seeds", "3", "--out", tmp_path / "w.gif"),
        "at least two seeds",
    )
    user_error(
        cli(
            "interpolate", run_dir, "--seeds", "1,2,3", "--frames", "2", "--out", tmp_path / "w.gif"
        ),
        "too few",
    )
    assert list(tmp_path.iterdir()) == []  # refused before any file was made


# ---- a stack of generated slices as NIfTI -------------------------------------------------------
def test_sample_writes_slices_as_a_nifti_volume_with_its_spacing(run_dir, tmp_path, cli):
    import nibabel as nib
    import numpy as np
    from PIL import Image

    result = cli(
        "sample",
        run_dir,
        "--seeds",
        "0-3",
        "--out",
        tmp_path / "slices.nii.gz",
        "--spacing",
        "0.5,0.5,2",
    )
    assert result.code == 0, result.err
    volume = nib.load(tmp_path / "slices.nii.gz")
    assert volume.shape == (32, 32, 4)  # [W, H, slices]
    assert np.allclose(np.diag(volume.affine)[:3], [0.5, 0.5, 2.0])
    assert cli("sample", run_dir, "--seeds", "2", "--out", tmp_path / "one").code == 0
    with Image.open(tmp_path / "one" / "seed-0002.png") as png:
        image = np.asarray(png)
    plane = np.asarray(volume.dataobj)[:, :, 2]
    assert np.array_equal(np.flip(plane.T, axis=0), image)  # slice k is seed k's image


def test_bad_nifti_spacing_is_refused_before_generating(run_dir, tmp_path, cli, user_error):
    user_error(
        cli("sample", run_dir, "--out", tmp_path / "s.nii.gz", "--spacing", "1,0"), "--spacing"
    )
    assert list(tmp_path.iterdir()) == []


def test_interpolating_a_conditional_generator_stays_in_one_class(tmp_path, cli, user_error):
    """Every frame of a walk with --class 3 is a three, as the MNIST classifier reads it; a
    class the model does not have is one line and writes nothing."""
    from PIL import Image, ImageSequence

    from ganforge.metrics.classifier import embed, load_classifier
    from ganforge.pretrained import pretrained_path

    source = pretrained_path("mnist-best")
    out = tmp_path / "threes.gif"
    args = ("interpolate", source, "--seeds", "1,2", "--frames", "8", "--size", "28")
    result = cli(*args, "--class", "3", "--out", out)
    assert result.code == 0, result.err
    with Image.open(out) as gif:
        frames = [np.array(f.convert("L")) for f in ImageSequence.Iterator(gif)]
    images = torch.from_numpy(np.stack(frames))[:, None].contiguous()
    _, logits = embed(load_classifier("mnist")[0], images)
    assert (logits.argmax(1) == 3).float().mean() >= 0.75
    user_error(cli(*args, "--class", "10", "--out", tmp_path / "x.gif"), "valid classes: 0-9")
    assert not (tmp_path / "x.gif").exists()


def test_another_noise_law_keeps_the_seed_rules():
    """--noise/--noise-std replace the law in the generator's info, nothing else: a seed
    keeps its own stream, and truncation follows the new law."""
    from ganforge.latent import seed_latent, with_noise

    assert with_noise(NORMAL, None) is NORMAL
    wider = with_noise(NORMAL, None, 1.0)
    assert torch.allclose(seed_latent(wider, 4), 2 * seed_latent(NORMAL, 4))
    uniform = with_noise(NORMAL, "uniform")
    assert torch.equal(seed_latent(uniform, 4), seed_latent(UNIFORM, 4)[: NORMAL.latent_dim])
    assert with_noise(UNIFORM, "normal").noise_std == 1.0
    for law, std, fragment in (
        ("cauchy", None, "normal, uniform"),
        ("uniform", 2.0, "--noise-std"),
        (None, 0.0, "positive"),
        (None, float("nan"), "positive"),
    ):
        with pytest.raises(ConfigError, match=fragment):
            with_noise(NORMAL, law, std)


def test_sample_says_which_noise_law_it_drew(cli, tmp_path):
    result = cli(
        "sample", "--pretrained", "mnist-best", "--seeds", "0-1", "--noise-std", "0.5",
        "--out", tmp_path / "calm.png",
    )  # fmt: skip
    assert result.code == 0 and "normal noise σ 0.5" in result.err


# ---- the same rules from Python ----------------------------------------------------------------
def test_python_sample_and_interpolate_give_what_the_commands_write(run_dir, tmp_path, cli):
    """ganforge.sample with seeds and a truncation, and ganforge.interpolate, apply the rules of
    `ganforge sample` and `ganforge interpolate`: the same seed gives the same pixels."""
    from PIL import Image

    import ganforge

    assert (
        cli("sample", run_dir, "--seeds", "4,9", "--truncation", "0.7", "--out", tmp_path).code == 0
    )
    images = ganforge.sample(run_dir, seeds=[4, 9], truncation=0.7)
    assert images.shape == (2, 32, 32, 1) and images.dtype == np.uint8
    for seed, image in zip((4, 9), images):
        written = np.asarray(Image.open(tmp_path / f"seed-{seed:04d}.png"))
        assert np.array_equal(written.reshape(image.shape), image)
    # a truncation with a count draws seed .. seed + count - 1, one image per seed
    assert np.array_equal(ganforge.sample(run_dir, 2, seed=4, truncation=0.7)[0], images[0])
    frames = ganforge.interpolate(run_dir, [4, 9], frames=6, loop=False)
    assert frames.shape == (6, 32, 32, 1)
    assert np.array_equal(frames[0], ganforge.sample(run_dir, seeds=[4])[0])
    with pytest.raises(ConfigError, match="unconditional"):
        ganforge.sample(run_dir, 4, label=3)
