"""The report's Markdown twin: the same sections, images as files in ``<name>_files/``.

Markdown viewers (GitHub among them) do not show data-URI images, so the twin links to
image files written next to it; the folder travels with the .md file.
"""

from __future__ import annotations

import re
from pathlib import Path

from ganforge.artefacts.files import write_bytes, write_text
from ganforge.report.html import BETTER_TEXT, format_interval, format_value, grouped_rows
from ganforge.report.model import Report, run_facts


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "run"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [
        line(header),
        "|" + "|".join(" --- " for _ in header) + "|",
        *(line(r) for r in rows),
        "",
    ]


class _Assets:
    """Collects image files for the twin and returns their relative links."""

    def __init__(self, folder: Path):
        self.folder, self.files = folder, {}

    def link(self, name: str, data: bytes) -> str:
        self.files[name] = data
        return f"{self.folder.name}/{name}"

    def write(self) -> None:
        for name, data in self.files.items():
            write_bytes(self.folder / name, data)


def _metrics(report: Report) -> list[str]:
    if not report.metric_rows:
        return ["No metrics table.", ""]
    show_floor = any(row.floor is not None for row in report.metric_rows)
    header = [
        "metric",
        *(r.name for r in report.runs),
        *(["real vs real"] if show_floor else []),
        "better",
    ]
    rows = []
    for title, group in grouped_rows(report):
        rows.append([f"*{title}*", *([""] * (len(header) - 1))])
        for row in group:
            cells = []
            for i, value in enumerate(row.values):
                text = f"**{format_value(value)}**" if i in row.best else format_value(value)
                bounds = row.intervals[i] if row.intervals else None
                cells.append(text + (f" ({format_interval(bounds)})" if bounds else ""))
            rows.append(
                [
                    row.key,
                    *cells,
                    *([format_value(row.floor)] if show_floor else []),
                    BETTER_TEXT[row.better],
                ]
            )
    first = next(r.evaluation for r in report.runs if r.evaluation)
    note = (
        f"{first['count']} generated images per run (noise seed {first['seed']}); 95 % bootstrap "
        "intervals "
        "in brackets; best value per row in bold."
    )
    flags = [f"* {flag}" for flag in report.flags]
    return [
        *_table(header, rows),
        note + (" " + report.floor_note if report.floor_note else ""),
        "",
        *(["### Noise and agreement", "", *flags, ""] if flags else []),
    ]


def render_markdown(report: Report, assets_folder: Path) -> tuple[str, _Assets]:
    assets = _Assets(assets_folder)
    out = [f"# {report.title}", "", f"Made {report.created} by `{report.command}`", ""]
    if report.banner:
        out += [f"> **⚠ Warning:** {report.banner}", ""]
    facts = [run_facts(run) for run in report.runs]
    out += [
        "## Runs",
        "",
        *_table(
            ["", *(r.name for r in report.runs)],
            [[label, *(f[i][1] for f in facts)] for i, (label, _) in enumerate(facts[0])],
        ),
    ]
    header = ["run", *(f"{round(100 * f)}% of training" for f, _ in report.grids[0][1])]
    rows = []
    for run, cells in report.grids:
        row = [run.name]
        for fraction, frame in cells:
            if frame is None:
                row.append("no grid")
                continue
            link = assets.link(
                f"{_slug(run.name)}-{round(100 * fraction):03d}.png", frame.path.read_bytes()
            )
            row.append(
                f"![{run.name} iteration {frame.step}]({link})<br>iteration {frame.step} "
                f"({100 * frame.fraction:.0f}%)"
            )
        rows.append(row)
    out += ["## Samples at the same fractions of training", "", *_table(header, rows)]
    for title, name, png, missing in (
        ("Loss curves", "losses.png", report.loss_png, "No training log."),
        (
            "Quality versus time",
            "quality.png",
            report.quality_png,
            "No evaluation during training: train with --eval-every N to get this curve.",
        ),
    ):
        out += [f"## {title}", "", f"![{title}]({assets.link(name, png)})" if png else missing, ""]
    out += ["## Metrics", "", *_metrics(report), "## Training GIFs", ""]
    for run in report.runs:
        if run.gif:
            link = assets.link(f"{_slug(run.name)}-training.gif", run.gif.read_bytes())
            out += [f"![{run.name} training]({link})", f"*{run.name}*", ""]
    return "\n".join(out) + "\n", assets


def write_markdown(report: Report, path: Path) -> Path:
    text, assets = render_markdown(report, path.with_name(f"{path.stem}_files"))
    assets.write()
    write_text(path, text)
    return path
