"""The ``nb201`` space: NAS-Bench-201's cell (4 nodes, 6 edges, 5 ops) in its standard skeleton.

stem 3x3 conv (C) -> N cells -> residual reduction (2C, /2) -> N cells -> reduction (4C, /2) -> N cells
-> BN-ReLU -> global average pool -> linear. Every cell shares one genotype, written in the
benchmark's string form ``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|...~0|...~1|...~2|``.
"""

from __future__ import annotations

import math
import re

import networkx as nx
import torch.nn as nn

from ..slots import alu, conv
from ..errors import ConfigError
from .base import SPACES, SearchSpace, Slot, SuperNet, full_table, mix
from .ops import OPS, ReLUConvBN, out_hw
from .quant import QConv2d, QLinear

__all__ = ["NB201Space", "NB201_OPS", "EDGES", "used_edges", "cell_graph", "live_edges"]

NB201_OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
EDGES = [(j, i) for j in range(1, 4) for i in range(j)]  # (to, from) in the benchmark's order


def edge_name(j: int, i: int) -> str:
    return f"edge_{j}_{i}"


def cell_graph(genotype: dict[str, str]) -> nx.DiGraph:
    """The cell of ``genotype`` as a DAG.

    Args:
        genotype: ``{edge name: op}`` for the six edges.

    Returns:
        Nodes 0 (the cell's input) to 3 (its output); an edge ``i -> j`` with attributes ``name``
        (the genotype key) and ``op`` for every edge whose op is not ``"none"``.
    """
    g = nx.DiGraph()
    g.add_nodes_from(range(4))
    for j, i in EDGES:
        op = genotype[edge_name(j, i)]
        if op != "none":
            g.add_edge(i, j, name=edge_name(j, i), op=op)
    return g


def used_edges(genotype: dict[str, str]) -> set[str]:
    """Names of the edges whose result reaches the cell's output through non-"none" ops (fed by the
    input or not): what a compiled graph still computes after dead-code elimination."""
    g = cell_graph(genotype)
    used = nx.ancestors(g, 3) | {3}
    return {d["name"] for i, j, d in g.edges(data=True) if j in used}


def live_edges(genotype: dict[str, str]) -> set[str]:
    """Names of the edges on a path from the cell's input to its output through non-"none" ops.

    The others either never reach the output (their result is discarded) or are fed only through
    "none" (their result does not depend on the input).
    """
    g = cell_graph(genotype)
    fed = nx.descendants(g, 0) | {0}
    used = nx.ancestors(g, 3) | {3}
    return {d["name"] for i, j, d in g.edges(data=True) if i in fed and j in used}


