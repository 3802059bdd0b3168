"""The adversarial losses and R1 give the textbook numbers on inputs small enough to do by hand.

Every expected value below is written out from the definition (sigmoid of ln 3 is 3/4, and so
on), not computed with the code under test.
"""

from __future__ import annotations

import math

import pytest
import torch

from ganforge.errors import ConfigError
from ganforge.losses import get_loss, r1_penalty

LN2, LN3 = math.log(2.0), math.log(3.0)


def approx(value: float):
    return pytest.approx(value, rel=1e-6, abs=1e-7)


# ---- bce: sigmoid(0) = 1/2 and sigmoid(ln 3) = 3/4 -----------------------------------------------
def test_bce_on_logits_zero_and_ln3():
    bce = get_loss("bce")
    logits = torch.tensor([0.0, LN3])
    # real: -ln sigmoid(x) = ln 2 and ln(4/3)
    assert bce.d_real(logits, 0.0).item() == approx((LN2 + math.log(4 / 3)) / 2)
    # fake: -ln(1 - sigmoid(x)) = ln 2 and ln 4
    assert bce.d_fake(logits).item() == approx((LN2 + math.log(4)) / 2)
    # non-saturating G: the generator wants D to say "real": the same as the real term
    assert bce.g(logits).item() == approx((LN2 + math.log(4 / 3)) / 2)


def test_bce_label_smoothing_moves_only_the_real_target():
    bce = get_loss("bce")
    logits = torch.tensor([0.0, LN3])
    # target 0.9: -(0.9 ln p + 0.1 ln(1 - p)); for p = 1/2 that is still ln 2
    expected = (LN2 + 0.9 * math.log(4 / 3) + 0.1 * math.log(4)) / 2
    assert bce.d_real(logits, 0.1).item() == approx(expected)
    assert bce.d_fake(logits).item() == approx((LN2 + math.log(4)) / 2)  # one-sided: fakes stay 0


def test_label_smoothing_is_a_parameter_of_the_configured_loss(tiny_config):
    """The step reads the smoothing from its loss, which build_step sets from the config."""
    from ganforge.training.runtime import resolve_runtime
    from ganforge.training.state import TrainingState
    from ganforge.training.step import build_step

    assert get_loss("bce").label_smoothing == 0.0
    assert get_loss("bce", label_smoothing=0.2).label_smoothing == 0.2
    config = tiny_config("mnist-gan", label_smoothing=0.1)
    runtime = resolve_runtime(config)
    state = TrainingState.create(config, (1, 28, 28), 64, runtime)
    step = build_step(config, state, runtime)
    assert step.loss.name == "bce-keras" and step.loss.label_smoothing == 0.1


def test_bce_gradient_is_sigmoid_minus_target():
    logits = torch.tensor([0.0, LN3], requires_grad=True)
    get_loss("bce").g(logits).backward()
    # d/dx mean(-ln sigmoid(x)) = (sigmoid(x) - 1) / n
    assert logits.grad.tolist() == [approx((0.5 - 1) / 2), approx((0.75 - 1) / 2)]


# ---- hinge ---------------------------------------------------------------------------------------
def test_hinge_on_fixed_logits():
    hinge = get_loss("hinge")
    logits = torch.tensor([-2.0, 0.5, 3.0])
    assert hinge.d_real(logits, 0.0).item() == approx((3.0 + 0.5 + 0.0) / 3)  # relu(1 - x)
    assert hinge.d_fake(logits).item() == approx((0.0 + 1.5 + 4.0) / 3)  # relu(1 + x)
    assert hinge.g(logits).item() == approx(-(-2.0 + 0.5 + 3.0) / 3)  # -mean(x)
    assert hinge.d_real(logits, 0.1).item() == approx((2.9 + 0.4 + 0.0) / 3)  # margin 1 - 0.1


# ---- least squares -------------------------------------------------------------------------------
def test_lsgan_on_fixed_logits():
    lsgan = get_loss("lsgan")
    logits = torch.tensor([-1.0, 0.5, 3.0])
    assert lsgan.d_real(logits, 0.0).item() == approx(0.5 * (4.0 + 0.25 + 4.0) / 3)  # (x - 1)^2
    assert lsgan.d_fake(logits).item() == approx(0.5 * (1.0 + 0.25 + 9.0) / 3)  # x^2
    assert lsgan.g(logits).item() == approx(0.5 * (4.0 + 0.25 + 4.0) / 3)
    assert lsgan.d_real(logits, 0.5).item() == approx(0.5 * (2.25 + 0.0 + 6.25) / 3)  # target 0.5


@pytest.mark.parametrize("name", ["bce", "hinge", "lsgan"])
def test_losses_are_computed_in_fp32_from_low_precision_logits(name):
    """Mixed precision hands D's logits over in bf16; the loss itself must not lose digits."""
    loss = get_loss(name)
    logits = torch.tensor([-1.0, 0.5, 3.0])
    for term in (lambda x: loss.d_real(x, 0.0), loss.d_fake, loss.g):
        low = term(logits.bfloat16())
        assert low.dtype == torch.float32
        assert low.item() == approx(term(logits).item())  # these logits are exact in bf16


