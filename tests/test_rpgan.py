"""The R3GAN objective: the relativistic pairing loss (rpgan), R2 beside R1, the gamma ramp.

Expected values are written out from the definitions (softplus(x) = ln(1 + e^x), so
softplus(0) = ln 2 and softplus(ln 3) = ln 4), not computed with the code under test.
"""

from __future__ import annotations

import math

import pytest
import torch

from ganforge.errors import ConfigError
from ganforge.losses import R1, R2, Seen, gamma_at, get_loss

LN2, LN3 = math.log(2.0), math.log(3.0)


def approx(value: float):
    return pytest.approx(value, rel=1e-6, abs=1e-7)


# ---- the loss by hand ----------------------------------------------------------------------------
def test_rpgan_pairs_each_real_with_its_fake():
    """D: softplus(-(r - f)); G: softplus(-(f - r)), per pair, then the mean."""
    rpgan = get_loss("rpgan")
    assert rpgan.paired and not get_loss("hinge").paired
    real = torch.tensor([0.0, LN3, 1.0])
    fake = torch.tensor([0.0, 0.0, 1.0 + LN3])
    # D: pairs (0, 0) -> ln 2; (ln 3, 0) -> ln(1 + 1/3); (1, 1 + ln 3) -> ln(1 + 3) = ln 4
    assert rpgan.pair.d(real, fake).item() == approx((LN2 + math.log(4 / 3) + math.log(4)) / 3)
    # G: the same pairs seen from the other side: ln 2, ln 4, ln(4/3)
    assert rpgan.pair.g(fake, real).item() == approx((LN2 + math.log(4) + math.log(4 / 3)) / 3)
    # pairing matters: the same logits paired the other way round give another loss
    assert rpgan.pair.d(real, fake.flip(0)).item() != approx(rpgan.pair.d(real, fake).item())


def test_rpgan_is_computed_in_fp32_and_has_no_separate_terms():
    rpgan = get_loss("rpgan")
    real, fake = torch.tensor([-1.0, 0.5]), torch.tensor([3.0, 0.25])
    low = rpgan.pair.d(real.bfloat16(), fake.bfloat16())
    assert low.dtype == torch.float32 and low.item() == approx(rpgan.pair.d(real, fake).item())
    with pytest.raises(TypeError, match="paired"):
        rpgan.d_real(real, 0.0)


def test_unknown_loss_lists_rpgan_among_the_choices(cli, user_error):
    with pytest.raises(ConfigError) as caught:
        get_loss("r3gan")
    assert "rpgan" in str(caught.value) and "hinge" in str(caught.value)
    result = cli("train", "--preset", "stacked-best", "--set", "loss=r3gan", "--dry-run")
    user_error(result, "unknown loss 'r3gan'", "rpgan", "hinge", "bce")


def test_rpgan_refuses_unpaired_step_settings_in_one_line(cli, user_error):
    result = cli(
        "train",
        "--preset",
        "mnist-gan",
        "--set",
        "loss=rpgan",
        "--set",
        "label_smoothing=0.1",
        "--dry-run",
    )
    user_error(result, "d_separate_updates=false", "d_half_batch=false", "label_smoothing=0")


def test_rpgan_refuses_adaptive_augmentation_which_reads_d_on_reals(tiny_config):
    from ganforge.check import check

    # the demo's small DCGAN: the check builds the networks, and this one builds fast
    paired = {"loss": "rpgan", "d_separate_updates": False, "augment": "translation"}
    with pytest.raises(ConfigError, match="ada_target=0"):
        check(tiny_config("demo", {**paired, "ada_target": 0.6}))
    check(tiny_config("demo", {**paired, "augment_p": 0.5}))


# ---- R2 by hand ----------------------------------------------------------------------------------
def test_r2_is_the_squared_gradient_norm_at_the_fakes():
    """D(x) = sum(x^2) has gradient 2x: fakes of four ones give |grad|^2 = 16, zeros 0; R2 with
    gamma 2 is gamma/2 times the mean, 8. It is taken at the images it is given (the fakes)."""
    fakes = torch.stack([torch.ones(1, 2, 2), torch.zeros(1, 2, 2)]).requires_grad_(True)
    logits = fakes.pow(2).flatten(1).sum(1)
    r2 = R2(gamma=2.0)
    assert (r2.on, r2.needs_fake_grad, r2.needs_real_grad) == ("fake", True, False)
    assert (R1(1.0).on, R1(1.0).needs_real_grad) == ("real", True)
    assert r2.penalty(Seen(0, fake=fakes, fake_logits=logits)).item() == approx(8.0)
    # lazy: every 4th iteration, 4 times as strong; nothing in between
    assert R2(2.0, interval=4).penalty(Seen(1, fake=fakes, fake_logits=logits)) is None
    assert R2(2.0, interval=4).penalty(Seen(8, fake=fakes, fake_logits=logits)).item() == approx(
        32.0
    )


