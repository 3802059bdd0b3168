"""The calibration ladder: real images damaged in known ways, at rising strengths.

A metric is only useful if it gets worse when the images get worse, and a reader can
only trust it after seeing *what* it notices. Each ladder starts from real images that
the reference set does not contain and damages them step by step: Gaussian noise and
salt-and-pepper noise at three strengths, blur at three strengths, small translations,
classes taken away (one, then half of them), and a single image repeated. The numbers
fill the sensitivity table in docs/metrics.md (``scripts/metric_floors.py --ladder``) and
``tests/test_metrics.py`` checks that every metric worsens along every ladder it can see.

Some metrics are blind to some damage by design: precision and density judge each
generated image on its own (is it realistic?), so a set of perfect images from fewer
classes, or one perfect image repeated, does not lower them; :data:`BLIND` lists these
cases and the test checks that precision really does not drop for them. Precision and
density even *improve* under a little blur (:data:`MILD_REWARD`). Everything else must
get worse at every rung, within :data:`TOLERANCE` of the measurement noise.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

Damage = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

# the class taken away on the first rung
DROP_ONE = (0,)
# ... and on the second: nested, so the damage only grows
DROP_HALF = (0, 1, 2, 3, 4)


def _uint8(x: torch.Tensor) -> torch.Tensor:
    return x.round().clamp(0, 255).to(torch.uint8)


def gaussian_noise(std: float) -> Damage:
    def damage(images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        return _uint8(images.float() + std * torch.randn(images.shape, generator=rng))

    return damage


def salt_and_pepper(fraction: float) -> Damage:
    def damage(images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        hit = torch.rand(images.shape, generator=rng) < fraction
        value = (torch.rand(images.shape, generator=rng) < 0.5).to(torch.uint8) * 255
        return torch.where(hit, value, images)

    return damage


def blur(sigma: float) -> Damage:
    """Gaussian blur; sigma in pixels at 28 px, scaled with the image size."""

    def damage(images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        s = sigma * images.shape[-1] / 28
        radius = max(1, int(3 * s))
        x = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-(x**2) / (2 * s**2))
        kernel /= kernel.sum()
        c = images.shape[1]
        out = F.pad(images.float(), (radius,) * 4, mode="replicate")
        out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        return _uint8(F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c))

    return damage


def translation(pixels: int) -> Damage:
    """Shift each image by `pixels` along both axes, in a random diagonal direction (zero fill)."""

    def damage(images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        n = len(images)
        signs = torch.randint(0, 2, (n, 2), generator=rng) * 2 - 1
        padded = F.pad(images, (pixels,) * 4)
        h, w = images.shape[-2:]
        out = torch.empty_like(images)
        for i, (sy, sx) in enumerate((signs * pixels).tolist()):
            out[i] = padded[i, :, pixels - sy : pixels - sy + h, pixels - sx : pixels - sx + w]
        return out

    return damage


LADDERS: dict[str, list[tuple[str, Damage]]] = {
    "gaussian noise": [
        ("std 16", gaussian_noise(16)),
        ("std 40", gaussian_noise(40)),
        ("std 80", gaussian_noise(80)),
    ],
    "salt and pepper": [
        ("2 %", salt_and_pepper(0.02)),
        ("6 %", salt_and_pepper(0.06)),
        ("15 %", salt_and_pepper(0.15)),
    ],
    "blur": [("sigma 0.5", blur(0.5)), ("sigma 1.0", blur(1.0)), ("sigma 1.6", blur(1.6))],
    "translation": [("1 px", translation(1)), ("2 px", translation(2)), ("3 px", translation(3))],
}
LABELLED_LADDERS = ("classes dropped", "repeated image")
LADDER_NAMES = (*LADDERS, *LABELLED_LADDERS)

# (output without space suffix, ladder): damage the metric does not penalise, measured on MNIST
# and Fashion-MNIST at 1,000 images (the docs table). The test requires no worsening here.
# rewards mild blur; on MNIST the classifier's is barely lower even at sigma 1.6
# ditto; a repeated image scores by how typical that one image is
BLIND = {
    ("precision", "classes dropped"),
    # judges each image alone
    ("precision", "repeated image"),
    (
        "precision",
        "blur",
    ),
    (
        "density",
        "classes dropped",
    ),
    ("class_coverage", "translation"),
    # classes survive a shift
    ("class_kl", "translation"),
    # pair similarity barely depends on which classes are present
    ("msssim", "classes dropped"),
}
# Metrics that *improve* under the mildest damage and only get worse further up the ladder:
# blur and faint noise pull images towards the dense middle of the real data, which is what
# precision and density reward. The test requires the strongest rung to be worse than real.
MILD_REWARD = {("density", "blur"), ("density", "gaussian noise")}
# How much a step may go the wrong way and still count as "not better": about the bootstrap
# noise of each output at 1,000 images (0 for the class counts, which move in steps of 0.1);
# the encoder's FID and KID live on a smaller scale than the classifier's.
TOLERANCE = {
    "precision": 0.03,
    "recall": 0.03,
    "coverage": 0.03,
    "density": 0.06,
    "class_coverage": 0.0,
    "class_kl": 0.003,
    "kid": 0.5,
    "kid_enc": 0.02,
    "fid": 0.5,
    "fid_enc": 0.1,
    "is": 0.1,
    "swd": 2.0,
    "msssim": 0.02,
}
LADDER_OUTPUTS = (
    "fid",
    "kid",
    "precision",
    "recall",
    "density",
    "coverage",
    "is",
    "class_coverage",
    "class_kl",
    "swd",
    "msssim",
)


def ladder_sets(
    pool: torch.Tensor, labels: torch.Tensor | None, count: int, seed: int = 0
) -> dict[str, list[tuple[str, torch.Tensor]]]:
    """Every ladder's rungs, each `count` images made from `pool` (real images outside the
    reference).

    The first rung of every ladder is the undamaged real set; class ladders need `labels`.
    """
    base = pool[:count]
    out: dict[str, list[tuple[str, torch.Tensor]]] = {}
    for offset, (name, rungs) in enumerate(LADDERS.items()):
        rng = torch.Generator().manual_seed(seed * 1000 + offset)
        out[name] = [("real", base)] + [(label, damage(base, rng)) for label, damage in rungs]
    if labels is not None:

        def without(classes: tuple[int, ...]) -> torch.Tensor:
            keep = ~torch.isin(labels, torch.tensor(classes))
            return pool[keep][:count]

        out["classes dropped"] = [
            ("real", base),
            ("one class", without(DROP_ONE)),
            ("half the classes", without(DROP_HALF)),
        ]
    out["repeated image"] = [
        ("real", base),
        ("one image", base[:1].expand(count, -1, -1, -1).contiguous()),
    ]
    return out


def badness(key: str, scores: dict[str, float], direction: str) -> float:
    """A number that grows as the metric says 'worse': the value, its negative, or the distance
    from the real pairs' value for MS-SSIM."""
    value = scores[key]
    if direction == "lower":
        return value
    if direction == "higher":
        return -value
    # match
    return abs(value - scores["msssim_real"])


def ladder_verdict(output: str, ladder: str, badness_values: list[float]) -> str | None:
    """None when the ladder behaves as documented for this output, else what went wrong."""
    base = output.removesuffix("_enc")
    tol = TOLERANCE.get(output, TOLERANCE.get(base, 0.0))
    first, last = badness_values[0], badness_values[-1]
    if (base, ladder) in BLIND:
        return None
    if last <= first + tol:
        return f"{output} is not worse at the strongest rung of {ladder} ({badness_values})"
    if (base, ladder) in MILD_REWARD:
        return None
    for before, after in zip(badness_values, badness_values[1:]):
        if after < before - tol:
            return f"{output} gets better along {ladder} ({badness_values})"
    return None
