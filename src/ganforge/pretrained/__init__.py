"""Generators shipped with ganforge: ``ganforge sample --pretrained NAME`` works offline.

Each is ``NAME.safetensors`` (an exported generator: weights plus the metadata that rebuilds
it from the model registry) with ``NAME.md`` beside it, its model card: the data, the exact
training command, the evaluation figures and the limits.
"""

from __future__ import annotations

from pathlib import Path

from ganforge.errors import ConfigError

PRETRAINED_DIR = Path(__file__).parent


def pretrained_names() -> list[str]:
    """The names of the shipped generators."""
    return sorted(path.stem for path in PRETRAINED_DIR.glob("*.safetensors"))


def pretrained_path(name: str) -> Path:
    """The generator file of a shipped generator, or a one-line ConfigError naming the choices."""
    names = pretrained_names()
    if name not in names:
        choices = ", ".join(names) if names else "none ship with this installation"
        raise ConfigError(f"unknown pretrained generator {name!r}; choose one of: {choices}")
    return PRETRAINED_DIR / f"{name}.safetensors"