def test_r2_in_a_step_penalises_d_at_the_generated_images():
    """One SGD step (lr 1) of a linear D, w . x, from the same weights and images with and
    without R2: its gradient at every fake is w, so R2 = |w|^2 and gamma/2 * R2 adds gamma * w
    to D's gradient, and nothing else changes."""
    from ganforge.training.runtime import Runtime
    from ganforge.training.step import AdversarialStep, Batch, StepOptions

    class Linear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0, 0.5]))

        def forward(self, x):
            return x.flatten(1) @ self.w

    class Fixed(torch.nn.Module):
        """A 'generator' that returns fixed fakes, so D's gradient can be written out."""

        def __init__(self):
            super().__init__()
            self.bias = torch.nn.Parameter(torch.zeros(1))

        def forward(self, z):
            return z.view(-1, 1, 2, 2) + self.bias

    grads = {}
    for gamma in (0.0, 3.0):
        d, g = Linear(), Fixed()
        opt_d = torch.optim.SGD(d.parameters(), lr=1.0)
        opt_g = torch.optim.SGD(g.parameters(), lr=0.0)
        step = AdversarialStep(
            g,
            d,
            opt_g,
            opt_d,
            get_loss("rpgan"),
            Runtime(torch.device("cpu"), None, False, False),
            StepOptions(separate_d_updates=False),
            regularisers=(R2(gamma),) if gamma else (),
        )
        before = d.w.detach().clone()
        real, z = torch.ones(2, 1, 2, 2), torch.zeros(2, 4)
        stats = step(Batch(real=real, z_d=z, z_g=z))
        grads[gamma] = before - d.w.detach()
        if not gamma:
            # D(real) = 1 - 2 + 3 + 0.5 = 2.5 and D(fake) = 0: D's loss softplus(-2.5); its
            # statistics read the pair, not the drifting logits: the real wins every pair
            d_loss, _, d_acc, d_real, d_fake = stats.tolist()
            assert d_loss == approx(math.log1p(math.exp(-2.5)))
            assert d_acc == 1.0 and d_real == approx(1 / (1 + math.exp(-2.5)))
            assert d_fake == approx(1 - d_real)
    # R2 of w . x is |w|^2 at every fake: gamma/2 * |w|^2 has gradient gamma * w
    expected = 3.0 * torch.tensor([1.0, -2.0, 3.0, 0.5])
    assert torch.allclose(grads[3.0] - grads[0.0], expected, atol=1e-5)


# ---- the gamma ramp ------------------------------------------------------------------------------
def test_gamma_falls_along_a_half_cosine_then_stays():
    assert gamma_at(1.0, 0.1, 100, 0) == approx(1.0)
    assert gamma_at(1.0, 0.1, 100, 50) == approx(0.55)
    assert gamma_at(1.0, 0.1, 100, 100) == approx(0.1)
    assert gamma_at(1.0, 0.1, 100, 500) == approx(0.1)
    assert gamma_at(1.0, None, 100, 50) == 1.0 and gamma_at(1.0, 0.1, 0, 50) == 1.0
    images = torch.ones(1, 1, 2, 2).requires_grad_(True)
    logits = images.pow(2).flatten(1).sum(1)
    # |grad|^2 = 16; at the end of the ramp gamma is 0.1: 0.05 * 16
    assert R1(1.0, final=0.1, ramp=10).penalty(Seen(10, images, logits)).item() == approx(0.8)


