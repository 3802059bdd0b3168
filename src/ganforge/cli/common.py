"""Helpers shared by subcommands."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

# The package's source folder: its files' sizes and times key the cache of registry names.
PACKAGE_DIR = Path(__file__).resolve().parents[1]


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


def registry_names(kind: str) -> list[str]:
    """The valid names of a registry ("model", "loss" or "dataset"), for help texts.

    Help texts list them so they never go stale, but the registries are filled by importing
    the models, losses and data sources, which loads torch (a second or more). The names are
    kept in the user cache, keyed by the size and time of every source file of the package, so
    ``--help`` reads a small JSON file instead; an edit anywhere in the package, or a new
    version, rebuilds it. A cache that cannot be read or written costs only the speed.
    """
    key = _source_fingerprint()
    path = _cache_root() / "help-names.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("key") == key:
            return list(saved["names"][kind])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    from ganforge.data import SOURCES
    from ganforge.losses import LOSSES
    from ganforge.models import ARCHITECTURES

    names = {
        "model": sorted(ARCHITECTURES),
        "loss": sorted(LOSSES),
        "dataset": sorted(SOURCES),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps({"key": key, "names": names}), encoding="utf-8")
        os.replace(partial, path)
    except OSError:
        pass
    return names[kind]


def _source_fingerprint() -> str:
    """A digest of the package's Python files: relative paths, sizes and modification times."""
    digest = hashlib.sha256()
    for folder, subfolders, files in os.walk(PACKAGE_DIR):
        subfolders.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                stat = os.stat(os.path.join(folder, name))
                where = os.path.relpath(os.path.join(folder, name), PACKAGE_DIR)
                digest.update(f"{where}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()


def _cache_root() -> Path:
    # the same folder as ganforge.data.locations.cache_root, without importing the data
    # package (which loads torch)
    if os.environ.get("GANFORGE_CACHE"):
        return Path(os.environ["GANFORGE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ganforge"
