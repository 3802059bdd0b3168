"""Train the contrastive encoder (the second feature space) for MNIST, Fashion-MNIST or brains.

    python scripts/train_encoder.py --dataset mnist           # writes the committed weights
    python scripts/train_encoder.py --dataset mnist --check   # re-measures the committed ones
    python scripts/train_encoder.py --dataset brain-mri       # 64x64 brain slices
    python scripts/train_encoder.py --dataset brain-mri --check

SimCLR-style and label-free: every step takes a batch of training images, makes two
random augmentations of each (a random crop-and-rescale, a translation of up to 3 px, a
rotation of up to 12 degrees, contrast jitter, Gaussian noise on half of them) and trains
the encoder so that the two views of one image are nearer to each other than to any other
image of the batch (NT-Xent loss, temperature 0.2). Labels are used only afterwards, to
record how well the representation groups the test images (leave-one-out 5-NN agreement
on the first 2,000 test images) and a checksum of the features of 64 fixed test images.

Writes ``src/ganforge/metrics/weights/<dataset>-encoder.safetensors`` and
``<dataset>-encoder.json`` (command, settings, k-NN agreement, checksum). One seed drives
initialisation, batch order and augmentations; deterministic algorithms; one thread.
About three minutes per dataset on one CPU core.

Brain slices (``--dataset brain-mri``): the training split of brain-mri-slices as 1-channel
64x64 squares (padded, as the brain presets shape them), labels unused; the views are
also flipped left-right (a mirrored axial slice is still a plausible slice) and shifted
by up to 4 of 64 pixels. The k-NN agreement is measured on the whole test split (1,279
slices, four diagnoses: a weak signal, since the diagnoses differ subtly).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save as safetensors_save

from ganforge.artefacts.files import write_bytes, write_text
from ganforge.metrics.classifier import (
    CLASSIFIER_DATASETS,
    FEATURE_DATA,
    load_feature_split,
    prepare,
)
from ganforge.metrics.encoder import (
    ContrastiveEncoder,
    encode,
    encoder_record_path,
    encoder_weights_path,
    knn_accuracy,
    load_encoder,
)

DEFAULTS = {
    "steps": 1500,
    "batch_size": 128,
    "lr": 2e-3,
    "temperature": 0.2,
    "seed": 0,
    "threads": 1,
}
# test images for the recorded k-NN agreement (at most)
KNN_IMAGES = 2000
# settings that differ per dataset: steps, and the brain views' flips and larger shifts (pixels)
DATASET_SETTINGS = {
    "mnist": {},
    "fashion-mnist": {},
    "brain-mri": {"steps": 900, "flip": True, "max_shift": 4},
}
# test images whose features' checksum is recorded
CHECK_IMAGES = 64

# what the card (the JSON next to the weights) says beyond the figures, per dataset
CARDS = {
    "brain-mri": {
        "data": (
            "the training split of brain-mri-slices (5,121 slices) padded to square and "
            "resized to 1x64x64, labels unused"
        ),
        "recipe": (
            "ContrastiveEncoder(64): four stride-2 3x3 conv blocks (32-64-64-64) and a 64-d "
            "representation; SimCLR NT-Xent (temperature 0.2) on two views per slice "
            "(rotation up to 12 degrees, scale 0.85-1.15, shift up to 4 px, left-right flip, "
            "contrast, noise on half); Adam 2e-3 cosine, 900 steps of 128; one seed, "
            "deterministic, one thread"
        ),
        "limits": (
            "judges how slices look up to those changes, at 64x64 (128x128 is resized); the "
            "diagnoses are only weakly grouped (61.8 % 5-NN agreement, majority class 50 %); "
            "RGB, other sizes and other sets or modalities are not judged"
        ),
    },
}


def augment(
    x: torch.Tensor, generator: torch.Generator, max_shift: int = 3, flip: bool = False
) -> torch.Tensor:
    """One random view of float images in [-1, 1]: affine jitter, contrast, and sometimes noise
    (and a left-right flip of half of them with `flip`).

    The changes are ones that do not change what an image shows; the encoder learns to
    ignore them, and so judges generated images by their shapes rather than their pixels.
    """
    n = len(x)

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    angle = uniform(-12, 12) * math.pi / 180
    # > 1 zooms out, < 1 crops in
    scale = uniform(0.85, 1.15)
    # pixels, in affine_grid's [-1, 1] units
    half = x.shape[-1] / 2
    shift = uniform(-max_shift, max_shift) / half, uniform(-max_shift, max_shift) / half
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[0]], 1), torch.stack([sin, cos, shift[1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # background stays -1
    view = F.grid_sample(x + 1, grid, padding_mode="zeros", align_corners=False) - 1
    # contrast
    view = (view + 1) * uniform(0.6, 1.0).view(n, 1, 1, 1) - 1
    noisy = (torch.rand(n, generator=generator) < 0.5).float().view(n, 1, 1, 1)
    view = view + noisy * 0.15 * torch.randn(x.shape, generator=generator)
    if flip:
        mirrored = (torch.rand(n, generator=generator) < 0.5).view(n, 1, 1, 1)
        view = torch.where(mirrored, view.flip(-1), view)
    return view.clamp(-1, 1)


def nt_xent(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss for 2N projections where rows i and i+N are two views of one image."""
    z = F.normalize(z, dim=1)
    n = len(z) // 2
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(logits, target)


