"""One training iteration: the discriminator update(s), then the generator update.

This is the only place where the adversarial game is played. It returns its statistics
as device tensors, so that the loop never waits for the GPU inside an iteration: nothing
here calls ``.item()``, ``bool(tensor)`` or anything else that needs a value on the host.

Mixed precision (bf16 autocast, on a GPU or a CPU with native bf16): convolutions and matrix
products run in bf16; autocast leaves ``batch_norm`` alone (it is in neither of its cast lists), so
BatchNorm runs on bf16 activations with fp32 weights, accumulates its batch statistics
in fp32 and keeps its running mean and variance in fp32 (tests/test_fastpath.py checks
this). Every loss is computed in fp32 from ``logits.float()`` (ganforge/losses.py), and
parameters, gradients and Adam moments stay fp32.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Protocol

import torch
from torch import nn

from ganforge.augment import from_config as augment_from_config
from ganforge.config import TrainConfig
from ganforge.losses import R1, R2, GANLoss, Seen, get_loss
from ganforge.training.optim import optim_schedule
from ganforge.training.runtime import Runtime

if TYPE_CHECKING:
    from ganforge.training.state import TrainingState

STAT_NAMES = ("d_loss", "g_loss", "d_acc", "d_real", "d_fake")


@dataclass
class Batch:
    """The inputs of one iteration, on the device.

    ``z_g`` is the same tensor as ``z_d`` when one noise batch feeds both updates
    (shared_noise). ``labels`` / ``fake_labels`` are class labels for conditional models.
    """

    # [B, C, H, W] in [-1, 1]
    real: torch.Tensor
    # [B_fake, latent_dim]: noise for D's fakes
    z_d: torch.Tensor
    # [B, latent_dim]: noise for the G step
    z_g: torch.Tensor
    # [B] classes of the real images
    labels: torch.Tensor | None = None
    # [B_fake] classes asked of G for D's fakes
    fake_labels: torch.Tensor | None = None
    # [B] classes asked of G in the G step
    fake_labels_g: torch.Tensor | None = None
    # the iteration number (lazy regularisers)
    index: int = 0

    def tensors(self) -> tuple[torch.Tensor | None, ...]:
        return (self.real, self.z_d, self.z_g, self.labels, self.fake_labels, self.fake_labels_g)


class Regulariser(Protocol):
    """A term added to D's loss, given everything D saw in that step (:class:`losses.Seen`):
    the real and fake images, both logits and the iteration.

    ``on`` says which part of D's loss it joins: "real" (``losses.R1``; it sees the real side),
    "fake" (``losses.R2``; it sees the fake side, and the real side where D takes both in one
    step) or "both" (it needs both sides: one D step per iteration). ``needs_real_grad`` and
    ``needs_fake_grad`` ask for D's inputs to carry a gradient (gradient penalties).
    """

    needs_real_grad: bool
    needs_fake_grad: bool
    on: str

    def penalty(self, seen: Seen) -> torch.Tensor | None:
        """The term to add, or None when it skips this iteration."""


# applied to every image D sees, real and fake
Augment = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class StepOptions:
    """How the iteration is played (each one a config field)."""

    # alternating | simultaneous
    update: str = "alternating"
    # two D steps (real, then fake) as two Keras train_on_batch calls
    separate_d_updates: bool = True
    # D's fakes from G in inference mode (Keras predict)
    fakes_from_eval_g: bool = False


class AdversarialStep:
    """One iteration. Plug-ins: the loss, regularisers on D's real loss, an augmentation applied
    to every image D sees, and class labels for conditional models; none of them touches the
    loop."""

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        opt_g: torch.optim.Optimizer,
        opt_d: torch.optim.Optimizer,
        loss: GANLoss,
        runtime: Runtime,
        options: StepOptions = StepOptions(),
        *,
        regularisers: tuple[Regulariser, ...] = (),
        augment: Augment | None = None,
        ema: Any = None,
        g_forward: Callable | None = None,
        d_forward: Callable | None = None,
        scalers: dict[str, torch.amp.GradScaler] | None = None,
        schedule: Callable[[int], None] | None = None,
    ):
        self.G, self.D, self.opt_g, self.opt_d = generator, discriminator, opt_g, opt_d
        # possibly torch.compile'd callables (an OptimizedModule has no truth value: test for None)
        self.g_forward = g_forward if g_forward is not None else generator
        self.d_forward = d_forward if d_forward is not None else discriminator
        self.loss, self.runtime, self.options = loss, runtime, options
        self.regularisers, self.augment, self.ema = tuple(regularisers), augment, ema
        # sets the optimisers' settings for an iteration from its number (optim.OptimSchedule)
        self.schedule = schedule
        self._check_regularisers()
        # GraphedStep updates the average itself, outside the graph: its warm-up decay changes
        # every iteration, and a captured graph would replay the capture iteration's value
        self.defer_ema = False
        # fp16: one loss scale per network ("d", "g"), so an overflow in D's step never shrinks
        # G's scale, and each scale is updated once per optimiser step as PyTorch's AMP wants
        self.scalers = scalers or {}
        # an adaptive augmentation (ganforge.augment.DiffAugment) is told D's verdicts on reals
        self.observe = getattr(augment, "observe", None)

    def __call__(self, batch: Batch) -> torch.Tensor:
        """Returns a [5] tensor of STAT_NAMES, on the device."""
        if self.schedule is not None:
            self.schedule(batch.index)
        if self.options.update == "simultaneous":
            stats = self._simultaneous(batch)
        else:
            fake = self._fakes_for_d(batch.z_d, batch.fake_labels)
            d_loss, d_acc, d_real, d_fake = self._update_d(batch, fake)
            g_loss = self._update_g(batch.z_g, batch.fake_labels_g, batch)
            stats = (d_loss, g_loss, d_acc, d_real, d_fake)
        if self.ema is not None and not self.defer_ema:
            self.ema.update(self.G, batch.index)
        return torch.stack(stats)

    def _check_regularisers(self) -> None:
        both = [type(r).__name__ for r in self.regularisers if r.on == "both"]
        if both and self._separate_d_steps():
            raise ValueError(
                f"{', '.join(both)} needs D's real and fake sides in one step; set "
                "d_separate_updates=false (or update=simultaneous)"
            )

    def _separate_d_steps(self) -> bool:
        """Two D steps per iteration (real, then fake), as two Keras train_on_batch calls."""
        return (
            self.options.update == "alternating"
            and self.options.separate_d_updates
            and self.loss.pair is None
        )

    def use_eager(self) -> None:
        """Drop the compiled forwards (after a compile failure)."""
        self.g_forward, self.d_forward = self.G, self.D

    def probe(self, batch: Batch) -> torch.Tensor:
        """Run one whole iteration, wait for it, then undo it.

        With torch.compile this compiles every graph the step needs (G in train and eval
        mode, D with and without weight gradients, the backward passes) before training
        starts, so a compile failure surfaces here, where falling back to eager leaves no
        trace: weights, BatchNorm statistics, optimiser state, EMA and RNG are restored.
        """
        snapshot = _Snapshot(self)
        try:
            stats = self(batch)
            # deliberate sync: errors of asynchronous kernels surface here
            values = stats.detach().cpu()
        finally:
            snapshot.restore()
        return values

    # ---- forwards ---------------------------------------------------------------------------
    def _generate(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return self.g_forward(z) if labels is None else self.g_forward(z, labels)

    def _discriminate(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if self.augment is not None:
            images = self.augment(images)
        return self.d_forward(images) if labels is None else self.d_forward(images, labels)

    def _fakes_for_d(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        was_training = self.G.training
        if self.options.fakes_from_eval_g:
            # Keras generator.predict(): BatchNorm uses its running statistics
            self.G.eval()
        with torch.no_grad(), self.runtime.autocast():
            fake = self._generate(z, labels)
        self.G.train(was_training)
        return fake

    # ---- alternating: D, then G through the updated D --------------------------------------------
    def _update_d(self, batch: Batch, fake: torch.Tensor):
        """D's update(s) on the real batch and the fakes; the loss terms are called here."""
        self.D.requires_grad_(True)
        paired, smoothing = self.loss.pair is not None, self.loss.label_smoothing
        real = self._real_input(batch.real)
        real_logits = self._d_logits(real, batch.labels)
        # a paired loss's term is added once both logits exist; here only the penalties
        real_loss = _zero(real_logits) if paired else self.loss.d_real(real_logits, smoothing)
        if self.observe is not None:
            self.observe(real_logits)
        real_seen = Seen(batch.index, real, real_logits)
        real_loss = self._penalties(("real",), real_loss, real_seen)
        # two optimiser steps, as two Keras train_on_batch calls (check.py refuses it for a
        # paired loss, which needs both logits in one step)
        separate = self._separate_d_steps()
        if separate:
            self._step_d(real_loss)
            real_seen = Seen(batch.index)
        fake = self._fake_input(fake)
        fake_logits = self._d_logits(fake, batch.fake_labels)
        fake_loss = _zero(fake_logits) if paired else self.loss.d_fake(fake_logits)
        seen = replace(real_seen, fake=fake, fake_logits=fake_logits)
        fake_loss = self._penalties(("fake", "both"), fake_loss, seen)
        if paired:
            fake_loss = fake_loss + self.loss.pair.d(real_logits, fake_logits)
            self._step_d(real_loss + fake_loss)
            return self._d_stats(*_relative(real_logits, fake_logits), real_loss, fake_loss, 1.0)
        # else one step on the sum; real and fake pass D separately, as in the G step
        self._step_d(fake_loss if separate else real_loss + fake_loss)
        return self._d_stats(real_logits, fake_logits, real_loss, fake_loss)

    def _real_input(self, real: torch.Tensor) -> torch.Tensor:
        """The real batch, carrying a gradient when a penalty needs D's gradient on it."""
        if any(r.needs_real_grad for r in self.regularisers):
            return real.detach().requires_grad_(True)
        return real

    def _fake_input(self, fake: torch.Tensor) -> torch.Tensor:
        if any(r.needs_fake_grad for r in self.regularisers) and not fake.requires_grad:
            return fake.detach().requires_grad_(True)
        return fake

    def _d_logits(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        with self.runtime.autocast():
            return self._discriminate(images, labels)

    def _penalties(self, on: tuple[str, ...], loss: torch.Tensor, seen: Seen) -> torch.Tensor:
        """`loss` plus every regulariser that joins this part of D's loss (`on`)."""
        for regulariser in self.regularisers:
            if regulariser.on not in on:
                continue
            term = regulariser.penalty(seen)
            if term is not None:
                loss = loss + term
        return loss

    def _step_d(self, loss: torch.Tensor) -> None:
        self.opt_d.zero_grad(set_to_none=True)
        self._backward_and_step(loss, self.opt_d, self.scalers.get("d"))

    @staticmethod
    def _backward_and_step(
        loss: torch.Tensor, optimiser: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None
    ) -> None:
        if scaler is None:
            loss.backward()
            optimiser.step()
            return
        scaler.scale(loss).backward()
        # skipped when the scaled gradients overflowed
        scaler.step(optimiser)
        scaler.update()

    def _update_g(
        self, z: torch.Tensor, labels: torch.Tensor | None, batch: Batch | None = None
    ) -> torch.Tensor:
        # D is frozen in the G step; no weight gradients for it
        self.D.requires_grad_(False)
        with self.runtime.autocast():
            logits = self._discriminate(self._generate(z, labels), labels)
        if self.loss.pair is not None and batch is not None:
            # the updated D's verdict on the paired reals; a constant for G
            with torch.no_grad(), self.runtime.autocast():
                real_logits = self._discriminate(batch.real, batch.labels)
            loss = self.loss.pair.g(logits, real_logits)
        else:
            loss = self.loss.g(logits)
        self.opt_g.zero_grad(set_to_none=True)
        self._backward_and_step(loss, self.opt_g, self.scalers.get("g"))
        self.D.requires_grad_(True)
        return loss.detach()

    # ---- simultaneous: both losses from one forward pass (a Keras GradientTape step) -------------
    def _simultaneous(self, batch: Batch):
        """One noise batch, one G forward; D sees the real batch and those fakes; G's loss is
        taken on the same fake logits; each network gets the gradient of its own loss, then
        both optimisers step."""
        self.D.requires_grad_(True)
        paired, index = self.loss.pair is not None, batch.index
        real = self._real_input(batch.real)
        with self.runtime.autocast():
            fake = self._generate(batch.z_g, batch.fake_labels_g)
        real_logits = self._d_logits(real, batch.labels)
        smoothing = self.loss.label_smoothing
        real_loss = _zero(real_logits) if paired else self.loss.d_real(real_logits, smoothing)
        if self.observe is not None:
            self.observe(real_logits)
        real_loss = self._penalties(("real",), real_loss, Seen(index, real, real_logits))
        fake = self._fake_input(fake)
        fake_logits = self._d_logits(fake, batch.fake_labels_g)
        fake_loss = _zero(fake_logits) if paired else self.loss.d_fake(fake_logits)
        seen = Seen(index, real, real_logits, fake, fake_logits)
        fake_loss = self._penalties(("fake", "both"), fake_loss, seen)
        if paired:
            fake_loss = fake_loss + self.loss.pair.d(real_logits, fake_logits)
            g_loss = self.loss.pair.g(fake_logits, real_logits.detach())
        else:
            g_loss = self.loss.g(fake_logits)
        g_params = [p for p in self.G.parameters() if p.requires_grad]
        d_params = [p for p in self.D.parameters() if p.requires_grad]
        scaled = {name: scaler.scale for name, scaler in self.scalers.items()}
        g_grads = torch.autograd.grad(scaled.get("g", _same)(g_loss), g_params, retain_graph=True)
        d_grads = torch.autograd.grad(scaled.get("d", _same)(real_loss + fake_loss), d_params)
        for params, grads in ((g_params, g_grads), (d_params, d_grads)):
            for param, grad in zip(params, grads):
                param.grad = grad
        for name, optimiser in (("d", self.opt_d), ("g", self.opt_g)):
            scaler = self.scalers.get(name)
            if scaler is None:
                optimiser.step()
            else:
                scaler.step(optimiser)
                scaler.update()
        self.opt_d.zero_grad(set_to_none=True)
        self.opt_g.zero_grad(set_to_none=True)
        if self.loss.pair is not None:
            real_logits, fake_logits = _relative(real_logits, fake_logits)
        # D's loss as the GradientTape step defines it: real + fake, the sum it differentiates
        d_loss, d_acc, d_real, d_fake = self._d_stats(
            real_logits, fake_logits, real_loss, fake_loss, share=1.0
        )
        return d_loss, g_loss.detach(), d_acc, d_real, d_fake

    @staticmethod
    def _d_stats(
        real_logits: torch.Tensor,
        fake_logits: torch.Tensor,
        real_loss: torch.Tensor,
        fake_loss: torch.Tensor,
        share: float = 0.5,
    ):
        """D's statistics; its loss is `share` times real + fake: the mean of the two Keras
        train_on_batch losses (0.5, the notebook's 0.5 * np.add) or the GradientTape sum (1)."""
        with torch.no_grad():
            real_logits, fake_logits = real_logits.detach().float(), fake_logits.detach().float()
            accuracy = 0.5 * ((real_logits > 0).float().mean() + (fake_logits < 0).float().mean())
            d_loss = share * (real_loss.detach() + fake_loss.detach())
            return (
                d_loss,
                accuracy,
                torch.sigmoid(real_logits).mean(),
                torch.sigmoid(fake_logits).mean(),
            )


def _same(loss: torch.Tensor) -> torch.Tensor:
    return loss


def _zero(logits: torch.Tensor) -> torch.Tensor:
    return logits.new_zeros((), dtype=torch.float32)


def _relative(
    real_logits: torch.Tensor, fake_logits: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A paired loss's verdicts as D's statistics read them: D(real) - D(fake) for the reals
    and its negation for the fakes. A relativistic D's logits can drift by any constant
    without changing its loss, so only the difference says anything: D accuracy becomes the
    share of pairs with the real scored higher, D(x) the mean sigmoid of the difference, and
    the health monitor's "D dominates" warning keeps its meaning."""
    difference = real_logits.detach().float() - fake_logits.detach().float()
    return difference, -difference


class _Snapshot:
    """Everything one iteration changes, copied so that it can be put back."""

    def __init__(self, step: AdversarialStep):
        self.step = step
        self.models = [
            (m, {k: v.detach().clone() for k, v in m.state_dict().items()})
            for m in (step.G, step.D, step.ema.model if step.ema is not None else None)
            if m is not None
        ]
        self.optimizers = [
            (opt, copy.deepcopy(opt.state_dict())) for opt in (step.opt_g, step.opt_d)
        ]
        self.scalers = {name: copy.deepcopy(s.state_dict()) for name, s in step.scalers.items()}
        # ADA's probability and its pending verdicts: the probe's D step must not count
        augment = step.augment
        self.augment = augment.state_dict() if hasattr(augment, "state_dict") else None
        self.modes = [(m, m.training) for m in (step.G, step.D)]
        self.cpu_rng = torch.get_rng_state()
        device = step.runtime.device
        self.cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    @torch.no_grad()
    def restore(self) -> None:
        for module, state in self.models:
            for key, value in module.state_dict().items():
                # in place: parameter addresses stay what compiled code saw
                value.copy_(state[key])
        for opt, state in self.optimizers:
            opt.load_state_dict(state)
            opt.zero_grad(set_to_none=True)
        for name, state in self.scalers.items():
            self.step.scalers[name].load_state_dict(state)
        if self.augment is not None:
            self.step.augment.load_state_dict(self.augment)
        for module, training in self.modes:
            module.train(training)
        self.step.D.requires_grad_(True)
        torch.set_rng_state(self.cpu_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state(self.cuda_rng, self.step.runtime.device)


def build_step(
    config: TrainConfig,
    state: TrainingState,
    runtime: Runtime,
    g_forward: Callable | None = None,
    d_forward: Callable | None = None,
) -> AdversarialStep:
    """The iteration the config describes: loss, update mode, regularisers, augmentation."""
    c = config
    options = StepOptions(
        update=c.step.update,
        separate_d_updates=c.step.d_separate_updates,
        fakes_from_eval_g=c.step.d_fakes_from_eval_g,
    )
    ramp = {"ramp": c.regularise.gamma_ramp}
    regularisers = tuple(
        kind(gamma, c.regularise.r1_interval, final=gamma * c.regularise.gamma_end, **ramp)
        for kind, gamma in ((R1, c.regularise.r1_gamma), (R2, c.regularise.r2_gamma))
        if gamma > 0
    )
    return AdversarialStep(
        state.generator,
        state.discriminator,
        state.opt_g,
        state.opt_d,
        get_loss(c.loss, label_smoothing=c.regularise.label_smoothing),
        runtime,
        options,
        regularisers=regularisers,
        augment=augment_from_config(c, runtime.device),
        ema=state.ema,
        g_forward=g_forward,
        d_forward=d_forward,
        scalers=state.scalers,
        schedule=optim_schedule(c.optim, state.opt_g, state.opt_d),
    )