@SPACES.register("nb201")
class NB201Space(SearchSpace):
    """Args:
    input_shape, num_classes: the data.
    channels: C of the first stage (16 in the benchmark).
    cells_per_stage: N (5 in the benchmark; 1 keeps CPU searches quick).
    """

    name = "nb201"

    def __init__(self, input_shape, num_classes, channels: int = 16, cells_per_stage: int = 1):
        super().__init__(input_shape, num_classes)
        try:
            self.channels, self.cells_per_stage = int(channels), int(cells_per_stage)
        except (TypeError, ValueError):
            raise ConfigError("space.nb201: channels and cells_per_stage must be integers") from None
        if self.channels < 1 or self.cells_per_stage < 1:
            raise ConfigError("space.nb201: channels and cells_per_stage must be >= 1")

    def options(self) -> dict:
        return {"channels": self.channels, "cells_per_stage": self.cells_per_stage}

    def choices(self) -> dict[str, list[str]]:
        return {edge_name(j, i): list(NB201_OPS) for j, i in EDGES}

    #: how a runtime may skip ops: "used" (dead-code elimination drops ops whose result no path
    #: carries to the output), "on_path" (it also drops ops fed only through "none": constant folding)
    LIVENESS = ("used", "on_path")

    def live_choices(self, genotype: dict[str, str], mode: str = "on_path") -> set[str]:
        """The edges whose op a runtime that skips dead ops still runs (see :data:`LIVENESS`)."""
        return used_edges(genotype) if mode == "used" else live_edges(genotype)

    def connected(self, genotype: dict[str, str]) -> bool:
        return bool(live_edges(genotype))

    def connect(self, genotype: dict[str, str], prefs: dict[str, dict[str, float]]) -> dict[str, str]:
        """Open the input-to-output path whose ``none`` edges cost the least preference to replace:
        each such edge takes its most preferred op that is not ``none`` (and not pruned)."""
        if self.connected(genotype):
            return dict(genotype)
        best = None
        for path in nx.all_simple_paths(nx.complete_graph(4, nx.DiGraph()).edge_subgraph(
                [(i, j) for j, i in EDGES]), 0, 3):
            g, cost = dict(genotype), 0.0
            for i, j in zip(path, path[1:]):
                e = edge_name(j, i)
                if g[e] != "none":
                    continue
                p = prefs.get(e, {})
                opts = [(v, o) for o, v in p.items() if o != "none" and v > 0] or \
                       ([] if p else [(1.0, o) for o in NB201_OPS if o != "none"])
                if not opts:
                    break
                v, o = max(opts)
                cost += math.log(max(p.get("none", 1.0), 1e-12) / max(v, 1e-12))
                g[e] = o
            else:
                if best is None or (cost, len(path)) < best[0]:
                    best = ((cost, len(path)), g)
        return dict(genotype) if best is None else best[1]

    def format_genotype(self, genotype: dict[str, str]) -> str:
        nodes = []
        for j in range(1, 4):
            nodes.append("|" + "|".join(f"{genotype[edge_name(j, i)]}~{i}" for i in range(j)) + "|")
        return "+".join(nodes)

    def parse_genotype(self, text: str) -> dict[str, str]:
        nodes = text.strip().split("+")
        if len(nodes) != 3:
            raise ConfigError(f"malformed NAS-Bench-201 genotype {text!r}: expected 3 nodes joined by '+'")
        g = {}
        for j, node in enumerate(nodes, start=1):
            items = [t for t in node.split("|") if t]
            if len(items) != j:
                raise ConfigError(f"malformed NAS-Bench-201 genotype {text!r}: node {j} needs {j} inputs")
            for item in items:
                m = re.fullmatch(r"(\w+)~(\d+)", item)
                if not m or int(m.group(2)) >= j:
                    raise ConfigError(f"malformed NAS-Bench-201 genotype {text!r}: bad edge {item!r}")
                g[edge_name(j, int(m.group(2)))] = m.group(1)
        self.validate_genotype(g)
        return g

    def _stages(self):
        """(channels, input h, input w, has reduction before) per stage."""
        h, w = self.input_shape[1:]
        out = []
        for s in range(3):
            c = self.channels * 2**s
            if s > 0:
                h, w = out_hw(h, w, 2)
            out.append((c, h, w))
        return out

    def cost_slots(self) -> list[Slot]:
        cin0, H, W = self.input_shape
        C = self.channels
        fixed = [conv("stem", cin0, C, H, W, 3)]
        slots = []
        stages = self._stages()
        for s, (c, h, w) in enumerate(stages):
            if s > 0:
                pc, ph, pw = stages[s - 1]
                fixed += [
                    conv(f"reduce{s}.a", pc, c, ph, pw, 3, 2),
                    conv(f"reduce{s}.b", c, c, h, w, 3),
                    alu(f"reduce{s}.pool", pc, ph, pw, h, w, 4 + 2, load_elems=pc * ph * pw, store_elems=pc * h * w,
                        op="avg_pool_2x2"),
                    conv(f"reduce{s}.proj", pc, c, h, w, 1),
                    alu(f"reduce{s}.add", c, h, w, h, w, 1, load_elems=c * h * w, store_elems=c * h * w),
                ]
            for k in range(self.cells_per_stage):
                # Node sums: node j adds j inputs (j - 1 ADDs per vector); operands come from DRAM.
                fixed += [
                    alu(f"s{s}c{k}.sum{j}", c, h, w, h, w, j - 1, load_elems=(j - 1) * c * h * w, store_elems=c * h * w)
                    for j in (2, 3)
                ]
                for j, i in EDGES:
                    e = edge_name(j, i)
                    slots.append(
                        Slot(
                            f"s{s}c{k}.{e}",
                            (e,),
                            full_table([NB201_OPS], lambda op, c=c, h=h, w=w: OPS.create(op).workloads(c, c, h, w, 1)),
                        )
                    )
        c, h, w = stages[-1]
        fixed += [
            alu("head.pool", c, h, w, 1, 1, h * w + 2, load_elems=c * h * w, store_elems=c, op="global_avg_pool"),
            conv("head.fc", c, self.num_classes, 1, 1, 1),
        ]
        return [Slot("fixed", (), {(): fixed})] + slots

    def build_supernet(self, qstate) -> "NB201SuperNet":
        return NB201SuperNet(self, qstate)

    def build_network(self, genotype: dict[str, str], qstate) -> nn.Module:
        self.validate_genotype(genotype)
        return _Macro(self, qstate, cell=lambda c: _FixedCell(genotype, c, qstate))


