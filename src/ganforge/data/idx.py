"""MNIST and Fashion-MNIST from the standard IDX gz files: find, download, validate, read.

Where to look, in order (the first complete copy wins):
1. an explicit path (``--data`` / ``DataConfig.path``), searched alone when given;
2. ``$GANFORGE_DATA/<dataset>``;
3. the user cache, ``$GANFORGE_CACHE`` or ``~/.cache/ganforge``, ``datasets/<dataset>``;
4. known local copies (``../shared/datasets``, ``/usr/share/datasets/fashion-mnist``);
5. a download from the public mirrors into the cache, checked against known MD5 sums
   (skipped when ``GANFORGE_OFFLINE=1``);
6. for MNIST only, unless ``data.allow_bundled_slice`` is false: the 5,000-digit slice of
   the real test set shipped with ganforge, announced with a warning, so that the demo works
   on a machine with nothing else. The faithful presets set it false: they stop and say how
   to get full MNIST instead of quietly training on 39 batches an epoch instead of 468.

Places 2-4 are the shared search of ganforge.data.locations.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import shutil
import struct
import tempfile
import urllib.error
import urllib.request
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ganforge.config import DataConfig
from ganforge.data.base import ImageData
from ganforge.data.locations import cache_root, offline, search_places, shared_copies
from ganforge.data.registry import register_source
from ganforge.errors import DataError

IMAGE_MAGIC, LABEL_MAGIC = 0x00000803, 0x00000801
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
SPLIT_SIZES = {"train": 60_000, "test": 10_000}
ASSETS = Path(__file__).parent / "assets"
# far above any real IDX set (EMNIST ByClass images: 0.6 GB)
MAX_IDX_BYTES = 1 << 31


@dataclass(frozen=True)
class IdxDataset:
    """A public IDX dataset: where it can be downloaded and how to check the download."""

    name: str
    mirrors: tuple[str, ...]
    md5: dict[str, str]
    local_copies: tuple[str, ...]
    how_to_get: str
    # label i is class_names[i]
    class_names: tuple[str, ...] = ()


MNIST = IdxDataset(
    name="mnist",
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    md5={
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    local_copies=shared_copies("mnist"),
    how_to_get="download the four IDX gz files from a public MNIST mirror and pass their folder "
    "with --data",
    class_names=tuple(str(digit) for digit in range(10)),
)
FASHION_MNIST = IdxDataset(
    name="fashion-mnist",
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    md5={
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    local_copies=("/usr/share/datasets/fashion-mnist", "../shared/datasets/fashion-mnist"),
    how_to_get="run 'apt-get install dataset-fashion-mnist' or pass a folder with the four IDX gz "
    "files with --data",
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
)
IDX_DATASETS = {d.name: d for d in (MNIST, FASHION_MNIST)}
IDX_SHAPE = (1, 28, 28)
BUNDLED_SLICE_SIZE = 5_000


def read_idx(path: Path, expect_magic: int) -> np.ndarray:
    """Read one IDX file (gz or raw), checking magic number, dimensions and length.

    The body is read only up to the size the header declares (plus one byte, to notice
    extra data), so a damaged header or a decompression bomb cannot exhaust memory.
    """
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            head = handle.read(4)
            if len(head) < 4:
                raise DataError(f"{path}: too short to be an IDX file ({len(head)} bytes)")
            magic = struct.unpack(">I", head)[0]
            if magic != expect_magic:
                kind = "images" if expect_magic == IMAGE_MAGIC else "labels"
                raise DataError(
                    f"{path}: wrong magic number 0x{magic:08x} for IDX {kind} "
                    f"(want 0x{expect_magic:08x}); is this the right file?"
                )
            ndim = magic & 0xFF
            dim_bytes = handle.read(4 * ndim)
            if len(dim_bytes) < 4 * ndim:
                raise DataError(f"{path}: truncated IDX header")
            dims = struct.unpack(f">{ndim}I", dim_bytes)
            expected = math.prod(dims)
            if expected > MAX_IDX_BYTES:
                raise DataError(
                    f"{path}: header says {dims} ({expected:,} bytes), more than an IDX image set "
                    "can hold; the file is corrupt, fetch it again"
                )
            body = _read_at_most(handle, expected + 1)
    # gzip.BadGzipFile is an OSError
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{path}: cannot read ({exc}); the file is corrupt or truncated, fetch it again"
        ) from None
    if len(body) != expected:
        held = f"{len(body)}" if len(body) <= expected else "more"
        raise DataError(
            f"{path}: header says {dims} ({expected} bytes) but the file holds {held}; "
            "the file is truncated or corrupt, fetch it again"
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _read_at_most(handle, limit: int, block: int = 1 << 22) -> bytes:
    """Up to `limit` bytes, read in blocks, so memory follows the data actually present."""
    parts, remaining = [], limit
    while remaining > 0:
        part = handle.read(min(block, remaining))
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def _complete(folder: Path, split: str) -> bool:
    return all((folder / f).is_file() for f in SPLIT_FILES[split])


def _candidates(dataset: IdxDataset, explicit: str | None) -> list[Path]:
    if explicit:
        return [Path(explicit).expanduser()]
    return search_places([dataset.name], dataset.local_copies)


def download(
    dataset: IdxDataset,
    split: str,
    target: Path,
    mirrors: tuple[str, ...] | None = None,
    timeout: float = 20.0,
) -> None:
    """Fetch a split's files into `target`, verifying MD5; a bad or partial file is never kept."""
    target.mkdir(parents=True, exist_ok=True)
    for filename in SPLIT_FILES[split]:
        final = target / filename
        if final.is_file() and _md5(final) == dataset.md5[filename]:
            continue
        errors = []
        for mirror in mirrors or dataset.mirrors:
            url = mirror.rstrip("/") + "/" + filename
            with tempfile.NamedTemporaryFile(
                dir=target, prefix=filename, suffix=".part", delete=False
            ) as tmp:
                try:
                    with urllib.request.urlopen(url, timeout=timeout) as response:
                        shutil.copyfileobj(response, tmp)
                except (urllib.error.URLError, OSError, TimeoutError) as exc:
                    errors.append(f"{url}: {exc}")
                    Path(tmp.name).unlink(missing_ok=True)
                    continue
            digest = _md5(Path(tmp.name))
            if digest != dataset.md5[filename]:
                Path(tmp.name).unlink(missing_ok=True)
                errors.append(
                    f"{url}: checksum mismatch (md5 {digest}, want {dataset.md5[filename]})"
                )
                continue
            os.replace(tmp.name, final)
            break
        else:
            raise DataError(f"could not download {filename}: " + "; ".join(errors))


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def locate(dataset: IdxDataset, split: str, explicit: str | None) -> Path | None:
    """The folder that holds the split's files, downloading it if allowed; None if not found."""
    candidates = _candidates(dataset, explicit)
    for folder in candidates:
        if _complete(folder, split):
            return folder
    if explicit:
        return None
    if not offline():
        cache = cache_root() / "datasets" / dataset.name
        try:
            download(dataset, split, cache)
            return cache
        except DataError as exc:
            warnings.warn(f"{dataset.name}: download failed ({exc})", stacklevel=2)
    return None


