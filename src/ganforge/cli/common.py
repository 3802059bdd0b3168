"""Helpers shared by subcommands."""

from __future__ import annotations

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
