"""Brain slices measured in their own feature space: the shipped brain classifier and encoder,
`ganforge eval` of a brain run with feature metrics, and one line where they do not apply.

The default tier runs on phantom slices (conftest.py, "brain phantoms"): the shipped networks
were trained on the real slices, so the numbers here say only that every metric is computed
and reported; the real test split's accuracy is checked in the data tier.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ganforge.metrics.classifier import (
    FEATURE_DATA,
    load_classifier,
    record_path,
    weights_path,
)
from ganforge.metrics.encoder import encode, encoder_record_path, encoder_weights_path, load_encoder

REPO = Path(__file__).resolve().parents[1]
DIAGNOSES = ("MildDemented", "ModerateDemented", "NonDemented", "VeryMildDemented")
# phantom slices per class (conftest.py order: NonDemented, VeryMild, Mild, Moderate): 500 in
# train, the fewest FID takes, and 200 in test, the fewest the memorisation figure takes
COUNTS = {"train": (200, 150, 100, 50), "test": (80, 60, 40, 20)}
FEATURE_KEYS = ("fid", "kid", "precision", "recall", "density", "coverage")
MAX_BYTES = 2_000_000  # the budget per network file

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_shipped_brain_networks_load_with_their_documented_sizes():
    classifier, info = load_classifier("brain-mri")
    encoder, record = load_encoder("brain-mri")
    for path in (weights_path("brain-mri"), encoder_weights_path("brain-mri")):
        assert path.stat().st_size <= MAX_BYTES, path
    card = json.loads(record_path("brain-mri").read_text())
    assert card["classes"] == list(DIAGNOSES) and card["input_size"] == 64
    assert card["parameters"] == sum(p.numel() for p in classifier.parameters())
    assert record["parameters"] == sum(p.numel() for p in encoder.body.parameters())
    assert record == json.loads(encoder_record_path("brain-mri").read_text())
    # both judge 64x64 slices and 128x128 ones (resized to 64x64), never RGB
    slices = torch.randint(0, 255, (4, 1, 128, 128), dtype=torch.uint8)
    assert encode(encoder, slices).shape == (4, 64)
    assert classifier.input_size == encoder.input_size == FEATURE_DATA["brain-mri"].input_size
    assert FEATURE_DATA["brain-mri"].unfit((3, 64, 64)) is not None
    # the cards say what a reader needs beyond the figures, the class imbalance included
    for record_ in (card, record):
        assert all(record_[key] for key in ("data", "recipe", "limits"))
    assert "52 ModerateDemented" in card["data"] and "inverse class share" in card["recipe"]
    # the card's figures add up, per class too
    per_class = card["per_class"]
    assert sum(c["correct"] for c in per_class.values()) == card["correct"] == info.correct
    assert sum(c["total"] for c in per_class.values()) == card["total"]


@pytest.fixture(scope="module")
def brain_run(tmp_path_factory, brain_slices_writer):
    """A tiny conditional brain run (resnet, the four diagnoses) at 64x64 on 700 phantom slices
    found as a user's copy is (GANFORGE_DATA); returns (run folder, the datasets folder)."""
    from ganforge.cli import main

    root = tmp_path_factory.mktemp("brain-features")
    brain_slices_writer(root / "data" / "brain-mri-slices", COUNTS, size=(80, 68))
    mp = pytest.MonkeyPatch()
    mp.setenv("GANFORGE_DATA", str(root / "data"))
    mp.setenv("GANFORGE_CACHE", str(root / "cache"))
    flags = ["--dataset", "brain-mri", "--resolution", "64", "--device", "cpu", "--quiet"]
    flags += ["--model", "resnet", "--set", "model.options={channels: 4, num_classes: 4}"]
    flags += ["--iterations", "2", "--batch-size", "4", "--out", str(root / "runs")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["train", *flags, "--name", "cond"]) == 0
    yield root / "runs" / "cond", root / "data"
    mp.undo()


def test_eval_of_a_brain_run_reports_feature_metrics_with_intervals(brain_run, cli, tmp_path):
    run, _ = brain_run
    out = tmp_path / "eval.json"
    result = cli("eval", run, "--count", "500", "--resamples", "20", "--out", out)
    assert result.code == 0, result.err
    record = json.loads(out.read_text())
    assert record["features"] == "brain-mri" and record["reference"] == "brain-mri-slices/train"
    for key in FEATURE_KEYS:
        for space in ("", "_enc"):
            assert key + space in record["metrics"], key + space
            low, high = record["intervals"][key + space]
            assert low <= high
    # the diagnosis classifier scores what the conditional run was asked for, and the spread
    assert 0 <= record["metrics"]["class_accuracy"] <= 1 and "class_coverage" in record["metrics"]
    assert "swd" in record["metrics"] and "msssim" in record["metrics"]
    assert "brain-mri classifier" in record["spaces"]["classifier"]
    assert "brain-mri SimCLR-style encoder" in record["spaces"]["encoder"]
    assert record["features_note"] is None and "fid_enc" in result.out


def test_memorisation_of_a_brain_run_is_measured_in_features_and_pixels(brain_run, cli, tmp_path):
    run, _ = brain_run
    out = tmp_path / "eval.json"
    flags = ["--split", "test", "--count", "200", "--metrics", "memorisation", "--resamples", "0"]
    result = cli("eval", run, *flags, "--out", out)
    assert result.code == 0, result.err
    metrics = json.loads(out.read_text())["metrics"]
    assert set(metrics) == {"memorised", "memorised_pixels"}
    assert all(0 <= value <= 1 for value in metrics.values())


