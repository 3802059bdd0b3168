"""Starting a run, or continuing one from its newest readable checkpoint.

A resumed run must be the run it continues: the same model at the same image shape, the
same data (unless the user allows a change), and config.json becomes the settings it
continues with, config-changes.jsonl saying what changed at which iteration.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ganforge.artefacts.rundir import RunDirectory
from ganforge.config import TrainConfig
from ganforge.config_migration import migrate_config
from ganforge.errors import CheckpointError, GanforgeError

if TYPE_CHECKING:
    from ganforge.training.loop import Trainer


def start(trainer: Trainer) -> None:
    """A new run: its config.json."""
    trainer.run.write_json(trainer.run.config_file, trainer.config.to_dict())


def resume(trainer: Trainer, allow_data_change: bool, log: Callable[[str], None]) -> None:
    """Continue the run folder's newest readable checkpoint exactly."""
    config, run, checkpointer = trainer.config, trainer.run, trainer.checkpointer
    latest, saved = checkpointer.read_latest(log)
    _check_same_model(saved, config, trainer.state.image_shape, latest)
    _check_same_data(saved, trainer, latest, allow_data_change, log)
    checkpointer.restore(saved, latest)
    run.truncate_logs_after(trainer.state.step)
    _record_config_changes(run, saved, config)
    log(f"resuming {run.path} from iteration {trainer.state.step} ({latest.name})")


def _check_same_model(
    saved: dict[str, Any], config: TrainConfig, image_shape: tuple[int, ...], source: Path
) -> None:
    if saved.get("arch") != config.model.arch or tuple(saved.get("image_shape", ())) != tuple(
        image_shape
    ):
        raise CheckpointError(
            f"{source}: checkpoint is for model {saved.get('arch')!r} at "
            f"{tuple(saved.get('image_shape', ()))}, this run builds "
            f"{config.model.arch!r} at {tuple(image_shape)}"
        )


def _check_same_data(
    saved: dict[str, Any], trainer: Trainer, source: Path, allowed: bool, log: Callable[[str], None]
) -> None:
    """A resumed run must train on the data it started on (checkpoints before this check had no
    fingerprint and are taken as they are)."""
    before = saved.get("data_fingerprint") or ""
    if not before or before == trainer.checkpointer.data_fingerprint:
        return
    data = trainer.data
    what = (
        f"it trained on {saved.get('dataset')!r}, the data found now are {data.name!r} "
        f"({len(data)} images from {data.source})"
    )
    if not allowed:
        raise CheckpointError(
            f"cannot resume {trainer.run.path}: the data changed since {source.name} "
            f"({what}); give the run's data with --data, or pass --allow-data-change "
            "to continue on these"
        )
    log(f"note: the data changed since {source.name} ({what}); continuing on them as asked")


def _record_config_changes(run: RunDirectory, saved: dict[str, Any], config: TrainConfig) -> None:
    """A resumed run with other settings: config.json becomes the new settings, and
    config-changes.jsonl says what changed at which iteration."""
    try:
        saved_values = migrate_config(json.loads(saved["config"]))
    except (KeyError, TypeError, ValueError):
        return
    try:
        # a setting added since the run was made reads as its default, which is what the run
        # trained with, so it is no change
        saved_values = TrainConfig.from_dict(saved_values).to_dict()
    except GanforgeError:
        pass
    before = _flatten(saved_values)
    after = _flatten(config.to_dict())
    changed = {
        key: [before.get(key), value] for key, value in after.items() if before.get(key) != value
    }
    if changed:
        run.append_jsonl(
            run.path / "config-changes.jsonl", {"step": int(saved["step"]), "changed": changed}
        )
    run.write_json(run.config_file, config.to_dict())


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and key != "options":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat
