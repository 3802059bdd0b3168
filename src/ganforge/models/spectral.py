"""Spectral normalisation of a discriminator, as an option for any architecture.

Miyato et al. (2018): dividing each weight by its largest singular value (estimated by one
power iteration per training forward) makes every layer 1-Lipschitz, which keeps D's
gradients to G informative and lets GANs train at learning rates where they otherwise
diverge. ``spectral_norm=d`` applies ``torch.nn.utils.parametrizations.spectral_norm`` to
every convolution and linear layer of D. It is refused, with the reason, for a D that
already normalises its layers (``resnet``) and for one with no such layer.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

NORMALISED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def spectral_norm_problem(discriminator: nn.Module, arch: str) -> str | None:
    """Why regularise.spectral_norm=d cannot be applied to `discriminator`, or None."""
    layers = [m for m in discriminator.modules() if isinstance(m, NORMALISED)]
    if any(parametrize.is_parametrized(m) for m in discriminator.modules()):
        return (
            f"model {arch!r} already normalises its discriminator spectrally; "
            "drop regularise.spectral_norm (valid: off, d)"
        )
    if not layers:
        return (
            f"model {arch!r} has no convolution or linear layer in its discriminator to "
            "normalise; set regularise.spectral_norm=off"
        )
    return None


def apply_spectral_norm(discriminator: nn.Module) -> nn.Module:
    """Spectral norm on every conv/linear layer of `discriminator`, in place; returns it."""
    for module in list(discriminator.modules()):
        if isinstance(module, NORMALISED) and not parametrize.is_parametrized(module):
            dim = 1 if isinstance(module, nn.ConvTranspose2d) else 0
            spectral_norm(module, dim=dim)
    return discriminator