def test_unknown_loss_is_a_config_error_naming_the_choices():
    with pytest.raises(ConfigError) as caught:
        get_loss("wasserstein")
    message = str(caught.value)
    assert "\n" not in message and "'wasserstein'" in message
    assert all(name in message for name in ("bce", "hinge", "lsgan"))


# ---- R1 ------------------------------------------------------------------------------------------
def test_r1_of_a_linear_discriminator_is_the_squared_weight_norm():
    """D(x) = w . x has gradient w at every image, so R1 = |w|^2 = 1 + 4 + 9 + 0.25."""
    w = torch.tensor([1.0, -2.0, 3.0, 0.5], requires_grad=True)
    images = torch.randn(5, 1, 2, 2, generator=torch.Generator().manual_seed(0)).requires_grad_(
        True
    )
    logits = images.flatten(1) @ w
    penalty = r1_penalty(logits, images)
    assert penalty.item() == approx(14.25)
    # the penalty is part of D's loss, so it must be differentiable in D's weights: d|w|^2/dw = 2w
    (grad_w,) = torch.autograd.grad(penalty, w)
    assert grad_w.tolist() == [2.0, -4.0, 6.0, 1.0]


def test_r1_is_the_mean_over_images_of_each_squared_gradient_norm():
    """D(x) = sum(x^2) has gradient 2x: 16 for an image of four ones, 0 for zeros; mean 8."""
    images = torch.stack([torch.ones(1, 2, 2), torch.zeros(1, 2, 2)]).requires_grad_(True)
    logits = images.pow(2).flatten(1).sum(1)
    assert r1_penalty(logits, images).item() == approx(8.0)


# ---- the losses in a real iteration --------------------------------------------------------------
@pytest.fixture(scope="module")
def plain_bce_generator(tiny_config, tiny_images, tmp_path_factory) -> dict[str, torch.Tensor]:
    """The generator of the tiny run with plain bce and no regulariser, trained once."""
    from safetensors.torch import load_file

    from ganforge import RunOptions, train

    config = tiny_config(out_dir=str(tmp_path_factory.mktemp("runs")), run_name="plain")
    result = train(config, run=RunOptions(data=tiny_images(), show_progress=False))
    return load_file(result.run_dir / "generator.safetensors")


@pytest.mark.parametrize(
    "settings",
    [
        {"loss": "hinge"},
        {"loss": "lsgan"},
        {"label_smoothing": 0.1},
        {"r1_gamma": 10.0},
    ],
)
def test_each_loss_and_regulariser_changes_what_training_does(
    train_tiny, plain_bce_generator, settings
):
    """hinge, lsgan, label smoothing and R1 reach the step: the run finishes with finite losses
    and its generator ends somewhere other than plain bce's from the same seed and data."""
    from safetensors.torch import load_file

    other = train_tiny("other", settings=settings)
    assert other.steps == 6
    assert all(math.isfinite(v) for v in other.final_stats.values())
    weights = load_file(other.run_dir / "generator.safetensors")
    assert weights.keys() == plain_bce_generator.keys()
    assert any(not torch.equal(weights[k], plain_bce_generator[k]) for k in weights)


def test_the_plain_run_is_reproducible(train_tiny, plain_bce_generator):
    """The comparison above means something only if the same settings give the same weights."""
    from safetensors.torch import load_file

    again = load_file(train_tiny("again").run_dir / "generator.safetensors")
    assert all(torch.equal(again[k], plain_bce_generator[k]) for k in again)


# ---- bce as Keras computes it --------------------------------------------------------------------
def test_bce_keras_matches_bce_inside_the_clip_and_caps_outside():
    """Keras clips probabilities to [1e-7, 1 - 1e-7]: the loss stops near -ln(1e-7)
    and its gradient is zero past the clip, where plain bce keeps growing and pulling."""
    keras, bce = get_loss("bce-keras"), get_loss("bce")
    inside = torch.tensor([0.0, LN3, -2.0])
    assert keras.d_real(inside, 0.0).item() == approx(bce.d_real(inside, 0.0).item())
    assert keras.d_fake(inside).item() == approx(bce.d_fake(inside).item())
    far = torch.tensor([40.0], requires_grad=True)  # sigmoid(40) rounds to 1 in fp32
    capped = keras.d_fake(far)
    # -ln(1e-7) = 16.12; in fp32, 1 - 1e-7 rounds to 1 - 1.19e-7, so -ln(1.19e-7) = 15.94
    assert 15.9 < capped.item() < 16.2
    assert bce.d_fake(far).item() == pytest.approx(40.0, rel=1e-6)  # softplus(40)
    capped.backward()
    assert far.grad.item() == 0.0