def load_idx_dataset(
    name: str | IdxDataset,
    split: str = "train",
    path: str | None = None,
    allow_bundled: bool = True,
) -> ImageData:
    """Load MNIST or Fashion-MNIST as ImageData, searching the places listed in the module doc.

    `name` may also be an IdxDataset, to search other mirrors or local copies.
    """
    dataset = IDX_DATASETS[name] if isinstance(name, str) else name
    name = dataset.name
    splits = ("train", "test") if split == "all" else (split,)
    parts = []
    for one in splits:
        folder = locate(dataset, one, path)
        if folder is None:
            if name == "mnist" and allow_bundled and not path:
                return _bundled_slice()
            raise _not_found(dataset, one, path, allow_bundled)
        image_file, label_file = (folder / f for f in SPLIT_FILES[one])
        images = read_idx(image_file, IMAGE_MAGIC)
        labels = read_idx(label_file, LABEL_MAGIC)
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise DataError(f"{image_file}: expected images of 28x28, got shape {images.shape}")
        if labels.shape[0] != images.shape[0]:
            raise DataError(f"{folder}: {images.shape[0]} images but {labels.shape[0]} labels")
        if labels.size and labels.max() > 9:
            raise DataError(f"{label_file}: labels must be 0-9, found {int(labels.max())}")
        parts.append((images, labels, folder))
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    source = ", ".join(str(p[2]) for p in parts)
    return ImageData(
        torch.from_numpy(images.copy()).unsqueeze(1),
        f"{name}/{split}",
        source,
        torch.from_numpy(labels.astype(np.int64)),
        10,
        dataset.class_names,
    )


