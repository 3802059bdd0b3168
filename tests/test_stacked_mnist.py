"""StackedMNIST: the data source (three real digits as RGB, 1,000 modes) and the mode metric.

Everything here is built from the real MNIST digits that ship with ganforge: the metric is
checked on real stacks (near all the modes their number allows, low KL) and on real stacks
cut down to a few modes (a collapsed "generator"), never on a mock.
"""

from __future__ import annotations

import math

import pytest
import torch

from ganforge.config import DataConfig
from ganforge.data import load_images, source_problems
from ganforge.data.stacked import stack_digits
from ganforge.errors import ConfigError
from ganforge.metrics import MetricContext, evaluate_with_intervals, resolve_metrics
from ganforge.metrics.modes import mode_intervals, mode_scores, predict_modes


# ---- the data source -----------------------------------------------------------------------------
def test_stacks_are_three_real_digits_labelled_by_their_mode(mnist_dir):
    data = load_images(DataConfig(dataset="stacked-mnist", split="test", options={"stacks": 200}))
    digits = load_images(DataConfig(dataset="mnist", split="test"))
    assert data.name == "stacked-mnist/test" and data.images.shape == (200, 3, 28, 28)
    assert data.num_classes == 1000 and int(data.labels.max()) < 1000
    label_of = {
        bytes(image.numpy()): int(label) for image, label in zip(digits.images, digits.labels)
    }
    for stack, mode in zip(data.images, data.labels):
        # every channel is one of the split's digits; the mode spells their labels
        red, green, blue = (label_of[bytes(channel[None].numpy())] for channel in stack)
        assert int(mode) == 100 * red + 10 * green + blue


def test_stacks_follow_the_seed_and_the_split_size(mnist_dir):
    once = load_images(DataConfig(dataset="stacked-mnist", options={"stacks": 64, "stack_seed": 3}))
    again = load_images(
        DataConfig(dataset="stacked-mnist", options={"stacks": 64, "stack_seed": 3})
    )
    other = load_images(
        DataConfig(dataset="stacked-mnist", options={"stacks": 64, "stack_seed": 4})
    )
    assert torch.equal(once.images, again.images) and torch.equal(once.labels, again.labels)
    assert not torch.equal(once.images, other.images)
    # by default as many stacks as the split has digits (2,500 in the test stand-in)
    assert len(load_images(DataConfig(dataset="stacked-mnist"))) == 2_500
    # the same stacks through an explicit --data folder; 32 x 32 through the resolution
    explicit = DataConfig(
        dataset="stacked-mnist", path=str(mnist_dir), options={"stacks": 64, "stack_seed": 3}
    )
    assert torch.equal(load_images(explicit).images, once.images)
    resized = load_images(DataConfig(dataset="stacked-mnist", resolution=32, options={"stacks": 8}))
    assert resized.images.shape == (8, 3, 32, 32)


def test_bad_stack_options_are_one_line(cli, user_error):
    result = cli("train", "--preset", "stacked-best", "--set", "data.stacks=0", "--dry-run")
    user_error(result, "data.options.stacks must be a whole number > 0")
    # the MNIST source's own checks apply to the digits underneath
    missing = DataConfig(
        dataset="stacked-mnist", path="/no/such/folder", options={"stack_seed": 1.5}
    )
    assert source_problems(missing) == [
        "--data /no/such/folder does not exist",
        "data.options.stack_seed expects int, got 1.5; the options of dataset "
        "'stacked-mnist': stacks (int | None), stack_seed (int)",
    ]


# ---- the metric on real stacks -------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_stacks(mnist_test_split):
    """2,000 stacks of the 5,000 shipped real digits, their true modes and the modes the
    classifier reads (classified once for the module)."""
    stacks, modes = stack_digits(mnist_test_split.images, mnist_test_split.labels, 2_000, 0)
    return stacks, modes, predict_modes(stacks)


def test_the_classifier_reads_real_stacks_digit_by_digit(real_stacks):
    stacks, modes, predicted = real_stacks
    # 98.9 % per digit gives about 0.989^3 = 96.7 % per stack
    assert (predicted == modes).double().mean() > 0.95


