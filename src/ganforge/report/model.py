"""What a comparison report says, independent of how it is written (HTML or Markdown).

:func:`assemble` turns run records into a :class:`Report`; the renderers only lay it out.
Runs on different datasets or image sizes are refused unless the caller allows mixing,
and then the report carries a banner saying which numbers must not be compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ganforge.errors import ConfigError
from ganforge.metrics import direction, split_key
from ganforge.metrics.floors import floor_for
from ganforge.metrics.registry import ranked_feature_outputs
from ganforge.metrics.uncertainty import within_noise
from ganforge.report.collect import Frame, RunRecord, frame_at
from ganforge.report.figures import loss_figure, quality_figure

FRACTIONS = (0.1, 0.25, 0.5, 0.75, 1.0)


@dataclass
class MetricRow:
    key: str
    # lower | higher | match | info
    better: str
    # one per run
    values: list[float | None]
    # indices of the runs with the best value
    best: set[int]
    # real-vs-real value at the same count, where documented
    floor: float | None
    # 95 % bootstrap interval per run
    intervals: list[list[float] | None] = field(default_factory=list)
    # the feature space that produced it (None: needs no features)
    space: str | None = None


@dataclass
class Report:
    title: str
    runs: list[RunRecord]
    banner: str | None
    grids: list[tuple[RunRecord, list[tuple[float, Frame | None]]]]
    loss_png: bytes | None
    quality_png: bytes | None
    metric_rows: list[MetricRow]
    floor_note: str | None
    command: str
    # feature space -> how reports name it
    spaces: dict[str, str] = field(default_factory=dict)
    # within-noise and disagreement findings
    flags: list[str] = field(default_factory=list)
    created: str = field(
        default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    )


def mixing_banner(runs: list[RunRecord], allow_mixed: bool) -> str | None:
    """None when every run trained on the same data at the same size; else an error or, if allowed,
    a banner.
    """
    datasets = sorted({r.dataset for r in runs})
    shapes = sorted({"x".join(map(str, r.image_shape)) for r in runs})
    if len(datasets) == 1 and len(shapes) == 1:
        return None
    what = "; ".join(f"{r.name}: {r.dataset} at {'x'.join(map(str, r.image_shape))}" for r in runs)
    if not allow_mixed:
        raise ConfigError(
            f"these runs were trained on different data or image sizes ({what}); their numbers "
            "are not "
            "comparable. Compare runs of one dataset, or pass --allow-mixed for a report with a "
            "warning"
        )
    return (
        f"These runs were trained on different data or image sizes ({what}). Each run is measured "
        "against its "
        "own reference data: compare numbers within a run's column, not across columns."
    )


def _best(values: list[float | None], better: str, target: list[float | None]) -> set[int]:
    scored = [(i, v) for i, v in enumerate(values) if v is not None]
    if better == "match":
        scored = [
            (i, abs(v - t))
            for (i, v), t in zip(scored, [target[i] for i, _ in scored])
            if t is not None
        ]
        better = "lower"
    if better not in ("lower", "higher") or len(scored) < 2:
        return set()
    pick = min if better == "lower" else max
    best = pick(v for _, v in scored)
    winners = {i for i, v in scored if v == best}
    # a tie between all runs singles out nobody
    return set() if len(winners) == len(scored) else winners


def metric_rows(runs: list[RunRecord], mixed: bool) -> tuple[list[MetricRow], str | None]:
    """One row per metric output over all runs' evaluations, with the best run(s) marked."""
    evaluations = [r.evaluation or {} for r in runs]
    keys: list[str] = []
    for evaluation in evaluations:
        keys += [k for k in evaluation.get("metrics", {}) if k not in keys]
    first = next((e for e in evaluations if e), {})
    floors = (
        None
        if mixed or not first
        else floor_for(first.get("reference", ""), first.get("count", 0), first.get("image_shape"))
    )
    rows = []
    for key in keys:
        values = [e.get("metrics", {}).get(key) for e in evaluations]
        targets = [e.get("metrics", {}).get("msssim_real") for e in evaluations]
        best = set() if mixed else _best(values, direction(key), targets)
        intervals = [(e.get("intervals") or {}).get(key) for e in evaluations]
        rows.append(
            MetricRow(
                key,
                direction(key),
                values,
                best,
                (floors or {}).get("metrics", {}).get(key),
                intervals,
                split_key(key)[1],
            )
        )
    note = floors.get("note") if floors else None
    return rows, note


