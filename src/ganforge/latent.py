"""Latent vectors by seed: one file per seed, walks between seeds, and truncation.

Each seed owns its latent vector. It is drawn from its own ``torch.Generator`` on the CPU
(``manual_seed(seed)``), in the training noise law (normal with ``latent.std``, or uniform
in [-1, 1]). So the image for seed 7 is the same whether it is made alone or among seeds
0-35, and the same on every machine (up to the device's arithmetic). :func:`images_for_seeds`
runs the generator one latent at a time for the same reason: a batch of one gives the
same numbers for a seed wherever it sits in a range.

Truncation (``psi``, Gaussian latents only) follows BigGAN (Brock et al., 2018): the
components whose size exceeds ``psi`` standard deviations are *resampled* from the normal
distribution truncated to [-psi, psi]; the components already inside are kept. Each seed
draws its replacements from its own generator, after its latent, so a truncated image
stays close to the untruncated one for the same seed. Smaller psi: more typical, less
varied images. Resampling (not scaling towards the mean) keeps every component a plausible
draw; scaling shrinks the vector's norm into a region the generator never saw in training.

:func:`seed_images` and :func:`walk_images` are what ``ganforge sample --seeds``,
``ganforge interpolate`` and ``ganforge serve`` call: the class rule (a conditional model
draws class ``seed mod classes`` unless one is asked for; a walk stays in its first seed's
class) lives here once. :func:`with_noise` draws the latents in another noise law than the
one the generator was trained on, to see how it copes (``--noise``).
"""

from __future__ import annotations

import dataclasses
import math
import re

import torch
from torch import nn

from ganforge.checkpoint import GeneratorInfo
from ganforge.data.base import to_uint8
from ganforge.errors import ConfigError
from ganforge.noise import draw_noise

# a typo such as 0-9999999 should not start a day of generation
MAX_SEEDS = 100_000
NOISE_LAWS = ("normal", "uniform")


def parse_seeds(text: str) -> list[int]:
    """'3,7,12', '0-35' or a mix such as '0-3,9' -> the seeds in the order given."""
    seeds: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise ConfigError(
                f"--seeds {text[:40]!r}: give non-negative whole numbers and ranges "
                "such as 3,7,12 or 0-35"
            )
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise ConfigError(f"--seeds: range {part} runs backwards; write it as {last}-{first}")
        if last >= 2**63:
            raise ConfigError(f"--seeds: {part[:40]} does not fit in 64 bits")
        if len(seeds) + last - first + 1 > MAX_SEEDS:
            raise ConfigError(f"--seeds {text[:40]}: more than {MAX_SEEDS} seeds; ask for fewer")
        seeds.extend(range(first, last + 1))
    return seeds


def check_truncation(info: GeneratorInfo, psi: float | None) -> None:
    """Refuse truncation that cannot work, before any image is made."""
    if psi is None:
        return
    if info.noise != "normal":
        raise ConfigError(
            "--truncation works on Gaussian latents only; this generator was "
            f"trained on {info.noise} noise, so leave --truncation out"
        )
    if not (math.isfinite(psi) and psi > 0):
        raise ConfigError(
            f"--truncation must be a positive number of standard deviations, got {psi}"
        )


def with_noise(info: GeneratorInfo, law: str | None, std: float | None = None) -> GeneratorInfo:
    """`info` with another noise law (and standard deviation for "normal"); unchanged for None.

    Every seed, truncation and walk rule then applies as it does to the trained law, because
    they all read the law from `info`: nothing else has to know about the override.
    """
    if law is None and std is None:
        return info
    law = info.noise if law is None else law
    if law not in NOISE_LAWS:
        raise ConfigError(f"--noise {str(law)[:20]!r}: choose one of {', '.join(NOISE_LAWS)}")
    if std is not None and law != "normal":
        raise ConfigError("--noise-std sets the spread of normal noise; drop it for uniform noise")
    if std is not None and not (math.isfinite(std) and 0 < std <= 100):
        raise ConfigError(f"--noise-std must be a positive number up to 100, got {std}")
    if std is None:
        std = info.noise_std if info.noise == "normal" else 1.0
    return dataclasses.replace(info, noise=law, noise_std=float(std))


def seed_latent(info: GeneratorInfo, seed: int, truncation: float | None = None) -> torch.Tensor:
    """The latent vector [latent_dim] of one seed, in the training noise law (noise.py)."""
    check_truncation(info, truncation)
    rng = torch.Generator(device="cpu").manual_seed(seed)
    return draw_noise(1, info.latent_dim, info.latent, rng, "cpu", truncation)[0]


def seed_latents(
    info: GeneratorInfo, seeds: list[int], truncation: float | None = None
) -> torch.Tensor:
    """Latents [len(seeds), latent_dim], one row per seed (each row independent of the others)."""
    check_truncation(info, truncation)
    return torch.stack([seed_latent(info, seed, truncation) for seed in seeds])


