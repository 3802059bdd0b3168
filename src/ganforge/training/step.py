"""One training iteration: the discriminator update(s), then the generator update.

This is the only place where the adversarial game is played. It returns its statistics
as device tensors, so that the loop never waits for the GPU inside an iteration.
"""

from __future__ import annotations

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
        self.g_forward = g_forward or generator  # possibly torch.compile'd callables
        self.d_forward = d_forward or discriminator
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
        else:
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
