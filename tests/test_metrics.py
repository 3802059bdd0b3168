"""Metrics against known cases: identical and real-vs-real sets sit at the floor; noise, blur,
a single repeated image and a dropped class are clearly worse; the classifiers' recorded
accuracies are reproduced on the real test sets."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ganforge.errors import CheckpointError, ConfigError, DataError
from ganforge.metrics import METRICS, MetricContext, direction, evaluate, resolve_metrics
from ganforge.metrics.classifier import count_correct, load_classifier, record_path
from ganforge.metrics.msssim import msssim_settings

REPO = Path(__file__).resolve().parents[1]
N = 1000  # images per set: enough for every metric's minimum, quick on two cores
ALL = ["fid", "kid", "is", "precision-recall", "density-coverage", "class-balance", "swd", "msssim"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits(mnist_test_split):
    """Two disjoint real sets (A, B) and a pool of further real digits with their labels."""
    images, labels = mnist_test_split.images, mnist_test_split.labels
    return images[:N], images[N : 2 * N], images[2 * N : 4 * N], labels[2 * N : 4 * N]


@pytest.fixture(scope="module")
def floor(digits):
    """Real-vs-real numbers: what a perfect generator would score at this sample count."""
    a, b, _, _ = digits
    return evaluate(a, b, ALL, MetricContext("mnist/test"))


def noisy(images: torch.Tensor, std: float = 50.0) -> torch.Tensor:
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(1)) * std
    return (images.float() + noise).round().clamp(0, 255).to(torch.uint8)


def blurred(images: torch.Tensor, sigma: float = 1.2) -> torch.Tensor:
    x = torch.arange(7) - 3.0
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = torch.outer(kernel, kernel) / kernel.sum() ** 2
    out = F.conv2d(F.pad(images.float(), (3, 3, 3, 3), mode="replicate"), kernel.view(1, 1, 7, 7))
    return out.round().clamp(0, 255).to(torch.uint8)


def test_identical_sets_score_the_ideal_value(digits, floor):
    a = digits[0]
    scores = evaluate(
        a,
        a,
        ["fid", "kid", "precision-recall", "density-coverage", "class-balance", "msssim"],
        MetricContext("mnist/test"),
    )
    assert abs(scores["fid"]) < 1e-3
    assert (
        scores["kid"] < abs(floor["kid"]) + 0.5
    )  # unbiased: an identical set can even score below 0
    assert (
        scores["precision"]
        == scores["recall"]
        == scores["coverage"]
        == scores["class_coverage"]
        == 1.0
    )
    assert scores["precision_enc"] == scores["recall_enc"] == scores["coverage_enc"] == 1.0
    assert abs(scores["fid_enc"]) < 1e-3
    assert scores["class_kl"] < 1e-9
    assert scores["msssim"] == pytest.approx(scores["msssim_real"], abs=0.02)


def test_real_against_real_is_near_the_floor(floor):
    assert floor["fid"] < 15 and abs(floor["kid"]) < 1.0
    assert floor["precision"] > 0.85 and floor["recall"] > 0.85
    assert floor["class_coverage"] == 1.0 and floor["class_kl"] < 0.01
    for suffix in ("", "_enc"):  # both feature spaces: real data is real data
        assert floor["precision" + suffix] > 0.8 and floor["recall" + suffix] > 0.8
        assert 0.85 < floor["density" + suffix] < 1.15 and floor["coverage" + suffix] > 0.9
    assert floor["is"] > 8.5  # ten well-separated classes, confidently recognised
    assert floor["swd"] < 40
    assert abs(floor["msssim"] - floor["msssim_real"]) < 0.03


def test_noise_is_clearly_worse(digits, floor):
    scores = evaluate(
        digits[0],
        noisy(digits[1]),
        ["fid", "kid", "precision-recall", "swd"],
        MetricContext("mnist/test"),
    )
    assert scores["fid"] > 5 * floor["fid"] and scores["kid"] > 10
    assert scores["swd"] > 3 * floor["swd"]
    # Noisy digits still land among real ones in the classifier's embedding (precision stays
    # high, a known weakness of k-NN precision), but they no longer reach all the real data:
    assert scores["recall"] < floor["recall"] - 0.3


def test_blur_is_clearly_worse(digits, floor):
    scores = evaluate(
        digits[0],
        blurred(digits[1]),
        ["fid", "precision-recall", "swd"],
        MetricContext("mnist/test"),
    )
    assert scores["fid"] > 5 * floor["fid"] and scores["recall"] < floor["recall"] - 0.3
    assert scores["swd"] > 2 * floor["swd"]
    assert scores["swd_28"] > 2 * floor["swd_28"]  # the finest pyramid level loses its detail


def test_a_single_repeated_image_is_clearly_worse(digits, floor):
    repeated = digits[1][:1].expand(N, -1, -1, -1).contiguous()
    scores = evaluate(digits[0], repeated, ALL, MetricContext("mnist/test"))
    assert scores["fid"] > 10 * floor["fid"] and scores["kid"] > 10 * max(floor["kid"], 0.1)
    assert scores["recall"] < 0.05 and scores["class_coverage"] <= 0.2 and scores["coverage"] < 0.05
    assert scores["is"] < 1.5 and scores["class_kl"] > 1.0
    assert scores["msssim"] > 0.99  # every pair is the same image
    assert scores["swd"] > 2 * floor["swd"]


def test_a_dropped_class_lowers_coverage_and_recall(digits, floor):
    _, b, pool, pool_labels = digits
    without_sevens = pool[pool_labels != 7][:N]
    scores = evaluate(
        digits[0],
        without_sevens,
        ["precision-recall", "class-balance", "fid"],
        MetricContext("mnist/test"),
    )
    assert scores["class_coverage"] == pytest.approx(0.9)
    assert scores["recall"] < floor["recall"] - 0.03
    assert scores["class_kl"] > 5 * floor["class_kl"]
    assert (
        scores["precision"] > floor["precision"] - 0.05
    )  # the digits that are there still look real


def test_pretrained_free_metrics_work_on_brain_slices_and_rgb(brain_slices):
    from PIL import Image

    # 240 phantom slices of one class, 208x176 JPEGs (conftest.py, "brain phantoms")
    folder = brain_slices / "Alzheimer_s Dataset" / "train" / "NonDemented"
    files = sorted(folder.glob("*.jpg"))[:240]
    assert len(files) == 240
    slices = torch.stack(
        [torch.from_numpy(np.array(Image.open(f).convert("L").resize((64, 64)))) for f in files]
    )
    slices = slices.unsqueeze(1)
    real, other = slices[:120], slices[120:]
    context = MetricContext("brain-mri/train")
    assert resolve_metrics(None, context) == ["swd", "msssim"]
    floor = evaluate(real, other, ["swd", "msssim"], context)
    noise = evaluate(real, noisy(other, 40.0), ["swd", "msssim"], context)
    assert noise["swd"] > 3 * floor["swd"]
    rgb = evaluate(
        real.expand(-1, 3, -1, -1), other.expand(-1, 3, -1, -1), ["swd", "msssim"], context
    )
    assert rgb["swd"] == pytest.approx(floor["swd"], rel=0.3) and 0 < rgb["msssim"] < 1


def test_metrics_are_repeatable_for_a_seed(digits):
    a, b = digits[0][:300], noisy(digits[1][:300])
    first = evaluate(a, b, ["kid", "swd", "msssim"], MetricContext("mnist/test", seed=3))
    again = evaluate(a, b, ["kid", "swd", "msssim"], MetricContext("mnist/test", seed=3))
    assert first == again


def test_too_few_samples_is_refused_with_the_minimum(digits):
    with pytest.raises(ConfigError, match="at least 500"):
        evaluate(digits[0][:100], digits[1][:100], ["fid"], MetricContext("mnist/test"))


def test_a_metric_that_needs_a_classifier_says_so_for_other_data():
    images = torch.zeros(600, 1, 32, 32, dtype=torch.uint8)
    with pytest.raises(ConfigError, match="needs a classifier.*swd and msssim"):
        evaluate(images, images, ["fid"], MetricContext("brain-mri/train"))


def test_unknown_metric_and_shape_mismatch_are_user_errors(digits):
    context = MetricContext("mnist/test")
    with pytest.raises(ConfigError, match="unknown metric 'fidd'"):
        resolve_metrics("fidd", context)
    assert resolve_metrics("recall,fid,precision", context) == ["precision-recall", "fid"]
    with pytest.raises(DataError, match="reference images are"):
        evaluate(digits[0], torch.zeros(N, 3, 28, 28, dtype=torch.uint8), ["swd"], context)


def test_missing_inception_weights_name_the_file_and_where_it_goes(tmp_path, monkeypatch, digits):
    target = tmp_path / "weights" / "inception.pth"
    monkeypatch.setenv("GANFORGE_INCEPTION_WEIGHTS", str(target))
    images = digits[0][:1].expand(2048, -1, -1, -1)
    with pytest.raises(CheckpointError) as error:
        evaluate(images, images, ["fid-inception"], MetricContext("mnist/test"))
    message = str(error.value)
    assert "weights-inception-2015-12-05-6726825d.pth" in message and str(target) in message
    assert "GANFORGE_INCEPTION_WEIGHTS" in message and "\n" not in message


def test_every_output_has_a_direction():
    for metric in METRICS.values():
        for key in metric.outputs:
            assert direction(key) in ("lower", "higher", "match", "info")
    assert direction("swd_128") == "lower"


def test_msssim_scales_fit_small_images():
    assert msssim_settings(28)[0] == 7 and len(msssim_settings(28)[2]) == 3
    assert len(msssim_settings(256)[2]) == 5 and msssim_settings(256)[0] == 11
    assert abs(sum(msssim_settings(64)[2]) - 1) < 1e-9


@pytest.mark.data
@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_committed_classifier_reproduces_its_recorded_test_accuracy(dataset, real_data):
    from ganforge.data.idx import load_idx_dataset

    record = json.loads(record_path(dataset).read_text())
    try:
        test = load_idx_dataset(
            dataset,
            "test",
            str(real_data("mnist")) if dataset == "mnist" else None,
            allow_bundled=False,
        )
    except DataError:
        pytest.skip(
            f"{dataset} test split not found (Fashion-MNIST: apt-get install dataset-fashion-mnist)"
        )
    model, info = load_classifier(dataset)
    assert (len(test), info.total) == (10_000, record["total"])
    assert count_correct(model, test.images, test.labels) == record["correct"]
    assert info.test_accuracy == record["test_accuracy"] == round(record["correct"] / 10_000, 4)


def test_the_classifier_script_is_deterministic(mnist_test_split):
    spec = importlib.util.spec_from_file_location(
        "train_classifier", REPO / "scripts" / "train_classifier.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    images, labels = mnist_test_split.images[:512], mnist_test_split.labels[:512]
    runs = [
        script.train_classifier(images, labels, 1, 128, 2e-3, 0, 2, log=lambda _: None)
        for _ in range(2)
    ]
    for (name, a), (_, b) in zip(runs[0].state_dict().items(), runs[1].state_dict().items()):
        assert torch.equal(a, b), name


def test_metrics_register_where_defined_with_direction_minimum_and_main_rank():
    from ganforge.metrics import main_metric
    from ganforge.metrics.registry import main_output_order

    assert METRICS["fid"].compute.__module__ == "ganforge.metrics.frechet"
    assert METRICS["density-coverage"].outputs == {"density": "higher", "coverage": "higher"}
    assert METRICS["fid"].min_samples == 500 and METRICS["fid"].needs == "features"
    ranks = [m.main_rank for m in METRICS.values() if m.main_rank is not None]
    assert len(ranks) == len(set(ranks))  # one order, kept in one place
    assert main_output_order() == ["fid", "swd", "fid_inception"]
    assert (
        main_metric(["swd", "msssim", "fid"]) == "fid" and main_metric(["msssim", "swd"]) == "swd"
    )
    assert direction("fid_enc") == "lower" and direction("coverage_enc") == "higher"
    assert direction("class_coverage") == "higher"
    assert resolve_metrics("fid_enc,coverage", MetricContext("mnist/test")) == [
        "fid",
        "density-coverage",
    ]


def test_density_and_coverage_resist_an_outlier_that_fools_recall(digits):
    """Naeem et al.'s point: one far-away generated image gets a huge k-NN ball that 'covers' the
    real data for recall; coverage only uses the real images' balls and is not fooled."""
    from ganforge.metrics.precision_recall import density_coverage, precision_recall

    context = MetricContext("mnist/test")
    real = torch.randn(400, 8, generator=torch.Generator().manual_seed(0)).double()
    fake = (
        torch.randn(400, 8, generator=torch.Generator().manual_seed(1)).double() * 0.1
    )  # collapsed
    for axis in range(
        4
    ):  # eight lonely outliers, each with a k-NN ball reaching back to the centre
        fake[2 * axis, axis], fake[2 * axis + 1, axis] = 10.0, -10.0
    pr, dc = precision_recall(real, fake, context), density_coverage(real, fake, context)
    assert pr["recall"] > 0.9  # fooled by the outliers' huge balls
    assert dc["coverage"] < 0.25  # not fooled: few real images have a generated neighbour
    assert dc["density"] > 1.5  # collapsed samples crowd the densest real region


