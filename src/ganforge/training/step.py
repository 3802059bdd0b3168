"""One training iteration: the discriminator update(s), then the generator update.

This is the only place where the adversarial game is played. It returns its statistics
as device tensors, so that the loop never waits for the GPU inside an iteration: nothing
here calls ``.item()``, ``bool(tensor)`` or anything else that needs a value on the host.

Mixed precision (bf16 autocast, CUDA only): convolutions and matrix products run in
bf16; autocast leaves ``batch_norm`` alone (it is in neither of its cast lists), so
BatchNorm runs on bf16 activations with fp32 weights, accumulates its batch statistics
in fp32 and keeps its running mean and variance in fp32 (tests/test_fastpath.py checks
this). Every loss is computed in fp32 from ``logits.float()`` (ganforge/losses.py), and
parameters, gradients and Adam moments stay fp32.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ganforge.losses import GANLoss, r1_penalty
from ganforge.training.runtime import Runtime

STAT_NAMES = ("d_loss", "g_loss", "d_acc", "d_real", "d_fake")


class AdversarialStep:
    def __init__(self, generator: nn.Module, discriminator: nn.Module, opt_g: torch.optim.Optimizer,
                 opt_d: torch.optim.Optimizer, loss: GANLoss, runtime: Runtime, *, separate_d_updates: bool,
                 fakes_from_eval_g: bool, label_smoothing: float = 0.0, r1_gamma: float = 0.0, ema=None,
                 g_forward=None, d_forward=None):
        self.G, self.D, self.opt_g, self.opt_d = generator, discriminator, opt_g, opt_d
        # possibly torch.compile'd callables (an OptimizedModule has no truth value: test for None)
        self.g_forward = g_forward if g_forward is not None else generator
        self.d_forward = d_forward if d_forward is not None else discriminator
        self.loss, self.runtime = loss, runtime
        self.separate, self.fakes_from_eval_g = separate_d_updates, fakes_from_eval_g
        self.smoothing, self.r1_gamma, self.ema = label_smoothing, r1_gamma, ema

    def __call__(self, real: torch.Tensor, z_d: torch.Tensor, z_g: torch.Tensor) -> torch.Tensor:
        """real: [B, C, H, W] in [-1, 1]; z_d: noise for D's fakes; z_g: noise for the G step.

        Returns a [5] tensor of STAT_NAMES, on the device.
        """
        fake = self._fakes_for_d(z_d)
        d_loss, d_acc, d_real, d_fake = self._update_d(real, fake)
        g_loss = self._update_g(z_g)
        if self.ema is not None:
            self.ema.update(self.G)
        return torch.stack([d_loss, g_loss, d_acc, d_real, d_fake])

    def use_eager(self) -> None:
        """Drop the compiled forwards (after a compile failure)."""
        self.g_forward, self.d_forward = self.G, self.D

    def probe(self, real: torch.Tensor, z_d: torch.Tensor, z_g: torch.Tensor) -> torch.Tensor:
        """Run one whole iteration, wait for it, then undo it.

        With torch.compile this compiles every graph the step needs (G in train and eval
        mode, D with and without weight gradients, the backward passes) before training
        starts, so a compile failure surfaces here, where falling back to eager leaves no
        trace: weights, BatchNorm statistics, optimiser state, EMA and RNG are restored.
        """
        snapshot = _Snapshot(self)
        try:
            stats = self(real, z_d, z_g)
            values = stats.detach().cpu()  # deliberate sync: errors of asynchronous kernels surface here
        finally:
            snapshot.restore()
        return values

    def _fakes_for_d(self, z: torch.Tensor) -> torch.Tensor:
        was_training = self.G.training
        if self.fakes_from_eval_g:
            self.G.eval()  # Keras generator.predict(): BatchNorm uses its running statistics
        with torch.no_grad(), self.runtime.autocast():
            fake = self.g_forward(z)
        self.G.train(was_training)
        return fake

    def _update_d(self, real: torch.Tensor, fake: torch.Tensor):
        self.D.requires_grad_(True)
        if self.r1_gamma > 0:
            real = real.detach().requires_grad_(True)
        if self.separate:  # two optimiser steps, as two Keras train_on_batch calls
            real_logits, real_loss = self._d_real_pass(real)
            self._step_d(real_loss)
            with self.runtime.autocast():
                fake_logits = self.d_forward(fake)
            fake_loss = self.loss.d_fake(fake_logits)
            self._step_d(fake_loss)
        else:  # one step on the sum; real and fake pass D separately, as in the G step
            real_logits, real_loss = self._d_real_pass(real)
            with self.runtime.autocast():
                fake_logits = self.d_forward(fake)
            fake_loss = self.loss.d_fake(fake_logits)
            self._step_d(real_loss + fake_loss)
        with torch.no_grad():
            real_logits, fake_logits = real_logits.detach().float(), fake_logits.detach().float()
            accuracy = 0.5 * ((real_logits > 0).float().mean() + (fake_logits < 0).float().mean())
            d_loss = 0.5 * (real_loss.detach() + fake_loss.detach())
            return d_loss, accuracy, torch.sigmoid(real_logits).mean(), torch.sigmoid(fake_logits).mean()

    def _d_real_pass(self, real: torch.Tensor):
        with self.runtime.autocast():
            logits = self.d_forward(real)
        loss = self.loss.d_real(logits, self.smoothing)
        if self.r1_gamma > 0:
            loss = loss + 0.5 * self.r1_gamma * r1_penalty(logits, real)
        return logits, loss

    def _step_d(self, loss: torch.Tensor) -> None:
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()

    def _update_g(self, z: torch.Tensor) -> torch.Tensor:
        self.D.requires_grad_(False)  # D is frozen in the G step; no weight gradients for it
        with self.runtime.autocast():
            logits = self.d_forward(self.g_forward(z))
        loss = self.loss.g(logits)
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        return loss.detach()


class _Snapshot:
    """Everything one iteration changes, copied so that it can be put back."""

    def __init__(self, step: AdversarialStep):
        self.step = step
        self.models = [(m, {k: v.detach().clone() for k, v in m.state_dict().items()})
                       for m in (step.G, step.D, step.ema.model if step.ema is not None else None) if m is not None]
        self.optimizers = [(opt, copy.deepcopy(opt.state_dict())) for opt in (step.opt_g, step.opt_d)]
        self.modes = [(m, m.training) for m in (step.G, step.D)]
        self.cpu_rng = torch.get_rng_state()
        device = step.runtime.device
        self.cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    @torch.no_grad()
    def restore(self) -> None:
        for module, state in self.models:
            for key, value in module.state_dict().items():
                value.copy_(state[key])  # in place: parameter addresses stay what compiled code saw
        for opt, state in self.optimizers:
            opt.load_state_dict(state)
            opt.zero_grad(set_to_none=True)
        for module, training in self.modes:
            module.train(training)
        self.step.D.requires_grad_(True)
        torch.set_rng_state(self.cpu_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state(self.cuda_rng, self.step.runtime.device)


class GraphedStep:
    """The whole iteration (D update(s), G update, EMA, statistics) replayed as one CUDA graph.

    For fixed shapes the GPU work of an iteration never changes, so after ``warmup`` eager
    iterations (on a side stream, which also creates Adam's state) the next one is
    captured and every later one is a single ``graph.replay()``: no per-kernel launch cost,
    no Python in the iteration beyond copying the batch and the noise into static inputs.
    Requires Adam(capturable=True) (the loop sets it) and autocast without its weight cache
    (Runtime.autocast). Dropout's RNG is graph-safe (philox offsets advance per replay).

    If capture fails, it says why in ``runtime.notes`` and runs eagerly from then on; the
    failed capture executed nothing, so training continues from the same state.
    The returned statistics tensor is overwritten by the next call: consume it at once.
    """

    def __init__(self, step: AdversarialStep, runtime: Runtime, warmup: int = 3):
        self.step, self.runtime, self.warmup = step, runtime, warmup
        self.calls = 0
        self.graph: Any = None
        self.failed = False
        self.static: tuple[torch.Tensor, ...] = ()
        self.static_out: torch.Tensor | None = None
        self._side = torch.cuda.Stream(device=runtime.device)

    def __call__(self, real: torch.Tensor, z_d: torch.Tensor, z_g: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.graph is not None:
            for static, value in zip(self.static, (real, z_d, z_g)):
                static.copy_(value)
            self.graph.replay()
            return self.static_out
        if self.failed:
            return self.step(real, z_d, z_g)
        if self.calls <= self.warmup:
            return self._eager_on_side_stream(real, z_d, z_g)
        return self._capture(real, z_d, z_g)

    def _eager_on_side_stream(self, real, z_d, z_g) -> torch.Tensor:
        current = torch.cuda.current_stream(self.runtime.device)
        self._side.wait_stream(current)
        with torch.cuda.stream(self._side):
            out = self.step(real, z_d, z_g)
        current.wait_stream(self._side)
        out.record_stream(current)
        return out

    def _capture(self, real, z_d, z_g) -> torch.Tensor:
        self.static = tuple(t.clone() for t in (real, z_d, z_g))  # clone keeps channels-last
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                out = self.step(*self.static)
        except torch.OutOfMemoryError:
            raise  # the trainer turns it into a message with the memory figures
        except Exception as exc:  # e.g. an op that syncs, or a library that cannot be captured
            self.failed, self.static = True, ()
            torch.cuda.synchronize(self.runtime.device)
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            self.runtime.notes.append(f"cuda_graphs: capture failed ({type(exc).__name__}: {first}); "
                                      "running the step without CUDA graphs")
            return self.step(real, z_d, z_g)
        self.graph, self.static_out = graph, out
        graph.replay()  # the captured iteration is this one: capture itself executes nothing
        return out
