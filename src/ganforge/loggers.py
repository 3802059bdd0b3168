"""Experiment loggers: the numbers and sample grids of a run, in the formats dashboards read.

The training loop talks to every logger through one small interface (:class:`Logger`) and
never to a dashboard's API. Loggers are registered by name (:data:`LOGGERS`); a config
names them (``loggers: [tensorboard, csv]``, or ``--logger tensorboard``) and
:func:`make_loggers` builds them for a run folder:

* ``tensorboard``: event files under ``<run>/tensorboard`` (``tensorboard --logdir runs``),
  written by ``torch.utils.tensorboard.SummaryWriter``; needs the ``tensorboard`` extra.
* ``csv``: ``<run>/metrics.csv``, a spreadsheet twin of metrics.jsonl, one row per step.

On resume, pass the checkpoint's step: both drop what the interrupted run logged after it,
as the loop does for metrics.jsonl, so a resumed run shows no doubled or stale points.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import torch

from ganforge.artefacts.files import write_text
from ganforge.errors import ConfigError, unknown_name

TENSORBOARD_HINT = "pip install 'ganforge[tensorboard]'"


class Logger(Protocol):
    """What the training loop calls. Steps are training iterations; values are plain floats."""

    def log_scalars(self, step: int, values: dict[str, float]) -> None: ...

    def log_image(
        self, step: int, name: str, images_uint8_nchw: torch.Tensor, rows: int
    ) -> None: ...

    def close(self) -> None: ...


class TensorBoardLogger:
    """Scalars and image grids as TensorBoard event files in ``<run_dir>/tensorboard``."""

    def __init__(self, run_dir: str | Path, resume_step: int | None = None):
        problem = _tensorboard_problem()
        if problem:
            raise ConfigError(problem)
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(run_dir) / "tensorboard"
        # purge_step: events at or after it, left by the interrupted run, are hidden on reading
        purge = None if resume_step is None else resume_step + 1
        self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=purge, flush_secs=30)

    def log_scalars(self, step: int, values: dict[str, float]) -> None:
        for key, value in _numbers(values):
            self.writer.add_scalar(key, value, global_step=step)

    def log_image(self, step: int, name: str, images_uint8_nchw: torch.Tensor, rows: int) -> None:
        from ganforge.artefacts.images import make_grid

        # [H, W, C] uint8
        grid = make_grid(images_uint8_nchw, rows)
        self.writer.add_image(name, grid, global_step=step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


class CsvLogger:
    """``<run_dir>/metrics.csv``: one row per step, one column per value name, step first.

    Columns are the names seen so far, in order of first appearance. A row whose names are
    all known is appended; a new name (an evaluation metric first logged at step 500), a
    second call for the same step (merged into its row) or a rewind rewrites the file
    atomically with the full header. So the file on disk is a valid CSV at every moment,
    even after a crash, and earlier rows show empty cells for columns that came later.
    """

    def __init__(self, run_dir: str | Path, resume_step: int | None = None):
        self.path = Path(run_dir) / "metrics.csv"
        self.columns: list[str] = ["step"]
        self.rows: list[dict[str, str]] = []
        if self.path.is_file():
            self._read_existing(resume_step)

    def _read_existing(self, resume_step: int | None) -> None:
        with open(self.path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            self.columns = list(reader.fieldnames or ["step"])
            rows = [row for row in reader if row.get("step", "").lstrip("-").isdigit()]
        if resume_step is not None:
            rows = [row for row in rows if int(row["step"]) <= resume_step]
        self.rows = rows
        self._rewrite()

    def log_scalars(self, step: int, values: dict[str, float]) -> None:
        cells = {key: _cell(value) for key, value in values.items() if key != "step"}
        new_columns = [key for key in cells if key not in self.columns]
        self.columns += new_columns
        rewrite = bool(new_columns) or not self.rows
        last = int(self.rows[-1]["step"]) if self.rows else None
        # a rewind: what came after is replaced
        if last is not None and step < last:
            self.rows = [row for row in self.rows if int(row["step"]) < step]
            last = int(self.rows[-1]["step"]) if self.rows else None
            rewrite = True
        if last == step:
            self.rows[-1].update(cells)
            self._rewrite()
            return
        row = {"step": str(step), **cells}
        self.rows.append(row)
        if rewrite:
            self._rewrite()
        else:
            with open(self.path, "a", newline="", encoding="utf-8") as handle:
                handle.write(self._format([row], header=False))

    def log_image(self, step: int, name: str, images_uint8_nchw: torch.Tensor, rows: int) -> None:
        """Nothing: the grids are PNG files in samples/ already, and a CSV holds numbers."""

    def close(self) -> None:
        """Nothing to flush: every call has already reached the file."""

    def _format(self, rows: list[dict[str, str]], header: bool) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, restval="", lineterminator="\n")
        if header:
            writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()

    def _rewrite(self) -> None:
        write_text(self.path, self._format(self.rows, header=True))


LoggerFactory = Callable[..., Logger]
LOGGERS: dict[str, LoggerFactory] = {"tensorboard": TensorBoardLogger, "csv": CsvLogger}


def logger_problems(names: Iterable[str]) -> list[str]:
    """What keeps these loggers from starting, one line each (for check() and --dry-run)."""
    found = []
    for name in names:
        if name not in LOGGERS:
            found.append(str(unknown_name("logger", name, list(LOGGERS))))
        elif name == "tensorboard" and _tensorboard_problem():
            found.append(_tensorboard_problem())
    return found


def make_loggers(
    names: list[str], run_dir: str | Path, resume_step: int | None = None
) -> list[Logger]:
    """The named loggers for a run folder, each once, in the order given."""
    problems = logger_problems(names)
    if problems:
        raise ConfigError(problems[0])
    return [LOGGERS[name](run_dir, resume_step=resume_step) for name in dict.fromkeys(names)]


def _tensorboard_problem() -> str:
    if importlib.util.find_spec("tensorboard") is None:
        return f"--logger tensorboard needs the tensorboard package: {TENSORBOARD_HINT}"
    return ""


def _numbers(values: dict[str, Any]) -> Iterable[tuple[str, float]]:
    """The plottable entries: numbers (not flags, text or the step itself)."""
    for key, value in values.items():
        if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
            yield key, float(value)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value).lower()
    return str(value)


class LoggingHook:
    """Feeds a run's loggers from the training loop (a ``ganforge.training.TrainerHook``, written
    out in full so that this module does not import the training package).

    The loggers are made when the run starts (a resumed run: at its checkpoint's step, so what
    the interrupted session logged after it is dropped); metrics.csv is always among them.
    """

    def __init__(self, names: Iterable[str]):
        self.names = ["csv", *[name for name in names if name != "csv"]]
        self.loggers: list[Logger] = []

    def on_start(self, trainer: Any) -> None:
        self.loggers = make_loggers(
            self.names, trainer.run.path, resume_step=trainer.state.step or None
        )

    def after_iteration(self, trainer: Any, tick: Any) -> None:
        """Loggers see the log records, not every iteration."""

    def on_log(self, trainer: Any, record: dict[str, Any]) -> None:
        # one value per key: every iteration's values ("raw", raw_losses) stay in metrics.jsonl
        scalars = {key: value for key, value in record.items() if key != "raw"}
        for logger in self.loggers:
            logger.log_scalars(record["step"], scalars)

    def on_grid(self, trainer: Any, images: torch.Tensor, path: Path) -> None:
        for logger in self.loggers:
            logger.log_image(
                trainer.state.step, "samples", images.cpu(), trainer.config.schedule.grid_size
            )

    def on_eval(self, trainer: Any, record: dict[str, Any]) -> None:
        scores = {f"eval/{key}": value for key, value in record.items() if key != "step"}
        for logger in self.loggers:
            logger.log_scalars(record["step"], scores)

    def before_finish(self, trainer: Any) -> None:
        """Nothing to add before the final artefacts."""

    def after_finish(self, trainer: Any) -> None:
        for logger in self.loggers:
            logger.close()
