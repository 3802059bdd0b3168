"""`ganforge eval`: score a trained generator with numbers; a table on screen, JSON on disk."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ganforge.cli.common import (
    add_pretrained_option,
    generator_source,
    positive_int,
    say,
    seed_int,
)

EXAMPLES = """\
examples:
  ganforge eval runs/demo-001                          # vs the MNIST test split, both spaces
  ganforge eval runs/demo-001/checkpoints/best.pt --count 10000 --seed 1
  ganforge eval runs/demo-001 --split train --metrics fid,recall,coverage
  ganforge eval my-digits/ --dataset mnist             # a folder of PNGs made by any tool
  ganforge eval samples.npy --dataset fashion-mnist    # or an .npy array
  ganforge eval --pretrained mnist-best --count 10000  # a shipped generator, vs the test split
  ganforge eval runs/brain-demo-001 --split test       # brain slices: their own feature space

Feature metrics are computed in ganforge's own classifier and contrastive encoder (MNIST,
Fashion-MNIST, and 1-channel brain slices at 64x64 or 128x128), not Inception: compare
numbers only with each other at the same count. See docs/metrics.md.
"""
ARROWS = {
    "lower": "lower is better",
    "higher": "higher is better",
    "match": "closest to the real value",
    "info": "",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="measure a run's image quality (FID, KID, precision/recall, density/coverage, "
        "SWD, ...)",
        description="Generate --count images and compare them with the run's reference data. "
        "Writes eval-<seed>.json into the run folder and prints a table.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_pretrained_option(
        p,
        "a run folder, a generator .safetensors or a checkpoint .pt (or use --pretrained); "
        "or images made by any tool (a folder of PNGs or an .npy array) with --dataset",
    )
    p.add_argument(
        "--dataset",
        default=None,
        help="for a folder of images or an .npy: the data they imitate (mnist, fashion-mnist, ...)",
    )
    p.add_argument(
        "--split",
        default="auto",
        choices=("auto", "test", "train"),
        help="reference split: auto = the test split for MNIST and Fashion-MNIST, the training "
        "data otherwise; a test split (images the generator never saw) adds the memorisation "
        "figure, for brain slices and folders with test/ too",
    )
    p.add_argument(
        "--count",
        "-n",
        type=positive_int,
        default=2000,
        help="generated images, and reference images at most (default 2000)",
    )
    p.add_argument(
        "--seed", type=seed_int, default=0, help="noise seed for the generated images (default 0)"
    )
    p.add_argument(
        "--metrics",
        default="auto",
        help="comma-separated: fid,kid,precision-recall,density-coverage,is,class-balance,swd,"
        "msssim,fid-inception (output names such as recall or fid_enc also work); auto: all "
        "that fit the data",
    )
    p.add_argument(
        "--data",
        default=None,
        help="reference data: a dataset (mnist, mnist/test, fashion-mnist, brain-mri, ...) or a "
        "path; "
        "default: rebuilt from the run's config.json",
    )
    p.add_argument(
        "--features",
        default="auto",
        # metrics.context.FEATURE_CHOICES, spelt out: the parser must not import torch
        choices=("auto", "mnist", "fashion-mnist", "brain-mri", "none"),
        help="which dataset's networks (classifier and contrastive encoder) give the feature "
        "spaces (auto: by dataset); none: only metrics that need no network",
    )
    p.add_argument(
        "--resamples",
        type=resample_count,
        default=100,
        help="bootstrap resamples for the 95%% intervals (default 100; 0: no intervals)",
    )
    p.add_argument(
        "--out", "-o", default=None, help="JSON file (default: eval-<seed>.json in the run folder)"
    )
    p.add_argument(
        "--device", default="auto", help="auto (default: a GPU when present), cpu or cuda"
    )
    p.set_defaults(run=run)


def resample_count(text: str) -> int:
    """0 (no intervals) or a positive number of bootstrap resamples."""
    value = int(text) if text.isdigit() else -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"expected 0 or a positive whole number of resamples, got {text!r}"
        )
    return value


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"


def _interval(bounds: list[float] | None) -> str:
    return f"[{_number(bounds[0])}, {_number(bounds[1])}]" if bounds else ""


def _groups(record: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """Output keys grouped under the feature space that produced them (other metrics last)."""
    from ganforge.metrics import split_key

    spaces = record.get("spaces") or {}
    groups: dict[str, list[str]] = {space: [] for space in spaces}
    other: list[str] = []
    for key in record["metrics"]:
        space = split_key(key)[1]
        (groups[space] if space in groups else other).append(key)
    named = [(spaces[space], keys) for space, keys in groups.items() if keys]
    return named + ([("other metrics" if named else "", other)] if other else [])


def format_table(record: dict[str, Any]) -> str:
    """A fixed-width table of the metrics, grouped by feature space (each named), with 95 %
    intervals, the real-vs-real floor where documented, and which way is better."""
    floor = record.get("floor") or {}
    intervals = record.get("intervals") or {}
    metrics = record["metrics"]
    width = max(len(key) for key in metrics)
    what = (
        f"images from {record['source']}"
        if record.get("generator") is None and record["arch"] == "images"
        else f"{record['arch']} at iteration {record['step']}"
    )
    head = (
        f"{what} vs {record['reference']}: {record['count']} generated (seed {record['seed']}), "
        f"{record['reference_count']} reference images"
    )
    real = f"  {'real vs real':>12}" if floor else ""
    lines = [head, f"{'metric':<{width}}  {'value':>10}  {'95% interval':<20}{real}  better"]
    for title, keys in _groups(record):
        if title:
            lines.append(f"-- {title}")
        for key in keys:
            line = (
                f"{key:<{width}}  {_number(metrics[key]):>10}  {_interval(intervals.get(key)):<20}"
                + (f"  {_number(floor.get(key)):>12}" if floor else "")
                + f"  {ARROWS[record['better'][key]]}"
            )
            lines.append((line + ("   <- main" if key == record["main"] else "")).rstrip())
    if intervals:
        lines.append(
            f"intervals: estimate ± 1.96 bootstrap standard deviations ({record.get('resamples')} "
            "resamples); two runs whose difference is inside them are not told apart by this count"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ganforge.artefacts.files import write_text
    from ganforge.devices import resolve_device
    from ganforge.metrics.runs import default_output, evaluate_source

    source = generator_source(args, "evaluate")
    record = evaluate_source(
        source,
        count=args.count,
        seed=args.seed,
        metrics=args.metrics,
        data=args.data,
        device=resolve_device(args.device),
        features=args.features,
        resamples=args.resamples,
        split=args.split,
        dataset=args.dataset,
    )
    out = (
        Path(args.out)
        if args.out
        else default_output(source, args.seed, args.pretrained, args.split)
    )
    write_text(out, json.dumps(record, indent=2) + "\n")
    print(format_table(record))
    if record.get("features_note"):
        say(f"note: {record['features_note']}")
    if record["reference"] != record["trained_on"]:
        say(f"note: trained on {record['trained_on']}, measured against {record['reference']}")
    say(f"wrote {out} ({record['seconds']:.1f} s)")
    return 0
