"""The optimisers: Adam for each network, as the config says.

Besides the usual two independent Adams, this reproduces one Keras detail: the notebook's
GAN passes *one* Adam object to the discriminator and to the combined model, so both share
one iteration counter and the bias correction of every update uses the number of updates
made by either network (three per iteration). ``SharedIterationCounter`` keeps PyTorch's
per-parameter ``step`` equal to that shared count, through optimiser hooks, so the training
step stays unaware of it.
"""

from __future__ import annotations

import torch
from torch import nn

from ganforge.config import OptimConfig
from ganforge.losses import gamma_at
from ganforge.training.runtime import Runtime


def build_optimisers(
    generator: nn.Module, discriminator: nn.Module, optim: OptimConfig, runtime: Runtime
) -> tuple[torch.optim.Adam, torch.optim.Adam, SharedIterationCounter | None]:
    """Adam for G and for D (fused kernels on CUDA, the multi-tensor path on the CPU), and the
    shared iteration counter when the config asks for one."""
    fused = runtime.fused_optim
    settings = dict(
        betas=(optim.beta1, optim.beta2),
        eps=optim.eps,
        fused=fused or None,
        foreach=None if fused else True,
        capturable=runtime.cuda_graphs,
    )
    opt_g = torch.optim.Adam(generator.parameters(), lr=optim.lr_g, **settings)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=optim.lr_d, **settings)
    counter = SharedIterationCounter(opt_d, opt_g) if optim.shared_counter else None
    # registered after the counter: it reads the step the counter set
    if optim.keras_epsilon:
        for optimiser in (opt_d, opt_g):
            KerasEpsilon(optimiser, optim.eps)
    return opt_g, opt_d, counter


class KerasEpsilon:
    """Adam's epsilon where Keras adds it: to sqrt(v) before bias correction.

    PyTorch divides by sqrt(v_hat) + eps, Keras by sqrt(v) + eps with the bias correction
    folded into the step size; the two agree when PyTorch's eps is eps / sqrt(1 - beta2^t) at
    update t (3.2e-6 at t = 1 for Keras' 1e-7, fading over thousands of updates). This sets it
    before every update. It reads the parameters' step count (one host read per update on a
    GPU), which the faithful presets accept and the fast recipes do not use.
    """

    def __init__(self, optimiser: torch.optim.Optimizer, eps: float):
        self.eps = eps
        optimiser.register_step_pre_hook(self._before_step)

    def _before_step(self, optimiser: torch.optim.Optimizer, args, kwargs) -> None:
        for group in optimiser.param_groups:
            steps = [
                float(optimiser.state[p]["step"])
                for p in group["params"]
                if "step" in optimiser.state[p]
            ]
            update = max(steps, default=0.0) + 1
            group["eps"] = self.eps / (1.0 - group["betas"][1] ** update) ** 0.5


class SharedIterationCounter:
    """Makes several Adam optimisers count their updates together, as one Keras Adam does.

    Before any of them steps, every parameter's ``step`` is set to the number of updates made
    so far by all of them; Adam then adds one and uses it for bias correction. The count is
    not stored separately: at the first update it is read from the optimisers' states (the
    largest ``step``), so a resumed run, whose optimiser states are restored, continues it.
    """

    def __init__(self, *optimisers: torch.optim.Optimizer):
        self.optimisers = optimisers
        self._count: int | None = None
        for optimiser in optimisers:
            optimiser.register_step_pre_hook(self._before_step)
            optimiser.register_step_post_hook(self._after_step)

    def forget(self) -> None:
        """Re-read the count from the optimiser states at the next update (after a restore)."""
        self._count = None

    def count(self) -> int:
        """Updates made so far by all the optimisers together."""
        if self._count is None:
            steps = [
                float(state["step"])
                for opt in self.optimisers
                for state in opt.state.values()
                if "step" in state
            ]
            self._count = int(max(steps, default=0.0))
        return self._count

    def _after_step(self, optimiser: torch.optim.Optimizer, args, kwargs) -> None:
        self._count = self.count() + 1

    def _before_step(self, optimiser: torch.optim.Optimizer, args, kwargs) -> None:
        count = self.count()
        defaults = optimiser.defaults
        on_device = bool(defaults.get("fused") or defaults.get("capturable"))
        for group in optimiser.param_groups:
            for param in group["params"]:
                state = optimiser.state[param]
                # first update of this network: start from the shared count
                if not state:
                    device = param.device if on_device else torch.device("cpu")
                    state["step"] = torch.zeros((), dtype=torch.float32, device=device)
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(
                        param, memory_format=torch.preserve_format
                    )
                state["step"].fill_(count)


class OptimSchedule:
    """R3GAN's optimiser schedule: the learning rates and Adam's beta2 of both networks as
    functions of the iteration, along the half cosine of the R1/R2 gamma ramp
    (:func:`ganforge.losses.gamma_at`).

    The values are set from the iteration number before every iteration, never accumulated,
    so a resumed run takes up the schedule exactly where it stopped.
    """

    def __init__(
        self, optim: OptimConfig, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer
    ):
        self.optim = optim
        self.targets = ((opt_g, optim.lr_g), (opt_d, optim.lr_d))

    def __call__(self, index: int) -> None:
        o = self.optim
        beta2_end = o.beta2 if o.beta2_end is None else o.beta2_end
        beta2 = gamma_at(o.beta2, beta2_end, o.ramp, index)
        for optimiser, lr in self.targets:
            for group in optimiser.param_groups:
                group["lr"] = gamma_at(lr, lr * o.lr_end, o.ramp, index)
                group["betas"] = (group["betas"][0], beta2)


def optim_schedule(
    optim: OptimConfig, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer
) -> OptimSchedule | None:
    """The schedule the config asks for, or None for constant settings."""
    return OptimSchedule(optim, opt_g, opt_d) if optim.ramp > 0 else None