def test_bootstrap_intervals_surround_the_estimate_and_shrink_with_more_images(digits):
    from ganforge.metrics import evaluate_with_intervals

    a, b = digits[0], digits[1]
    names = ["fid", "kid", "precision-recall", "density-coverage"]
    scores, intervals = evaluate_with_intervals(
        a, noisy(b), names, MetricContext("mnist/test"), resamples=50
    )
    assert set(intervals) == {
        k + s
        for k in ("fid", "kid", "precision", "recall", "density", "coverage")
        for s in ("", "_enc")
    }
    for key, (low, high) in intervals.items():
        assert low < scores[key] < high, key
    _, small = evaluate_with_intervals(
        a[:500], noisy(b)[:500], names, MetricContext("mnist/test"), resamples=50
    )
    width = {k: v[1] - v[0] for k, v in intervals.items()}
    assert small["fid"][1] - small["fid"][0] > width["fid"]
    assert small["recall_enc"][1] - small["recall_enc"][0] > width["recall_enc"]


@pytest.mark.data
@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_committed_encoder_reproduces_its_recorded_knn_agreement_and_checksum(dataset, real_data):
    """Re-measure the committed contrastive encoder: 5-NN label agreement on 2,000 test images
    (a label-free network that groups images by class) and a checksum of 64 images' features."""
    from ganforge.data.idx import load_idx_dataset
    from ganforge.metrics.encoder import encoder_record_path, load_encoder

    spec = importlib.util.spec_from_file_location(
        "train_encoder", REPO / "scripts" / "train_encoder.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    try:
        test = load_idx_dataset(
            dataset,
            "test",
            str(real_data("mnist")) if dataset == "mnist" else None,
            allow_bundled=False,
        )
    except DataError:
        pytest.skip(
            f"{dataset} test split not found (Fashion-MNIST: apt-get install dataset-fashion-mnist)"
        )
    model, record = load_encoder(dataset)
    assert record == json.loads(encoder_record_path(dataset).read_text())
    now = script.measure(model, test)
    assert now["knn_correct"] == record["knn_correct"]
    assert now["feature_checksum"] == pytest.approx(record["feature_checksum"], abs=0.01)
    assert record["knn_accuracy"] > (
        0.9 if dataset == "mnist" else 0.7
    )  # it learnt what the data shows
    assert record["command"] == f"python scripts/train_encoder.py --dataset {dataset}"


def test_the_encoder_script_is_deterministic(mnist_test_split):
    spec = importlib.util.spec_from_file_location(
        "train_encoder", REPO / "scripts" / "train_encoder.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    images = mnist_test_split.images[:512]
    runs = [script.train_encoder(images, 3, 32, 2e-3, 0.2, 0, log=lambda _: None) for _ in range(2)]
    for (name, a), (_, b) in zip(runs[0].state_dict().items(), runs[1].state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_every_metric_worsens_along_the_calibration_ladder_in_both_spaces(dataset, real_data):
    """Real test images damaged step by step (noise, salt and pepper, blur, shifts, classes taken
    away, one image repeated): every metric, in both feature spaces, gets worse at every rung,
    except where docs/metrics.md says it is blind or rewards mild smoothing. The numbers are the
    ones in the docs table (weights/ladder.json)."""
    from ganforge.data.idx import load_idx_dataset
    from ganforge.metrics.ladder import (
        LADDER_NAMES,
        LADDER_OUTPUTS,
        badness,
        ladder_sets,
        ladder_verdict,
    )

    try:
        test = load_idx_dataset(
            dataset,
            "test",
            str(real_data("mnist")) if dataset == "mnist" else None,
            allow_bundled=False,
        )
    except DataError:
        pytest.skip(
            f"{dataset} test split not found (Fashion-MNIST: apt-get install dataset-fashion-mnist)"
        )
    count = 1000
    recorded = json.loads((REPO / "src/ganforge/metrics/weights/ladder.json").read_text())[dataset][
        "ladders"
    ]
    context = MetricContext(test.name)
    names = resolve_metrics("auto", context)
    reference = test.images[:count]
    ladders = ladder_sets(test.images[count:], test.labels[count:], count)
    assert tuple(ladders) == LADDER_NAMES
    problems = []
    for ladder, rungs in ladders.items():
        scores = [evaluate(reference, images, names, context) for _, images in rungs]
        for measured, saved in zip(scores, recorded[ladder]):
            assert {k: measured[k] for k in saved["metrics"]} == pytest.approx(
                saved["metrics"], rel=0.02, abs=0.01
            )
        for key in [k + s for s in ("", "_enc") for k in LADDER_OUTPUTS if k + s in scores[0]]:
            problem = ladder_verdict(key, ladder, [badness(key, s, direction(key)) for s in scores])
            problems += [problem] if problem else []
        if (
            ladder == "repeated image"
        ):  # what "blind" means: precision does not drop, in either space
            assert (
                scores[1]["precision"] >= scores[0]["precision"]
                and scores[1]["precision_enc"] >= 0.99
            )
    assert not problems


def test_memorisation_is_five_percent_for_new_images_and_one_for_copies(digits):
    """Unseen real images score the 5 % the threshold is set at; training images score 1."""
    from ganforge.metrics.memorisation import memorisation

    reference, fresh, pool, _ = digits
    training = pool  # stands in for the generator's training set
    context = MetricContext("mnist/test", training=training)
    new = memorisation(reference, fresh, context)
    copies = memorisation(reference, training[:N], context)
    assert new["memorised_pixels"] < 0.12 and new["memorised"] < 0.12
    assert copies["memorised_pixels"] == 1.0 and copies["memorised"] == 1.0
    with pytest.raises(ConfigError, match="did not train on"):
        evaluate(reference, fresh, ["memorisation"], MetricContext("mnist/test"))


def test_recorded_floors_are_found_by_what_they_measured():
    """A test-split reference gets the test-split floor, a training reference the training one,
    and another count or image size gets none rather than a misleading number."""
    from ganforge.metrics.floors import floor_for

    test = floor_for("mnist/test", 2000, (1, 28, 28))
    train = floor_for("mnist/train", 2000, (1, 28, 28))
    assert test["dataset"] == "mnist/test" and train["dataset"] == "mnist/train"
    assert test["metrics"]["fid"] != train["metrics"]["fid"]
    assert floor_for("mnist/test", 1234, (1, 28, 28)) is None
    assert floor_for("mnist/train", 2000, (1, 32, 32)) is None
