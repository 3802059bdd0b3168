"""`ganforge compare RUN RUN ...`: one self-contained HTML report (and a Markdown twin)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganforge.cli.common import positive_int, say, seed_int

EXAMPLES = """\
examples:
  ganforge compare runs/gan-001 runs/dcgan-001 --out report.html   # + report.md, report_files/
  ganforge compare runs/a runs/b runs/c --count 5000 --title "three seeds"
  ganforge compare runs/a runs/b --no-metrics                        # grids and curves only

The metrics table shows both feature spaces with 95 % intervals and flags runs that differ
by less than the noise or that the two spaces order differently. See docs/metrics.md.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare runs in an HTML + Markdown report (grids, curves, metrics, GIFs)",
        description="Compare training runs side by side: sample grids at the same fractions of "
        "training, loss curves, quality-versus-time curves, a metrics table and the "
        "training GIFs, in one HTML file with everything embedded, plus a Markdown twin.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "runs",
        nargs="+",
        help="run folders (two or more to compare; one gives a single-run report)",
    )
    p.add_argument(
        "--out",
        "-o",
        default="report.html",
        help="HTML file; the Markdown twin is written next to it as .md (images in <name>_files/)",
    )
    p.add_argument(
        "--count",
        "-n",
        type=positive_int,
        default=2000,
        help="images per run for the metrics table",
    )
    p.add_argument("--seed", type=seed_int, default=0, help="noise seed for the metrics table")
    p.add_argument(
        "--metrics", default="auto", help="metrics for the table (as for `ganforge eval`)"
    )
    p.add_argument(
        "--no-metrics", action="store_true", help="leave out the metrics table (no evaluation)"
    )
    p.add_argument(
        "--split",
        default="auto",
        choices=("auto", "test", "train"),
        help="reference split for the metrics (auto: the test split for MNIST and Fashion-MNIST)",
    )
    p.add_argument(
        "--allow-mixed",
        action="store_true",
        help="compare runs on different datasets or image sizes anyway, under a warning banner",
    )
    p.add_argument("--title", default=None, help="report title (default: the run names)")
    p.add_argument(
        "--device", default="auto", help="auto (default: a GPU when present), cpu or cuda"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ganforge.devices import resolve_device
    from ganforge.report import build_report

    html_path, md_path = build_report(
        args.runs,
        Path(args.out),
        count=args.count,
        seed=args.seed,
        metrics=None if args.no_metrics else args.metrics,
        allow_mixed=args.allow_mixed,
        title=args.title,
        device=resolve_device(args.device),
        log=say,
        split=args.split,
    )
    say(f"wrote {html_path} (self-contained) and {md_path}")
    return 0
