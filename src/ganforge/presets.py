"""Named recipes. Each documented system is a YAML file in ``presets/``: data, not code.

A user changes a recipe with flags (``--epochs 5``) or ``--set key=value``, or writes a
YAML file of their own and passes it with ``--config``.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ganforge.config import TrainConfig
from ganforge.errors import ConfigError, unknown_name

PRESET_DIR = Path(__file__).parent / "presets"
DEFAULT_PRESET = "demo"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str) -> TrainConfig:
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise unknown_name("preset", name, preset_names())
    config = load_config_file(path)
    return config.with_overrides({"preset": name})


def load_config_file(path: str | Path) -> TrainConfig:
    """A TrainConfig from a YAML (or JSON) file, e.g. a run folder's config.json."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of settings")
    return TrainConfig.from_dict(values)


def describe_presets() -> list[tuple[str, str]]:
    return [(name, " ".join(load_preset(name).description.split())) for name in preset_names()]
