"""One training iteration: update modes, the shared noise batch and Keras' shared Adam counter."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from ganforge.config import OptimConfig
from ganforge.losses import get_loss
from ganforge.training.optim import SharedIterationCounter, build_optimisers
from ganforge.training.runtime import Runtime
from ganforge.training.step import AdversarialStep, Batch, StepOptions

CPU = Runtime(torch.device("cpu"), None, False, False)


def _tiny_models(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    generator = nn.Sequential(
        nn.Linear(4, 16),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.Linear(16, 8),
        nn.Tanh(),
        nn.Unflatten(1, (1, 2, 4)),
    )
    discriminator = nn.Sequential(
        nn.Flatten(), nn.Linear(8, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1), nn.Flatten(0)
    )
    return generator, discriminator


def _batch(seed: int = 1, shared: bool = False) -> Batch:
    torch.manual_seed(seed)
    real = torch.rand(6, 1, 2, 4) * 2 - 1
    z_d = torch.randn(6, 4)
    return Batch(real, z_d, z_d if shared else torch.randn(6, 4))


def test_simultaneous_step_is_the_gradient_tape_update():
    """Both losses from one forward pass; each network gets the gradient of its own loss, then both
    Adams step: the same as computing it by hand."""
    G, D = _tiny_models()
    G_ref, D_ref = copy.deepcopy(G), copy.deepcopy(D)
    opt_g, opt_d = (
        torch.optim.Adam(G.parameters(), lr=1e-3),
        torch.optim.Adam(D.parameters(), lr=1e-3),
    )
    step = AdversarialStep(
        G,
        D,
        opt_g,
        opt_d,
        get_loss("bce"),
        CPU,
        StepOptions(update="simultaneous", separate_d_updates=False),
    )
    batch = _batch()
    stats = step(batch)

    loss = get_loss("bce")
    fake = G_ref(batch.z_g)
    real_logits, fake_logits = D_ref(batch.real), D_ref(fake)
    g_loss = loss.g(fake_logits)
    d_loss = loss.d_real(real_logits, 0.0) + loss.d_fake(fake_logits)
    g_grads = torch.autograd.grad(g_loss, list(G_ref.parameters()), retain_graph=True)
    d_grads = torch.autograd.grad(d_loss, list(D_ref.parameters()))
    for module, grads in ((G_ref, g_grads), (D_ref, d_grads)):
        for param, grad in zip(module.parameters(), grads):
            param.grad = grad
        torch.optim.Adam(module.parameters(), lr=1e-3).step()
    for mine, reference in ((G, G_ref), (D, D_ref)):
        for a, b in zip(mine.state_dict().values(), reference.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    assert stats[1].item() == pytest.approx(
        g_loss.item(), abs=1e-6
    )  # G's loss on the same fakes D saw
    # D's loss as the tutorial reports it: real + fake, the loss its tape differentiates
    assert stats[0].item() == pytest.approx(d_loss.item(), abs=1e-6)


def test_alternating_step_trains_g_through_the_updated_d():
    """The default: D first, then G's loss through D's new weights (so it differs from the
    simultaneous step on the same inputs)."""
    results = []
    for update, separate in (("alternating", False), ("simultaneous", False)):
        G, D = _tiny_models()
        opt_g, opt_d = (
            torch.optim.Adam(G.parameters(), lr=1e-2),
            torch.optim.Adam(D.parameters(), lr=1e-2),
        )
        step = AdversarialStep(
            G,
            D,
            opt_g,
            opt_d,
            get_loss("bce"),
            CPU,
            StepOptions(update=update, separate_d_updates=separate),
        )
        step(_batch(shared=True))
        results.append(torch.cat([p.detach().flatten() for p in G.parameters()]))
    assert not torch.equal(results[0], results[1])


def test_shared_counter_counts_updates_of_both_networks_like_one_keras_adam():
    """The notebook's GAN: D real step, D fake step, G step share one Adam iteration count, so the
    n-th update of any network uses bias correction t = n overall (1, 2, 3, 4, ...)."""
    G, D = _tiny_models()
    opt_g, opt_d, counter = build_optimisers(G, D, OptimConfig(shared_counter=True), CPU)
    step = AdversarialStep(
        G, D, opt_g, opt_d, get_loss("bce"), CPU, StepOptions(separate_d_updates=True)
    )
    step(_batch())
    assert counter.count() == 3
    assert {float(s["step"]) for s in opt_d.state.values()} == {
        2.0
    }  # D's second update was the 2nd overall
    assert {float(s["step"]) for s in opt_g.state.values()} == {3.0}  # G's first update was the 3rd
    step(_batch(seed=2))
    assert {float(s["step"]) for s in opt_d.state.values()} == {5.0}
    assert {float(s["step"]) for s in opt_g.state.values()} == {6.0}


def _generator_update_sizes(shared: bool, iterations: int) -> list[float]:
    """|change| of a G weight per update, under a constant gradient, with D stepping twice per
    iteration (real, fake) before G, as in the notebook's GAN."""
    g_param, d_param = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    opt_g = torch.optim.Adam([g_param], lr=1e-3, betas=(0.5, 0.999), eps=1e-12)
    opt_d = torch.optim.Adam([d_param], lr=1e-3, betas=(0.5, 0.999), eps=1e-12)
    if shared:
        SharedIterationCounter(opt_d, opt_g)
    sizes = []
    for _ in range(iterations):
        for _ in range(2):
            d_param.grad = torch.ones(1)
            opt_d.step()
        before = g_param.item()
        g_param.grad = torch.ones(1)
        opt_g.step()
        sizes.append(abs(g_param.item() - before))
    return sizes


