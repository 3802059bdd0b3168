"""Training-health warnings: a discriminator that wins outright, and collapsed samples."""

from __future__ import annotations

import torch

from ganforge.training.health import HealthMonitor, spread

WINNING = {"d_acc": 1.0, "d_fake": 0.001}
BALANCED = {"d_acc": 0.7, "d_fake": 0.3}


def test_dominance_is_reported_once_after_a_long_stretch():
    monitor = HealthMonitor(real_spread=1.0, dominance_steps=500)
    assert monitor.check_stats(100, WINNING) is None
    assert monitor.check_stats(400, WINNING) is None
    message = monitor.check_stats(600, WINNING)
    assert message and "since iteration 100" in message and "label_smoothing" in message
    assert monitor.check_stats(700, WINNING) is None  # said once
    assert monitor.check_stats(800, BALANCED) is None  # recovered: the stretch starts again
    assert monitor.check_stats(900, WINNING) is None


def test_collapsed_samples_are_reported_but_not_during_warm_up():
    real = torch.rand(64, 1, 28, 28) * 2 - 1
    monitor = HealthMonitor(real_spread=spread(real), dominance_steps=500)
    one_image_repeated = real[:1].repeat(64, 1, 1, 1) + 0.01 * torch.randn(64, 1, 28, 28)
    assert (
        monitor.check_samples(100, one_image_repeated) is None
    )  # a fresh generator: not a collapse
    assert "mode collapse at iteration 600" in monitor.check_samples(600, one_image_repeated)
    assert monitor.check_samples(700, real) is None
