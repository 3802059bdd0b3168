"""Settings from before the groups, moved to their place: the one table of old names.

Until issue 19 a config was flat (``r1_gamma``, ``noise``, ``device`` at the top; NIfTI and
stacked-mnist settings in ``data``). Runs' config.json files, checkpoints (they embed the
config), exported generators' cards and users' scripts (``--set r1_gamma=10``) use those
names, so they are read through this module: :func:`migrate_config` for a whole config
(grouped configs pass through unchanged), :func:`migrate_key` for one ``--set`` name.

Pure data and dict surgery: no torch, no ganforge imports (config.py imports it).
"""

from __future__ import annotations

import copy
from typing import Any

# flat name of the version before the groups -> its dotted place now
RENAMED: dict[str, str] = {
    **{
        name: f"step.{name}"
        for name in ("update", "d_half_batch", "d_separate_updates", "d_fakes_from_eval_g")
    },
    "shared_noise": "step.shared_noise",
    "noise": "latent.law",
    "noise_std": "latent.std",
    "grid_noise": "latent.grid_law",
    **{
        name: f"regularise.{name}"
        for name in (
            "label_smoothing",
            "r1_gamma",
            "r1_interval",
            "r2_gamma",
            "gamma_ramp",
            "gamma_end",
            "ema_decay",
            "spectral_norm",
        )
    },
    "augment": "augment.names",
    "augment_p": "augment.p",
    "ada_target": "augment.ada_target",
    "ada_interval": "augment.ada_interval",
    "ada_speed": "augment.ada_speed",
    **{
        name: f"schedule.{name}"
        for name in (
            "epochs",
            "iterations",
            "batch_size",
            "batch_order",
            "sample_every",
            "sample_offset",
            "grid_size",
            "checkpoint_every",
            "keep_checkpoints",
            "eval_every",
            "eval_samples",
            "log_every",
            "raw_losses",
        )
    },
    **{
        name: f"execution.{name}"
        for name in (
            "device",
            "precision",
            "compile",
            "compile_mode",
            "channels_last",
            "fused_optim",
            "cuda_graphs",
            "async_artefacts",
            "deterministic",
        )
    },
    "sync_bn": "distributed.sync_bn",
    "dist_backend": "distributed.backend",
    "dist_timeout_s": "distributed.timeout_s",
}

# data settings that belonged to one source, now that source's data.options, with the value
# every config.json of the flat version holds when the setting was left alone
DATA_OPTION_DEFAULTS: dict[str, Any] = {
    "nifti_axis": 2,
    "nifti_range": [0.0, 1.0],
    "nifti_min_foreground": 0.1,
    "normalise": "percentile",
    "percentiles": [0.5, 99.5],
    "subject_split": None,
    "stacks": None,
    "stack_seed": 0,
}


def migrate_key(key: str, value: Any = None) -> str:
    """The dotted name now of a setting named as before the groups; other names unchanged.

    ``augment`` was the transforms' names and is now their group: a mapping value still
    addresses the group, any other value the names.
    """
    if key == "augment" and isinstance(value, dict):
        return key
    if key == "augment" and isinstance(value, str) and value.strip().startswith("{"):
        return key
    if key in RENAMED:
        return RENAMED[key]
    group, _, name = key.partition(".")
    if group == "data" and name in DATA_OPTION_DEFAULTS:
        return f"data.options.{name}"
    return key


def migrate_config(values: Any) -> Any:
    """A config dict with every flat setting moved to its group (a copy; input untouched).

    Data settings of one source move into ``data.options`` only when they differ from the
    flat version's default, so an MNIST run's config.json (which held every NIfTI setting at
    its default) names no option MNIST does not have. Anything that is not a mapping is
    returned as it is, for the caller's own error.
    """
    if not isinstance(values, dict):
        return values
    out = copy.deepcopy(values)
    for old, new in RENAMED.items():
        if old not in out or (old == "augment" and isinstance(out[old], dict)):
            continue
        group, name = new.split(".")
        value = out.pop(old)
        target = out.setdefault(group, {})
        if isinstance(target, dict):
            target.setdefault(name, value)
    data = out.get("data")
    if isinstance(data, dict):
        _migrate_data(data)
    return out


def _migrate_data(data: dict[str, Any]) -> None:
    """NIfTI and stacked-mnist settings of a flat ``data`` group into ``data.options``."""
    moved = {}
    for name, default in DATA_OPTION_DEFAULTS.items():
        if name in data:
            value = data.pop(name)
            if not _same(value, default):
                moved[name] = value
    if moved:
        options = data.setdefault("options", {})
        if isinstance(options, dict):
            for name, value in moved.items():
                options.setdefault(name, value)


def _same(value: Any, default: Any) -> bool:
    """True when a saved value is the default (JSON turns tuples into lists)."""
    if isinstance(value, (list, tuple)) and isinstance(default, list):
        return list(value) == default
    return value == default and not isinstance(value, bool)