def test_real_stacks_cover_what_their_number_allows_with_a_low_kl(real_stacks):
    _, _, predicted = real_stacks
    scores = mode_scores(predicted)
    intervals = mode_intervals(predicted, scores, torch.Generator().manual_seed(0), 50)
    # 2,000 uniform draws of 1,000 modes cover 1000 (1 - e^-2) = 865 on average
    assert scores["modes"] >= 0.97 * 1000 * (1 - math.exp(-2))
    # the KL of 2,000 uniform draws is about 999 / (2 * 2,000) = 0.25
    assert scores["mode_kl"] < 0.4
    for key in ("modes", "mode_kl"):
        low, high = intervals[key]
        assert low <= scores[key] <= high and high - low > 0
    assert intervals["modes"][1] <= 1000


def test_a_generator_collapsed_onto_a_few_modes_scores_few_modes_and_a_high_kl(real_stacks):
    stacks, modes, _ = real_stacks
    # real stacks of only 10 digit triples, repeated to 1,000 images
    kept = stacks[torch.isin(modes, modes[:10])]
    collapsed = kept.repeat(1_000 // len(kept) + 1, 1, 1, 1)[:1_000]
    scores, intervals = evaluate_with_intervals(
        stacks[:1_000], collapsed, ["stacked-mnist"], MetricContext("stacked-mnist/test"), 20
    )
    assert set(intervals) == {"modes", "mode_kl"}
    # 10 modes, plus the few that misread digits add
    assert 10 <= scores["modes"] <= 20
    # ln(1000 / 10) = 4.6 for ten equally frequent modes; uneven ones score higher
    assert scores["mode_kl"] > 4.0


def test_mode_scores_by_hand():
    # every mode once: all 1,000 covered, KL 0; one mode only: 1 covered, KL ln 1000
    assert mode_scores(torch.arange(1000)) == {"modes": 1000.0, "mode_kl": pytest.approx(0.0)}
    single = mode_scores(torch.full((50,), 7))
    assert single["modes"] == 1.0 and single["mode_kl"] == pytest.approx(math.log(1000))


def test_the_metric_is_in_the_default_set_of_stacked_data_only():
    assert "stacked-mnist" in resolve_metrics(None, MetricContext("stacked-mnist/test"))
    assert "stacked-mnist" not in resolve_metrics(None, MetricContext("mnist/test"))
    assert resolve_metrics("modes", MetricContext("stacked-mnist/test")) == ["stacked-mnist"]


def test_grayscale_or_other_data_is_refused_in_one_line(
    mnist_test_split, tmp_path, cli, user_error
):
    gray = mnist_test_split.images[:1000]
    with pytest.raises(ConfigError, match="3-channel"):
        evaluate_with_intervals(
            gray, gray, ["stacked-mnist"], MetricContext("stacked-mnist/test"), 0
        )
    with pytest.raises(ConfigError, match="StackedMNIST"):
        evaluate_with_intervals(gray, gray, ["stacked-mnist"], MetricContext("mnist/test"), 0)
    array = tmp_path / "digits.npy"
    import numpy as np

    np.save(array, gray.numpy())
    result = cli("eval", array, "--dataset", "mnist", "--metrics", "modes", "--count", "1000")
    user_error(result, "StackedMNIST", "'mnist/test'", "drop stacked-mnist")


# ---- the preset and the command line -------------------------------------------------------------
def test_stacked_best_trains_and_is_scored_with_modes(tmp_path, tiny_config, cli):
    """A tiny run of the preset on real stacks, then `ganforge eval --metrics stacked-mnist`."""
    from ganforge import RunOptions, train

    config = tiny_config(
        "stacked-best",
        {"model.options.channels": 8, "gamma_ramp": 4, "grid_size": 2},
        iterations=4,
        out_dir=str(tmp_path / "runs"),
        run_name="stacked",
    )
    assert (
        config.loss == "rpgan" and config.regularise.r1_gamma > 0 and config.regularise.r2_gamma > 0
    )
    result = train(config, run=RunOptions(show_progress=False))
    assert result.steps == 4 and math.isfinite(result.final_stats["d_loss"])
    code, out, err = cli("eval", result.run_dir, "--metrics", "stacked-mnist", "--count", "1000")
    assert code == 0, err
    assert "modes" in out and "mode_kl" in out and "stacked-mnist/test" in out
