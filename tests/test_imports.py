"""The package's layering: no import cycle between explorer's sub-packages and top-level modules, nor
between two modules inside one.

Every import counts, module-level or inside a function (a lazy import still ties the two units
together), so the graph is read from the source with ``ast`` rather than from ``sys.modules``.
"""

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent / "explorer"


def _unit(module: str) -> str | None:
    """``explorer.space.base`` -> ``space``; ``explorer.api`` -> ``api``; outside explorer -> None."""
    parts = module.split(".")
    return parts[1] if parts[0] == "explorer" and len(parts) > 1 else None


def import_edges(root: Path = ROOT):
    """(importer, imported module, "file:line") for every import between the modules under ``root``
    (a package), function-level ones included. ``from pkg import name`` imports the module
    ``pkg.name`` where there is one, else ``pkg`` itself; ``root``'s own ``__init__`` (the lazy public
    surface, above everything) imports nothing here."""
    top = root.name
    files = {".".join(f.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"): f
             for f in root.rglob("*.py")}
    for mod, f in sorted(files.items()):
        if mod == top:
            continue
        pkg = mod if f.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in files:  # ``import explorer.x.y``: the deepest module named
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    yield mod, t, f"{f.relative_to(root.parent)}:{node.lineno}"


def import_graph(unit=_unit, root: Path = ROOT) -> nx.DiGraph:
    """The graph of :func:`import_edges` between ``unit(module)`` nodes (sub-packages by default)."""
    g = nx.DiGraph()
    for src, dst, where in import_edges(root):
        a, b = unit(src), unit(dst)
        if a is not None:
            g.add_node(a)
        if a is not None and b is not None and a != b:
            g.add_edge(a, b, where=where)
    return g


def _cycles(g: nx.DiGraph) -> list[str]:
    return ["  " + " -> ".join(c + [c[0]]) + "  (" + ", ".join(g.edges[a, b]["where"] for a, b in zip(c, c[1:] + c[:1])) + ")"
            for c in nx.simple_cycles(g)]


def test_no_import_cycle_between_sub_packages():
    g = import_graph()
    assert {"space", "cost", "deploy", "measure", "backends", "search", "slots"} <= set(g)
    cycles = _cycles(g)
    assert not cycles, "import cycles:\n" + "\n".join(cycles[:5])


def test_no_import_cycle_between_modules():
    """Inside a sub-package too: two modules that import each other (even lazily) hold one concept
    split in two, or a piece that belongs in a third module."""
    g = import_graph(unit=lambda m: m)
    assert {"explorer.backends.table", "explorer.backends.target", "explorer.measure.local"} <= set(g)
    cycles = _cycles(g)
    assert not cycles, "import cycles:\n" + "\n".join(cycles[:5])


def test_the_graph_sees_a_cycle_when_there_is_one(tmp_path):
    """The checks above can fail: a lazy ``from .b import x`` and a ``from ..pkg import a`` back make a
    cycle that is found and named, as ``from . import c`` makes an edge; a self-import is none."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    for f, src in {"__init__.py": "from .sub import b\n", "sub/__init__.py": "", "c.py": "import os\n",
                   "a.py": "from . import c\n\ndef f():\n    from .sub.b import x\n",
                   "sub/b.py": "import pkg.sub.b\nfrom ..a import f\nx = 1\n"}.items():
        (pkg / f).write_text(src)
    g = import_graph(unit=lambda m: m, root=pkg)
    assert set(g.edges) == {("pkg.a", "pkg.c"), ("pkg.a", "pkg.sub.b"), ("pkg.sub.b", "pkg.a")}
    assert _cycles(g) in (["  pkg.a -> pkg.sub.b -> pkg.a  (pkg/a.py:4, pkg/sub/b.py:2)"],
                          ["  pkg.sub.b -> pkg.a -> pkg.sub.b  (pkg/sub/b.py:2, pkg/a.py:4)"])
    units = import_graph(unit=lambda m: m.split(".")[1], root=pkg)
    assert set(units.edges) == {("a", "c"), ("a", "sub"), ("sub", "a")}


def test_import_explorer_is_light():
    code = "import sys, explorer; print(sorted(m for m in ('torch', 'tvm', 'onnx') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.strip()
    assert out == "[]"
