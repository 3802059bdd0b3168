"""The shape of ganforge.data: imports point one way, and exactly one module resizes.

A cycle between data modules makes the import order decide whether ganforge starts at all;
two layers that resize interpolate an image twice. Both are read from the source here.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ganforge.data
from ganforge.config import DataConfig
from ganforge.data import expected_shape, load_images, source_problems

PACKAGE = Path(ganforge.data.__file__).parent
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def data_imports(module: str) -> set[str]:
    """The ganforge.data modules `module` imports ("__init__" for the package's own names)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "ganforge.data":
                for alias in node.names:
                    found.add(alias.name if alias.name in MODULES else "__init__")
            elif node.module.startswith("ganforge.data."):
                found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("ganforge.data."):
                    found.add(alias.name.split(".")[2])
    return found - {module}


def test_no_data_module_imports_the_package_or_takes_part_in_a_cycle():
    graph = {module: data_imports(module) for module in MODULES}
    assert not {m for m, deps in graph.items() if "__init__" in deps}
    order: list[str] = []
    visiting: list[str] = []

    def visit(module: str) -> None:
        assert module not in visiting, f"import cycle: {' -> '.join(visiting + [module])}"
        if module in order:
            return
        visiting.append(module)
        for dep in sorted(graph[module]):
            visit(dep)
        visiting.pop()
        order.append(module)

    for module in MODULES:
        visit(module)
    # the leaves really are leaves: discovery and locations know nothing of the other modules
    assert graph["locations"] == set() and graph["discovery"] == set()
    assert "folder" not in graph["nifti"] and graph["cache"] == {"locations"}


def test_only_transforms_resizes():
    resizing = {m for m in MODULES if "interpolate(" in (PACKAGE / f"{m}.py").read_text()}
    assert resizing == {"transforms"}
    calls = {
        m
        for m in MODULES
        if m != "transforms" and "fit_square(" in (PACKAGE / f"{m}.py").read_text()
    }
    assert calls == set()  # everyone else goes through transforms.shape_to


# Each data module imported first, then all the others, in one fresh interpreter: ganforge's
# modules are dropped from sys.modules between rounds, so every round runs their module code
# anew in that order (torch, already loaded, is not what a cycle between them would break).
IMPORT_EACH_FIRST = """
import importlib, sys
modules = sys.argv[1:]
for first in modules:
    for name in [n for n in sys.modules if n == "ganforge" or n.startswith("ganforge.")]:
        del sys.modules[name]
    for module in [first] + modules:
        try:
            importlib.import_module("ganforge.data." + module)
        except Exception as exc:
            sys.exit(f"{first} first, then {module}: {type(exc).__name__}: {exc}")
"""


def test_every_data_module_imports_first_in_a_fresh_interpreter():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH_FIRST, *MODULES],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.strip().splitlines()[-1:]


def test_the_first_public_name_read_registers_every_built_in_source():
    """The package imports its sources on first use (start-up time); whichever name is read
    first, SOURCES then holds all of them, never a partial registry."""
    script = "from ganforge.data import SOURCES\nprint(sorted(SOURCES))\n"
    fresh = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.strip() == str(sorted(ganforge.data.SOURCES))
    assert {"brain-mri", "folder", "mnist", "nifti", "stacked-mnist"} <= set(ganforge.data.SOURCES)


# ---- what sources declare: problems and shapes, known before a file is read --------------------
@pytest.fixture()
def nothing_is_read(monkeypatch):
    """Opening an image or a volume fails the test: checks must stay on names and stat calls."""
    import nibabel
    from PIL import Image

    def refuse(*args, **kwargs):
        raise AssertionError("a check read a file")

    monkeypatch.setattr(nibabel, "load", refuse)
    monkeypatch.setattr(Image, "open", refuse)