@pytest.mark.parametrize(
    "setting, fragment",
    [
        ("r2_gamma=-1", "r2_gamma must be"),
        ("gamma_ramp=-5", "gamma_ramp must be"),
        ("gamma_end=2", "gamma_end must be"),
        # an unknown penalty is an unknown setting, listed with the real ones
        ("r3_gamma=1", "r2_gamma, gamma_ramp, gamma_end"),
    ],
)
def test_bad_penalty_settings_are_one_line(cli, user_error, setting, fragment):
    user_error(cli("train", "--preset", "demo", "--set", setting, "--dry-run"), fragment)


# ---- in training ---------------------------------------------------------------------------------
PAIRED = {"d_separate_updates": False, "d_half_batch": False, "d_fakes_from_eval_g": False}


@pytest.fixture(scope="module")
def hinge_generator(tiny_config, tiny_images, tmp_path_factory) -> dict[str, torch.Tensor]:
    """The generator of the tiny run with hinge, trained once, on the paired step settings."""
    from safetensors.torch import load_file

    from ganforge import RunOptions, train

    config = tiny_config(
        out_dir=str(tmp_path_factory.mktemp("runs")), run_name="hinge", loss="hinge", **PAIRED
    )
    result = train(config, run=RunOptions(data=tiny_images(), show_progress=False))
    return load_file(result.run_dir / "generator.safetensors")


@pytest.mark.parametrize(
    "settings",
    [
        {"loss": "rpgan"},
        {"loss": "rpgan", "r1_gamma": 1.0, "r2_gamma": 1.0, "gamma_ramp": 6},
        {"loss": "rpgan", "update": "simultaneous", "r2_gamma": 1.0},
    ],
)
def test_rpgan_and_r2_change_what_training_does(train_tiny, hinge_generator, settings):
    """rpgan with and without R1 + R2, in both update modes, reaches the step: finite losses,
    and a generator other than hinge's from the same seed and data."""
    from safetensors.torch import load_file

    other = train_tiny("other", settings={**PAIRED, **settings})
    assert other.steps == 6
    assert all(math.isfinite(other.final_stats[k]) for k in ("d_loss", "g_loss", "d_acc"))
    weights = load_file(other.run_dir / "generator.safetensors")
    assert any(not torch.equal(weights[k], hinge_generator[k]) for k in weights)


# ---- a regulariser sees both sides ---------------------------------------------------------------
class _Gap:
    """A user's regulariser: k times D's mean real logit minus its mean fake logit, which needs
    both sides of D's step at once. It keeps what it was shown."""

    needs_real_grad = needs_fake_grad = False
    on = "both"

    def __init__(self, k: float):
        self.k, self.seen = k, []

    def penalty(self, seen: Seen) -> torch.Tensor:
        self.seen.append(seen)
        return self.k * (seen.real_logits.mean() - seen.fake_logits.mean())


def _linear_step(regularisers, **options):
    from ganforge.training.runtime import Runtime
    from ganforge.training.step import AdversarialStep, StepOptions

    d = torch.nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        d.weight.copy_(torch.tensor([[1.0, -2.0, 3.0, 0.5]]))
    flat = torch.nn.Sequential(torch.nn.Flatten(), d)
    g = torch.nn.Sequential(torch.nn.Linear(4, 4, bias=False), torch.nn.Unflatten(1, (1, 2, 2)))
    step = AdversarialStep(
        g,
        flat,
        torch.optim.SGD(g.parameters(), lr=0.0),
        torch.optim.SGD(flat.parameters(), lr=1.0),
        get_loss("bce"),
        Runtime(torch.device("cpu"), None, False, False),
        StepOptions(**options),
        regularisers=regularisers,
    )
    return step, d


def test_a_regulariser_sees_reals_fakes_both_logits_and_the_iteration():
    """In one D step over reals and fakes, a regulariser is shown both sides and the iteration,
    and its term moves D: k * (mean D(real) - mean D(fake)) for a linear D adds k times the
    mean real minus the mean fake image to D's gradient."""
    from ganforge.training.step import Batch

    torch.manual_seed(0)
    real, z = torch.rand(3, 1, 2, 2), torch.randn(3, 4)
    moved = {}
    for k in (0.0, 2.0):
        gap = _Gap(k)
        torch.manual_seed(1)
        step, d = _linear_step((gap,), separate_d_updates=False)
        fakes = step.G(z).detach()
        before = d.weight.detach().clone()
        step(Batch(real=real, z_d=z, z_g=z, index=7))
        moved[k] = before - d.weight.detach()
        (seen,) = gap.seen
        assert seen.index == 7
        assert torch.equal(seen.real, real) and torch.allclose(seen.fake, fakes)
        assert torch.allclose(seen.real_logits.flatten(), real.flatten(1) @ before[0])
        assert torch.allclose(seen.fake_logits.flatten(), fakes.flatten(1) @ before[0])
    expected = 2.0 * (real.flatten(1).mean(0) - fakes.flatten(1).mean(0))
    assert torch.allclose((moved[2.0] - moved[0.0])[0], expected, atol=1e-5)


