"""What `ganforge serve` shows: the generators and runs under the one path it was given.

The library never writes: it reads run folders (through ``RunDirectory``, the owner of
their layout), loads generators through ``ganforge.generate.load_generator`` (safetensors,
or a checkpoint read with ``torch.load(weights_only=True)``: never a pickle), and hands out
files only from inside a run folder it listed, after :func:`contained_file` has checked the
path. Models and runs are found by name in dictionaries built from a directory listing, so
a name in a URL can never become a path of the user's choosing.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ganforge.artefacts.rundir import RunDirectory
from ganforge.config_migration import migrate_config
from ganforge.errors import ConfigError, GanforgeError

# a run without summary.json whose newest log line is older than this is taken as stopped
# (killed or crashed) rather than running
RUNNING_WINDOW_SECONDS = 300
# the files a run folder may hand out, by suffix, with their media types (no checkpoints:
# they are large and nothing in the page reads them)
SERVED_TYPES = {
    ".png": "image/png",
    ".gif": "image/gif",
    ".json": "application/json",
    ".jsonl": "application/json",
    ".csv": "text/csv",
    ".md": "text/markdown; charset=utf-8",
}


class NotFound(GanforgeError):
    """A model, run or file that the served folder does not hold (HTTP 404)."""


class Forbidden(GanforgeError):
    """A path that points outside the served folder, or a kind of file never served (403)."""


@dataclass(frozen=True)
class ModelEntry:
    """A generator the explorer can draw from."""

    name: str
    # what `ganforge sample` takes to reproduce a view: a path as the user wrote it, or
    # "--pretrained NAME"
    cli_source: list[str]
    # run folder, model folder or generator file (resolved by load_generator)
    path: Path
    # the run it belongs to, when it is a run's generator
    run: str | None = None


def contained_file(root: Path, relative: str) -> Path:
    """The file `relative` names inside `root`, or NotFound / Forbidden with a one-line reason.

    Refused: absolute paths, drive letters and backslashes, any '..' part, NUL bytes, and
    any path whose real location (symlinks followed) is outside `root`.
    """
    text = str(relative)
    if not text or "\x00" in text or "\\" in text or ":" in text:
        raise Forbidden("refused: a file path must be a plain relative path inside the run")
    pure = PurePosixPath(text)
    if pure.is_absolute() or text.startswith("/"):
        raise Forbidden("refused: absolute paths are not served")
    if any(part in ("..", ".") for part in text.split("/")):
        raise Forbidden("refused: '..' and '.' are not allowed in a file path")
    real_root = root.resolve()
    try:
        real = (real_root / pure).resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"no file {text[:80]} in this run") from None
    # a symlink loop, a name too long
    except (OSError, RuntimeError):
        raise Forbidden(f"refused: {text[:80]} cannot be resolved") from None
    if not real.is_relative_to(real_root):
        raise Forbidden("refused: the path leads outside the served folder")
    if not real.is_file():
        raise NotFound(f"{text[:80]} is not a file")
    if real.suffix.lower() not in SERVED_TYPES:
        raise Forbidden(
            f"refused: {real.suffix or 'files without a suffix'} files are not served "
            f"(only {', '.join(sorted(SERVED_TYPES))})"
        )
    return real


def run_status(run: RunDirectory, now: float | None = None) -> str:
    """finished, stopped, diverged or running, from the run's own files.

    summary.json is written when training ends: stopped_early says whether a signal ended
    it. Without it, a last log line with NaN/Inf losses means diverged; a log written in
    the last RUNNING_WINDOW_SECONDS means running; anything older was killed (stopped).
    """
    if run.summary_file.is_file():
        summary = _read_json(run.summary_file)
        return "stopped" if summary.get("stopped_early") else "finished"
    records = _records(run.metrics_file)
    if records:
        last = records[-1]
        losses = [last.get(key) for key in ("d_loss", "g_loss")]
        if any(isinstance(v, float) and not math.isfinite(v) for v in losses):
            return "diverged"
    newest = max(
        (p.stat().st_mtime for p in (run.metrics_file, run.config_file) if p.is_file()),
        default=0.0,
    )
    age = (time.time() if now is None else now) - newest
    return "running" if age < RUNNING_WINDOW_SECONDS else "stopped"


def _records(path: Path) -> list[dict[str, Any]]:
    """A JSON-lines log's records; a line that is valid JSON but not an object is skipped
    like a torn one (RunDirectory.read_jsonl), so a damaged log cannot break the page."""
    return [record for record in RunDirectory.read_jsonl(path) if isinstance(record, dict)]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def is_model_folder(folder: Path) -> bool:
    """A folder from `ganforge export --format folder` (it has a config.json too)."""
    return (folder / "model.safetensors").is_file()


def is_run_folder(folder: Path) -> bool:
    """A run folder: config.json and the checkpoints/ folder RunDirectory.create makes."""
    return (
        not is_model_folder(folder)
        and (folder / "config.json").is_file()
        and (folder / "checkpoints").is_dir()
    )


def _has_generator(folder: Path) -> bool:
    return (
        (folder / "generator.safetensors").is_file()
        or (folder / "model.safetensors").is_file()
        or any((folder / "checkpoints").glob("ckpt-*.pt"))
    )


class Library:
    """The models and runs of one served path, and the cache of loaded generators.

    `source` is a run folder, a model folder, a generator file or a folder of runs (one
    level down); `pretrained` names a shipped generator instead. `shown` is how the user
    wrote the path, so the commands the page offers use the user's own spelling.
    """

    def __init__(
        self, source: str | Path | None = None, pretrained: str | None = None, shown: str = ""
    ):
        from ganforge.pretrained import pretrained_path

        if (source is None) == (pretrained is None):
            raise ConfigError(
                "give a run folder, model folder, generator file or folder of runs, "
                "or --pretrained NAME"
            )
        self.pretrained = pretrained
        if pretrained is not None:
            self.root = pretrained_path(pretrained).parent
            self.kind = "pretrained"
            self.shown = pretrained
        else:
            path = Path(source)
            if not path.exists():
                raise ConfigError(
                    f"{path} not found: give a run folder, model folder, "
                    "generator file or folder of runs"
                )
            self.root = path.resolve()
            self.shown = shown or str(source)
            self.kind = self._kind(path)
        self._lock = threading.Lock()
        self._loaded: dict[str, tuple[tuple[str, float], Any, Any]] = {}

    @staticmethod
    def _kind(path: Path) -> str:
        if path.is_file():
            if path.suffix not in (".safetensors", ".pt"):
                raise ConfigError(f"{path}: a generator file ends in .safetensors or .pt")
            return "file"
        if is_model_folder(path):
            return "model"
        if is_run_folder(path):
            return "run"
        for child in _children(path):
            if is_run_folder(child) or is_model_folder(child):
                return "runs"
        raise ConfigError(
            f"{path} is neither a run folder, a model folder, a generator file nor a folder "
            "holding run or model folders"
        )

    # ---- listing -------------------------------------------------------------------------
    def run_dirs(self) -> dict[str, Path]:
        """Run folders by name; listed afresh on every call, so a new run shows up."""
        if self.kind == "run":
            return {self.root.name: self.root}
        if self.kind != "runs":
            return {}
        return {child.name: child for child in _children(self.root) if is_run_folder(child)}

    def models(self) -> dict[str, ModelEntry]:
        """Generators by name: every run with one, every model folder, the file, the shipped one."""
        if self.kind == "pretrained":
            name = str(self.pretrained)
            from ganforge.pretrained import pretrained_path

            return {name: ModelEntry(name, ["--pretrained", name], pretrained_path(name))}
        if self.kind == "file":
            return {self.root.stem: ModelEntry(self.root.stem, [self.shown], self.root)}
        if self.kind in ("run", "model"):
            run = self.root.name if self.kind == "run" else None
            entry = ModelEntry(self.root.name, [self.shown], self.root, run)
            return {entry.name: entry} if _has_generator(self.root) else {}
        entries = {}
        for child in _children(self.root):
            is_run = is_run_folder(child)
            if (is_run or is_model_folder(child)) and _has_generator(child):
                shown = os.path.join(self.shown, child.name)
                entries[child.name] = ModelEntry(
                    child.name, [shown], child, child.name if is_run else None
                )
        return entries

    def model(self, name: str) -> ModelEntry:
        entry = self.models().get(name)
        if entry is None:
            raise NotFound(f"no model named {name[:60]!r} here")
        return entry

    def run(self, name: str) -> RunDirectory:
        path = self.run_dirs().get(name)
        if path is None:
            raise NotFound(f"no run named {name[:60]!r} here")
        return RunDirectory(path)

    # ---- generators --------------------------------------------------------------------------
    def generator(self, name: str):
        """(generator, info) of model `name`: see :meth:`load`."""
        _, generator, info = self.load(name)
        return generator, info

    def load(self, name: str) -> tuple[tuple[str, float], Any, Any]:
        """(version, generator, info) of model `name`, loaded once and kept while its file is
        unchanged; `version` (file, modification time) names what was loaded.

        One generator per model: a run that writes a newer checkpoint or its final
        generator.safetensors is reloaded on the next request, the old one dropped.
        """
        import torch

        from ganforge.generate import load_generator, resolve_source

        entry = self.model(name)
        file = resolve_source(entry.path)
        version = (str(file), file.stat().st_mtime)
        with self._lock:
            cached = self._loaded.get(name)
            if cached is not None and cached[0] == version:
                return cached
            generator, info = load_generator(file, "cpu")
            # channels-last convolutions: measured 115 ms against 150 ms for mnist-best's
            # 64-image grid on one thread (bench/serve_latency.py)
            generator = generator.to(memory_format=torch.channels_last)
            self._loaded[name] = (version, generator, info)
            return self._loaded[name]

    # ---- runs ---------------------------------------------------------------------------------
    def run_summary(self, name: str, run: RunDirectory) -> dict[str, Any]:
        """One row of the runs list: name, preset, status, iterations and main metric."""
        from ganforge.report.figures import main_key

        config = migrate_config(_read_json(run.config_file))
        summary = _read_json(run.summary_file)
        records = _records(run.metrics_file)
        evals = _records(run.eval_file)
        key = main_key(evals)
        last_eval = evals[-1] if evals else {}
        step = summary.get("steps") or (records[-1].get("step") if records else 0)
        return {
            "name": name,
            "preset": config.get("preset") or "",
            "status": run_status(run),
            "step": step,
            "total": summary.get("total_steps") or (config.get("schedule") or {}).get("iterations"),
            "metric": key if key in last_eval else None,
            "metric_value": _finite(last_eval.get(key)),
            "has_generator": _has_generator(run.path),
        }

    def run_detail(self, name: str) -> dict[str, Any]:
        """Everything the run page draws: config, curves, grids by iteration, eval tables."""
        from ganforge.report.collect import FRAME_NAME

        run = self.run(name)
        records = _records(run.metrics_file)
        frames = []
        per_epoch = _steps_per_epoch(records)
        for path in run.sample_frames():
            match = FRAME_NAME.fullmatch(path.name)
            if match:
                index = int(match.group(2))
                step = round(index * per_epoch) if match.group(1) == "epoch" else index
                frames.append({"step": step, "file": f"samples/{path.name}"})
        frames.sort(key=lambda frame: frame["step"])
        return {
            **self.run_summary(name, run),
            "config": migrate_config(_read_json(run.config_file)),
            "summary": _read_json(run.summary_file),
            "log": [_clean(record) for record in records],
            "evals": [_clean(record) for record in _records(run.eval_file)],
            "frames": frames,
            "reals": "reals.png" if (run.path / "reals.png").is_file() else None,
            "eval_tables": eval_tables(run.path),
        }


def eval_tables(folder: Path) -> list[dict[str, Any]]:
    """The `ganforge eval` records saved in a run folder (eval-*.json), as rows with intervals."""
    tables = []
    for path in sorted(folder.glob("eval-*.json")):
        record = _read_json(path)
        metrics = record.get("metrics")
        if not isinstance(metrics, dict):
            continue
        intervals = _mapping(record.get("intervals"))
        better = _mapping(record.get("better"))
        rows = []
        for key, value in metrics.items():
            interval = intervals.get(key)
            rows.append(
                {
                    "metric": str(key),
                    "value": _finite(value),
                    "interval": [_finite(v) for v in interval]
                    if isinstance(interval, list)
                    else None,
                    "better": str(better.get(key, "")),
                }
            )
        tables.append(
            {
                "file": path.name,
                "count": record.get("count"),
                "seed": record.get("seed"),
                "step": record.get("step"),
                "reference": record.get("reference"),
                "rows": rows,
            }
        )
    return tables


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _children(path: Path) -> list[Path]:
    try:
        return sorted(child for child in path.iterdir() if child.is_dir())
    except OSError:
        return []


def _steps_per_epoch(records: list[dict[str, Any]]) -> float:
    for record in reversed(records):
        if record.get("epoch"):
            return record["step"] / record["epoch"]
    return 1.0


def _finite(value: Any) -> float | None:
    """JSON has no NaN: a missing or non-finite number becomes null."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    """A log record with only its numbers, NaN/Inf as null (browsers reject NaN in JSON)."""
    return {key: _finite(value) for key, value in record.items() if not isinstance(value, str)}