def _not_found(dataset: IdxDataset, split: str, path: str | None, allow_bundled: bool) -> DataError:
    """One line: where the split was looked for, how to get it, and the slice when it applies."""
    searched = ", ".join(str(p) for p in _candidates(dataset, path))
    if path:
        extra = ""
    else:
        extra = (
            " and the public mirrors" if not offline() else " (downloads off: GANFORGE_OFFLINE=1)"
        )
    message = (
        f"{dataset.name} {split} split not found: looked in {searched}{extra}; {dataset.how_to_get}"
    )
    if dataset.name == "mnist" and not allow_bundled and not path:
        message += (
            f" (or set GANFORGE_DATA to the folder that holds mnist/); or train on the "
            f"{BUNDLED_SLICE_SIZE:,}-digit slice that ships with ganforge with "
            "--set data.allow_bundled_slice=true"
        )
    return DataError(message)


def _bundled_slice() -> ImageData:
    warnings.warn(
        f"full MNIST not found (no local copy, no download): using the "
        f"{BUNDLED_SLICE_SIZE:,}-digit slice of the real MNIST test set that ships with "
        "ganforge; pass --data DIR for the full set",
        stacklevel=2,
    )
    return read_bundled_slice()


def read_bundled_slice() -> ImageData:
    """The 5,000 real MNIST test digits that ship with ganforge, with their labels."""
    images = read_idx(ASSETS / "mnist-slice-images-idx3-ubyte.gz", IMAGE_MAGIC)
    labels = read_idx(ASSETS / "mnist-slice-labels-idx1-ubyte.gz", LABEL_MAGIC)
    return ImageData(
        torch.from_numpy(images.copy()).unsqueeze(1),
        "mnist/bundled-slice",
        str(ASSETS),
        torch.from_numpy(labels.astype(np.int64)),
        10,
        MNIST.class_names,
    )


# ---- the registered sources -------------------------------------------------------------------
def _idx_shape(config: DataConfig) -> tuple[int, int, int]:
    return IDX_SHAPE


def idx_problems(config: DataConfig) -> list[str]:
    """A --data folder that does not exist; MNIST missing offline when the slice is not allowed.

    Only stat calls: whether the files are complete is known, whether they are intact is not.
    """
    if config.path:
        folder = Path(config.path).expanduser()
        return [] if folder.exists() else [f"--data {config.path} does not exist"]
    allow = config.allow_bundled_slice and config.dataset == "mnist"
    if allow or not offline():
        # the slice covers it, or a download may: only loading can tell
        return []
    dataset = IDX_DATASETS[config.dataset]
    splits = ("train", "test") if config.split == "all" else (config.split,)
    missing = [
        one for one in splits if not any(_complete(f, one) for f in _candidates(dataset, None))
    ]
    return [str(_not_found(dataset, missing[0], None, allow))] if missing else []


@register_source("mnist", shape=_idx_shape, problems=idx_problems)
def load_mnist(config: DataConfig) -> ImageData:
    """MNIST digits with labels; the bundled slice only while data.allow_bundled_slice is true."""
    return load_idx_dataset("mnist", config.split, config.path, config.allow_bundled_slice)


@register_source("fashion-mnist", shape=_idx_shape, problems=idx_problems)
def load_fashion_mnist(config: DataConfig) -> ImageData:
    """Fashion-MNIST articles with labels."""
    return load_idx_dataset("fashion-mnist", config.split, config.path)
