"""`ganforge sample`: write N generated images as a grid PNG, single PNGs or a .npy array."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from ganforge.artefacts.files import write_with
from ganforge.artefacts.images import save_grid, save_individual
from ganforge.cli.common import positive_int, say, seed_int
from ganforge.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="generate images from a trained run or generator file")
    p.add_argument("source", help="a run folder, a generator .safetensors or a checkpoint .pt")
    p.add_argument("--count", "-n", type=positive_int, default=64, help="number of images (default 64)")
    p.add_argument("--seed", type=seed_int, default=0, help="noise seed; the same seed gives the same images")
    p.add_argument("--out", "-o", default="samples.png",
                   help="grid .png, a .npy file (uint8 [N,H,W,C]), or a folder for one PNG per image")
    p.add_argument("--format", choices=("auto", "grid", "png", "npy"), default="auto",
                   help="auto: by --out's suffix (.png grid, .npy array, else a folder of PNGs)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ganforge.generate import generate, load_generator
    from ganforge.training.runtime import resolve_device

    out = Path(args.out)
    kind = args.format if args.format != "auto" else {".png": "grid", ".npy": "npy"}.get(out.suffix.lower(), "png")
    if out.exists() and out.is_dir() and kind != "png":
        raise ConfigError(f"--out {out} is a folder; give a file name ending in .png or .npy")
    generator, info = load_generator(args.source, resolve_device(args.device))
    images = generate(generator, info, args.count, args.seed)
    try:
        if kind == "grid":
            save_grid(images, out, rows=max(1, int(math.sqrt(args.count))))
        elif kind == "npy":
            write_with(out, lambda handle: np.save(handle, images.permute(0, 2, 3, 1).numpy()))
        else:
            save_individual(images, out)
    except OSError as exc:  # a file where a folder should be, a read-only place, a full disk
        where = exc.filename or out
        raise ConfigError(f"cannot write {out}: {exc.strerror or exc} ({where}); choose another --out") from None
    say(f"wrote {args.count} images {tuple(images.shape[1:])} from {info.arch} ({info.dataset}, "
        f"iteration {info.step}) to {out}")
    return 0
