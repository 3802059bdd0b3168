"""Stabilisers for small data: spectral norm, differentiable augmentation and its adaptive
probability (ADA). Each test shows the property a user relies on: spectral norm bounds the
largest singular value; augmentation reaches every image D sees, real and fake, and keeps
gradients flowing to G; p rises when D overfits and falls when it does not, is logged, and
survives a resume exactly."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from ganforge.augment import AUGMENTS, DiffAugment
from ganforge.checkpoint import load_checkpoint
from ganforge.losses import get_loss
from ganforge.models.spectral import apply_spectral_norm
from ganforge.training.runtime import resolve_runtime
from ganforge.training.step import AdversarialStep, Batch, StepOptions


# ---- spectral normalisation -----------------------------------
def largest_singular_value(layer: nn.Module) -> float:
    weight = layer.weight.detach()  # the normalised weight when parametrised
    return float(torch.linalg.matrix_norm(weight.flatten(1), ord=2))


def test_spectral_norm_bounds_the_largest_singular_value_of_every_layer():
    torch.manual_seed(0)
    d = nn.Sequential(
        nn.Conv2d(1, 8, 3, 2, 1),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 16),
        nn.LeakyReLU(0.2),
        nn.Linear(16, 1),
    )
    with torch.no_grad():
        for layer in (d[0], d[3], d[5]):
            layer.weight.mul_(20.0)
    before = [largest_singular_value(layer) for layer in (d[0], d[3], d[5])]
    assert min(before) > 2.0
    apply_spectral_norm(d)
    d.train()
    for _ in range(15):  # each training forward runs one power iteration
        d(torch.randn(4, 1, 8, 8))
    after = [largest_singular_value(layer) for layer in (d[0], d[3], d[5])]
    assert all(0.9 < s <= 1.02 for s in after), after


def test_spectral_norm_from_the_config_normalises_d_only(tiny_config):
    from torch.nn.utils import parametrize

    from ganforge.training.state import TrainingState

    config = tiny_config("mnist-dcgan", spectral_norm="d")
    state = TrainingState.create(config, (1, 28, 28), 64, resolve_runtime(config))
    d_layers = [m for m in state.discriminator.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert d_layers and all(parametrize.is_parametrized(m) for m in d_layers)
    assert not any(parametrize.is_parametrized(m) for m in state.generator.modules())


def test_spectral_norm_on_a_model_that_already_has_it_is_one_line(cli, user_error, tmp_path):
    result = cli(
        "train",
        "--preset",
        "mnist-best",
        "--set",
        "spectral_norm=d",
        "--dry-run",
        "--out",
        tmp_path,
    )
    user_error(result, "already normalises", "spectral_norm")
    result = cli(
        "train", "--preset", "demo", "--set", "spectral_norm=g", "--dry-run", "--out", tmp_path
    )
    user_error(result, "spectral_norm", "off", "d")
    assert not list(tmp_path.iterdir())


# ---- the transforms -----------------------------------
@pytest.mark.parametrize("name", sorted(AUGMENTS))
def test_each_transform_keeps_gradients_flowing_to_g(name):
    torch.manual_seed(0)
    generator = nn.Sequential(nn.Linear(8, 3 * 16 * 16), nn.Tanh(), nn.Unflatten(1, (3, 16, 16)))
    augment = DiffAugment([name], p=1.0)
    images = generator(torch.randn(6, 8))
    out = augment(images)
    assert out.shape == images.shape
    out.square().sum().backward()
    grad = generator[0].weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_transforms_change_images_and_p_zero_changes_nothing():
    torch.manual_seed(0)
    x = torch.rand(16, 1, 28, 28) * 2 - 1
    for name in ("translation", "cutout", "brightness", "contrast"):
        assert not torch.equal(DiffAugment([name], p=1.0)(x), x), name
    assert torch.equal(DiffAugment(list(AUGMENTS), p=0.0)(x), x)


def test_cutout_blanks_a_quarter_of_the_image():
    x = torch.ones(32, 1, 28, 28)
    out = AUGMENTS["cutout"](x)
    blanked = (out == 0).flatten(1).float().mean(1)
    # a 14x14 square, cut where it leaves the image
    assert blanked.max() == pytest.approx(0.25) and blanked.min() > 0.0


def test_translation_shifts_whole_pixels_and_fills_black():
    torch.manual_seed(1)
    x = torch.rand(64, 1, 16, 16)  # all values >= 0: any -1 came in from the border
    out = AUGMENTS["translation"](x)
    shifted = (out == -1).flatten(1).any(1)
    assert shifted.any() and (out[~shifted] == x[~shifted]).all()
    assert set(torch.unique(out[out != -1]).tolist()) <= set(torch.unique(x).tolist())


def test_unknown_augmentation_is_one_line_listing_the_choices(cli, user_error, tmp_path):
    result = cli(
        "train",
        "--preset",
        "demo",
        "--set",
        "augment=translation,blur",
        "--dry-run",
        "--out",
        tmp_path,
    )
    user_error(result, "'blur'", "translation", "cutout", "brightness", "contrast")


# ---- inside the step: every image D sees, real and fake -----------------------------------
class Recorder:
    """An augmentation that remembers what it returned."""

    def __init__(self, inner):
        self.inner, self.outputs = inner, []

    def __call__(self, images):
        out = self.inner(images)
        self.outputs.append(out)
        return out


class SpyD(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 1))
        self.seen = []

    def forward(self, images):
        self.seen.append(images)
        return self.net(images).squeeze(1)


def tiny_step(tiny_config, generator, discriminator, augment, **options):
    config = tiny_config("mnist-gan")
    opt_g = torch.optim.Adam(generator.parameters(), 1e-3)
    opt_d = torch.optim.Adam(discriminator.parameters(), options.pop("lr_d", 1e-3))
    return AdversarialStep(
        generator,
        discriminator,
        opt_g,
        opt_d,
        get_loss("hinge"),
        resolve_runtime(config),
        StepOptions(**options),
        augment=augment,
    )


@pytest.mark.parametrize(
    "mode",
    [
        {"separate_d_updates": True},
        {"separate_d_updates": False},
        {"update": "simultaneous", "separate_d_updates": False},
    ],
)
def test_every_image_d_sees_is_augmented_real_and_fake(tiny_config, mode):
    torch.manual_seed(0)
    g = nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Unflatten(1, (1, 8, 8)))
    d = SpyD()
    augment = Recorder(DiffAugment(["translation", "cutout"], p=1.0))
    step = tiny_step(tiny_config, g, d, augment, **mode)
    real = torch.rand(8, 1, 8, 8)
    step(Batch(real, torch.randn(8, 4), torch.randn(8, 4)))
    assert len(d.seen) >= 2
    assert all(any(seen is out for out in augment.outputs) for seen in d.seen)
    assert not any(torch.equal(seen, real) for seen in d.seen)  # the reals too


def test_the_generator_learns_through_the_augmentation(tiny_config):
    torch.manual_seed(0)
    g = nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Unflatten(1, (1, 8, 8)))
    before = g[0].weight.detach().clone()
    step = tiny_step(
        tiny_config,
        g,
        SpyD(),
        DiffAugment(["translation", "cutout", "brightness", "contrast"], p=1.0),
    )
    step(Batch(torch.rand(8, 1, 8, 8), torch.randn(8, 4), torch.randn(8, 4)))
    assert not torch.equal(g[0].weight, before)


# ---- ADA: p follows D's overfitting -----------------------------------
def test_p_moves_by_the_sign_of_the_overfitting_signal():
    ada = DiffAugment(["translation"], p=0.5, target=0.6, interval=2, speed=100)
    for _ in range(2):
        ada.observe(torch.ones(10))  # r = 1 > 0.6: D is sure of every real
    assert float(ada.p) == pytest.approx(0.5 + 20 / 100)
    for _ in range(2):
        ada.observe(torch.tensor([1.0, -1.0] * 5))  # r = 0 < 0.6
    assert float(ada.p) == pytest.approx(0.5)
    for _ in range(20):
        ada.observe(-torch.ones(10))
    assert float(ada.p) == 0.0  # clamped to [0, 1]


class NoiseG(nn.Module):
    """Fresh uniform noise images whatever z is (a G that never improves)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, z):
        return (torch.rand(z.shape[0], 1, 8, 8) * 2 - 1) * self.scale