def test_a_regulariser_of_both_sides_refuses_two_separate_d_steps():
    with pytest.raises(ValueError, match="d_separate_updates=false"):
        _linear_step((_Gap(1.0),), separate_d_updates=True)
    _linear_step((_Gap(1.0),), update="simultaneous", separate_d_updates=False)


# ---- R3GAN's optimiser schedule ------------------------------------------------------------------
def test_the_optimiser_ramp_sets_rates_and_beta2_from_the_iteration(tiny_config):
    """R3GAN's schedule: lr falls to lr_end of itself and beta2 rises to beta2_end along the
    gamma ramp's half cosine, set from the iteration number (so a resumed run continues it)."""
    from ganforge.training.optim import optim_schedule

    config = tiny_config(
        "demo",
        {"optim.ramp": 10, "optim.lr_end": 0.25, "optim.beta2": 0.9, "optim.beta2_end": 0.99},
    )
    g, d = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
    opt_g = torch.optim.Adam(g.parameters(), lr=config.optim.lr_g, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(d.parameters(), lr=config.optim.lr_d, betas=(0.0, 0.9))
    schedule = optim_schedule(config.optim, opt_g, opt_d)
    expected = ((0, 1.0, 0.9), (5, 0.625, 0.945), (10, 0.25, 0.99), (99, 0.25, 0.99))
    for index, share, beta2 in expected:
        schedule(index)
        for optimiser, lr in ((opt_g, config.optim.lr_g), (opt_d, config.optim.lr_d)):
            (group,) = optimiser.param_groups
            assert group["lr"] == approx(lr * share)
            assert group["betas"] == (0.0, approx(beta2))
    schedule(3)  # back to an earlier iteration: the values are functions of it, not a history
    assert opt_g.param_groups[0]["lr"] == approx(config.optim.lr_g * gamma_at(1.0, 0.25, 10, 3))
    assert optim_schedule(tiny_config("demo").optim, opt_g, opt_d) is None


@pytest.mark.parametrize(
    "setting, fragment",
    [
        ("optim.ramp=-1", "optim.ramp must be"),
        ("optim.lr_end=0", "optim.lr_end must be"),
        ("optim.beta2_end=1", "optim.beta2_end must be"),
    ],
)
def test_impossible_optimiser_ramps_are_one_line(cli, user_error, setting, fragment):
    result = cli("train", "--preset", "demo", "--set", setting, "--dry-run")
    user_error(result, fragment)


def test_a_run_with_the_ramp_ends_at_the_final_settings_and_resumes_onto_the_same_weights(
    train_tiny,
):
    """4 iterations with a 2-iteration ramp: the checkpoint's optimisers hold the final rates
    and beta2; stopping at 2 and resuming gives the uninterrupted run's weights bit for bit."""
    from safetensors.torch import load_file

    from ganforge.checkpoint import find_latest, load_checkpoint

    ramp = {"optim.ramp": 2, "optim.lr_end": 0.5, "optim.beta2_end": 0.99}
    whole = train_tiny("whole", settings=ramp, iterations=4, checkpoint_every=2)
    state = load_checkpoint(find_latest(whole.run_dir / "checkpoints"))
    for name, lr in (("opt_g", 2e-4), ("opt_d", 2e-4)):
        (group,) = state[name]["param_groups"]
        assert group["lr"] == approx(lr * 0.5) and group["betas"][1] == approx(0.99)
    train_tiny("parts", settings=ramp, iterations=2, checkpoint_every=2)
    parts = train_tiny("parts", settings=ramp, iterations=4, checkpoint_every=2, resume=True)
    first = load_file(whole.run_dir / "generator.safetensors")
    second = load_file(parts.run_dir / "generator.safetensors")
    assert all(torch.equal(first[k], second[k]) for k in first)
