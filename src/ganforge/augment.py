"""Differentiable augmentation for D, with an optional adaptive probability (ADA).

Why: with few images (a small medical set, a subset of MNIST) D memorises the training set
within a few thousand iterations; its verdicts on real images become confident, its
gradients to G useless, and G's samples degrade or copy training images. Augmenting every
image D sees, real and fake, in the D steps and in the G step, with transforms that are
differentiable (Zhao et al. 2020, "DiffAugment"), makes D's task harder without changing
what G must learn: since fakes are augmented exactly like reals, G is pushed to the real
distribution, not to an augmented one, and gradients flow back to G through the transforms.

Adaptive probability (Karras et al. 2020, "ADA"): each transform is applied to each image
with probability p. Every ``interval`` D steps the overfitting signal
r = E[sign(D(real))] is compared with ``target``: above it (D is too sure of the reals) p
rises, below it p falls, by ``images seen / speed`` per adjustment, so p can cross [0, 1]
in ``speed`` real images. Everything stays on the device: no host sync per iteration.

Transforms are registered by name in :data:`AUGMENTS`; ``--set augment=translation,cutout``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ganforge.errors import ConfigError

# [N, C, H, W] in [-1, 1] -> same shape
Transform = Callable[[torch.Tensor], torch.Tensor]


def brightness(x: torch.Tensor) -> torch.Tensor:
    """Add one offset per image, uniform in [-0.5, 0.5) (a quarter of the [-1, 1] range)."""
    return x + (torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)


def contrast(x: torch.Tensor) -> torch.Tensor:
    """Scale each image's deviations from its mean by a factor uniform in [0.5, 1.5)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    factor = torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5
    return (x - mean) * factor + mean


def saturation(x: torch.Tensor) -> torch.Tensor:
    """Scale each pixel's deviation from its grey value by [0, 2) (identity for one channel)."""
    if x.shape[1] == 1:
        return x
    mean = x.mean(dim=1, keepdim=True)
    factor = torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) * 2
    return (x - mean) * factor + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to `ratio` of its size, in whole pixels; black (-1) comes in."""
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device)
    batch, rows, cols = torch.meshgrid(
        torch.arange(n, device=x.device),
        torch.arange(h, device=x.device),
        torch.arange(w, device=x.device),
        indexing="ij",
    )
    rows = torch.clamp(rows + dy + 1, 0, h + 1)
    cols = torch.clamp(cols + dx + 1, 0, w + 1)
    # [N, H+2, W+2, C]
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0).permute(0, 2, 3, 1)
    return (
        padded[batch, rows, cols]
        .permute(0, 3, 1, 2)
        .contiguous(memory_format=torch.contiguous_format)
    )


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Set one square of `ratio` times the image size, at a random place, to mid-grey (0)."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device)
    left = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    # the square's top-left corner (may lie outside)
    row0, col0 = top - ch // 2, left - cw // 2
    # [N, H, W]
    inside = (rows >= row0) & (rows < row0 + ch) & (cols >= col0) & (cols < col0 + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


AUGMENTS: dict[str, Transform] = {
    "translation": translation,
    "cutout": cutout,
    "brightness": brightness,
    "contrast": contrast,
    "saturation": saturation,
}


def parse_names(text: str) -> list[str]:
    """'translation,cutout' -> the names, in order; an unknown name is a one-line ConfigError."""
    names = [part.strip() for part in str(text).split(",") if part.strip()]
    problem = names_problem(names)
    if problem:
        raise ConfigError(problem)
    return names


def names_problem(names: list[str]) -> str | None:
    unknown = [name for name in names if name not in AUGMENTS]
    if unknown:
        return (
            f"unknown augmentation {unknown[0]!r}; choose from: {', '.join(AUGMENTS)} "
            "(comma-separated, e.g. augment=translation,cutout)"
        )
    if len(set(names)) != len(names):
        return f"augmentation names repeat in {','.join(names)!r}; give each once"
    return None


class DiffAugment:
    """The ``augment`` plug-in of :class:`ganforge.training.step.AdversarialStep`.

    Each transform is applied to each image independently with probability ``p`` (a device
    tensor, so p can change without a host sync). With ``target`` set, :meth:`observe`
    (called by the step with D's logits on each real batch) adapts p as ADA does.
    """

    def __init__(
        self,
        names: list[str],
        p: float = 1.0,
        target: float | None = None,
        interval: int = 4,
        speed: float = 20_000.0,
        device: torch.device | str = "cpu",
    ):
        self.names = list(names)
        self.transforms = [AUGMENTS[name] for name in self.names]
        self.target, self.interval, self.speed = target, int(interval), float(speed)
        self.p = torch.tensor(float(p), device=device)
        self.sign_sum = torch.zeros((), device=device)
        self.seen = torch.zeros((), device=device)
        # D steps since the last adjustment (host int: no sync)
        self.observed = 0

    @property
    def adaptive(self) -> bool:
        return self.target is not None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Every transform, each applied per image with probability p; differentiable."""
        x = images
        for transform in self.transforms:
            keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device) >= self.p
            x = torch.where(keep, x, transform(x))
        return x

    @torch.no_grad()
    def observe(self, real_logits: torch.Tensor) -> None:
        """D's logits on a real batch: accumulate sign(D(real)); adjust p every `interval` calls."""
        if self.target is None:
            return
        self.sign_sum += torch.sign(real_logits.detach().float()).sum()
        self.seen += real_logits.shape[0]
        self.observed += 1
        if self.observed < self.interval:
            return
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # every process adjusts at the same D step: pool their verdicts so p stays one value
            # (each process sees its own shard of the reals and would otherwise drift)
            pooled = torch.stack([self.sign_sum, self.seen])
            dist.all_reduce(pooled)
            self.sign_sum.copy_(pooled[0])
            self.seen.copy_(pooled[1])
        # r_t in [-1, 1]
        overfit = self.sign_sum / self.seen
        step = torch.sign(overfit - self.target) * self.seen / self.speed
        self.p.copy_((self.p + step).clamp(0.0, 1.0))
        self.sign_sum.zero_()
        self.seen.zero_()
        self.observed = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            # clones: on the CPU .cpu() is the live tensor, which the next observe() changes
            "p": self.p.detach().cpu().clone(),
            "sign_sum": self.sign_sum.detach().cpu().clone(),
            "seen": self.seen.detach().cpu().clone(),
            "observed": self.observed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.p.copy_(state["p"])
        self.sign_sum.copy_(state["sign_sum"])
        self.seen.copy_(state["seen"])
        self.observed = int(state["observed"])


def from_config(config: Any, device: torch.device | str) -> DiffAugment | None:
    """The augmentation the config asks for (the ``augment`` group: ``names``, ``p``,
    ``ada_*``), or None."""
    names = parse_names(config.augment.names) if config.augment.names else []
    if not names:
        return None
    target = config.augment.ada_target if config.augment.ada_target > 0 else None
    start = config.augment.p if target is None else 0.0
    return DiffAugment(
        names, start, target, config.augment.ada_interval, config.augment.ada_speed, device
    )
