"""Architectures registered by name, declared by their two classes.

An architecture is a generator class, a discriminator class and a check that says which
image shapes it supports. Its options are the keyword parameters of the two constructors
after `latent_dim` / `image_shape`, with the defaults written there and nowhere else, so
`get_architecture(name).options` and the help texts cannot drift from the code. An option
that both classes take (e.g. `width`) must have the same default in both.

Models take plain numbers (latent size, image shape, options) and know nothing of files or
configs. Every generator maps z [N, latent_dim] -> images [N, C, H, W] in [-1, 1]; every
discriminator maps images -> logits [N] (the sigmoid lives in the loss, for numerical
stability; D(x) as a probability is ``torch.sigmoid(logits)``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ganforge.errors import ConfigError, first_line, unknown_name
from ganforge.models.layers import ImageShape

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "ImageShape",
    "build_models",
    "count_parameters",
    "generator_skeleton",
    "get_architecture",
    "register",
]


def _keyword_options(cls: type, positional: tuple[str, ...]) -> dict[str, Any]:
    """The constructor's parameters after `positional`, each with its default."""
    # drop self
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    names = tuple(p.name for p in params[: len(positional)])
    if names != positional:
        raise TypeError(f"{cls.__name__}.__init__ must start with {positional}, got {names}")
    options = {}
    for p in params[len(positional) :]:
        if p.default is inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(
                f"{cls.__name__}: option {p.name!r} needs a default (and no *args/**kwargs)"
            )
        options[p.name] = p.default
    return options


@dataclass(frozen=True)
class Architecture:
    name: str
    summary: str
    # Generator(latent_dim, image_shape, **its options)
    generator: type[nn.Module]
    # Discriminator(image_shape, **its options)
    discriminator: type[nn.Module]
    # None, or the reason
    supports: Callable[[ImageShape], str | None] = lambda shape: None
    default_resolution: int | None = None
    g_options: dict[str, Any] = field(init=False, repr=False)
    d_options: dict[str, Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        g = _keyword_options(self.generator, ("latent_dim", "image_shape"))
        d = _keyword_options(self.discriminator, ("image_shape",))
        for name in set(g) & set(d):
            if g[name] != d[name]:
                raise TypeError(
                    f"{self.name}: option {name!r} defaults to {g[name]!r} in the "
                    f"generator but {d[name]!r} in the discriminator"
                )
        object.__setattr__(self, "g_options", g)
        object.__setattr__(self, "d_options", d)

    @property
    def options(self) -> dict[str, Any]:
        """Every option name -> its default, generator's first (the order of the help text)."""
        return {**self.g_options, **self.d_options}

    def problems(self, image_shape: ImageShape, options: dict[str, Any] | None = None) -> list[str]:
        """What is wrong with building this model for `image_shape` with `options`, one line each.

        Checks names and shapes only (no memory is allocated), so `check()` and `--dry-run`
        can refuse a bad model before any data is read. Empty when the build can proceed.
        """
        found = []
        valid = ", ".join(self.options) or "none"
        for key in sorted(set(options or {}) - set(self.options)):
            found.append(f"model {self.name!r} has no option {key!r}; its options: {valid}")
        reason = self.supports(tuple(image_shape))
        if reason:
            found.append(
                f"model {self.name!r} cannot make images of shape {tuple(image_shape)}: {reason}"
            )
        return found

    def build(
        self, latent_dim: int, image_shape: ImageShape, options: dict[str, Any] | None = None
    ) -> tuple[nn.Module, nn.Module]:
        """(generator, discriminator), each given the options its constructor takes."""
        options = dict(options or {})
        shape = tuple(image_shape)
        generator = self.generator(
            latent_dim, shape, **{k: v for k, v in options.items() if k in self.g_options}
        )
        discriminator = self.discriminator(
            shape, **{k: v for k, v in options.items() if k in self.d_options}
        )
        return generator, discriminator


ARCHITECTURES: dict[str, Architecture] = {}


def register(arch: Architecture) -> Architecture:
    ARCHITECTURES[arch.name] = arch
    return arch


def get_architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise unknown_name("model", name, list(ARCHITECTURES))
    return ARCHITECTURES[name]


def build_models(
    name: str, latent_dim: int, image_shape: ImageShape, options: dict[str, Any] | None = None
) -> tuple[nn.Module, nn.Module]:
    """Build (generator, discriminator) for `image_shape`, or raise a one-line ConfigError."""
    return _built(
        name, options, lambda arch: arch.build(latent_dim, image_shape, options), image_shape
    )


def generator_skeleton(
    name: str, latent_dim: int, image_shape: ImageShape, options: dict[str, Any] | None = None
) -> nn.Module:
    """The generator alone on the meta device, its initialisation skipped: every parameter's
    shape, and no memory or time spent.

    Loading a saved generator needs nothing more: its shapes are compared with the file before
    anything is allocated (a forged size costs nothing), then ``to_empty`` gives it storage
    the file's weights fill. Random initialisation of meta tensors runs PyTorch's Python
    reference kernels, which took seconds of ``ganforge sample``'s start-up for values that
    are thrown away.
    """

    def build(arch: Architecture) -> nn.Module:
        shape = tuple(image_shape)
        g_options = {k: v for k, v in (options or {}).items() if k in arch.g_options}
        with torch.device("meta"), _SkipInitOnMeta():
            return arch.generator(latent_dim, shape, **g_options)

    return _built(name, options, build, image_shape)


class _SkipInitOnMeta(TorchFunctionMode):
    """In-place random initialisation of meta tensors (which hold no values) does nothing."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        # torch.nn.init's functions pass the tensor by keyword, Tensor methods as `self`
        target = args[0] if args else (kwargs or {}).get("tensor")
        if (
            getattr(func, "__name__", "") in _INIT_OPS
            and isinstance(target, torch.Tensor)
            and target.is_meta
        ):
            return target
        return func(*args, **(kwargs or {}))


# the in-place fills torch.nn.init and the layers' reset_parameters use
_INIT_OPS = frozenset(
    {
        "normal_",
        "uniform_",
        "trunc_normal_",
        "fill_",
        "zero_",
        "copy_",
        "bernoulli_",
        "exponential_",
    }
)


def _built(
    name: str,
    options: dict[str, Any] | None,
    build: Callable[[Architecture], Any],
    image_shape: ImageShape,
) -> Any:
    """`build(arch)` after the architecture's own checks; a failure is a one-line ConfigError."""
    arch = get_architecture(name)
    found = arch.problems(image_shape, options)
    if found:
        raise ConfigError(found[0])
    try:
        return build(arch)
    # width=nan, too big, ...
    except (TypeError, ValueError, OverflowError, RuntimeError) as exc:
        text = first_line(exc, 200)
        raise ConfigError(f"bad option for model {name!r} ({options!r:.80}): {text}") from None


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters, as Keras' 'Trainable params' counts them."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
