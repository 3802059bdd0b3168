"""How a setting documents itself, and the noise law: config parts needed without the schema.

Every config field is declared with :func:`setting`, which keeps its one documentation text
in the field's metadata; ``ganforge train --help`` and docs read it with :func:`setting_help`,
so no second table of help texts can drift from the fields.

:class:`LatentConfig` (``config.latent``) lives here rather than in ganforge.config because
``ganforge sample`` draws noise in the law an exported generator stores, and must not load the
config schema and YAML for it (tests/test_startup.py). Nothing here imports torch or YAML.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

NoiseLaw = Literal["normal", "uniform"]
GridNoise = Literal["train", "normal", "uniform"]


def setting(default: Any = dataclasses.MISSING, *, help: str, factory: Any = None) -> Any:
    """A config field with its documentation: the one text the CLI help and the docs show."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


def group(cls: type) -> Any:
    """A group of settings inside TrainConfig; its docstring is its documentation."""
    return field(default_factory=cls, metadata={"help": (cls.__doc__ or "").strip()})


def setting_help(cls: type, dotted: str) -> str:
    """The documentation of a dotted setting, e.g. setting_help(TrainConfig, "optim.lr_g")."""
    *groups, name = dotted.split(".")
    for part in groups:
        cls = typing.get_type_hints(cls)[part]
    for item in dataclasses.fields(cls):
        if item.name == name:
            return item.metadata.get("help", "")
    raise KeyError(dotted)


@dataclass
class LatentConfig:
    """The noise law: how z is drawn for training and for the sample grids (ganforge.noise).

    The one owner of the law: ganforge.noise draws from this object, and the exported
    generator stores it, so training, grids and ``ganforge sample`` draw z alike.
    """

    law: NoiseLaw = setting("normal", help="training noise: normal, or uniform in [-1, 1]")
    std: float = setting(1.0, help="standard deviation of normal noise")
    grid_law: GridNoise = setting(
        "train", help="noise law of the sample grids; train: the same law as training"
    )

    def for_grids(self) -> "LatentConfig":
        """The law the sample grids draw from (grid_law, or the training law)."""
        law = self.law if self.grid_law == "train" else self.grid_law
        return LatentConfig(law, self.std, "train")
