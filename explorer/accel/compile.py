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

from .params import VTAParams
from .sim import ALU_II, ConvLayer, run_layer

__all__ = ["offload_plan", "compile_stats"]

HOST_REASONS = {
    "relax.nn.conv2d": "grouped/depthwise convolution: the GEMM core needs whole BLOCK_IN input-channel blocks",
}


def _shape(expr) -> tuple[int, ...]:
    return tuple(int(d) for d in expr.ty.shape)


def _is_const(expr, consts: dict) -> bool:
    from tvm import relax
    from tvm.ir.expr import Constant

    return isinstance(expr, Constant) or (isinstance(expr, relax.Var) and consts.get(expr, False))


def offload_plan(mod) -> tuple[list[ConvLayer], Counter, list[str]]:
    """Offloadable layers of ``mod['main']`` in program order, host op counts, and notes."""
    from tvm import relax
    from tvm.ir.expr import Constant

    layers: list[ConvLayer] = []
    host: Counter = Counter()
    notes: list[str] = []
    consts: dict = {}  # vars computed only from constants (e.g. a transposed weight)
    for blk in mod["main"].body.blocks:
        for b in blk.bindings:
            v = b.value
            if not isinstance(v, relax.Call) or not hasattr(v.op, "name"):
                continue
            name = v.op.name
            args_const = all(_is_const(a, consts) for a in v.args if isinstance(a, (relax.Var, Constant)))
            if args_const and name in ("relax.permute_dims", "relax.reshape", "relax.astype"):
                consts[b.var] = True
                continue
            if name == "relax.nn.conv2d" and _is_const(v.args[1], consts):
                a = v.attrs
                n, cin, hin, win = _shape(v.args[0])
                cout, _, kh, kw = _shape(v.args[1])
                pads = [int(x) for x in a.padding]
                if int(a.groups) != 1:
                    host[name + " (grouped)"] += 1
                    notes.append(f"{name} #{len(layers) + sum(host.values())}: {HOST_REASONS[name]}")
                    continue
                if len(set(pads)) != 1 or int(a.strides[0]) != int(a.strides[1]) or int(a.dilation[0]) != int(a.dilation[1]):
                    host[name + " (asymmetric)"] += 1
                    notes.append(f"{name}: asymmetric padding/stride/dilation {pads}: kept on the host")
                    continue
                layers.append(ConvLayer(f"conv{len(layers)}", cin, cout, hin, win, kh, kw, int(a.strides[0]), pads[0],
                                        int(a.dilation[0]), n))
            elif name == "relax.matmul" and _is_const(v.args[1], consts) and len(_shape(v.args[0])) == 2:
                n, k = _shape(v.args[0])
                cout = _shape(v.args[1])[-1]
                layers.append(ConvLayer(f"dense{len(layers)}", k, cout, 1, 1, 1, 1, 1, 0, 1, n))
            else:
                host[name] += 1
    return layers, host, notes


def compile_stats(onnx_path: str | Path, hw: dict, out_json: str | Path | None = None, shapes: dict | None = None) -> dict:
    """Import, plan the offload, lower and simulate every offloaded layer; write the stats JSON."""
    from ..deploy.tvm_build import import_relax, load_onnx

    t0 = time.monotonic()
    p = VTAParams.from_config(hw)
    m = load_onnx(onnx_path, shapes)
    mod = import_relax(m)
    layers, host, notes = offload_plan(mod)
    per_layer = []
    tot = Counter()
    for L in layers:
        s = run_layer(L, p)
        closed = math.ceil(L.n / p.batch) * math.ceil(L.cin / p.block_in) * math.ceil(L.cout / p.block_out) \
            * L.hout * L.wout * L.kh * L.kw
        bound = L.macs / (p.batch * p.block_in * p.block_out)
        d = {**s.as_json(), "layer": {"cin": L.cin, "cout": L.cout, "hin": L.hin, "win": L.win, "k": L.kh,
                                       "stride": L.stride, "pad": L.pad, "hout": L.hout, "wout": L.wout, "n": L.n},
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
