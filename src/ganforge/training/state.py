"""The training state: everything a run changes as it trains, owned in one place.

``TrainingState`` holds the two networks, their optimisers, the EMA of G, the batch sampler,
the noise stream, the fixed grid noise, the iteration count, the training time and the best
evaluation score. It is built from a config and an image shape, saved by the checkpointer
(``training/checkpointer.py``, through ``checkpoint.training_checkpoint``) from
:meth:`state_dict` and restored with :meth:`load_state_dict`; ``ganforge.generate`` reads the
generator out of a saved state through ``checkpoint.generator_from_checkpoint``. Two more
things a run changes live beside it, and the checkpointer saves and restores them with it:
the adaptive augmentation's probability (owned by the augmentation) and, with several
processes, each process's own random streams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganforge.checkpoint import load_state_strict
from ganforge.config import TrainConfig
from ganforge.errors import CheckpointError
from ganforge.models import build_models
from ganforge.models.spectral import apply_spectral_norm
from ganforge.noise import draw_noise
from ganforge.training.ema import GeneratorEMA
from ganforge.training.optim import SharedIterationCounter, build_optimisers
from ganforge.training.runtime import Runtime, batch_norm_channels_last
from ganforge.training.sampler import BatchSampler


@dataclass
class TrainingState:
    config: TrainConfig
    image_shape: tuple[int, int, int]
    generator: nn.Module
    discriminator: nn.Module
    opt_g: torch.optim.Adam
    opt_d: torch.optim.Adam
    ema: GeneratorEMA | None
    sampler: BatchSampler
    noise_rng: torch.Generator
    # [grid_size^2, latent_dim] on the device, fixed for the run
    grid_noise: torch.Tensor
    device: torch.device
    step: int = 0
    # training seconds of earlier sessions of a resumed run
    elapsed: float = 0.0
    best_metric: float | None = None
    # one Adam count for D and G (optim.shared_counter)
    counter: SharedIterationCounter | None = None
    # fp16 loss scales of D and G
    scalers: dict[str, torch.amp.GradScaler] | None = None

    @classmethod
    def create(
        cls,
        config: TrainConfig,
        image_shape: tuple[int, int, int],
        dataset_size: int,
        runtime: Runtime,
    ) -> TrainingState:
        """Fresh models, optimisers and random streams, all derived from ``config.seed``.

        The caller seeds the global generator first: model initialisation draws from it.
        """
        c, device = config, runtime.device
        generator, discriminator = build_models(
            c.model.arch, c.model.latent_dim, image_shape, c.model.options
        )
        # before the optimisers and any checkpoint load see D
        if c.regularise.spectral_norm == "d":
            apply_spectral_norm(discriminator)
        memory_format = torch.channels_last if runtime.channels_last else torch.contiguous_format
        generator.to(device, memory_format=memory_format)
        discriminator.to(device, memory_format=memory_format)
        if runtime.channels_last and device.type == "cpu":
            batch_norm_channels_last(generator)
            batch_norm_channels_last(discriminator)
        opt_g, opt_d, counter = build_optimisers(generator, discriminator, c.optim, runtime)
        ema = (
            GeneratorEMA(generator, c.regularise.ema_decay) if c.regularise.ema_decay > 0 else None
        )
        sampler = BatchSampler(
            dataset_size, c.batch_sizes().real, c.schedule.batch_order, seed=c.seed + 1
        )
        noise_rng = torch.Generator(device=device).manual_seed(c.seed + 2)
        grid_rng = torch.Generator(device="cpu").manual_seed(c.seed + 3)
        grid_noise = draw_noise(
            c.schedule.grid_size**2, c.model.latent_dim, c.latent.for_grids(), grid_rng, "cpu"
        ).to(device)
        return cls(
            c,
            tuple(image_shape),
            generator,
            discriminator,
            opt_g,
            opt_d,
            ema,
            sampler,
            noise_rng,
            grid_noise,
            device,
            counter=counter,
            scalers=(
                {name: torch.amp.GradScaler(device.type) for name in ("d", "g")}
                if runtime.grad_scaling
                else None
            ),
        )

    # ---- derived ------------------------------------------------------------------------------
    @property
    def sampling_generator(self) -> nn.Module:
        """The generator that samples, grids and metrics use: the EMA copy when kept."""
        return self.ema.model if self.ema else self.generator

    @property
    def steps_per_epoch(self) -> int:
        return self.sampler.batches_per_pass

    @property
    def total_steps(self) -> int:
        c = self.config
        return (
            c.schedule.epochs * self.steps_per_epoch
            if c.schedule.epochs is not None
            else int(c.schedule.iterations)
        )

    def reset_counters(self) -> None:
        """Forget cached optimiser counts (after optimiser states were restored)."""
        if self.counter is not None:
            self.counter.forget()

    # ---- saving and restoring --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values only, so the checkpoint loads with weights_only=True."""
        rng = {"torch": torch.get_rng_state(), "noise": self.noise_rng.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "step": self.step,
            "elapsed": self.elapsed,
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "ema": self.ema.model.state_dict() if self.ema else {},
            "sampler": self.sampler.state_dict(),
            "rng": rng,
            "grid_noise": self.grid_noise.cpu(),
            "best_metric": self.best_metric if self.best_metric is not None else float("nan"),
            "scalers": {name: s.state_dict() for name, s in (self.scalers or {}).items()},
        }

    def load_state_dict(self, state: dict[str, Any], source: Path) -> None:
        """Restore everything :meth:`state_dict` saved; a mismatch is a one-line CheckpointError."""
        load_state_strict(self.generator, state["generator"], "generator", source)
        load_state_strict(self.discriminator, state["discriminator"], "discriminator", source)
        try:
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
        except (ValueError, KeyError) as exc:
            raise CheckpointError(
                f"{source}: the optimiser state does not fit this run ({str(exc)[:120]})"
            ) from None
        self.reset_counters()
        for optimiser, lr in (
            (self.opt_g, self.config.optim.lr_g),
            (self.opt_d, self.config.optim.lr_d),
        ):
            # a resumed run may lower the rate after a divergence
            for group in optimiser.param_groups:
                group["lr"] = lr
        for name, saved in (state.get("scalers") or {}).items():
            if self.scalers and name in self.scalers:
                self.scalers[name].load_state_dict(saved)
        if self.ema and state["ema"]:
            load_state_strict(self.ema.model, state["ema"], "EMA generator", source)
        self.sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["rng"]["torch"])
        self.noise_rng.set_state(state["rng"]["noise"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.grid_noise = state["grid_noise"].to(self.device)
        self.step, self.elapsed = int(state["step"]), float(state["elapsed"])
        best = float(state["best_metric"])
        self.best_metric = None if math.isnan(best) else best
