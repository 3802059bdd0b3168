"""`ganforge presets`: list the named recipes and the registered models."""

from __future__ import annotations

import argparse
import textwrap


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("presets", help="list recipes (presets), models and datasets")
    p.add_argument("name", nargs="?", help="show one preset's full config")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ganforge.data import SOURCES
    from ganforge.losses import LOSSES
    from ganforge.models import ARCHITECTURES
    from ganforge.presets import describe_presets, load_preset

    if args.name:
        print(load_preset(args.name).to_json())
        return 0
    print("presets (ganforge train --preset NAME):")
    for name, text in describe_presets():
        print(f"  {name}\n" + textwrap.indent(textwrap.fill(text, 88), "      "))
    print("models (--model NAME):")
    for name, arch in sorted(ARCHITECTURES.items()):
        print(f"  {name:14s} {arch.summary}")
    print("datasets (--dataset NAME):  " + ", ".join(sorted(SOURCES)))
    print(
        "losses (--loss NAME):  "
        + ", ".join(f"{n} ({loss.summary})" for n, loss in sorted(LOSSES.items()))
    )
    return 0
