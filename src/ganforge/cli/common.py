"""Helpers shared by subcommands."""

from __future__ import annotations

import argparse
import sys


def say(message: str) -> None:
    """Progress messages go to stderr, so stdout stays clean for data (tables, JSON)."""
    print(message, file=sys.stderr, flush=True)


def positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def seed_int(text: str) -> int:
    """A noise seed: any whole number that fits the 64 bits torch's generators take."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not -(2**63) <= value < 2**63:
        raise argparse.ArgumentTypeError(f"a seed must fit in 64 bits, got {text[:30]}")
    return value


def add_pretrained_option(parser: argparse.ArgumentParser, source_help: str) -> None:
    """An optional SOURCE argument (`source_help` says what it may be) and --pretrained NAME,
    a generator shipped with ganforge, in its place; generator_source picks one of the two."""
    parser.add_argument("source", nargs="?", default=None, help=source_help)
    parser.add_argument(
        "--pretrained",
        default=None,
        metavar="NAME",
        help="a generator shipped with ganforge, e.g. mnist-best (works offline)",
    )


def add_class_option(parser: argparse.ArgumentParser, what: str) -> None:
    """--class N or NAME (stored as args.label) for conditional models; `what` says what it
    selects."""
    parser.add_argument(
        "--class",
        dest="label",
        default=None,
        metavar="N",
        help=f"conditional models only: {what}; a number, or a class name the data gave the "
        "model (Sneaker, NonDemented)",
    )


def generator_source(args: argparse.Namespace, verb: str) -> str:
    """The SOURCE argument, or the shipped generator --pretrained names; one of the two."""
    from ganforge.errors import ConfigError
    from ganforge.pretrained import pretrained_names, pretrained_path

    if args.pretrained is not None and args.source is not None:
        raise ConfigError("give a SOURCE or --pretrained NAME, not both")
    if args.pretrained is not None:
        return str(pretrained_path(args.pretrained))
    if args.source is None:
        shipped = ", ".join(pretrained_names()) or "none in this installation"
        raise ConfigError(
            f"give a run folder, model folder or generator file to {verb}, or "
            f"--pretrained NAME (shipped: {shipped})"
        )
    return args.source


def add_noise_options(parser: argparse.ArgumentParser) -> None:
    """--noise LAW and --noise-std S: latents from another law than the one trained on."""
    parser.add_argument(
        "--noise",
        choices=("normal", "uniform"),
        default=None,
        help="draw the latents from this law instead of the one the generator was trained "
        "on (default: the trained law), to see how it copes",
    )
    parser.add_argument(
        "--noise-std",
        type=float,
        default=None,
        metavar="S",
        help="standard deviation of normal noise (default: the trained one)",
    )


def noise_note(args: argparse.Namespace) -> str:
    """', uniform noise' or ', normal noise σ 0.5' for the summary line, when --noise or
    --noise-std chose a law other than the trained one; '' otherwise."""
    if args.noise is None and args.noise_std is None:
        return ""
    law = args.noise or "normal"
    return f", {law} noise" + (f" σ {args.noise_std:g}" if args.noise_std is not None else "")