def run_ada(tiny_config, reals, iterations=80):
    torch.manual_seed(0)
    d = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 128), nn.LeakyReLU(0.2), nn.Linear(128, 1), nn.Flatten(0)
    )
    ada = DiffAugment(["brightness"], p=0.5, target=0.6, interval=4, speed=2000)
    step = tiny_step(tiny_config, NoiseG(), d, ada, lr_d=3e-3)
    history = []
    for index in range(iterations):
        real = reals(index)
        step(Batch(real, torch.randn(16, 4), torch.randn(16, 4), index=index))
        history.append(float(ada.p))
    return history


def test_p_rises_when_d_overfits_a_tiny_set(tiny_config):
    tiny_set = torch.rand(16, 1, 8, 8) * 2 - 1  # the same 16 images every iteration
    history = run_ada(tiny_config, lambda index: tiny_set)
    assert history[-1] > 0.5 + 0.2 and history[-1] > history[len(history) // 2]


def test_p_falls_when_d_cannot_overfit(tiny_config):
    # fresh reals from the fakes' own distribution: nothing to memorise, r stays near 0
    history = run_ada(tiny_config, lambda index: torch.rand(16, 1, 8, 8) * 2 - 1)
    assert history[-1] < 0.5 - 0.2


def test_p_is_logged_and_a_resume_continues_it_exactly(train_tiny):
    settings = {
        "iterations": 8,
        "checkpoint_every": 4,
        "log_every": 1,
        "deterministic": True,
        "augment": "translation,cutout",
        "ada_target": 0.6,
        "ada_interval": 1,
        "ada_speed": 200.0,
    }
    whole = train_tiny("whole", "mnist-gan", settings)
    stopped = train_tiny("stopped", "mnist-gan", {**settings, "iterations": 4})
    resumed = train_tiny("stopped", "mnist-gan", settings, resume=True)

    def logged(run_dir):
        records = map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
        return [(r["step"], r["augment_p"], r["d_loss"]) for r in records if "d_loss" in r]

    assert stopped.steps == 4 and resumed.steps == whole.steps == 8
    history = logged(whole.run_dir)
    assert len(history) == 8 and len({p for _, p, _ in history}) > 1  # p moved, and was logged
    assert logged(resumed.run_dir) == history
    last = max((whole.run_dir / "checkpoints").glob("ckpt-*.pt"))
    assert float(load_checkpoint(last)["augment"]["p"]) == pytest.approx(history[-1][1], abs=1e-5)
