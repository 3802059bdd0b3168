"""The figures of docs/quality.md for one generator, against data it never saw (the test split).

    python scripts/quality_eval.py runs/mnist-best --dataset mnist --count 10000
    python scripts/quality_eval.py --pretrained mnist-best --dataset mnist --count 10000

Measures, at the same count:

* FID, precision/recall and class balance (class KL, class coverage) of the generated images
  against the test split, in the dataset's classifier space (ganforge.metrics), beside the
  real-vs-real floor: `count` training images against the same test images;
* memorisation: the share of generated images that sit closer to their nearest training
  image than 95 % of test images do (threshold: the 5th percentile of test-to-train
  nearest-neighbour distances), in pixel space and in the classifier's feature space. Unseen
  real images score 5 % by construction; a generator that copies its training set scores
  near 100 %;
* for a conditional generator, how often the classifier names the class that was asked for
  (`count / classes` images per class).

Writes one JSON object (stdout, or --out). Reads only local files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from ganforge.conditional import num_classes_of
from ganforge.data.idx import load_idx_dataset
from ganforge.generate import generate, load_generator
from ganforge.metrics import MetricContext, evaluate, reference_subset
from ganforge.metrics.classifier import embed, load_classifier
from ganforge.metrics.precision_recall import nearest_distance

METRICS = ["fid", "precision-recall", "class-balance"]
PERCENTILE = 0.05


def pixels(images: torch.Tensor) -> torch.Tensor:
    return images.flatten(1).float() / 255.0


def fit_to(images: torch.Tensor, side: int) -> torch.Tensor:
    """Generated images cropped at the centre to the test images' side: the demo pads MNIST's
    28x28 to 32x32, so the crop gives back the digit's frame."""
    extra = images.shape[-1] - side
    if extra <= 0:
        return images
    top = extra // 2
    return images[..., top : top + side, top : top + side].contiguous()


def memorisation(fake: torch.Tensor, test: torch.Tensor, train: torch.Tensor) -> dict[str, float]:
    """Share of `fake` nearer to the training set than 95 % of `test` is; `threshold` beside it."""
    test_distance = nearest_distance(test, train)
    threshold = torch.quantile(test_distance.double(), PERCENTILE)
    fake_distance = nearest_distance(fake, train)
    return {
        "memorised": float((fake_distance < threshold).double().mean()),
        "threshold": float(threshold),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", help="a run folder or generator file")
    parser.add_argument("--pretrained", help="a generator shipped with ganforge")
    parser.add_argument("--dataset", default="mnist", choices=("mnist", "fashion-mnist"))
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.pretrained:
        from ganforge.pretrained import pretrained_path

        args.source = pretrained_path(args.pretrained)
    start = time.perf_counter()
    generator, info = load_generator(args.source)
    test = load_idx_dataset(args.dataset, "test").images
    train = load_idx_dataset(args.dataset, "train", allow_bundled=False).images
    reference = reference_subset(test, args.count)
    fake = fit_to(generate(generator, info, args.count, args.seed), test.shape[-1])
    real_other = reference_subset(train, args.count)
    context = MetricContext(dataset=f"{args.dataset}/test", seed=args.seed)
    result: dict = {
        "source": str(args.source),
        "dataset": f"{args.dataset}/test",
        "count": args.count,
        "step": info.step,
    }
    result["generated"] = evaluate(reference, fake, METRICS, context)
    result["floor"] = evaluate(reference, real_other, METRICS, context)
    classifier, _ = load_classifier(args.dataset)
    train_features, _ = embed(classifier, train)
    test_features, _ = embed(classifier, reference)
    fake_features, fake_logits = embed(classifier, fake)
    result["memorisation_pixels"] = memorisation(pixels(fake), pixels(reference), pixels(train))
    result["memorisation_features"] = memorisation(
        fake_features.float(), test_features.float(), train_features.float()
    )
    classes = num_classes_of(generator)
    if classes:
        per_class = args.count // classes
        correct = {}
        for label in range(classes):
            labels = torch.full((per_class,), label, dtype=torch.long)
            images = generate(generator, info, per_class, args.seed + 1 + label, labels=labels)
            images = fit_to(images, test.shape[-1])
            _, logits = embed(classifier, images)
            correct[label] = float((logits.argmax(1) == label).double().mean())
        result["class_accuracy"] = sum(correct.values()) / classes
        result["class_accuracy_per_class"] = correct
    result["seconds"] = round(time.perf_counter() - start, 1)
    text = json.dumps(result, indent=2)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
