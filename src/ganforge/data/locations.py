"""Where ganforge looks for data and keeps its cache: one module, so every source searches alike.

Without an explicit ``--data`` path a source looks, in this order, in
1. ``$GANFORGE_DATA/<name>``;
2. the user cache, ``<cache_root>/datasets/<name>``;
3. the known local copies (``../shared/datasets/<name>``, ``shared/datasets/<name>``, and any
   absolute place a source names), each relative one tried from the working folder first and
   then from the source checkout.

The first existing (or, for MNIST, complete) place wins. ``GANFORGE_OFFLINE=1`` forbids
downloads. This module imports nothing from ganforge, so every data module may use it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

# Local copies beside a checkout (the team's shared datasets), relative to cwd and to the repo.
SHARED_ROOTS = ("../shared/datasets", "shared/datasets")
# The source checkout, <repo>/src/ganforge/data/locations.py; tests replace it to hide ../shared.
REPO_ROOT = Path(__file__).resolve().parents[3]


def cache_root() -> Path:
    """The cache folder: $GANFORGE_CACHE, else $XDG_CACHE_HOME/ganforge, else ~/.cache/ganforge."""
    if os.environ.get("GANFORGE_CACHE"):
        return Path(os.environ["GANFORGE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ganforge"


def offline() -> bool:
    """True when GANFORGE_OFFLINE forbids downloads (tests, air-gapped machines)."""
    return os.environ.get("GANFORGE_OFFLINE", "").lower() in ("1", "true", "yes")


def shared_copies(name: str) -> tuple[str, ...]:
    """The relative local copies of dataset folder `name` under the shared roots."""
    return tuple(f"{root}/{name}" for root in SHARED_ROOTS)


def anchored(places: Iterable[str]) -> list[Path]:
    """Absolute places as they are; each relative one from the working folder, then the repo."""
    found: list[Path] = []
    for place in places:
        if Path(place).is_absolute():
            found.append(Path(place))
        else:
            found += [Path.cwd() / place, REPO_ROOT / place]
    return found


def search_places(names: Sequence[str], local_copies: Iterable[str] | None = None) -> list[Path]:
    """Every place a dataset known as any of `names` is looked for, in order, without repeats.

    `local_copies` replaces the shared copies (each tried from the working folder, then the repo).
    """
    places: list[Path] = []
    if os.environ.get("GANFORGE_DATA"):
        places += [Path(os.environ["GANFORGE_DATA"]) / name for name in names]
    places += [cache_root() / "datasets" / name for name in names]
    if local_copies is not None:
        places += anchored(local_copies)
    else:
        places += [
            anchor / root / name
            for root in SHARED_ROOTS
            for anchor in (Path.cwd(), REPO_ROOT)
            for name in names
        ]
    return unique(places)


def unique(places: Iterable[Path]) -> list[Path]:
    """`places` in order, dropping any that resolves to one already listed."""
    kept: list[Path] = []
    seen: set[Path] = set()
    for place in places:
        resolved = place.resolve()
        if resolved not in seen:
            seen.add(resolved)
            kept.append(place)
    return kept
