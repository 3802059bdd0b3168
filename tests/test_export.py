"""Export: ONNX and TorchScript files that reproduce PyTorch, and a model folder that loads offline.

One tiny demo run (an eighth-width DCGAN at 32x32, two iterations on random images) is
trained once for the module; every test exports it somewhere new.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "examples" / "onnx_generate.py"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_config, tiny_images) -> Path:
    from ganforge import RunOptions, train

    out = tmp_path_factory.mktemp("export-runs")
    config = tiny_config(
        "demo",
        {"model.options.width": 0.125},
        iterations=2,
        batch_size=16,
        out_dir=str(out),
        run_name="tiny",
    )
    return train(config, run=RunOptions(data=tiny_images(size=32), show_progress=False)).run_dir


def _latents(seed: int, count: int, latent_dim: int) -> torch.Tensor:
    return torch.randn(count, latent_dim, generator=torch.Generator().manual_seed(seed))


# ---- ONNX ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def onnx_export(run_dir, tmp_path_factory):
    """One ONNX export for the module (each takes seconds): the ExportResult."""
    pytest.importorskip("onnxruntime")
    from ganforge.export import export

    return export(run_dir, tmp_path_factory.mktemp("onnx") / "g.onnx")


def test_onnx_export_reports_its_measured_difference(onnx_export):
    from ganforge.export import TOLERANCE

    assert onnx_export.format == "onnx" and onnx_export.path.is_file()
    assert onnx_export.max_abs_diff is not None and 0 <= onnx_export.max_abs_diff <= TOLERANCE


def test_onnx_export_matches_pytorch_in_onnxruntime(run_dir, onnx_export):
    import onnxruntime as ort

    from ganforge import load_generator
    from ganforge.export import TOLERANCE

    generator, info = load_generator(run_dir)
    session = ort.InferenceSession(str(onnx_export.path), providers=["CPUExecutionProvider"])
    for count in (1, 5):  # any batch size, not only the one traced
        z = _latents(count, count, info.latent_dim)
        got = session.run(["images"], {"z": z.numpy()})[0]
        with torch.no_grad():
            want = generator(z).numpy()
        assert got.shape == (count, *info.image_shape)
        assert np.abs(got - want).max() <= TOLERANCE
    meta = json.loads(session.get_modelmeta().custom_metadata_map["ganforge"])
    assert meta["latent_dim"] == info.latent_dim and meta["noise"] == "normal"


def test_export_command_says_how_close_the_file_is(run_dir, tmp_path, cli):
    pytest.importorskip("onnxruntime")
    result = cli("export", run_dir, "--format", "onnx", "--out", tmp_path / "g.onnx")
    assert result.code == 0, result.err
    assert "checked: largest difference from PyTorch" in result.err
    assert (tmp_path / "g.onnx").is_file()


def test_a_file_that_disagrees_with_pytorch_is_not_written(run_dir, tmp_path, monkeypatch):
    import ganforge.export as export_module
    from ganforge.errors import GanforgeError

    monkeypatch.setattr(export_module, "TOLERANCE", -1.0)  # any difference is now too much
    with pytest.raises(GanforgeError, match="differs from PyTorch"):
        export_module.export(run_dir, tmp_path / "g.pt")
    assert list(tmp_path.iterdir()) == []  # no file, and no temporary left behind


def test_onnx_without_the_extra_says_what_to_install(
    run_dir, tmp_path, monkeypatch, cli, user_error
):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnxscript" else real(name, *a),
    )
    result = cli("export", run_dir, "--out", tmp_path / "g.onnx")
    user_error(result, "onnxscript", "ganforge[export]")
    assert not (tmp_path / "g.onnx").exists()


def test_onnx_example_generates_with_numpy_and_onnxruntime_only(onnx_export, tmp_path):
    from PIL import Image

    # The example runs in a fresh interpreter; afterwards neither torch nor ganforge was imported.
    probe = (
        f"import runpy, sys; sys.argv = ['onnx_generate.py', {str(onnx_export.path)!r}, "
        f"'--count', '6', '--out', {str(tmp_path / 'grid.png')!r}]; "
        f"runpy.run_path({str(EXAMPLE)!r}, run_name='__main__'); "
        "assert 'torch' not in sys.modules and 'ganforge' not in sys.modules"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert "wrote 6 images of 1x32x32" in done.stdout
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.size == (3 * 32, 2 * 32)  # 6 images: 3 columns, 2 rows


# ---- TorchScript ---------------------------------------------------------------------------
def test_torchscript_export_loads_without_ganforge_code_and_matches(run_dir, tmp_path, cli):
    from ganforge import load_generator
    from ganforge.export import TOLERANCE

    result = cli("export", run_dir, "--out", tmp_path / "g.pt")  # format from the suffix
    assert result.code == 0, result.err
    extra = {"ganforge.json": ""}
    scripted = torch.jit.load(str(tmp_path / "g.pt"), _extra_files=extra)
    generator, info = load_generator(run_dir)
    z = _latents(3, 3, info.latent_dim)
    with torch.no_grad():
        assert (scripted(z) - generator(z)).abs().max() <= TOLERANCE
    assert json.loads(extra["ganforge.json"])["image_shape"] == list(info.image_shape)


def test_an_unknown_suffix_asks_for_a_format(run_dir, tmp_path, cli, user_error):
    user_error(cli("export", run_dir, "--out", tmp_path / "g.bin"), "--format")


# ---- model folder ---------------------------------------------------------------------------
def test_model_folder_has_the_hugging_face_layout_and_a_model_card(run_dir, tmp_path, cli):
    out = tmp_path / "model"
    result = cli("export", run_dir, "--format", "folder", "--out", out)
    assert result.code == 0, result.err
    assert {p.name for p in out.iterdir()} == {
        "model.safetensors",
        "config.json",
        "README.md",
        "samples.png",
    }
    config = json.loads((out / "config.json").read_text())
    assert config["library_name"] == "ganforge" and config["architecture"] == "dcgan"
    assert config["latent_dim"] == 100 and config["image_shape"] == [1, 32, 32]
    assert config["training_config"]["preset"] == "demo"
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: ganforge\n")
    for section in (
        "## Training data",
        "licence / terms",
        "## Recipe",
        "ganforge train --preset demo",
        "--set schedule.iterations=2",
        "## Evaluation",
        "## Intended use",
    ):
        assert section in card, section
    assert "Not evaluated" in card  # the run has no eval JSON
    assert "clinical" not in card  # random "synthetic/32" images are not medical


def test_model_folder_loads_offline_without_its_run(run_dir, tmp_path, cli):
    import ganforge
    from ganforge.latent import images_for_seeds

    generator, info = ganforge.load_generator(run_dir)
    want = images_for_seeds(generator, info, [0, 1, 2])
    copy = tmp_path / "run-copy"
    shutil.copytree(run_dir, copy)
    assert cli("export", copy, "--out", tmp_path / "model").code == 0
    shutil.rmtree(copy)  # the folder must stand alone

    loaded, loaded_info = ganforge.load_generator(tmp_path / "model")
    assert loaded_info == info
    assert torch.equal(images_for_seeds(loaded, loaded_info, [0, 1, 2]), want)
    result = cli("sample", tmp_path / "model", "--seeds", "0-2", "--out", tmp_path / "seeds")
    assert result.code == 0, result.err
    assert sorted(p.name for p in (tmp_path / "seeds").iterdir()) == [
        "seed-0000.png",
        "seed-0001.png",
        "seed-0002.png",
    ]
    assert ganforge.sample(tmp_path / "model", count=4).shape == (4, 32, 32, 1)


def test_model_card_shows_metrics_with_their_floors(run_dir, tmp_path):
    from ganforge.export import export

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    record = {
        "count": 2000,
        "seed": 0,
        "reference": "mnist/test",
        "reference_count": 2000,
        "features": "ganforge mnist classifier (not Inception)",
        "metrics": {"fid": 12.5, "recall": 0.61},
        "floor": {"fid": 0.9, "recall": 0.8},
        "better": {"fid": "lower", "recall": "higher"},
        "main": "fid",
    }
    (copy / "eval-0.json").write_text(json.dumps(record))
    export(copy, tmp_path / "model", "folder")
    card = (tmp_path / "model" / "README.md").read_text()
    assert "| fid | 12.5000 | 0.9000 | lower |" in card
    assert "| recall | 0.6100 | 0.8000 | higher |" in card
    assert "ganforge mnist classifier (not Inception)" in card


@pytest.mark.parametrize(
    "data, medical",
    [
        ({"dataset": "brain-mri", "path": None}, True),
        ({"dataset": "nifti", "path": "/data/sub-01_T1w.nii.gz"}, True),
        ({"dataset": "mnist", "path": None}, False),
    ],
)
def test_model_card_of_medical_data_says_not_for_clinical_use(data, medical):
    from ganforge.checkpoint import GeneratorInfo
    from ganforge.export import model_card

    info = GeneratorInfo("dcgan", 100, (1, 32, 32), {"width": 0.125}, dataset=data["dataset"])
    config = {"data": data, "preset": None, "optim": {}, "loss": "bce", "iterations": 10}
    card = model_card(info, {"config": config}, torch.nn.Linear(2, 2))
    assert ("**Not for clinical use.**" in card) == medical
    if data["dataset"] == "brain-mri":
        assert "OASIS Data Use Agreement" in card and "medical-imaging" in card
    if data["dataset"] == "mnist":
        assert "CC BY-SA 3.0" in card


def test_export_folder_refuses_a_folder_holding_other_files(run_dir, tmp_path, cli, user_error):
    (tmp_path / "notes.txt").write_text("mine")
    user_error(cli("export", run_dir, "--format", "folder", "--out", tmp_path), "other files")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


# ---- first contact with the command line ------------------------------------------------------
def test_bare_ganforge_prints_help_instead_of_training(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli()
    assert result.code == 0
    assert "usage: ganforge" in result.out and "examples:" in result.out
    assert list(tmp_path.iterdir()) == []  # no run folder was started


@pytest.mark.parametrize("command", ["sample", "export", "interpolate"])
def test_help_shows_examples(cli, command):
    result = cli(command, "--help")
    assert result.code == 0
    assert "examples:" in result.out and f"ganforge {command} runs/demo-001" in result.out


def test_sample_device_defaults_to_auto():
    from ganforge.cli import build_parser

    args = build_parser().parse_args(["sample", "run"])
    assert args.device == "auto"


def test_a_conditional_generator_exports_with_a_labels_input(tmp_path):
    """The shipped class-conditional MNIST generator: its ONNX file takes z and labels, and
    asking it for sevens gives what PyTorch gives for sevens."""
    import numpy as np
    import onnxruntime

    from ganforge.export import export_onnx
    from ganforge.generate import load_generator
    from ganforge.pretrained import pretrained_path

    generator, info = load_generator(pretrained_path("mnist-best"))
    result = export_onnx(generator, info, tmp_path / "digits.onnx")
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["z", "labels"]
    z = torch.randn(5, info.latent_dim)
    sevens = torch.full((5,), 7)
    (got,) = session.run(["images"], {"z": z.numpy(), "labels": sevens.numpy()})
    with torch.no_grad():
        want = generator(z, sevens).numpy()
    assert np.abs(got - want).max() < 1e-4
    meta = json.loads(session.get_modelmeta().custom_metadata_map["ganforge"])
    assert meta["num_classes"] == 10 and meta["class_names"] == [str(d) for d in range(10)]


def test_the_onnx_example_asks_for_a_class_by_its_name(tmp_path):
    """fashion-best's ONNX file carries its class names: the numpy-only example draws the same
    images for --class Sneaker as for --class 7."""
    from ganforge.export import export_onnx
    from ganforge.generate import load_generator
    from ganforge.pretrained import pretrained_path

    generator, info = load_generator(pretrained_path("fashion-best"))
    model = export_onnx(generator, info, tmp_path / "clothes.onnx").path
    grids = {}
    for label in ("7", "Sneaker"):
        out = tmp_path / f"{label}.png"
        done = subprocess.run(
            [sys.executable, str(EXAMPLE), str(model), "--count", "4", "--class", label]
            + ["--out", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        assert done.returncode == 0, done.stderr
        grids[label] = out.read_bytes()
    assert grids["7"] == grids["Sneaker"]
