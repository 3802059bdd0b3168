"""The shape of the package that a reader and a contributor rely on: imports flow one way,
training starts in one place, the configuration is checked once, and the route from the
command line to a loss term stays short enough to follow."""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

import pytest

import ganforge

PACKAGE = Path(ganforge.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_level_imports(
    tree: ast.Module, name: str, is_package: bool, modules: set[str]
) -> set[str]:
    """Modules imported when the module runs: statements at module level (inside module-level
    if/try blocks too), not in functions or classes, and not under ``if TYPE_CHECKING:``.
    ``from package import module`` counts as an import of that module; the parent packages
    Python initialises on the way are not counted (a package's __init__ that imports its own
    submodules would otherwise make every package a cycle)."""
    found: set[str] = set()
    base = name if is_package else name.rpartition(".")[0]

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level:
                    anchor = base.rsplit(".", node.level - 1)[0] if node.level > 1 else base
                    module = f"{anchor}.{module}" if module else anchor
                for alias in node.names:
                    submodule = f"{module}.{alias.name}"
                    found.add(submodule if submodule in modules else module)
            elif isinstance(node, ast.If):
                test = ast.unparse(node.test)
                if "TYPE_CHECKING" not in test:
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, node.orelse, node.finalbody):
                    visit(block)
                for handler in node.handlers:
                    visit(handler.body)

    visit(tree.body)
    return found


def _every_import(tree: ast.Module, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """Every import statement of the module, wherever it stands: in functions (deferred
    imports) and under ``if TYPE_CHECKING:`` (annotations) too."""
    body = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    return _module_level_imports(ast.Module(body=body, type_ignores=[]), name, is_package, modules)


def import_graph(everywhere: bool = False) -> dict[str, set[str]]:
    """ganforge module -> the ganforge modules it imports at module level (or `everywhere`)."""
    sources = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    read = _every_import if everywhere else _module_level_imports
    graph: dict[str, set[str]] = {}
    for name, path in sources.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = read(tree, name, path.name == "__init__.py", set(sources))
        graph[name] = {m for m in imported if m in sources and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_the_package_has_no_import_cycle():
    """Every module of src/ganforge, with the imports it makes when it is imported (module
    level, TYPE_CHECKING blocks left out, in-function imports left out): no cycle."""
    graph = import_graph()
    assert len(graph) > 100, "the walk found the package's modules"
    assert cycles(graph) == []


def test_no_cycle_hides_behind_deferred_or_type_only_imports():
    """The same walk counting every import, in functions and for annotations too: a cycle
    there is the same tangle, only postponed (hooks see the loop through a Protocol)."""
    graph = import_graph(everywhere=True)
    assert graph["ganforge.training.loop"] >= import_graph()["ganforge.training.loop"]
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_check_imports_nothing_from_training():
    """The gate sits below training: check.py may be imported by it, never the reverse."""
    tree = ast.parse((PACKAGE / "check.py").read_text(encoding="utf-8"))
    everywhere = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert not [m for m in everywhere if m and m.startswith("ganforge.training")]


def test_no_module_in_training_is_over_500_lines():
    sizes = {
        p.name: len(p.read_text(encoding="utf-8").splitlines())
        for p in (PACKAGE / "training").glob("*.py")
    }
    assert max(sizes.values()) <= 500, sizes


def test_there_is_one_train_entry_point():
    """``ganforge.train`` is the only public train function: the training package has none
    of its own, and the command line calls the same function."""
    from ganforge import api, training

    assert ganforge.train is api.train
    assert not hasattr(training, "train")
    assert list(inspect.signature(api.train).parameters) == ["config", "run", "evaluator", "hooks"]


def _demo_args(tmp_path: Path) -> list[str]:
    return [
        "train",
        "--preset",
        "demo",
        "--iterations",
        "2",
        "--quiet",
        "--out",
        str(tmp_path),
        "--set",
        "data.limit=64",
        "--set",
        "batch_size=16",
        "--set",
        "log_every=1",
    ]


def _checks_during(cli, *argv: str) -> int:
    """How many times ganforge.check.check runs during one command (every binding of it)."""
    from ganforge import check

    calls = []
    code = check.check.__code__

    def profile(frame, event, arg):
        if event == "call" and frame.f_code is code:
            calls.append(1)

    sys.setprofile(profile)
    try:
        result = cli(*argv)
    finally:
        sys.setprofile(None)
    assert result.code == 0, result.err
    return len(calls)


def test_a_train_command_checks_the_config_exactly_once(cli, tmp_path):
    assert _checks_during(cli, *_demo_args(tmp_path)) == 1


def test_a_dry_run_checks_the_config_exactly_once(cli, tmp_path):
    assert _checks_during(cli, *_demo_args(tmp_path), "--dry-run") == 1


LOSS_FRAMES = 6


@pytest.mark.parametrize("update", ["alternating", "simultaneous"])
def test_a_loss_term_is_at_most_six_frames_below_the_train_command(cli, tmp_path, update):
    """Counted from cli/train.py's ``run`` (the train command) to the frame of a term of
    the loss (ganforge/losses.py), both included, in one process."""
    from ganforge import losses
    from ganforge.cli import train as train_command

    command = train_command.run.__code__
    terms = {
        term.__code__
        for loss in losses.LOSSES.values()
        for term in (
            loss.d_real,
            loss.d_fake,
            loss.g,
            *((loss.pair.d, loss.pair.g) if loss.pair else ()),
        )
    }
    depths: list[int] = []

    def profile(frame, event, arg):
        if event != "call" or frame.f_code not in terms:
            return
        depth, here = 1, frame
        while here is not None and here.f_code is not command:
            here, depth = here.f_back, depth + 1
        if here is not None:
            depths.append(depth)

    sys.setprofile(profile)
    try:
        result = cli(*_demo_args(tmp_path), "--set", f"update={update}")
    finally:
        sys.setprofile(None)
    assert result.code == 0, result.err
    assert depths and max(depths) == LOSS_FRAMES, sorted(set(depths))


def test_comments_stand_above_their_lines():
    """No end-of-line comments in the package: a comment above its line leaves the line to the
    code, so the formatter never wraps a one-liner to fit a remark (tool markers such as noqa
    and type: ignore excepted, which must stay on their line)."""
    import io
    import tokenize

    trailing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type != tokenize.COMMENT or not token.line[: token.start[1]].strip():
                continue
            if not any(marker in token.string for marker in ("noqa", "type:", "pragma", "fmt:")):
                trailing.append(f"{path.relative_to(PACKAGE)}:{token.start[0]}")
    assert trailing == []
