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
    calls = {m for m in MODULES if m != "transforms"
             and "fit_square(" in (PACKAGE / f"{m}.py").read_text()}
    assert calls == set()  # everyone else goes through transforms.shape_to


@pytest.mark.slow
def test_every_data_module_imports_first_in_a_fresh_interpreter():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = "; ".join(f"import ganforge.data.{m}" for m in MODULES)
    for module in MODULES:  # each module first, then all the others
        first = f"import ganforge.data.{module}; {script}"
        result = subprocess.run([sys.executable, "-c", first], capture_output=True, text=True,
                                env=env, timeout=120, check=False)
        assert result.returncode == 0, f"{module}: {result.stderr.strip().splitlines()[-1:]}"
