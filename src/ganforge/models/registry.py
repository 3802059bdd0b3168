"""Architectures registered by name.

An architecture is a pair of builders, one for the generator and one for the
discriminator, plus a check that says which image shapes it supports. Models take plain
numbers (latent size, image shape, options) and know nothing of files or configs.

Every generator maps z [N, latent_dim] -> images [N, C, H, W] in [-1, 1]; every
discriminator maps images -> logits [N] (the sigmoid lives in the loss, for numerical
stability; D(x) as a probability is ``torch.sigmoid(logits)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from ganforge.errors import ConfigError, unknown_name

ImageShape = tuple[int, int, int]  # (channels, height, width)


@dataclass(frozen=True)
class Architecture:
    name: str
    summary: str
    generator: Callable[..., nn.Module]  # (latent_dim, image_shape, **options) -> nn.Module
    discriminator: Callable[..., nn.Module]  # (image_shape, **options) -> nn.Module
    supports: Callable[[ImageShape], str | None]  # None if supported, else the reason
    default_resolution: int | None = None
    options: tuple[str, ...] = ()  # the option names the builders accept


ARCHITECTURES: dict[str, Architecture] = {}


def register(arch: Architecture) -> Architecture:
    ARCHITECTURES[arch.name] = arch
    return arch


def get_architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise unknown_name("model", name, list(ARCHITECTURES))
    return ARCHITECTURES[name]


def build_models(name: str, latent_dim: int, image_shape: ImageShape,
                 options: dict[str, Any] | None = None) -> tuple[nn.Module, nn.Module]:
    """Build (generator, discriminator) for `image_shape`, or raise a ConfigError."""
    arch = get_architecture(name)
    reason = arch.supports(tuple(image_shape))
    if reason:
        raise ConfigError(f"model {name!r} cannot make images of shape {tuple(image_shape)}: {reason}")
    options = dict(options or {})
    unknown = sorted(set(options) - set(arch.options))
    if unknown:
        valid = ", ".join(arch.options) or "none"
        raise ConfigError(f"model {name!r} has no option {unknown[0]!r}; its options: {valid}")
    try:
        generator = arch.generator(latent_dim, tuple(image_shape), **options)
        discriminator = arch.discriminator(tuple(image_shape), **options)
    except (TypeError, ValueError, OverflowError, RuntimeError) as exc:  # e.g. width=nan, or too big to allocate
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"bad option for model {name!r} ({options!r:.80}): {text}") from None
    return generator, discriminator


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters, as Keras' 'Trainable params' counts them."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def keras_init(module: nn.Module) -> None:
    """Keras defaults: Glorot-uniform weights and zero biases for Dense and Conv layers."""
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
