"""`ganforge eval`: score a trained generator with numbers; a table on screen, JSON on disk."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ganforge.cli.common import positive_int, say, seed_int

ARROWS = {"lower": "lower is better", "higher": "higher is better", "match": "closest to the real value", "info": ""}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="measure a run's image quality (FID, KID, IS, precision/recall, SWD, ...)",
                       description="Generate --count images and compare them with the run's reference data. "
                                   "Writes eval-<seed>.json into the run folder and prints a table.")
    p.add_argument("source", help="a run folder, a generator .safetensors or a checkpoint .pt")
    p.add_argument("--count", "-n", type=positive_int, default=2000,
                   help="generated images, and reference images at most (default 2000)")
    p.add_argument("--seed", type=seed_int, default=0, help="noise seed for the generated images (default 0)")
    p.add_argument("--metrics", default="auto",
                   help="comma-separated: fid,kid,is,precision-recall,class-balance,swd,msssim,fid-inception "
                        "(output names such as recall also work); auto: all that fit the data")
    p.add_argument("--data", default=None,
                   help="reference data: a dataset (mnist, mnist/test, fashion-mnist, brain-mri, ...) or a path; "
                        "default: rebuilt from the run's config.json")
    p.add_argument("--features", default="auto", choices=("auto", "mnist", "fashion-mnist", "none"),
                   help="classifier for feature metrics (auto: by dataset)")
    p.add_argument("--out", "-o", default=None, help="JSON file (default: eval-<seed>.json in the run folder)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.set_defaults(run=run)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"


def format_table(record: dict[str, Any]) -> str:
    """A fixed-width table of the metrics, the real-vs-real floor where documented, and which way is better."""
    floor = record.get("floor") or {}
    rows = [(key, _number(value), _number(floor.get(key)) if floor else "", ARROWS[record["better"][key]])
            for key, value in record["metrics"].items()]
    width = max(len(r[0]) for r in rows)
    head = (f"{record['arch']} at iteration {record['step']} vs {record['reference']}: {record['count']} generated "
            f"(seed {record['seed']}), {record['reference_count']} reference images, features: {record['features']}")
    real = f"  {'real vs real':>12}" if floor else ""
    lines = [head, f"{'metric':<{width}}  {'value':>10}{real}  better"]
    for key, value, floor_value, arrow in rows:
        line = f"{key:<{width}}  {value:>10}" + (f"  {floor_value:>12}" if floor else "") + f"  {arrow}"
        lines.append((line + ("   <- main" if key == record["main"] else "")).rstrip())
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ganforge.artefacts.files import write_text
    from ganforge.metrics.runs import default_output, evaluate_source
    from ganforge.training.runtime import resolve_device

    record = evaluate_source(args.source, count=args.count, seed=args.seed, metrics=args.metrics, data=args.data,
                             device=resolve_device(args.device), features=args.features)
    out = Path(args.out) if args.out else default_output(args.source, args.seed)
    write_text(out, json.dumps(record, indent=2) + "\n")
    print(format_table(record))
    if record["reference"] != record["trained_on"]:
        say(f"note: trained on {record['trained_on']}, measured against {record['reference']}")
    say(f"wrote {out} ({record['seconds']:.1f} s)")
    return 0