@torch.no_grad()
def images_for_latents(
    generator: nn.Module,
    latents: torch.Tensor,
    labels: torch.Tensor | None = None,
    batch_size: int = 1,
) -> torch.Tensor:
    """uint8 images [N, C, H, W] for latents [N, latent_dim] (and classes [N] for a
    conditional generator), one forward pass per latent by default.

    One at a time, because a convolution may pick another algorithm for another batch size,
    and then a seed's image would depend on the seeds around it by a grey level. A larger
    `batch_size` trades that for speed (``ganforge serve`` draws a 64-image grid in one pass,
    several times faster on a CPU); a pixel may then differ by one grey level.
    """
    device = next(generator.parameters()).device
    out = []
    for start in range(0, len(latents), max(1, batch_size)):
        z = latents[start : start + max(1, batch_size)].to(device)
        if labels is None:
            images = generator(z)
        else:
            images = generator(z, labels[start : start + len(z)].to(device))
        out.append(to_uint8(images).cpu())
    return torch.cat(out)


def images_for_seeds(
    generator: nn.Module, info: GeneratorInfo, seeds: list[int], truncation: float | None = None
) -> torch.Tensor:
    """uint8 images [len(seeds), C, H, W]; the image of a seed does not depend on the others."""
    return seed_images(generator, info, seeds, truncation)


def seed_images(
    generator: nn.Module,
    info: GeneratorInfo,
    seeds: list[int],
    truncation: float | None = None,
    labels: torch.Tensor | None = None,
    batch_size: int = 1,
) -> torch.Tensor:
    """One uint8 image per seed [len(seeds), C, H, W], in `labels`' classes when given.

    A conditional generator asked for no class draws class ``seed mod classes`` for each
    seed, so a seed keeps its image (and class) wherever it sits in a grid.
    """
    from ganforge.conditional import num_classes_of

    latents = seed_latents(info, seeds, truncation)
    classes = num_classes_of(generator)
    if classes and labels is None:
        labels = torch.tensor(seeds, dtype=torch.long) % classes
    return images_for_latents(generator, latents, labels if classes else None, batch_size)


def walk_images(
    generator: nn.Module,
    info: GeneratorInfo,
    seeds: list[int],
    frames: int,
    loop: bool = True,
    truncation: float | None = None,
    label: int | None = None,
    batch_size: int = 1,
) -> torch.Tensor:
    """The frames [frames, C, H, W] of :func:`walk`; a conditional generator walks within
    class `label`, by default the first seed's class (``seeds[0] mod classes``), the class
    ``ganforge sample --seeds`` gives that seed."""
    latents = walk(info, seeds, frames, loop=loop, truncation=truncation)
    chosen = walk_class(generator, seeds, label)
    labels = None if chosen is None else torch.full((frames,), chosen, dtype=torch.long)
    return images_for_latents(generator, latents, labels, batch_size)


def walk_class(generator: nn.Module, seeds: list[int], label: int | None = None) -> int | None:
    """The class a walk stays in: `label`, else the first seed's (seed mod classes); None for
    an unconditional generator."""
    from ganforge.conditional import num_classes_of

    classes = num_classes_of(generator)
    if not classes:
        return None
    return seeds[0] % classes if label is None else label


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation: Gaussian latents keep a typical norm all the way from a to b
    (a straight line between two of them dips through the low-norm centre, which the
    generator rarely saw). Falls back to lerp when a and b point the same way."""
    a64, b64 = a.double(), b.double()
    cos = torch.dot(a64, b64) / (a64.norm() * b64.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    if float(omega) < 1e-6:
        return lerp(a, b, t)
    sin = torch.sin(omega)
    out = (torch.sin((1 - t) * omega) / sin) * a64 + (torch.sin(t * omega) / sin) * b64
    return out.to(a.dtype)


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Linear interpolation: stays inside the [-1, 1] cube of uniform latents."""
    return a + (b - a) * t


def walk(
    info: GeneratorInfo,
    seeds: list[int],
    frames: int,
    loop: bool = True,
    truncation: float | None = None,
) -> torch.Tensor:
    """Latents [frames, latent_dim] that pass through each seed's latent in order.

    slerp for Gaussian latents, lerp for uniform ones. With `loop`, the walk returns to the
    first seed, so a looping GIF has no jump; frames are shared evenly between the segments.
    """
    if len(seeds) < 2:
        raise ConfigError("--seeds: give at least two seeds to walk between, e.g. --seeds 3,7,12")
    keys = seed_latents(info, seeds, truncation)
    segments = len(seeds) if loop else len(seeds) - 1
    if frames < segments + (0 if loop else 1):
        raise ConfigError(
            f"--frames {frames} is too few for {len(seeds)} seeds; give at least "
            f"{segments + (0 if loop else 1)}"
        )
    mix = slerp if info.noise == "normal" else lerp
    out = []
    # position along the path in segment units; a loop stops one step short of the start
    last = frames if loop else frames - 1
    for i in range(frames):
        position = segments * i / last
        index = min(int(position), segments - 1)
        a, b = keys[index], keys[(index + 1) % len(seeds)]
        out.append(mix(a, b, position - index))
    return torch.stack(out)