def test_class_accuracy_matches_the_generators_classes_to_the_classifiers_by_name():
    """A generator whose data numbered the diagnoses in another order is still scored against
    the diagnosis it was asked for."""
    from ganforge.metrics import MetricContext, evaluate
    from ganforge.metrics.classifier import embed

    images = torch.randint(0, 255, (200, 1, 64, 64), dtype=torch.uint8)
    classifier, _ = load_classifier("brain-mri")
    said = embed(classifier, images)[1].argmax(1)
    reordered = tuple(reversed(DIAGNOSES))
    labels = 3 - said  # the same diagnoses, numbered as `reordered` numbers them
    context = MetricContext(
        "brain-mri-slices/train", fake_labels=labels, class_names=reordered, image_shape=(1, 64, 64)
    )
    assert evaluate(images, images, ["class-accuracy"], context)["class_accuracy"] == 1.0


def test_sample_with_a_diagnosis_the_run_does_not_know_lists_its_classes(
    brain_run, cli, user_error, tmp_path
):
    run, _ = brain_run
    result = cli("sample", run, "--class", "Healthy", "--out", tmp_path / "x.npy")
    listed = ", ".join(f"{i} {name}" for i, name in enumerate(DIAGNOSES))
    user_error(result, "--class Healthy", f"valid classes: 0-3 ({listed})")
    result = cli(
        "sample", run, "--class", "nondemented", "--count", "2", "--out", tmp_path / "n.npy"
    )
    assert result.code == 0 and "class 2 (NonDemented)" in result.err, result.err


@pytest.mark.parametrize(
    "shape, why",
    [((3, 64, 64), "not 3x64x64"), ((1, 32, 32), "not 1x32x32")],
    ids=["rgb", "another-size"],
)
def test_brain_images_of_another_kind_get_one_line_on_which_metrics_apply(
    brain_run, cli, user_error, tmp_path, shape, why
):
    """RGB slices or slices of another size: scored with the metrics that need no network, and
    told in one line why the feature metrics are missing; asked for, they are refused."""
    _, _ = brain_run  # GANFORGE_DATA points at the phantom slices
    images = np.random.default_rng(0).integers(0, 255, (300, *shape), dtype=np.uint8)
    np.save(tmp_path / "slices.npy", images)
    out = tmp_path / "eval.json"
    flags = ["--dataset", "brain-mri", "--count", "300", "--resamples", "0", "--out", out]
    result = cli("eval", tmp_path / "slices.npy", *flags)
    assert result.code == 0, result.err
    record = json.loads(out.read_text())
    assert record["features"] == "none" and "fid" not in record["metrics"]
    notes = [line for line in result.err.splitlines() if line.startswith("note: no feature")]
    assert len(notes) == 1 and why in notes[0] and "scored instead: swd, msssim" in notes[0]
    assert "1-channel images at 64x64 or 128x128" in notes[0]
    refused = cli("eval", tmp_path / "slices.npy", *flags[:-2], "--metrics", "fid")
    user_error(refused, "needs a classifier", why, "swd, msssim")


def test_a_brain_run_on_another_modality_is_told_the_feature_space_is_not_its_data(
    brain_run, cli, user_error, tmp_path, head_volume
):
    """Slices of a brain-mri run measured against a NIfTI head (another scanner and set): the
    brain networks never saw such slices, and asking for FID says so in one line."""
    _, _ = brain_run
    images = np.random.default_rng(0).integers(0, 255, (300, 1, 64, 64), dtype=np.uint8)
    np.save(tmp_path / "slices.npy", images)
    flags = ["--dataset", "brain-mri", "--data", head_volume, "--count", "300"]
    result = cli("eval", tmp_path / "slices.npy", *flags, "--metrics", "fid")
    user_error(result, "needs a classifier", "is other data (another set or modality)", "swd")


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_the_brain_scripts_are_deterministic(brain_slices):
    """The brain recipes (64x64, batch norm, flips, class weights, 4-px views) give the same
    weights twice: what lets `train_*.py --dataset brain-mri` regenerate the shipped files."""
    from ganforge.metrics.classifier import load_feature_split

    train = load_feature_split("brain-mri", "train", str(brain_slices)).subset(96)
    classifier, encoder = _script("train_classifier"), _script("train_encoder")
    settings = {"num_classes": 4, "input_size": 64, "flip": True, "balance": True}
    runs = [
        classifier.train_classifier(
            train.images, train.labels, 1, 32, 2e-3, 0, 2, log=lambda _: None, **settings
        )
        for _ in range(2)
    ]
    runs += [
        encoder.train_encoder(
            train.images, 2, 16, 2e-3, 0.2, 0, lambda _: None, 64, max_shift=4, flip=True
        )
        for _ in range(2)
    ]
    for first, again in (runs[:2], runs[2:]):
        for (name, a), (_, b) in zip(first.state_dict().items(), again.state_dict().items()):
            assert torch.equal(a, b), name


@pytest.mark.data
def test_the_brain_classifier_reproduces_its_recorded_accuracy_on_the_real_test_slices(real_data):
    """Re-measure the shipped brain classifier on the 1,279 real test slices: overall and per
    diagnosis, as its card records them (and as `train_classifier.py --check` does)."""
    from ganforge.metrics.classifier import correct_per_class, load_feature_split

    script = _script("train_classifier")
    test = load_feature_split("brain-mri", "test", str(real_data("brain-mri-slices")))
    model, info = load_classifier("brain-mri")
    per_class = correct_per_class(model, test.images, test.labels, 4)
    card = json.loads(record_path("brain-mri").read_text())
    assert (len(test), card["total"]) == (1279, 1279)
    assert sum(per_class) == card["correct"] == info.correct
    assert script.class_record(test, per_class)["per_class"] == card["per_class"]
    assert card["test_accuracy"] == round(card["correct"] / 1279, 4)
