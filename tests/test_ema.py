"""The generator's moving average: the arithmetic of one update, and a resume that is bitwise.

With ``ema_decay`` on, the exported generator and every sample grid come from the average, so
an average that drifts on resume would change what a user gets without any visible error.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from ganforge.checkpoint import load_checkpoint
from ganforge.training.ema import GeneratorEMA, warmed_up_decay


def small_generator() -> nn.Module:
    """Weights and BatchNorm statistics, like the real generators."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def train_once(generator: nn.Module) -> None:
    """One optimiser step in training mode: the weights and the BatchNorm statistics move."""
    optimiser = torch.optim.SGD(generator.parameters(), lr=0.5)
    generator.train()
    generator(torch.randn(16, 3)).pow(2).mean().backward()
    optimiser.step()
    optimiser.zero_grad()


def test_an_update_is_the_lerp_by_hand_and_copies_batchnorm_statistics():
    generator = small_generator()
    ema = GeneratorEMA(generator, decay=0.9)
    before = {k: v.clone() for k, v in ema.model.state_dict().items()}
    train_once(generator)
    ema.update(generator)
    live = dict(generator.named_parameters())
    for name, averaged in ema.model.named_parameters():
        expected = 0.9 * before[name] + 0.1 * live[name].detach()
        torch.testing.assert_close(averaged, expected, rtol=1e-6, atol=1e-7)
        assert not torch.equal(averaged, live[name])  # an average, not a copy
    live_buffers = dict(generator.named_buffers())
    for name, buffer in ema.model.named_buffers():  # running mean, var and batch count: copied
        assert torch.equal(buffer, live_buffers[name]), name
    assert live_buffers["1.running_mean"].abs().sum() > 0  # the step really moved them


def test_two_updates_weigh_the_older_weights_by_decay_squared():
    generator = small_generator()
    ema = GeneratorEMA(generator, decay=0.75)
    start = {k: v.detach().clone() for k, v in generator.named_parameters()}
    train_once(generator)
    first = {k: v.detach().clone() for k, v in generator.named_parameters()}
    ema.update(generator)
    train_once(generator)
    ema.update(generator)
    for name, averaged in ema.model.named_parameters():
        expected = (
            0.5625 * start[name] + 0.1875 * first[name] + 0.25 * generator.get_parameter(name)
        )
        torch.testing.assert_close(averaged, expected.detach(), rtol=1e-6, atol=1e-7)


def test_the_average_warms_up_so_a_short_run_is_not_its_random_initialisation():
    """At iteration n the decay is min(decay, (1 + n) / (10 + n)): the first update keeps 10 %
    of the old weights, not 99.9 %, and from n = 8990 on the configured 0.999 applies."""
    generator = small_generator()
    ema = GeneratorEMA(generator, decay=0.999)
    start = {k: v.detach().clone() for k, v in generator.named_parameters()}
    train_once(generator)
    ema.update(generator, step=0)
    for name, averaged in ema.model.named_parameters():
        expected = 0.1 * start[name] + 0.9 * generator.get_parameter(name).detach()
        torch.testing.assert_close(averaged, expected, rtol=1e-6, atol=1e-7)
    assert warmed_up_decay(0.999, 8000) < 0.999 == warmed_up_decay(0.999, 9000)
    assert warmed_up_decay(0.5, 0) == 0.1 and warmed_up_decay(0.5, 100) == 0.5


def test_the_average_is_a_separate_frozen_model_in_eval_mode():
    generator = small_generator()
    ema = GeneratorEMA(generator, decay=0.9)
    frozen = {k: v.clone() for k, v in ema.model.state_dict().items()}
    train_once(generator)  # no update yet: the average must not follow by aliasing
    assert all(torch.equal(v, frozen[k]) for k, v in ema.model.state_dict().items())
    assert not ema.model.training
    assert not any(p.requires_grad for p in ema.model.parameters())


# ---- a bitwise resume with the average on --------------------------------------------------------
def final_state(run_dir) -> dict:
    return load_checkpoint(max((run_dir / "checkpoints").glob("ckpt-*.pt")))


def losses(run_dir) -> list[tuple]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["d_loss"], r["g_loss"]) for r in map(json.loads, lines) if "d_loss" in r]


def assert_bitwise_equal(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for name, tensor in first.items():
        assert torch.equal(tensor, second[name]), name


@pytest.mark.parametrize(
    "preset",
    [  # random batches; shuffled and stopped mid-pass, conv + BN
        "mnist-gan",
        pytest.param("demo", marks=pytest.mark.slow),
    ],
)
def test_stop_and_resume_with_ema_is_bitwise_equal_to_one_run(train_tiny, preset):
    settings = {
        "iterations": 12,
        "ema_decay": 0.9,
        "checkpoint_every": 5,
        "log_every": 1,
        "deterministic": True,
    }
    whole = train_tiny("whole", preset, settings)
    stopped = train_tiny("stopped", preset, {**settings, "iterations": 5})
    assert stopped.steps == 5
    resumed = train_tiny("stopped", preset, settings, resume=True)
    assert resumed.steps == whole.steps == 12
    a, b = final_state(whole.run_dir), final_state(resumed.run_dir)
    assert_bitwise_equal(a["ema"], b["ema"])
    assert_bitwise_equal(a["generator"], b["generator"])
    # the exported generator is the average, and it is the same file content either way
    exported = load_file(whole.run_dir / "generator.safetensors")
    assert_bitwise_equal(exported, load_file(resumed.run_dir / "generator.safetensors"))
    assert_bitwise_equal(exported, a["ema"])
    assert any(not torch.equal(a["ema"][k], a["generator"][k]) for k in a["ema"])
    assert losses(resumed.run_dir) == losses(whole.run_dir)