@pytest.fixture()
def no_local_copies(tmp_path, monkeypatch):
    """Hide the team's local copies and any user copy: the search finds nothing, as if new."""
    from ganforge.data import locations

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(locations, "REPO_ROOT", tmp_path / "repo")
    monkeypatch.delenv("GANFORGE_DATA")


def test_unknown_dataset_lists_the_valid_names(nothing_is_read):
    problems = source_problems(DataConfig(dataset="nosuch"))
    assert len(problems) == 1 and "nosuch" in problems[0]
    assert all(
        name in problems[0] for name in ("mnist", "fashion-mnist", "folder", "nifti", "brain-mri")
    )


def test_bad_nifti_axis_and_missing_paths_are_found_without_reading(
    head_volume, nothing_is_read, tmp_path
):
    problems = source_problems(
        DataConfig(dataset="nifti", path=str(head_volume), options={"nifti_axis": 3})
    )
    assert problems == [
        "data.options.nifti_axis must be 0 (sagittal), 1 (coronal) or 2 (axial) (got 3)"
    ]
    assert (
        source_problems(
            DataConfig(dataset="nifti", path=str(head_volume), options={"nifti_axis": 1})
        )
        == []
    )
    assert (
        "nifti_axis"
        in source_problems(DataConfig(dataset="brain-mri", options={"nifti_axis": -1}))[0]
    )
    assert "needs a path" in source_problems(DataConfig(dataset="folder"))[0]
    missing = str(tmp_path / "nowhere")
    assert source_problems(DataConfig(dataset="folder", path=missing)) == [
        f"--data {missing} does not exist"
    ]
    assert source_problems(DataConfig(dataset="mnist", path=missing)) == [
        f"--data {missing} does not exist"
    ]
    ranged = source_problems(
        DataConfig(dataset="folder", path=str(tmp_path), options={"nifti_range": (0.8, 0.2)})
    )
    assert len(ranged) == 1 and "nifti_range" in ranged[0]


def test_a_split_the_source_does_not_have_is_a_problem(nothing_is_read, monkeypatch):
    from ganforge.data import SOURCES, register_source

    monkeypatch.setitem(SOURCES, "train-only", SOURCES["mnist"])  # restored after the test
    register_source("train-only", splits=("train",))(SOURCES["mnist"].load)
    problems = source_problems(DataConfig(dataset="train-only", split="test"))
    assert problems == ["dataset 'train-only' has no split 'test'; choose one of: train"]
    assert source_problems(DataConfig(dataset="train-only")) == []


def test_missing_mnist_is_found_by_the_check_when_the_slice_is_refused(no_local_copies):
    refused = DataConfig(dataset="mnist", allow_bundled_slice=False)
    problems = source_problems(refused)
    assert len(problems) == 1 and "allow_bundled_slice=true" in problems[0]
    assert source_problems(DataConfig(dataset="mnist")) == []  # the slice will do


def test_expected_shape_matches_what_loading_gives(mnist_dir, head_volume, tmp_path):
    assert expected_shape(DataConfig(dataset="mnist")) == (1, 28, 28)
    assert expected_shape(DataConfig(dataset="fashion-mnist", resolution=32)) == (1, 32, 32)
    config = DataConfig(
        dataset="mnist", path=str(mnist_dir), split="test", limit=4, channels=3, resolution=32
    )
    assert expected_shape(config) == load_images(config).image_shape == (3, 32, 32)
    assert expected_shape(DataConfig(dataset="folder", path=str(tmp_path))) is None
    assert expected_shape(DataConfig(dataset="folder", path=str(tmp_path), resolution=64)) is None
    assert expected_shape(DataConfig(dataset="brain-mri", resolution=64, channels=1)) == (1, 64, 64)
    volume = DataConfig(
        dataset="nifti", path=str(head_volume), resolution=16, options={"nifti_range": (0.5, 0.55)}
    )
    assert expected_shape(volume) == load_images(volume).image_shape == (1, 16, 16)
