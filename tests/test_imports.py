"""The house rule 'no two modules import each other': no import cycle in jaxcls/, input_pipeline/
or tools/, counting imports inside functions too (a lazy import hides a cycle, it does not
remove it)."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("jaxcls", "input_pipeline", "tools")


def module_files(root: str, packages) -> dict[str, str]:
    """Dotted module name -> file, for every .py file under the packages."""
    found = {}
    for package in packages:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, package)):
            dirnames[:] = [d for d in dirnames if not d.startswith((".", "__"))]
            for name in filenames:
                if not name.endswith(".py"):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, name), root)[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                found[".".join(rel)] = os.path.join(dirpath, name)
    return found


def import_graph(root: str, packages) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports (``from pkg import name`` counts as an
    import of ``pkg.name`` when that is a module, else of ``pkg``)."""
    files = module_files(root, packages)
    graph = {}
    for module, path in files.items():
        is_package = path.endswith("__init__.py")
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in files)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = module.split(".") if is_package else module.split(".")[:-1]
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    if target in files:
                        edges.add(target)
                    elif base in files:
                        edges.add(base)
        edges.discard(module)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_module_imports_itself_through_others():
    graph = import_graph(ROOT, PACKAGES)
    assert "jaxcls.trainer.loop" in graph and "input_pipeline.pp.registry" in graph
    assert cycles(graph) == []


def test_the_checker_finds_a_cycle_through_a_lazy_import(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub import b\n")
    (pkg / "a.py").write_text("def f():\n    from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("from .. import a\n")
    (pkg / "c.py").write_text("from pkg.sub import thing\n")  # the package __init__
    graph = import_graph(str(tmp_path), ("pkg",))
    assert graph["pkg.c"] == {"pkg.sub"} and graph["pkg.sub"] == {"pkg.sub.b"}
    assert cycles(graph) == [["pkg.a", "pkg.sub.b"]]


@pytest.mark.parametrize(
    "package, allowed",
    [
        ("jaxcls.models", {"jaxcls.models", "jaxcls.native"}),
        (
            "jaxcls.reporting",
            {"jaxcls.reporting", "jaxcls.evaluation.metrics", "jaxcls.files", "input_pipeline"},
        ),
        ("input_pipeline", {"input_pipeline", "jaxcls.files", "jaxcls.native"}),
    ],
)
def test_lower_layers_do_not_import_upper_ones(package, allowed):
    """Arrows point down: models, reports and the input pipeline never import the trainer."""
    graph = import_graph(ROOT, PACKAGES)
    for module, edges in graph.items():
        if module == package or module.startswith(package + "."):
            bad = {e for e in edges if not any(e == a or e.startswith(a + ".") for a in allowed)}
            assert not bad, f"{module} imports {sorted(bad)}"
