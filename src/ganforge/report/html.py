"""The report as one HTML file: every image is a base64 data URI, styles are inline.

One file can be mailed, attached to an issue or opened offline and still show every
grid, curve and GIF. Text from run folders is escaped; nothing is fetched at view time.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from ganforge.report.model import MetricRow, Report, run_facts

BETTER_TEXT = {"lower": "↓ lower", "higher": "↑ higher", "match": "≈ real pairs", "info": ""}

STYLE = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --panel: #f6f8fa; --accent: #0969da; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       color: var(--ink);
       background: #fff; }
main { max-width: 1320px; margin: 0 auto; padding: 28px 32px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 34px 0 10px; padding-bottom: 6px;
       border-bottom: 1px solid var(--line); }
p.meta, p.note, figcaption, .caption { color: var(--muted); font-size: 13px; }
code { font: 12.5px ui-monospace, SFMono-Regular, Menlo, monospace; background: var(--panel);
       padding: 1px 5px;
       border-radius: 4px; }
.banner { margin: 18px 0; padding: 12px 16px; border: 1px solid #cf222e; background: #ffebe9;
       color: #82071e;
          border-radius: 6px; font-weight: 600; }
table { border-collapse: collapse; font-size: 14px; }
th, td { border: 1px solid var(--line); padding: 6px 10px; text-align: left; vertical-align: top; }
th { background: var(--panel); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.best { font-weight: 700; background: #dafbe1; }
.grids td { text-align: center; }
.grids img { width: 200px; height: auto; image-rendering: pixelated; display: block;
       margin: 0 auto 4px;
             border: 1px solid var(--line); }
.plot { max-width: 100%; border: 1px solid var(--line); border-radius: 6px; }
.gifs { display: flex; flex-wrap: wrap; gap: 24px; }
.gifs figure { margin: 0; padding: 12px; border: 1px solid var(--line); border-radius: 8px;
       background: var(--panel); }
.gifs img { width: 300px; image-rendering: pixelated; display: block; }
tr.space th { background: #ddf4ff; font-weight: 600; }
span.ci { display: block; color: var(--muted); font-size: 11.5px; }
ul.flags li { margin: 4px 0; }
"""


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image_tag(data: bytes, mime: str, alt: str, css: str = "") -> str:
    return (
        f'<img src="{data_uri(data, mime)}" alt="{escape(alt)}"{f" class={css!r}" if css else ""}>'
    )


def format_value(value: float | None) -> str:
    if value is None:
        return "–"
    return (
        f"{value:.4f}"
        if abs(value) < 10
        else f"{value:.2f}"
        if abs(value) < 1000
        else f"{value:,.0f}"
    )


def _runs_table(report: Report) -> str:
    facts = [run_facts(run) for run in report.runs]
    head = "".join(f"<th>{escape(run.name)}</th>" for run in report.runs)
    rows = "".join(
        f"<tr><th>{escape(label)}</th>"
        + "".join(f"<td>{escape(f[i][1])}</td>" for f in facts)
        + "</tr>"
        for i, (label, _) in enumerate(facts[0])
    )
    return f"<table><tr><th></th>{head}</tr>{rows}</table>"


def _grids(report: Report) -> str:
    head = "".join(f"<th>{round(100 * f)}% of training</th>" for f, _ in report.grids[0][1])
    rows = []
    for run, cells in report.grids:
        tds = []
        for _fraction, frame in cells:
            if frame is None:
                tds.append("<td class='caption'>no grid</td>")
                continue
            caption = f"iteration {frame.step} ({100 * frame.fraction:.0f}%)"
            tds.append(
                f"<td>{image_tag(frame.path.read_bytes(), 'image/png', f'{run.name} {caption}')}"
                f"<span class='caption'>{caption}</span></td>"
            )
        rows.append(f"<tr><th>{escape(run.name)}</th>{''.join(tds)}</tr>")
    return f"<table class='grids'><tr><th></th>{head}</tr>{''.join(rows)}</table>"


def format_interval(bounds: list[float] | None) -> str:
    return f"{format_value(bounds[0])} – {format_value(bounds[1])}" if bounds else ""


def _metric_cell(row: MetricRow, index: int) -> str:
    css = "num best" if index in row.best else "num"
    bounds = row.intervals[index] if row.intervals else None
    interval = f"<span class='ci'>{escape(format_interval(bounds))}</span>" if bounds else ""
    return f"<td class='{css}'>{format_value(row.values[index])}{interval}</td>"


def space_title(report: Report, space: str | None) -> str:
    """The group heading of a metrics table: the feature network by name, or 'other'."""
    if space is None:
        return "other metrics (classifier predictions, pixels)"
    return report.spaces.get(space, f"{space} features")


