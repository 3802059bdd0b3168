"""`ganforge eval` and `ganforge compare` on real (tiny) training runs, and the default
evaluator that train() builds when eval_every > 0."""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser

import pytest
import torch
from PIL import Image

import ganforge
from ganforge.cli import main
from ganforge.errors import ConfigError

TINY = {
    "data.limit": 2000,
    "batch_size": 32,
    "sample_every": 10,
    "log_every": 10,
    "checkpoint_every": 10,
    "eval_samples": 500,
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mnist_dir):
    """A tiny GAN run evaluated during training, a tiny DCGAN run without, on one MNIST set."""
    out = tmp_path_factory.mktemp("runs")
    mp = pytest.MonkeyPatch()
    mp.setenv("OMP_NUM_THREADS", "1")
    mp.setenv("GANFORGE_OFFLINE", "1")
    mp.setenv("GANFORGE_CACHE", str(out / "cache"))
    common = {**TINY, "out_dir": str(out), "data.path": str(mnist_dir), "device": "cpu"}
    gan = ganforge.train(
        ganforge.load_preset("mnist-gan").with_overrides(
            {**common, "iterations": 30, "eval_every": 10, "run_name": "gan"}
        ),
        run=ganforge.RunOptions(show_progress=False),
    )
    dcgan = ganforge.train(
        ganforge.load_preset("mnist-dcgan").with_overrides(
            {**common, "iterations": 20, "model.options.width": 0.25, "run_name": "dcgan"}
        ),
        run=ganforge.RunOptions(show_progress=False),
    )
    yield out, gan, dcgan
    mp.undo()