def train_encoder(
    images: torch.Tensor,
    steps: int,
    batch_size: int,
    lr: float,
    temperature: float,
    seed: int,
    log=print,
    input_size: int = 28,
    max_shift: int = 3,
    flip: bool = False,
) -> ContrastiveEncoder:
    """Adam with a cosine decay; the same images, settings and seed give the same weights."""
    torch.manual_seed(seed)
    model = ContrastiveEncoder(input_size)
    generator = torch.Generator().manual_seed(seed + 1)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(steps, 1))
    x_all = prepare(images, input_size)
    model.train()
    total = 0.0
    for step in range(steps):
        index = torch.randint(0, len(x_all), (batch_size,), generator=generator)
        batch = x_all[index]
        views = torch.cat(
            [augment(batch, generator, max_shift, flip), augment(batch, generator, max_shift, flip)]
        )
        loss = nt_xent(model.projection(model(views)), temperature)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        total += float(loss.detach())
        if (step + 1) % 250 == 0:
            log(f"step {step + 1}/{steps}: mean loss {total / 250:.4f}")
            total = 0.0
    return model.eval()


def feature_checksum(model: ContrastiveEncoder, images: torch.Tensor) -> float:
    """Sum of |features| of the first 64 test images, rounded: changes if the weights change."""
    return round(float(encode(model, images[:CHECK_IMAGES]).abs().sum()), 3)


def measure(model: ContrastiveEncoder, test) -> dict[str, float | int]:
    """The numbers recorded next to the weights and re-measured by --check and the tests."""
    count = min(KNN_IMAGES, len(test))
    features = encode(model, test.images[:count])
    correct = knn_accuracy(features, test.labels[:count])
    return {
        "knn_correct": correct,
        "knn_images": count,
        "knn_accuracy": round(correct / count, 4),
        "feature_checksum": feature_checksum(model, test.images),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=CLASSIFIER_DATASETS, default="mnist")
    parser.add_argument("--check", action="store_true", help="re-measure the committed weights")
    parser.add_argument(
        "--data", default=None, help="folder with the four IDX gz files (default: search)"
    )
    for name, value in DEFAULTS.items():
        parser.add_argument(
            "--" + name.replace("_", "-"), dest=name, type=type(value), default=None
        )
    args = parser.parse_args(argv)
    settings = {**DEFAULTS, **DATASET_SETTINGS[args.dataset]}
    settings.update({k: getattr(args, k) for k in DEFAULTS if getattr(args, k) is not None})
    torch.set_num_threads(settings["threads"])
    torch.use_deterministic_algorithms(True)
    test = load_feature_split(args.dataset, "test", args.data)
    if args.check:
        model, record = load_encoder(args.dataset)
        now = measure(model, test)
        print(
            f"{args.dataset}: k-NN agreement {now['knn_correct']}/{now['knn_images']}, checksum "
            f"{now['feature_checksum']} (recorded {record.get('knn_correct')}, "
            f"{record.get('feature_checksum')})"
        )
        same = now["knn_correct"] == record.get("knn_correct")
        return (
            0
            if same and abs(now["feature_checksum"] - record.get("feature_checksum", 0)) < 0.01
            else 1
        )
    train = load_feature_split(args.dataset, "train", args.data)
    start = time.perf_counter()
    model = train_encoder(
        train.images,
        settings["steps"],
        settings["batch_size"],
        settings["lr"],
        settings["temperature"],
        settings["seed"],
        input_size=FEATURE_DATA[args.dataset].input_size,
        max_shift=settings.get("max_shift", 3),
        flip=settings.get("flip", False),
    )
    seconds = time.perf_counter() - start
    path = encoder_weights_path(args.dataset)
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    write_bytes(
        path,
        safetensors_save(
            tensors, metadata={"format": "ganforge-encoder-v1", "dataset": args.dataset}
        ),
    )
    record = {
        "dataset": args.dataset,
        "kind": "SimCLR-style contrastive encoder, no labels",
        "dim": 64,
        "input_size": FEATURE_DATA[args.dataset].input_size,
        "parameters": sum(p.numel() for p in model.body.parameters()),
        **measure(model, test),
        "test_split": test.name,
        "train_split": train.name,
        "settings": settings,
        "train_seconds": round(seconds, 1),
        "torch": torch.__version__,
        "weights_sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
        "command": f"python scripts/train_encoder.py --dataset {args.dataset}",
        **CARDS.get(args.dataset, {}),
    }
    write_text(encoder_record_path(args.dataset), json.dumps(record, indent=2) + "\n")
    print(
        f"{args.dataset}: k-NN agreement {record['knn_accuracy']:.4f} after {seconds:.0f} s; "
        f"wrote {path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
