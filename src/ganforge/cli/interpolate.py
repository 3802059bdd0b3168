"""`ganforge interpolate`: a walk through latent space between seeds, as a GIF or MP4."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganforge.cli.common import (
    add_class_option,
    add_noise_options,
    add_pretrained_option,
    generator_source,
    noise_note,
    positive_int,
    say,
)
from ganforge.errors import ConfigError

EXAMPLES = """\
examples:
  ganforge interpolate runs/demo-001 --seeds 3,7,12 --frames 60 --out walk.gif
  ganforge interpolate runs/demo-001 --seeds 0,1 --frames 30 --no-loop --out pair.gif
  ganforge interpolate runs/demo-001 --seeds 3,7,12 --out walk.mp4   # needs imageio-ffmpeg
  ganforge interpolate --pretrained mnist-best --seeds 3,7 --class 7 --out sevens.gif

Gaussian latents are joined by spherical interpolation (slerp), uniform ones by straight
lines (lerp). MP4 needs the video extra: pip install 'ganforge[video]'.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "interpolate",
        help="animate a walk between seeds' images (GIF or MP4)",
        description="Make an animation that passes through the image of each "
        "seed in turn, and by default returns to the first.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_pretrained_option(
        p,
        "a run folder, model folder, generator .safetensors or checkpoint .pt "
        "(or use --pretrained)",
    )
    p.add_argument(
        "--seeds",
        required=True,
        metavar="LIST",
        help="the seeds to pass through, in order, e.g. 3,7,12 (at least two)",
    )
    p.add_argument(
        "--frames", type=positive_int, default=60, help="frames in the whole walk (default 60)"
    )
    p.add_argument("--fps", type=positive_int, default=20, help="frames per second (default 20)")
    p.add_argument(
        "--loop",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="return to the first seed at the end (default: yes)",
    )
    p.add_argument(
        "--truncation",
        type=float,
        default=None,
        metavar="PSI",
        help="Gaussian latents only: truncate each seed's latent (see ganforge sample)",
    )
    add_noise_options(p)
    add_class_option(
        p,
        "walk within class N (default: the first seed's class, seed mod classes, as "
        "ganforge sample --seeds gives it)",
    )
    p.add_argument(
        "--size",
        type=positive_int,
        default=256,
        help="enlarge small images (nearest neighbour) to at least this many pixels (default 256)",
    )
    p.add_argument("--out", "-o", default="walk.gif", help="a .gif or .mp4 file (default walk.gif)")
    p.add_argument("--device", default="auto", help="auto (default: a GPU when present), cpu, cuda")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ganforge.artefacts.video import check_writer, save_animation
    from ganforge.conditional import class_title
    from ganforge.devices import resolve_device
    from ganforge.generate import load_generator, walk_frames
    from ganforge.latent import parse_seeds

    out = Path(args.out)
    check_writer(out)
    seeds = parse_seeds(args.seeds)
    source = generator_source(args, "interpolate")
    generator, info = load_generator(source, resolve_device(args.device))
    walked = walk_frames(
        generator,
        info,
        seeds,
        args.frames,
        loop=args.loop,
        truncation=args.truncation,
        label=args.label,
        noise=args.noise,
        noise_std=args.noise_std,
        name=f"the {info.arch} generator",
    )
    frames, label, info = walked.images, walked.label, walked.info
    try:
        save_animation(frames, out, fps=args.fps, min_side=args.size)
    except OSError as exc:
        raise ConfigError(
            f"cannot write {out}: {exc.strerror or exc}; choose another --out"
        ) from None
    law = "slerp" if info.noise == "normal" else "lerp"
    say(
        f"wrote {len(frames)} frames ({law} through seeds {args.seeds}"
        f"{', back to the first' if args.loop else ''}"
        f"{f', {class_title(label, info.class_names)}' if label is not None else ''}"
        f"{noise_note(args)})"
        f" to {out}"
    )
    return 0
