"""The package's layering: imports run one way down, and the analysis commands stay torch-free.

A package (a sub-package such as aifbench.telemetry, or a top-level module such as
aifbench.runner) is a node; every `import aifbench.X` / `from aifbench.X import ...` anywhere in
a module, lazy imports inside functions included (not those under `if TYPE_CHECKING:`), is an arrow. An import loop between packages
means a change has to hunt across rooms: the test names the loop.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[3] / "src" / "aifbench"


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


def _runtime_nodes(tree: ast.AST):
    """Every node of the tree except those under `if TYPE_CHECKING:` (annotations only: never run)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not (isinstance(child, ast.If) and getattr(child.test, "id", getattr(child.test, "attr", "")) == "TYPE_CHECKING"):
                stack.append(child)


def import_graph(key=_package) -> dict[str, set[str]]:
    """package -> packages it imports (self-edges dropped); key=str: module -> modules."""
    edges: dict[str, set[str]] = defaultdict(set)
    for path in SRC.rglob("*.py"):
        here = _module_name(path)
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + (path.name == "__init__.py")]
                targets = [".".join(base + ([node.module] if node.module else []))]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for t in targets:
                if t.startswith("aifbench.") and key(t) != key(here):
                    edges[key(here)].add(key(t))
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_sees_a_loop():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_loops_between_packages():
    loops = cycles(import_graph())
    assert not loops, "import loops between packages: " + "; ".join(" <-> ".join(c) for c in loops)


def test_no_import_loops_between_modules():
    """Inside a package too, two modules never import each other (directly or around a circle):
    what both need lives in a module below them. (`from aifbench.x import y` counts as an arrow
    to aifbench.x.y when y is a module, else to aifbench.x.)"""
    modules = {_module_name(p) for p in SRC.rglob("*.py")}
    graph = import_graph(key=str)
    edges = {m: {t if t in modules else t.rsplit(".", 1)[0] for t in ts} - {m} for m, ts in graph.items()}
    loops = cycles(edges)
    assert not loops, "import loops between modules: " + "; ".join(" <-> ".join(c) for c in loops)


LEAVES = ("aifbench.errors", "aifbench.units", "aifbench.atomic", "aifbench.files", "aifbench.typed_toml")


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaves_import_only_leaves(leaf):
    above = import_graph().get(leaf, set()) - set(LEAVES)
    assert not above, f"{leaf} is a leaf module: it imports {sorted(above)}"


@pytest.mark.parametrize("command", [["validate", "--results", "r", "--system", "local"], ["compare", "--results", "r"],
                                     ["report", "--results", "r", "-o", "report.html"], ["show", "--results", "r"]])
def test_analysis_commands_do_not_import_torch(tmp_path, command):
    """validate, compare, report and show read stored results: no torch (an operator's laptop,
    a login node, a CI job without the GPU stack)."""
    run = subprocess.run([sys.executable, "-m", "aifbench", "run", "smoke", "--only", "gemm,membw",
                          "--device", "cpu", "--results", "r", "--set", "timing.repeats=2"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    code = ("import sys\nfrom aifbench.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\nelse:\n    code = 0\n"
            "print('TORCH' if 'torch' in sys.modules else 'clean', code)\n")
    proc = subprocess.run([sys.executable, "-c", code, *command], cwd=tmp_path, capture_output=True, text=True)
    assert proc.stdout.strip().splitlines()[-1].startswith("clean"), (proc.stdout[-500:], proc.stderr[-2000:])
