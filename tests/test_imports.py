"""The package's layering: no import cycle between explorer's sub-packages and top-level modules.

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


def import_graph() -> nx.DiGraph:
    g = nx.DiGraph()
    for f in ROOT.rglob("*.py"):
        rel = f.relative_to(ROOT.parent).with_suffix("")
        mod = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        pkg = mod if rel.name == "__init__" else mod.rpartition(".")[0]
        src = _unit(mod)
        if src is None:  # explorer/__init__.py: the lazy public surface, above everything
            continue
        g.add_node(src)
        for node in ast.walk(ast.parse(f.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(base)
                    targets = [f"{base}.{node.module}" if node.module else f"{base}.{a.name}" for a in node.names]
                else:
                    targets = [node.module or ""]
            for t in targets:
                dst = _unit(t)
                if dst and dst != src:
                    g.add_edge(src, dst, where=f"{rel}:{node.lineno}")
    return g


def test_no_import_cycle_between_sub_packages():
    g = import_graph()
    assert {"space", "cost", "deploy", "measure", "backends", "search", "slots"} <= set(g)
    cycles = list(nx.simple_cycles(g))
    shown = ["  " + " -> ".join(c + [c[0]]) + "  (" + ", ".join(g.edges[a, b]["where"] for a, b in zip(c, c[1:] + c[:1])) + ")"
             for c in cycles[:5]]
    assert not cycles, "import cycles:\n" + "\n".join(shown)


def test_the_graph_sees_a_cycle_when_there_is_one():
    """The check above can fail: an edge back from ``slots`` to ``space`` closes a cycle."""
    g = import_graph()
    assert nx.has_path(g, "space", "slots")
    g.add_edge("slots", "space")
    assert list(nx.simple_cycles(g))


def test_import_explorer_is_light():
    code = "import sys, explorer; print(sorted(m for m in ('torch', 'tvm', 'onnx') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.strip()
    assert out == "[]"
