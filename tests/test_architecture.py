"""The shape of the code, checked from the source (AST): imports run one way.

Every ``import`` counts, including those inside functions and under ``TYPE_CHECKING``:
a deferred import is still a dependency. See docs/architecture.md.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("maskgen", "fer_models")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(package: str) -> dict[str, set[str]]:
    """module -> modules of ``package`` it imports (``from p import x`` -> ``p.x`` when that is a module)."""
    files = {module_name(p): p for p in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps: set[str] = set()
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for t in targets:
                while t and t not in files:  # a.b.c where only a.b is a module of ours
                    t = t.rpartition(".")[0]
                if t and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


@pytest.mark.parametrize("package", PACKAGES)
def test_import_graph_has_no_cycle(package: str) -> None:
    graph = import_graph(package)
    assert len(graph) > 5
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def later_stage_imports(graph: dict[str, set[str]], order: list[tuple[str, ...]]) -> list[str]:
    """``"a imports b, a later stage"`` for each import against ``order`` (stages of module prefixes; modules
    of one stage may import each other; modules in no stage are not checked)."""

    def stage(module: str) -> int | None:
        for i, prefixes in enumerate(order):
            if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
                return i
        return None

    return [f"{module} imports {dep}, a later stage" for module, deps in sorted(graph.items())
            for dep in sorted(deps) if stage(module) is not None and stage(dep) is not None
            and stage(dep) > stage(module)]


def test_render_is_a_pure_leaf() -> None:
    deps = import_graph("maskgen")["maskgen.render"]
    assert deps <= {"maskgen.fits", "maskgen.imageops", "maskgen.points", "maskgen.templates"}, deps
    assert {"maskgen.points", "maskgen.templates"} <= deps  # the graph sees its real imports (not an empty set)


def test_the_stages_run_one_way() -> None:
    """points -> landmark sources -> templates -> masks -> fits -> styles -> render -> qa -> pipeline."""
    order = [("maskgen.points",), ("maskgen.landmarks",), ("maskgen.templates",), ("maskgen.masks",), ("maskgen.fits",),
             ("maskgen.styles",), ("maskgen.render",), ("maskgen.qa",), ("maskgen.pipeline",)]
    assert later_stage_imports(import_graph("maskgen"), order) == []


def test_the_benchmark_modules_run_one_way() -> None:
    """spec <- runner <- report, plot <- command (docs/architecture.md); datasets stands alone."""
    pkg = "fer_models.benchmark"
    order = [(f"{pkg}.spec",), (f"{pkg}.runner",), (f"{pkg}.report", f"{pkg}.plot"), (f"{pkg}.command",)]
    graph = import_graph("fer_models")
    assert later_stage_imports(graph, order) == []
    assert f"{pkg}.spec" in graph[f"{pkg}.runner"] and f"{pkg}.runner" in graph[f"{pkg}.command"]
    assert not graph[f"{pkg}.report"] & {f"{pkg}.runner", f"{pkg}.plot", f"{pkg}.command"}
    assert graph[f"{pkg}.spec"] <= {"fer_models.config"}  # the grid spec is pure data
    assert graph[f"{pkg}.datasets"] == set()  # maskgen's builds only, no fer_models module


def test_the_layer_check_sees_a_later_stage_import() -> None:
    graph = {"toy.a": set(), "toy.b": {"toy.a"}, "toy.c": {"toy.b", "toy.d"}, "toy.d": {"toy.c"}}
    assert later_stage_imports(graph, [("toy.a",), ("toy.b",), ("toy.c", "toy.d")]) == []
    assert later_stage_imports(graph, [("toy.b",), ("toy.a",)]) == ["toy.b imports toy.a, a later stage"]


def test_the_checker_sees_cycles_and_deferred_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test above can fail: a package with a cycle hidden in a function body is caught."""
    pkg = tmp_path / "toy"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from toy import b\n")
    (pkg / "b.py").write_text("def f():\n    from toy.a import x\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert find_cycle(import_graph("toy")) == ["toy.a", "toy.b", "toy.a"]


def test_package_api_is_what_the_readme_uses() -> None:
    """Every name ``maskgen`` exports resolves, including those the README's Python API section uses."""
    import re

    import maskgen

    for name in maskgen.__all__:
        assert getattr(maskgen, name) is not None, name
    readme = (ROOT / "README.md").read_text()
    used = set(re.findall(r"\bmaskgen\.([A-Za-z_]\w*)\(", readme))
    assert used and used <= set(maskgen.__all__), used - set(maskgen.__all__)
    with pytest.raises(AttributeError):
        maskgen.no_such_name  # noqa: B018
