"""`ganforge sample`: generated images as a grid PNG, single PNGs or a .npy array.

Two ways to pick the noise. ``--count N --seed S``: N images from one noise stream (the
historical mode, the same as ``ganforge.sample``). ``--seeds 0-35``: one latent per seed
(see ganforge.latent), so the image of seed 7 is the same alone or in any range, and a
folder gets one file per seed, seed-0007.png. ``--truncation`` works per seed; with
``--count``/``--seed`` it stands for the seeds S .. S+N-1.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ganforge.cli.common import (
    add_class_option,
    add_noise_options,
    add_pretrained_option,
    generator_source,
    noise_note,
    positive_int,
    say,
    seed_int,
)
from ganforge.errors import ConfigError

EXAMPLES = """\
examples:
  ganforge sample runs/demo-001                           # 64 images as samples.png
  ganforge sample runs/demo-001 --seeds 0-35 --out seeds  # seeds/seed-0000.png ... seed-0035.png
  ganforge sample runs/demo-001 --seeds 3,7 --truncation 0.7 --out typical.png
  ganforge sample runs/demo-001 -n 1000 --out fakes.npy   # uint8 [N, H, W, C]
  ganforge sample demo-model -n 16                        # a folder from `ganforge export`
  ganforge sample runs/oasis-001 --seeds 0-63 --out slices.nii.gz --spacing 1,1,1
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample",
        help="generate images from a run, model folder or generator file",
        description="Generate images. The same seed gives the same images on the same device.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_pretrained_option(
        p,
        "a run folder, a model folder (ganforge export --format folder), "
        "a generator .safetensors or a checkpoint .pt (or use --pretrained)",
    )
    add_class_option(p, "every image of class N (e.g. 7 for sevens)")
    p.add_argument(
        "--count", "-n", type=positive_int, default=64, help="number of images (default 64)"
    )
    p.add_argument(
        "--seed", type=seed_int, default=0, help="noise seed; the same seed gives the same images"
    )
    p.add_argument(
        "--seeds",
        default=None,
        metavar="LIST",
        help="one image per seed, e.g. 0-35 or 3,7,12 (instead of --count/--seed); "
        "into a folder as seed-NNNN.png",
    )
    p.add_argument(
        "--truncation",
        type=float,
        default=None,
        metavar="PSI",
        help="Gaussian latents only: resample latent components beyond PSI standard "
        "deviations (BigGAN's truncation; smaller: more typical, less varied)",
    )
    add_noise_options(p)
    p.add_argument(
        "--out",
        "-o",
        default="samples.png",
        help="grid .png, a .npy file (uint8 [N,H,W,C]), a .nii.gz volume (the images "
        "as axial slices), or a folder for one PNG per image",
    )
    p.add_argument(
        "--format",
        choices=("auto", "grid", "png", "npy", "nifti"),
        default="auto",
        help="auto: by --out's suffix (.png grid, .npy array, .nii/.nii.gz volume, "
        "else a folder of PNGs)",
    )
    p.add_argument(
        "--spacing",
        default="1,1,1",
        metavar="X,Y,Z",
        help="voxel size in mm of a NIfTI stack: column, row, slice (default 1,1,1; "
        "one number for all three)",
    )
    p.add_argument("--device", default="auto", help="auto (default: a GPU when present), cpu, cuda")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ganforge.artefacts.files import write_with
    from ganforge.artefacts.images import save_grid, save_individual
    from ganforge.conditional import class_title
    from ganforge.devices import resolve_device
    from ganforge.generate import draw, load_generator
    from ganforge.latent import parse_seeds

    out = Path(args.out)
    nifti = out.name.lower().endswith((".nii", ".nii.gz"))
    by_suffix = "nifti" if nifti else {".png": "grid", ".npy": "npy"}.get(out.suffix.lower(), "png")
    kind = args.format if args.format != "auto" else by_suffix
    spacing = _spacing(args.spacing)
    if out.exists() and out.is_dir() and kind != "png":
        raise ConfigError(
            f"--out {out} is a folder; give a file name ending in .png, .npy or .nii.gz"
        )
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    source = generator_source(args, "sample")
    generator, info = load_generator(source, resolve_device(args.device))
    drawn = draw(
        generator,
        info,
        args.count,
        seed=args.seed,
        seeds=seeds,
        truncation=args.truncation,
        label=args.label,
        noise=args.noise,
        noise_std=args.noise_std,
        name=f"the {info.arch} generator in {source}",
    )
    images, seeds, info = drawn.images, drawn.seeds, drawn.info
    try:
        if kind == "grid":
            save_grid(images, out, rows=max(1, int(math.sqrt(len(images)))))
        elif kind == "npy":
            import numpy as np

            write_with(out, lambda handle: np.save(handle, images.permute(0, 2, 3, 1).numpy()))
        elif kind == "nifti":
            from ganforge.data import save_nifti_stack

            save_nifti_stack(images, out, spacing)
        elif seeds is not None:
            _save_per_seed(images, seeds, out)
        else:
            save_individual(images, out)
    # a file where a folder should be, a read-only place, a full disk
    except OSError as exc:
        where = exc.filename or out
        raise ConfigError(
            f"cannot write {out}: {exc.strerror or exc} ({where}); choose another --out"
        ) from None
    if args.seeds is not None:
        what = f"seeds {args.seeds}"
    else:
        what = f"seed {args.seed}" if seeds is None else f"seeds {seeds[0]}-{seeds[-1]}"
    trunc = f", truncation {args.truncation:g}" if args.truncation is not None else ""
    trunc += f", {class_title(drawn.label, info.class_names)}" if drawn.label is not None else ""
    trunc += noise_note(args)
    say(
        f"wrote {len(images)} images {tuple(images.shape[1:])} from {info.arch} ({info.dataset}, "
        f"iteration {info.step}; {what}{trunc}) to {out}"
    )
    return 0


def _spacing(text: str) -> tuple[float, float, float]:
    """--spacing '1' or '0.9,0.9,2.5' -> three positive sizes in mm."""
    try:
        sizes = [float(part) for part in text.split(",")]
    except ValueError:
        sizes = []
    if len(sizes) == 1:
        sizes *= 3
    if len(sizes) != 3 or not all(math.isfinite(size) and size > 0 for size in sizes):
        raise ConfigError(
            f"--spacing {text[:40]!r}: give one or three positive sizes in mm, "
            "e.g. 1 or 0.9,0.9,2.5"
        )
    return sizes[0], sizes[1], sizes[2]


def _save_per_seed(images, seeds: list[int], folder: Path) -> None:
    """seed-NNNN.png per seed (at least four digits, so a listing sorts by seed)."""
    from ganforge.artefacts.files import write_bytes
    from ganforge.artefacts.images import png_bytes

    folder.mkdir(parents=True, exist_ok=True)
    for seed, image in zip(seeds, images, strict=True):
        write_bytes(folder / f"seed-{seed:04d}.png", png_bytes(image.permute(1, 2, 0)))
