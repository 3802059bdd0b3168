"""Read what a run folder holds into one record the report renders.

Everything comes from the run's own artefacts (config.json, summary.json, metrics.jsonl,
eval.jsonl, samples/, training.gif); the metrics table reuses the run's eval-<seed>.json
when it was made with the same count, seed and generator, and otherwise evaluates now
(and saves that file, exactly as `ganforge eval` would).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ganforge.artefacts.files import write_text
from ganforge.artefacts.rundir import RunDirectory
from ganforge.config import TrainConfig
from ganforge.errors import ConfigError

FRAME_NAME = re.compile(r"(epoch|iteration)_(\d+)\.png")


@dataclass
class Frame:
    """One sample grid and where in training it was taken."""

    path: Path
    # iterations done
    step: int
    # of the run's planned length
    fraction: float


@dataclass
class RunRecord:
    path: Path
    name: str
    config: TrainConfig
    summary: dict[str, Any]
    # metrics.jsonl
    log: list[dict[str, Any]]
    # eval.jsonl (quality during training)
    evals: list[dict[str, Any]]
    frames: list[Frame]
    gif: Path | None
    # the metrics-table record
    evaluation: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def dataset(self) -> str:
        return str(self.summary.get("dataset", self.config.data.dataset))

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.summary.get("image_shape", ()))

    @property
    def total_steps(self) -> int:
        return int(self.summary.get("total_steps") or self.summary.get("steps") or 1)

    @property
    def steps_per_epoch(self) -> float:
        """Iterations per pass over the data, from the log (epoch = step / steps_per_epoch)."""
        for record in reversed(self.log):
            if record.get("epoch"):
                return record["step"] / record["epoch"]
        return float(self.total_steps)


def read_run(path: str | Path) -> RunRecord:
    """A finished (or stopped) run folder; a clear error for anything else."""
    run = RunDirectory(path)
    if not run.config_file.is_file() or not run.summary_file.is_file():
        raise ConfigError(
            f"{run.path} is not a finished ganforge run folder (it needs config.json and "
            "summary.json, written when training ends or stops)"
        )
    config = TrainConfig.from_dict(json.loads(run.config_file.read_text(encoding="utf-8")))
    summary = json.loads(run.summary_file.read_text(encoding="utf-8"))
    record = RunRecord(
        run.path,
        run.path.name,
        config,
        summary,
        run.read_jsonl(run.metrics_file),
        run.read_jsonl(run.eval_file),
        [],
        run.gif_file if run.gif_file.is_file() else None,
    )
    record.frames = _frames(run, record)
    return record


def _frames(run: RunDirectory, record: RunRecord) -> list[Frame]:
    frames = []
    for path in run.sample_frames():
        match = FRAME_NAME.fullmatch(path.name)
        if not match:
            continue
        index = int(match.group(2))
        step = round(index * record.steps_per_epoch) if match.group(1) == "epoch" else index
        frames.append(Frame(path, step, step / record.total_steps))
    return sorted(frames, key=lambda f: f.step)


def frame_at(record: RunRecord, fraction: float) -> Frame | None:
    """The grid closest to `fraction` of the run's training (None for a run without grids)."""
    if not record.frames:
        return None
    return min(record.frames, key=lambda f: (abs(f.fraction - fraction), -f.step))


def attach_evaluation(
    record: RunRecord,
    count: int,
    seed: int,
    metrics: str,
    device: Any,
    log: Callable[[str], None],
    split: str = "auto",
) -> None:
    """Fill record.evaluation from a matching eval-<seed>.json, or evaluate and save one."""
    from ganforge.metrics.runs import EVAL_FORMAT, default_output, evaluate_source

    out = default_output(record.path, seed, split=split)
    if out.is_file():
        try:
            saved = json.loads(out.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            saved = {}
        if (
            saved.get("format"),
            saved.get("count"),
            saved.get("seed"),
            saved.get("step"),
            saved.get("requested"),
            saved.get("split"),
        ) == (EVAL_FORMAT, count, seed, record.summary.get("steps"), metrics or "auto", split):
            record.evaluation = saved
            return
    log(f"evaluating {record.name} on {count} images ...")
    evaluation = evaluate_source(
        record.path, count=count, seed=seed, metrics=metrics, device=device, split=split
    )
    write_text(out, json.dumps(evaluation, indent=2) + "\n")
    record.evaluation = evaluation