class _ResBlock(nn.Module):
    """NAS-Bench-201's reduction: two ReLU-conv-BN (the first with stride 2) + avgpool/1x1 shortcut."""

    def __init__(self, cin, cout, qstate):
        super().__init__()
        self.a = ReLUConvBN(cin, cout, 3, 2, qstate)
        self.b = ReLUConvBN(cout, cout, 3, 1, qstate)
        self.down = nn.Sequential(nn.AvgPool2d(2, 2, ceil_mode=True), QConv2d(cin, cout, 1, bias=False, qstate=qstate))

    def forward(self, x):
        return self.down(x) + self.b(self.a(x))


class _FixedCell(nn.Module):
    def __init__(self, genotype, c, qstate):
        super().__init__()
        self.edges = nn.ModuleDict(
            {edge_name(j, i): OPS.create(genotype[edge_name(j, i)]).build(c, c, 1, qstate) for j, i in EDGES}
        )

    def forward(self, x, probs=None):
        nodes = [x]
        for j in range(1, 4):
            nodes.append(sum(self.edges[edge_name(j, i)](nodes[i]) for i in range(j)))
        return nodes[3]


class _MixedCell(nn.Module):
    def __init__(self, c, qstate):
        super().__init__()
        self.edges = nn.ModuleDict(
            {edge_name(j, i): nn.ModuleList(OPS.create(o).build(c, c, 1, qstate) for o in NB201_OPS) for j, i in EDGES}
        )

    def forward(self, x, probs):
        nodes = [x]
        for j in range(1, 4):
            nodes.append(sum(mix(self.edges[edge_name(j, i)], probs[edge_name(j, i)], nodes[i]) for i in range(j)))
        return nodes[3]


class _Macro(nn.Module):
    def __init__(self, space: NB201Space, qstate, cell):
        super().__init__()
        C = space.channels
        self.stem = nn.Sequential(
            QConv2d(space.input_shape[0], C, 3, 1, 1, bias=False, qstate=qstate), nn.BatchNorm2d(C)
        )
        blocks = []
        for s in range(3):
            c = C * 2**s
            if s > 0:
                blocks.append(_ResBlock(c // 2, c, qstate))
            blocks += [cell(c) for _ in range(space.cells_per_stage)]
        self.blocks = nn.ModuleList(blocks)
        self.last = nn.Sequential(nn.BatchNorm2d(4 * C), nn.ReLU())
        self.fc = QLinear(4 * C, space.num_classes, qstate=qstate)

    def forward(self, x, probs=None):
        x = self.stem(x)
        for b in self.blocks:
            x = b(x) if isinstance(b, _ResBlock) else b(x, probs)
        return self.fc(self.last(x).mean(dim=(2, 3)))


class NB201SuperNet(SuperNet):
    def __init__(self, space: NB201Space, qstate):
        super().__init__(space.choices())
        self.space, self.qstate = space, qstate
        self.net = _Macro(space, qstate, cell=lambda c: _MixedCell(c, qstate))

    def forward(self, x, probs):
        return self.net(x, probs)
