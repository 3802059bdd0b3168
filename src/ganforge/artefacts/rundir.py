"""One folder per run, holding every artefact, so a run can always be explained and repeated.

<out_dir>/<run_name>/
    config.json            the fully resolved configuration
    metrics.jsonl          one JSON record per logged step (losses, D outputs, speed)
    eval.jsonl             quality metrics during training, with wall-clock time
    samples/               a grid PNG per sample interval, from fixed noise
    losses.png             loss and discriminator curves
    training.gif           the sample grids as an animation
    checkpoints/           ckpt-<step>.pt (the last K), best.pt, latest.txt
    generator.safetensors  the final generator, loadable without the training code
    summary.json           final figures of the run
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from ganforge.artefacts.files import write_text
from ganforge.errors import ConfigError


class RunDirectory:
    """The run folder's paths, and its logs and JSON files.

    In a run of several processes every process knows the paths, but only rank 0 writes:
    the others hold a ``RunDirectory(path, writes=False)``, whose log and JSON writes do
    nothing (each artefact is written once).
    """

    def __init__(self, path: str | Path, writes: bool = True):
        self.path = Path(path)
        self.writes = writes

    # ---- creation ---------------------------------------------------------------------
    @classmethod
    def create(
        cls, out_dir: str | Path, name: str, overwrite: bool = False, resume: bool = False
    ) -> "RunDirectory":
        """Make a new run folder. An existing one is refused unless resuming or overwriting."""
        path = Path(out_dir) / name
        if path.exists() and any(path.iterdir()) and not resume:
            if not overwrite:
                raise ConfigError(
                    f"run folder {path} already exists; pass --resume to continue it, "
                    "--overwrite to replace it, or --name for a new one"
                )
            if not (path / "config.json").is_file():
                raise ConfigError(
                    f"refusing to overwrite {path}: it does not look like a ganforge run "
                    "(no config.json); choose another --out or --name"
                )
            shutil.rmtree(path)
        if resume and not (path / "checkpoints").is_dir():
            raise ConfigError(
                f"cannot resume: {path} has no checkpoints folder; start it without --resume"
            )
        try:
            (path / "samples").mkdir(parents=True, exist_ok=True)
            (path / "checkpoints").mkdir(exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create run folder {path}: {exc.strerror}; choose a writable --out"
            ) from None
        return cls(path)

    # ---- paths --------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def eval_file(self) -> Path:
        return self.path / "eval.jsonl"

    @property
    def samples_dir(self) -> Path:
        return self.path / "samples"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def plot_file(self) -> Path:
        return self.path / "losses.png"

    @property
    def gif_file(self) -> Path:
        return self.path / "training.gif"

    @property
    def generator_file(self) -> Path:
        return self.path / "generator.safetensors"

    @property
    def summary_file(self) -> Path:
        return self.path / "summary.json"

    def sample_path(self, unit: str, index: int) -> Path:
        return self.samples_dir / f"{unit}_{index:06d}.png"

    def sample_frames(self) -> list[Path]:
        return sorted(self.samples_dir.glob("*.png"))

    # ---- logs -----------------------------------------------------------------------------
    def append_jsonl(self, path: Path, record: dict[str, Any]) -> None:
        """Append one line; a torn last line from a crash is skipped by read_jsonl."""
        if not self.writes:
            return
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    @staticmethod
    def read_jsonl(path: Path) -> list[dict[str, Any]]:
        if not path.is_file():
            return []
        records = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                # a line cut short by a crash
                continue
        return records

    def truncate_logs_after(self, step: int) -> None:
        """On resume, drop records past the checkpoint's step: they will be produced again."""
        if not self.writes:
            return
        for path in (self.metrics_file, self.eval_file):
            kept = [r for r in self.read_jsonl(path) if r.get("step", 0) <= step]
            write_text(path, "".join(json.dumps(r) + "\n" for r in kept))

    def write_json(self, path: Path, data: Any) -> None:
        if not self.writes:
            return
        write_text(path, json.dumps(data, indent=2) + "\n")


def default_run_name(preset: str | None, out_dir: str | Path) -> str:
    """<preset>-<NNN>, numbered after the highest existing run of that preset in out_dir."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", preset or "run")
    out = Path(out_dir)
    numbers = [
        int(m.group(1))
        for p in out.glob(f"{stem}-*")
        if (m := re.fullmatch(rf"{re.escape(stem)}-(\d+)", p.name))
    ]
    return f"{stem}-{max(numbers, default=0) + 1:03d}"