@pytest.mark.slow
def test_training_logs_quality_over_time_and_keeps_the_best_checkpoint(runs):
    _, gan, _ = runs
    records = [json.loads(line) for line in (gan.run_dir / "eval.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [10, 20, 30]
    for r in records:
        assert r["main"] == pytest.approx(r["fid"], rel=1e-5) and r["elapsed_s"] > 0
        assert {"precision", "recall", "density", "coverage", "class_coverage", "class_kl"} <= set(
            r
        )
        assert "fid_enc" not in r  # training evaluates in the classifier's space only (cheap)
    assert [r["elapsed_s"] for r in records] == sorted(r["elapsed_s"] for r in records)
    assert (gan.run_dir / "checkpoints" / "best.pt").is_file()
    assert gan.best_metric == pytest.approx(min(r["main"] for r in records), rel=1e-5)


@pytest.mark.slow
def test_evaluating_during_training_does_not_change_the_training(runs, mnist_dir):
    from safetensors.torch import load_file

    out, gan, _ = runs
    twin = ganforge.train(
        ganforge.load_preset("mnist-gan").with_overrides(
            {
                **TINY,
                "iterations": 30,
                "out_dir": str(out),
                "data.path": str(mnist_dir),
                "device": "cpu",
                "run_name": "gan-no-eval",
            }
        ),
        run=ganforge.RunOptions(show_progress=False),
    )
    with_eval, without = (
        load_file(str(gan.run_dir / "generator.safetensors")),
        load_file(str(twin.run_dir / "generator.safetensors")),
    )
    assert all(torch.equal(with_eval[k], without[k]) for k in with_eval)
    assert not (twin.run_dir / "eval.jsonl").exists()


def test_default_evaluator_refuses_too_few_samples_before_training(tmp_path, mnist_dir):
    config = ganforge.load_preset("mnist-gan").with_overrides(
        {
            **TINY,
            "iterations": 10,
            "eval_every": 5,
            "eval_samples": 100,
            "out_dir": str(tmp_path),
            "data.path": str(mnist_dir),
        }
    )
    with pytest.raises(ConfigError, match="at least 500"):
        ganforge.train(config, run=ganforge.RunOptions(show_progress=False))
    assert not any(tmp_path.iterdir())  # nothing was started


@pytest.mark.slow
def test_eval_prints_a_table_and_writes_json_into_the_run(runs, capsys):
    _, gan, _ = runs
    assert (
        main(
            [
                "eval",
                str(gan.run_dir),
                "--count",
                "500",
                "--seed",
                "3",
                "--metrics",
                "fid,kid,precision-recall,class-balance,swd,msssim",
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "fid" in table and "lower is better" in table and "<- main" in table
    record = json.loads((gan.run_dir / "eval-3.json").read_text())
    # measured against the test split (images the generator never saw) by default
    assert (record["count"], record["seed"], record["reference"], record["trained_on"]) == (
        500,
        3,
        "mnist/test",
        "mnist/train",
    )
    assert (
        record["main"] == "fid" and record["metrics"]["fid"] > 0 and record["features"] == "mnist"
    )
    assert {
        "kid",
        "precision",
        "recall",
        "class_coverage",
        "class_kl",
        "swd",
        "msssim",
        "msssim_real",
    } <= set(record["metrics"])
    assert {"fid_enc", "kid_enc", "precision_enc", "recall_enc"} <= set(record["metrics"])
    for key in (
        "fid",
        "kid",
        "precision",
        "recall",
        "fid_enc",
        "recall_enc",
    ):  # 95 % bootstrap intervals
        low, high = record["intervals"][key]
        assert low <= record["metrics"][key] <= high and (high > low or key.startswith("recall"))
    assert (
        "not Inception" in record["spaces"]["classifier"]
        and "contrastive encoder" in record["spaces"]["encoder"]
    )
    assert (
        "contrastive encoder features" in table
        and "classifier features" in table
        and "95% interval" in table
    )


@pytest.mark.slow
def test_eval_of_a_checkpoint_with_other_reference_data(runs, capsys, mnist_dir):
    _, gan, _ = runs
    checkpoint = gan.run_dir / "checkpoints" / "best.pt"
    out = gan.run_dir / "custom.json"
    assert (
        main(
            [
                "eval",
                str(checkpoint),
                "--count",
                "500",
                "--metrics",
                "swd",
                "--data",
                str(mnist_dir),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    record = json.loads(out.read_text())
    assert record["generator"].endswith("best.pt") and list(record["metrics"])[0] == "swd"


@pytest.mark.slow
def test_eval_user_errors_are_one_line_messages(runs, capsys):
    _, gan, _ = runs
    assert main(["eval", str(gan.run_dir), "--count", "100", "--metrics", "fid"]) == 2
    error = capsys.readouterr().err
    assert "at least 500" in error and error.count("\n") == 1
    assert main(["eval", str(gan.run_dir), "--metrics", "nonsense"]) == 2
    assert "unknown metric 'nonsense'" in capsys.readouterr().err
    assert main(["eval", str(gan.run_dir), "--data", "no-such-dataset-or-path"]) == 2
    assert "neither a dataset" in capsys.readouterr().err


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


@pytest.mark.slow
def test_compare_writes_a_self_contained_report_with_valid_images(runs, tmp_path):
    _, gan, dcgan = runs
    html_path = tmp_path / "report.html"
    assert (
        main(
            [
                "compare",
                str(gan.run_dir),
                str(dcgan.run_dir),
                "--out",
                str(html_path),
                "--count",
                "500",
                "--metrics",
                "fid,precision-recall,swd",
            ]
        )
        == 0
    )
    text = html_path.read_text()
    parser = _Images()
    parser.feed(text)
    assert {"table", "h1", "h2", "img"} <= set(parser.tags)
    formats = []
    for src in parser.sources:
        header, _, payload = src.partition(",")
        assert header in ("data:image/png;base64", "data:image/gif;base64")
        with Image.open(io.BytesIO(base64.b64decode(payload, validate=True))) as image:
            image.verify()
            formats.append(image.format)
    # 2 runs x 5 grids, the loss plot, the quality plot (the GAN was evaluated), 2 GIFs
    assert formats.count("PNG") == 12 and formats.count("GIF") == 2
    for heading in (
        "Samples at the same fractions of training",
        "Loss curves",
        "Quality versus time",
        "Metrics",
    ):
        assert heading in text
    assert 'src="http' not in text and "src='http" not in text
    for space in ("classifier features", "contrastive encoder features", "not Inception FID"):
        assert space in text  # every number is named by the network that measured it
    assert "class='ci'" in text  # intervals beside the values
    markdown = html_path.with_suffix(".md").read_text()
    assert "| fid |" in markdown and "report_files/" in markdown
    for link in [
        line.split("](")[1].split(")")[0] for line in markdown.splitlines() if "](" in line
    ]:
        assert (tmp_path / link).is_file()
    assert (
        json.loads((dcgan.run_dir / "eval-0.json").read_text())["count"] == 500
    )  # evaluations are saved


@pytest.mark.slow
def test_compare_refuses_runs_on_different_data_unless_allowed(runs, tmp_path, mnist_dir, capsys):
    out, gan, _ = runs
    other = ganforge.train(
        ganforge.load_preset("mnist-gan").with_overrides(
            {
                **TINY,
                "iterations": 10,
                "out_dir": str(out),
                "data.path": str(mnist_dir),
                "data.resolution": 32,
                "run_name": "gan32",
            }
        ),
        run=ganforge.RunOptions(show_progress=False),
    )
    html_path = tmp_path / "mixed.html"
    assert (
        main(
            [
                "compare",
                str(gan.run_dir),
                str(other.run_dir),
                "--out",
                str(html_path),
                "--no-metrics",
            ]
        )
        == 2
    )
    assert "different data or image sizes" in capsys.readouterr().err and not html_path.exists()
    assert (
        main(
            [
                "compare",
                str(gan.run_dir),
                str(other.run_dir),
                "--out",
                str(html_path),
                "--no-metrics",
                "--allow-mixed",
            ]
        )
        == 0
    )
    assert (
        "class='banner'" in html_path.read_text()
        and "**⚠ Warning:**" in html_path.with_suffix(".md").read_text()
    )


def test_compare_rejects_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["compare", str(tmp_path), "--out", str(tmp_path / "r.html")]) == 2
    assert "not a finished ganforge run folder" in capsys.readouterr().err


def test_compare_flags_differences_inside_the_noise_and_spaces_that_disagree():
    from types import SimpleNamespace

    from ganforge.report.model import MetricRow, noise_and_disagreement

    runs = [SimpleNamespace(name="gan"), SimpleNamespace(name="demo")]
    rows = [
        MetricRow(
            "fid", "lower", [70.0, 72.0], {0}, None, [[66.0, 74.0], [68.0, 76.0]], "classifier"
        ),
        MetricRow(
            "fid_enc", "lower", [30.0, 20.0], {1}, None, [[29.0, 31.0], [19.0, 21.0]], "encoder"
        ),
        MetricRow(
            "recall", "higher", [0.5, 0.2], {0}, None, [[0.48, 0.52], [0.18, 0.22]], "classifier"
        ),
        MetricRow(
            "recall_enc", "higher", [0.4, 0.1], {0}, None, [[0.38, 0.42], [0.08, 0.12]], "encoder"
        ),
    ]
    noise, order = noise_and_disagreement(runs, rows)
    assert noise.startswith("gan and demo differ by less than the noise") and noise.endswith(
        "on fid: this count cannot tell them apart there."
    )
    assert "rank gan and demo differently on fid (" in order and "recall" not in order
    rows[1].values = [
        30.0,
        40.0,
    ]  # the encoder now agrees with the classifier; both recalls differ clearly
    assert noise_and_disagreement(runs, rows) == [noise]


def test_eval_measures_memorisation_against_the_test_split_and_train_by_flag(runs, capsys):
    _, gan, _ = runs
    out = gan.run_dir / "split.json"
    assert (
        main(
            [
                "eval",
                str(gan.run_dir),
                "--count",
                "300",
                "--metrics",
                "memorisation,swd",
                "--resamples",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    record = json.loads(out.read_text())
    assert record["reference"] == "mnist/test"
    assert (
        0 <= record["metrics"]["memorised"] <= 1 and 0 <= record["metrics"]["memorised_pixels"] <= 1
    )
    assert (
        main(
            [
                "eval",
                str(gan.run_dir),
                "--count",
                "300",
                "--split",
                "train",
                "--metrics",
                "swd",
                "--resamples",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())["reference"] == "mnist/train"
    assert (
        main(
            [
                "eval",
                str(gan.run_dir),
                "--count",
                "300",
                "--split",
                "train",
                "--metrics",
                "memorisation",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "did not train on" in capsys.readouterr().err


def test_evaluating_against_another_split_keeps_the_default_record(runs):
    """Without --out, a split asked for by name is written beside the default record, not over
    it: measuring memorisation against the test split must not lose the training-split scores."""
    _, gan, _ = runs
    flags = ["--count", "200", "--metrics", "swd", "--resamples", "0", "--seed", "7"]
    assert main(["eval", str(gan.run_dir), *flags]) == 0
    assert main(["eval", str(gan.run_dir), *flags, "--split", "train"]) == 0
    default = json.loads((gan.run_dir / "eval-7.json").read_text())
    by_name = json.loads((gan.run_dir / "eval-train-7.json").read_text())
    assert default["reference"] == "mnist/test" and by_name["reference"] == "mnist/train"


def test_eval_scores_images_from_any_tool_with_the_same_floors(tmp_path, mnist_dir, capsys):
    """A folder of PNGs or an .npy array, made by any tool, scored like a generator; copies of
    training images are caught by the memorisation figure."""
    import numpy as np

    from ganforge.data.idx import load_idx_dataset
    from ganforge.metrics import reference_subset
    from ganforge.metrics.runs import TRAINING_SUBSET

    folder = tmp_path / "pngs"
    folder.mkdir()
    # 500 real test digits the training split does not hold: new images, as a good tool makes
    unseen = load_idx_dataset("mnist", "test", str(mnist_dir)).images[::5]
    for i, image in enumerate(unseen):
        Image.fromarray(image[0].numpy()).save(folder / f"{i:04d}.png")
    assert (
        main(
            [
                "eval",
                str(folder),
                "--dataset",
                "mnist",
                "--count",
                "500",
                "--resamples",
                "0",
                "--metrics",
                "fid,precision-recall,memorisation",
                "--out",
                str(tmp_path / "pngs.json"),
            ]
        )
        == 0
    )
    record = json.loads((tmp_path / "pngs.json").read_text())
    assert (
        record["reference"] == "mnist/test"
        and record["count"] == 500
        and record["generator"] is None
    )
    assert (
        record["metrics"]["recall"] > 0.8 and record["metrics"]["fid_enc"] < 5
    )  # real digits score as real
    assert (
        record["metrics"]["memorised_pixels"] < 0.15
    )  # new images: about the 5 % unseen images score
    assert "images from" in capsys.readouterr().out
    training = load_idx_dataset("mnist", "train", str(mnist_dir), allow_bundled=False).images
    training = reference_subset(
        training, TRAINING_SUBSET
    )  # the training images the figure searches
    copies = tmp_path / "copies.npy"
    np.save(
        copies, training[:300, 0].numpy().astype(np.float32) / 255.0
    )  # floats in [0, 1], [N, H, W]
    assert (
        main(
            [
                "eval",
                str(copies),
                "--dataset",
                "mnist",
                "--count",
                "300",
                "--resamples",
                "0",
                "--metrics",
                "memorisation",
                "--out",
                str(tmp_path / "copies.json"),
            ]
        )
        == 0
    )
    copied = json.loads((tmp_path / "copies.json").read_text())["metrics"]
    assert copied["memorised_pixels"] > 0.9 and copied["memorised"] > 0.9
    assert main(["eval", str(copies), "--count", "300"]) == 2
    assert "--dataset" in capsys.readouterr().err
    np.save(copies, np.zeros((10, 5, 5, 5)))
    assert main(["eval", str(copies), "--dataset", "mnist"]) == 2
    assert "expected images" in capsys.readouterr().err


def test_memorisation_of_brain_slices_is_measured_against_their_test_split(
    tmp_path, capsys, monkeypatch, brain_slices_writer
):
    """The figure matters most for medical images: with --split test, copies of training slices
    are caught and unseen slices are not (no classifier here: pixel space only)."""
    import numpy as np

    from ganforge.config import DataConfig
    from ganforge.data import load_images
    from ganforge.metrics import reference_subset
    from ganforge.metrics.runs import TRAINING_SUBSET

    # phantom slices (conftest.py, "brain phantoms"), 52x44 so that 1,100 stay quick: train 300,
    # test 800 (a quarter of it, 200, is the fewest the figure takes), found through
    # GANFORGE_DATA as a user's copy is
    counts = {"train": (150, 100, 45, 5), "test": (400, 280, 112, 8)}
    brain_slices_writer(tmp_path / "datasets" / "brain-mri-slices", counts, size=(52, 44))
    monkeypatch.setenv("GANFORGE_DATA", str(tmp_path / "datasets"))
    train, test = (
        load_images(DataConfig(dataset="brain-mri", split=split, resolution=32)).images
        for split in ("train", "test")
    )
    sets = {
        "copies": reference_subset(train, TRAINING_SUBSET)[:300],  # what the figure searches
        "unseen": test[::4],
    }
    shares = {}
    for name, images in sets.items():
        np.save(tmp_path / f"{name}.npy", images[:, 0].numpy())
        out = tmp_path / f"{name}.json"
        argv = ["eval", str(tmp_path / f"{name}.npy"), "--dataset", "brain-mri", "--count", "300"]
        argv += ["--split", "test", "--metrics", "memorisation", "--resamples", "0"]
        assert main([*argv, "--out", str(out)]) == 0
        record = json.loads(out.read_text())
        assert record["reference"].endswith("/test") and "memorised" not in record["metrics"]
        shares[name] = record["metrics"]["memorised_pixels"]
    assert shares["copies"] > 0.9 and shares["unseen"] < 0.15, shares
    unseen = str(tmp_path / "unseen.npy")
    # brain slices are measured against their training data unless asked: no figure there
    assert main(["eval", unseen, "--dataset", "brain-mri", "--metrics", "memorisation"]) == 2
    assert "--split test for brain slices" in capsys.readouterr().err


def test_eval_falls_back_to_the_training_data_without_a_local_test_split(tmp_path, mnist_dir):
    """A run trained from a local copy that holds only the training files is still evaluated
    (against its training data, as the record says), not refused."""
    local = tmp_path / "mnist-train-only"
    local.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (local / name).symlink_to(mnist_dir / name)
    run = ganforge.train(
        ganforge.load_preset("mnist-gan").with_overrides(
            {
                **TINY,
                "iterations": 5,
                "out_dir": str(tmp_path),
                "data.path": str(local),
                "run_name": "local",
            }
        ),
        run=ganforge.RunOptions(show_progress=False),
    )
    out = tmp_path / "eval.json"
    assert (
        main(["eval", str(run.run_dir), "--count", "200", "--metrics", "swd", "--out", str(out)])
        == 0
    )
    assert json.loads(out.read_text())["reference"] == "mnist/train"
    assert (
        main(["eval", str(run.run_dir), "--count", "200", "--split", "test", "--metrics", "swd"])
        == 2
    )
