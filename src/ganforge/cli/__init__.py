"""The command line: parse, validate, call the Python API. Nothing else lives here.

Each subcommand is a module in this package with ``add_parser(subparsers)`` that sets
``run`` (a function of the parsed arguments returning an exit status). A user error
(:class:`GanforgeError`) is printed as one line, exit status 2; Ctrl-C exits 130.

Bare ``ganforge`` prints the help and exits 0, as ``-h`` does: asking what the tool can do
is not an error (``ganforge train`` starts the offline demo).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from ganforge.errors import GanforgeError, TrainingDiverged

EXAMPLES = """\
examples:
  ganforge train                                  # the offline demo: a small DCGAN on MNIST
  ganforge sample runs/demo-001 --out samples.png
  ganforge eval runs/demo-001
  ganforge export runs/demo-001 --out demo.onnx

`ganforge COMMAND --help` shows each command's options and examples.
"""

COMMAND_MODULES = (
    "train",
    "sample",
    "interpolate",
    "export",
    "eval",
    "compare",
    "presets",
    "serve",
)


def build_parser() -> argparse.ArgumentParser:
    from ganforge.version import __version__

    parser = argparse.ArgumentParser(
        prog="ganforge",
        description="Train GANs, generate images, measure quality.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ganforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"ganforge.cli.{name}").add_parser(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"ganforge: note: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    warnings.showwarning = _show_warning
    try:
        return int(args.run(args) or 0)
    # not a usage error: its own status, so scripts can tell
    except TrainingDiverged as exc:
        print(f"ganforge: error: {exc}", file=sys.stderr)
        return 3
    except GanforgeError as exc:
        print(f"ganforge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ganforge: interrupted", file=sys.stderr)
        return 130
