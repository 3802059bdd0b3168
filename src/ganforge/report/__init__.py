"""Comparison reports: runs side by side in one self-contained HTML file and a Markdown twin.

    build_report(["runs/gan-001", "runs/dcgan-001"], Path("report.html"))

reads each run folder (collect.py), evaluates it for the metrics table unless a matching
eval-<seed>.json exists, assembles what the report says (model.py), and writes it as HTML
(html.py, images embedded as data URIs) and Markdown (markdown.py, images beside it).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any, Callable

from ganforge.errors import ConfigError
from ganforge.report.collect import RunRecord, attach_evaluation, read_run
from ganforge.report.html import render_html, write_html
from ganforge.report.markdown import render_markdown, write_markdown
from ganforge.report.model import Report, assemble, mixing_banner


def build_report(
    run_paths: list[str | Path],
    out: Path,
    count: int = 2000,
    seed: int = 0,
    metrics: str | None = "auto",
    allow_mixed: bool = False,
    title: str | None = None,
    device: Any = "cpu",
    log: Callable[[str], None] = lambda message: None,
    split: str = "auto",
) -> tuple[Path, Path]:
    """Write `out` (HTML) and its .md twin; both paths. metrics=None leaves out the table."""
    if out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(
            f"--out {out} should end in .html (the Markdown twin gets the same name with .md)"
        )
    runs = [read_run(path) for path in run_paths]
    if len({run.path.resolve() for run in runs}) != len(runs):
        raise ConfigError("the same run folder is listed twice")
    # refuse mixed data before spending time on evaluations
    mixing_banner(runs, allow_mixed)
    if metrics is not None:
        for run in runs:
            attach_evaluation(run, count, seed, metrics, device, log, split)
    command = (
        "ganforge " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        if sys.argv[1:2] == ["compare"]
        else ("ganforge compare " + " ".join(shlex.quote(str(p)) for p in run_paths))
    )
    report = assemble(runs, allow_mixed, title, command)
    return write_html(report, out), write_markdown(report, out.with_suffix(".md"))


__all__ = [
    "Report",
    "RunRecord",
    "assemble",
    "build_report",
    "read_run",
    "render_html",
    "render_markdown",
]
