"""Named recipes. Each documented system is a YAML file in ``presets/``: data, not code.

A user changes a recipe with flags (``--epochs 5``) or ``--set key=value``, or writes a
YAML file of their own and passes it with ``--config``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ganforge.errors import ConfigError, first_line, unknown_name

if TYPE_CHECKING:
    from ganforge.config import TrainConfig

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
    # YAML and the config's dataclasses load here, not at import: every command's parser lists
    # the preset names, and `ganforge sample` needs nothing else of this module
    import yaml

    from ganforge.config import TrainConfig

    path = Path(path)
    # the error stays on one line
    shown = str(path) if str(path).isprintable() else repr(str(path))
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {shown}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"{shown} is not a text file; --config wants a YAML or JSON file of settings"
        ) from None
    # a path with a NUL byte, or a number too long for Python in the YAML
    except ValueError as exc:
        raise ConfigError(f"cannot read config {shown}: {first_line(exc)}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{shown} is not valid YAML: {first_line(exc)}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{shown} must hold a mapping of settings")
    return TrainConfig.from_dict(values)


def describe_presets() -> list[tuple[str, str]]:
    return [(name, " ".join(load_preset(name).description.split())) for name in preset_names()]