def test_shared_counter_makes_generator_updates_about_1_7x_larger_early_then_fades():
    """With t = 3n in G's bias correction instead of n, G's n-th update is scaled by
    (1 - b1^n)/(1 - b1^3n) * sqrt((1 - b2^3n)/(1 - b2^n)): 0.99 at n = 1, 1.72 at n = 10, and
    close to 1 by a few thousand iterations."""
    plain = _generator_update_sizes(False, 4000)
    shared = _generator_update_sizes(True, 4000)

    def expected(n: int) -> float:
        return (
            (1 - 0.5**n) / (1 - 0.5 ** (3 * n)) * math.sqrt((1 - 0.999 ** (3 * n)) / (1 - 0.999**n))
        )

    for n in (1, 10, 100):
        assert shared[n - 1] / plain[n - 1] == pytest.approx(expected(n), rel=1e-3)
    assert shared[9] / plain[9] == pytest.approx(1.72, abs=0.01)
    assert shared[3999] / plain[3999] < 1.01


def test_shared_noise_uses_one_batch_for_both_updates():
    """With one noise tensor, D's fakes (from G in inference mode) and G's step see the same z."""
    G, D = _tiny_models()
    seen = []
    G.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    opt_g, opt_d = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    AdversarialStep(G, D, opt_g, opt_d, get_loss("bce"), CPU, StepOptions(fakes_from_eval_g=True))(
        _batch(shared=True)
    )
    assert len(seen) == 2 and seen[0] is seen[1]


def test_keras_bce_caps_the_loss_and_stops_the_gradient_past_the_clip():
    loss = get_loss("bce-keras")
    logits = torch.tensor([40.0, 0.0, -40.0], requires_grad=True)
    value = loss.d_fake(logits)  # target 0: the first logit is confidently wrong
    top = float(torch.tensor(1 - 1e-7, dtype=torch.float32))  # 1 - 1e-7 in float32, as Keras clips
    expected = (-math.log(1 - top) + math.log(2) - math.log(1 - 1e-7)) / 3
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert logits.grad[0].item() == 0.0 and logits.grad[1].item() != 0.0
    assert get_loss("bce").d_fake(torch.tensor([40.0])).item() == pytest.approx(40.0, rel=1e-4)