def grouped_rows(report: Report) -> list[tuple[str, list[MetricRow]]]:
    """Metric rows grouped under their feature space, in the order the spaces first appear."""
    groups: dict[str | None, list[MetricRow]] = {}
    for row in report.metric_rows:
        groups.setdefault(row.space, []).append(row)
    order = sorted(groups, key=lambda space: (space is None, list(groups).index(space)))
    return [(space_title(report, space), groups[space]) for space in order]


def _metrics(report: Report) -> str:
    if not report.metric_rows:
        return "<p class='note'>No metrics table (run without --no-metrics to add one).</p>"
    first = next(r.evaluation for r in report.runs if r.evaluation)
    head = "".join(f"<th>{escape(run.name)}</th>" for run in report.runs)
    show_floor = any(row.floor is not None for row in report.metric_rows)
    columns = len(report.runs) + 2 + show_floor
    rows = []
    for title, group in grouped_rows(report):
        rows.append(f"<tr class='space'><th colspan='{columns}'>{escape(title)}</th></tr>")
        rows += [
            f"<tr><th>{escape(row.key)}</th>"
            + "".join(_metric_cell(row, i) for i in range(len(report.runs)))
            + (f"<td class='num'>{format_value(row.floor)}</td>" if show_floor else "")
            + f"<td>{BETTER_TEXT[row.better]}</td></tr>"
            for row in group
        ]
    floor_head = "<th>real vs real</th>" if show_floor else ""
    refs = ", ".join(sorted({f"{r.evaluation['reference']}" for r in report.runs if r.evaluation}))
    note = (
        f"{first['count']} generated images per run (noise seed {first['seed']}) against {refs}. "
        "Small grey ranges: 95 % bootstrap intervals. Best value per row in bold green."
    )
    if report.floor_note:
        note += " " + report.floor_note
    flags = "".join(f"<li>{escape(flag)}</li>" for flag in report.flags)
    flags_html = (
        f"<h3>Noise and agreement</h3><ul class='flags'>{flags}</ul>"
        if flags
        else "<p class='note'>Every difference between runs is larger than the bootstrap noise, "
        "and both "
        "feature spaces order the runs alike.</p>"
        if len(report.runs) > 1
        else ""
    )
    return (
        "<table "
        f"class='metrics'><tr><th>metric</th>{head}{floor_head}<th>better</th></tr>{''.join(rows)}"
        f"</table><p class='note'>{escape(note)}</p>{flags_html}"
    )


def _figure(png: bytes | None, alt: str, missing: str) -> str:
    return (
        image_tag(png, "image/png", alt, "plot")
        if png
        else f"<p class='note'>{escape(missing)}</p>"
    )


def _gifs(report: Report) -> str:
    figures = [
        f"<figure>{image_tag(run.gif.read_bytes(), 'image/gif', f'{run.name} training')}"
        f"<figcaption>{escape(run.name)}: grids over training</figcaption></figure>"
        for run in report.runs
        if run.gif
    ]
    return (
        f"<div class='gifs'>{''.join(figures)}</div>"
        if figures
        else "<p class='note'>No training GIFs.</p>"
    )


def render_html(report: Report) -> str:
    banner = f"<div class='banner'>⚠ {escape(report.banner)}</div>" if report.banner else ""
    sections = [
        ("Runs", _runs_table(report)),
        (
            "Samples at the same fractions of training",
            _grids(report)
            + "<p class='note'>Each run's grid nearest to the stated fraction of its planned "
            "length, from the fixed "
            "noise the run drew for its grids.</p>",
        ),
        ("Loss curves", _figure(report.loss_png, "loss curves", "No training log.")),
        (
            "Quality versus time",
            _figure(
                report.quality_png,
                "quality versus time",
                "No evaluation during training: train with --eval-every N to get this curve.",
            ),
        ),
        ("Metrics", _metrics(report)),
        ("Training GIFs", _gifs(report)),
    ]
    body = "".join(
        f"<section><h2>{escape(title)}</h2>{content}</section>" for title, content in sections
    )
    return (
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, "
        f"initial-scale=1'><title>{escape(report.title)}</title>"
        f"<style>{STYLE}</style></head><body><main><h1>{escape(report.title)}</h1>"
        f"<p class='meta'>Made {escape(report.created)} by "
        f"<code>{escape(report.command)}</code></p>"
        f"{banner}{body}</main></body></html>\n"
    )


def write_html(report: Report, path: Path) -> Path:
    from ganforge.artefacts.files import write_text

    write_text(path, render_html(report))
    return path
