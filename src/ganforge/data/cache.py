"""Decode once: keep preprocessed images in the user cache as one uint8 tensor file.

Decoding 6,400 JPEG slices and resizing them takes seconds; reading one uint8 tensor
back takes milliseconds. A cache file is named after the *source folder and the
settings* (resolution, channels, fit, split, NIfTI slicing, limit), so changing a setting
never reuses the wrong images, and each (source, settings) pair has exactly one file (no
pile-up of stale copies). Inside, the file stores a *fingerprint* of the source files:
their relative paths, byte sizes and modification times. Adding, removing, touching or
rewriting a source file changes the fingerprint, and the cache is rebuilt.

The file is written atomically (a reader never sees half of one) and read with
``torch.load(weights_only=True)``, which accepts tensors and plain containers only: a
cache file is never a way to run code. A damaged or foreign cache file is ignored and
rebuilt; a cache folder that cannot be written only costs the speed-up.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ganforge.artefacts.files import write_with
from ganforge.config import DataConfig
from ganforge.data.locations import cache_root

FORMAT = "ganforge-decoded-v1"
# bump when decoding changes, so old caches are not reused (2: class labels)
DECODER_VERSION = 2


@dataclass
class Decoded:
    """Preprocessed images and what the loader needs to know about how they were made."""

    # uint8 [N, C, H, W]
    images: torch.Tensor
    # unreadable sources, "name (reason)"
    skipped: list[str] = field(default_factory=list)
    # source files tried (so the unreadable fraction can be restated)
    attempted: int = 0
    from_cache: bool = False
    # int64 [N]: class folder indices, for labelled folders
    labels: torch.Tensor | None = None


def cache_dir() -> Path:
    """Where decoded datasets live: <cache_root>/decoded (cache_root honours $GANFORGE_CACHE)."""
    return cache_root() / "decoded"


def cache_settings(config: DataConfig, kind: str, split_label: str) -> dict[str, Any]:
    """What besides the source files changes an image folder's decoded tensor: the cache key.

    Sources add their own settings (NIfTI slicing, normalisation, subject split) to this.
    """
    return {
        "kind": kind,
        "decoder": DECODER_VERSION,
        "split": split_label,
        "resolution": config.resolution,
        "channels": config.channels,
        "fit": config.fit,
        "limit": config.limit,
    }


def cache_file(root: Path, settings: dict[str, Any]) -> Path:
    """The one cache file for this source folder and these settings."""
    identity = json.dumps(
        {"root": str(root.resolve()), "settings": settings}, sort_keys=True, default=str
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:20]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", root.name)[:40] or "data"
    return cache_dir() / f"{slug}-{digest}.pt"


def fingerprint(root: Path, files: Sequence[Path]) -> str:
    """A digest of the files' relative paths, sizes and mtimes: changes when any source changes.

    Stat calls only (no reading), so checking a cache of thousands of files is cheap.
    """
    digest = hashlib.sha256(FORMAT.encode())
    for path in files:
        try:
            info = path.stat()
            size, mtime = info.st_size, info.st_mtime_ns
        # vanished since it was listed: the build reports it as unreadable
        except OSError:
            size, mtime = -1, -1
        try:
            name = str(path.relative_to(root))
        except ValueError:
            name = str(path)
        digest.update(f"{name}\t{size}\t{mtime}\n".encode())
    return digest.hexdigest()


def read(path: Path, expected_fingerprint: str) -> Decoded | None:
    """The cached images if the file is intact and matches the sources, else None."""
    if not path.is_file():
        return None
    try:
        # a foreign file's pickle-protocol notice is not the user's concern
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        OSError,
        ValueError,
    ):
        # damaged or not ours: rebuild it
        return None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        return None
    if state.get("fingerprint") != expected_fingerprint:
        return None
    images = state.get("images")
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        return None
    labels = state.get("labels")
    if labels is not None and (
        not isinstance(labels, torch.Tensor) or labels.shape != (images.shape[0],)
    ):
        return None
    meta = json.loads(state.get("meta", "{}"))
    return Decoded(
        images,
        list(meta.get("skipped", [])),
        int(meta.get("attempted", 0)),
        from_cache=True,
        labels=labels,
    )


def write(path: Path, expected_fingerprint: str, decoded: Decoded) -> None:
    """Store decoded images atomically; a failure to write is a warning, not an error."""
    meta = json.dumps({"skipped": decoded.skipped, "attempted": decoded.attempted})
    state = {
        "format": FORMAT,
        "fingerprint": expected_fingerprint,
        "images": decoded.images.contiguous(),
        "meta": meta,
    }
    if decoded.labels is not None:
        state["labels"] = decoded.labels.contiguous()
    try:
        write_with(path, lambda handle: torch.save(state, handle))
    except OSError as exc:
        warnings.warn(
            f"could not write the decoded-image cache {path} ({exc.strerror or exc}); "
            "the next run decodes again",
            stacklevel=3,
        )


def cached(
    root: Path,
    files: Sequence[Path],
    settings: dict[str, Any],
    build: Callable[[], Decoded],
    enabled: bool = True,
) -> Decoded:
    """The decoded dataset from the cache when it matches `files`, else built and stored."""
    if not enabled:
        return build()
    path = cache_file(root, settings)
    stamp = fingerprint(root, files)
    hit = read(path, stamp)
    if hit is not None:
        return hit
    decoded = build()
    write(path, stamp, decoded)
    return decoded