def noise_and_disagreement(runs: list[RunRecord], rows: list[MetricRow]) -> list[str]:
    """Plain sentences: pairs of runs whose difference is inside the bootstrap noise, and pairs the
    two feature spaces put in opposite order."""
    flags: list[str] = []
    by_key = {row.key: row for row in rows}
    for i in range(len(runs)):
        for j in range(i + 1, len(runs)):
            a, b = runs[i].name, runs[j].name
            tied = [
                row.key
                for row in rows
                if row.intervals
                and row.values[i] is not None
                and row.values[j] is not None
                and within_noise(row.values[i], row.values[j], row.intervals[i], row.intervals[j])
            ]
            if tied:
                flags.append(
                    f"{a} and {b} differ by less than the noise (95 % bootstrap intervals) on "
                    f"{', '.join(tied)}: this count cannot tell them apart there."
                )
            opposite = []
            for key in ranked_feature_outputs():
                first, second = by_key.get(key), by_key.get(key + "_enc")
                if (
                    first is None
                    or second is None
                    or None
                    in (first.values[i], first.values[j], second.values[i], second.values[j])
                ):
                    continue
                if (first.values[i] - first.values[j]) * (second.values[i] - second.values[j]) < 0:
                    opposite.append(key)
            if opposite:
                flags.append(
                    f"The two feature spaces rank {a} and {b} differently on {', '.join(opposite)} "
                    "(classifier features vs contrastive encoder features): one network's opinion "
                    "is "
                    "not enough to call a winner there."
                )
    return flags


def assemble(runs: list[RunRecord], allow_mixed: bool, title: str | None, command: str) -> Report:
    banner = mixing_banner(runs, allow_mixed)
    grids = [(run, [(f, frame_at(run, f)) for f in FRACTIONS]) for run in runs]
    rows, floor_note = metric_rows(runs, banner is not None)
    title = title or "ganforge comparison: " + " vs ".join(r.name for r in runs)
    spaces: dict[str, str] = {}
    for run in runs:
        spaces.update((run.evaluation or {}).get("spaces") or {})
    flags = [] if banner else noise_and_disagreement(runs, rows)
    return Report(
        title,
        runs,
        banner,
        grids,
        loss_figure(runs),
        quality_figure(runs),
        rows,
        floor_note,
        command,
        spaces=spaces,
        flags=flags,
    )


def describe_schedule(run: RunRecord) -> str:
    s = run.config.schedule
    if s.epochs is not None:
        return f"{s.epochs} epoch{'s' if s.epochs != 1 else ''} ({run.total_steps} iterations)"
    return f"{s.iterations} iterations (≈{s.iterations / run.steps_per_epoch:.2f} epochs)"


def run_facts(run: RunRecord) -> list[tuple[str, str]]:
    """The rows of the runs table, as (label, text)."""
    s, c = run.summary, run.config
    speeds = [r["images_per_s"] for r in run.log if "images_per_s" in r]
    best = s.get("best_metric")
    return [
        ("preset", c.preset or "(custom)"),
        ("model", c.model.arch),
        ("data", f"{run.dataset} ({s.get('images', '?')} images)"),
        ("image", "x".join(map(str, run.image_shape))),
        ("schedule", describe_schedule(run)),
        ("batch", str(c.schedule.batch_size)),
        (
            "iterations done",
            f"{s.get('steps')}" + (" (stopped early)" if s.get("stopped_early") else ""),
        ),
        ("wall-clock", f"{s.get('seconds', 0):.0f} s on {s.get('device', '?')}"),
        ("images/s", f"{sum(speeds) / len(speeds):,.0f}" if speeds else "?"),
        (
            "best main metric in training",
            f"{best:.2f}" if isinstance(best, (int, float)) else "not evaluated",
        ),
    ]


def relative(path: Path, start: Path) -> str:
    try:
        return str(path.resolve().relative_to(start.resolve()))
    except ValueError:
        return str(path)
