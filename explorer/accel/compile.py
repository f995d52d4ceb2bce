"""ONNX -> Relax -> the VTA-style core: which ops are offloaded, how each is lowered, what it costs.

Offloaded: ``conv2d`` with constant weights and ``groups == 1`` (the GEMM core needs whole
BLOCK_IN input-channel blocks), and ``matmul`` by a constant matrix (a dense layer, run as a 1x1
convolution on a 1x1 map). Everything else stays on the host CPU; the stats say which ops and why.
Each offloaded layer is lowered (:func:`explorer.accel.sim.lower`) and simulated; the stats hold
VTA's counters and cycles per layer and in total.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path

import networkx as nx

from .params import VTAParams
from .sim import ALU_II, ConvLayer, plan, run_layer

__all__ = ["layer_graph", "program_order", "offload_plan", "compile_stats"]

HOST_REASONS = {
    "relax.nn.conv2d": "grouped/depthwise convolution: the GEMM core needs whole BLOCK_IN input-channel blocks",
}


def _shape(expr) -> tuple[int, ...]:
    return tuple(int(d) for d in expr.ty.shape)


def _is_const(expr, g: nx.DiGraph, node_of: dict) -> bool:
    """A constant, or a variable computed only from constants (e.g. a transposed weight)."""
    from tvm import relax
    from tvm.ir.expr import Constant

    if isinstance(expr, Constant):
        return True
    return isinstance(expr, relax.Var) and g.nodes[node_of[expr]]["placement"] == "const"


def layer_graph(mod) -> nx.DiGraph:
    """The dataflow graph of ``mod['main']``, each node annotated with where it runs.

    One node per function parameter and per binding, keyed by its position in the program (parameters
    first, then bindings in order); an edge runs from each variable's producer to every binding that
    reads it. Node attributes: ``var`` (the bound ``relax.Var``), ``name``, ``op`` (the called op's
    name, or ``None``), ``call`` (the ``relax.Call``, or ``None``) and the offload decision:
    ``placement`` (``"gemm"``, ``"host"``, ``"const"`` for a constant-only reshaping of a weight, or
    ``None`` for parameters and non-op bindings), ``layer`` (the :class:`ConvLayer` of an offloaded
    node), ``host_op`` (its key in the host op counter) and ``note``.
    """
    from tvm import relax
    from tvm.ir.expr import Constant

    g = nx.DiGraph()
    node_of: dict = {}  # relax.Var -> node
    fn = mod["main"]
    for p in fn.params:
        node_of[p] = len(g)
        g.add_node(node_of[p], var=p, name=p.name, op=None, call=None, placement=None, layer=None, host_op=None,
                   note=None)
    for blk in fn.body.blocks:
        for b in blk.bindings:
            n, v = len(g), b.value
            call = v if isinstance(v, relax.Call) and hasattr(v.op, "name") else None
            g.add_node(n, var=b.var, name=b.var.name, op=call.op.name if call is not None else None, call=call,
                       placement=None, layer=None, host_op=None, note=None)
            g.add_edges_from((node_of[u], n) for u in relax.analysis.free_vars(v))
            node_of[b.var] = n

    # The offload decision of each node, in program order: layer names and note numbers count up.
    layers = hosted = 0
    for n in program_order(g):
        d = g.nodes[n]
        v, name = d["call"], d["op"]
        if v is None:
            continue
        args_const = all(_is_const(a, g, node_of) for a in v.args if isinstance(a, (relax.Var, Constant)))
        if args_const and name in ("relax.permute_dims", "relax.reshape", "relax.astype"):
            d["placement"] = "const"
        elif name == "relax.nn.conv2d" and _is_const(v.args[1], g, node_of):
            a = v.attrs
            batch, cin, hin, win = _shape(v.args[0])
            cout, _, kh, kw = _shape(v.args[1])
            pads = [int(x) for x in a.padding]
            if int(a.groups) != 1:
                hosted += 1
                d.update(placement="host", host_op=name + " (grouped)",
                         note=f"{name} #{layers + hosted}: {HOST_REASONS[name]}")
            elif (len(set(pads)) != 1 or int(a.strides[0]) != int(a.strides[1])
                  or int(a.dilation[0]) != int(a.dilation[1])):
                hosted += 1
                d.update(placement="host", host_op=name + " (asymmetric)",
                         note=f"{name}: asymmetric padding/stride/dilation {pads}: kept on the host")
            else:
                d.update(placement="gemm", layer=ConvLayer(f"conv{layers}", cin, cout, hin, win, kh, kw,
                                                           int(a.strides[0]), pads[0], int(a.dilation[0]), batch))
                layers += 1
        elif name == "relax.matmul" and _is_const(v.args[1], g, node_of) and len(_shape(v.args[0])) == 2:
            batch, k = _shape(v.args[0])
            cout = _shape(v.args[1])[-1]
            d.update(placement="gemm", layer=ConvLayer(f"dense{layers}", k, cout, 1, 1, 1, 1, 1, 0, 1, batch))
            layers += 1
        else:
            hosted += 1
            d.update(placement="host", host_op=name)
    return g


def program_order(g: nx.DiGraph) -> list:
    """The nodes of a :func:`layer_graph` in topological order, ties broken by program position.

    Every binding reads only earlier variables, so this is exactly the program order.
    """
    return list(nx.lexicographical_topological_sort(g))


def offload_plan(mod) -> tuple[list[ConvLayer], Counter, list[str]]:
    """Offloadable layers of ``mod['main']`` in program order, host op counts, and notes."""
    g = layer_graph(mod)
    layers: list[ConvLayer] = []
    host: Counter = Counter()
    notes: list[str] = []
    for n in program_order(g):
        d = g.nodes[n]
        if d["layer"] is not None:
            layers.append(d["layer"])
        if d["host_op"] is not None:
            host[d["host_op"]] += 1
        if d["note"] is not None:
            notes.append(d["note"])
    return layers, host, notes


def compile_stats(onnx_path: str | Path, hw: dict, out_json: str | Path | None = None, shapes: dict | None = None,
                  tiling: str = "search") -> dict:
    """Import, plan the offload, lower and simulate every offloaded layer; write the stats JSON.

    ``tiling``: how each layer is tiled (:data:`explorer.accel.sim.TILINGS`): searched, or the former
    fixed rule."""
    from ..deploy.tvm_build import import_relax, load_onnx

    t0 = time.monotonic()
    p = VTAParams.from_config(hw)
    m = load_onnx(onnx_path, shapes)
    mod = import_relax(m)
    layers, host, notes = offload_plan(mod)
    per_layer = []
    tot = Counter()
    for L in layers:
        s = run_layer(L, p, tiling)
        t = plan(L, p, tiling)
        closed = math.ceil(L.n / p.batch) * math.ceil(L.cin / p.block_in) * math.ceil(L.cout / p.block_out) \
            * L.hout * L.wout * L.kh * L.kw
        bound = L.macs / (p.batch * p.block_in * p.block_out)
        d = {**s.as_json(), "layer": {"cin": L.cin, "cout": L.cout, "hin": L.hin, "win": L.win, "k": L.kh,
                                       "stride": L.stride, "pad": L.pad, "dilation": L.dilation, "hout": L.hout, "wout": L.wout, "n": L.n},
             "tiling": {"rows": t.rows, "cols": t.cols, "groups": t.groups, "ci_chunk": t.ci_chunk, "order": t.order,
                        "resident": t.resident},
             "macs": L.macs, "gemm_ops_closed_form": closed, "mac_bound_cycles": bound,
             # GEMM-bound: the GEMM core's work dominates: the DMA moves less, and the requantisation
             # on the ALU (same compute module, serialised with the GEMM) is under a quarter of it
             "gemm_bound": s.gemm_ops >= max(s.busy["load"], s.busy["store"]) and ALU_II * s.alu_ops <= 0.25 * s.gemm_ops}
        per_layer.append(d)
        for k in ("cycles", "inp_load_bytes", "wgt_load_bytes", "acc_load_bytes", "uop_load_bytes", "out_store_bytes",
                  "gemm_ops", "alu_ops", "instructions"):
            tot[k] += s.as_json()[k]
    stats = {
        "model": str(Path(onnx_path).resolve()),
        "model_sha256": m.sha256,
        "hardware": hw,
        "tiling": tiling,
        "offloaded_layers": len(layers),
        "host_ops": dict(host),
        "notes": notes,
        "layers": per_layer,
        "total": {**dict(tot), "seconds": tot["cycles"] / (p.freq_mhz * 1e6)},
        "simulate_s": round(time.monotonic() - t0, 3),
    }
    if out_json is not None:
        Path(out_json).write_text(json.dumps(stats, indent=2) + "\n")
    return stats
