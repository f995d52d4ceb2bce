"""Functional int8 execution of a model on the VTA-style core, through TVM.

The Relax module imported from ONNX is rewritten: every layer :func:`~explorer.accel.compile.offload_plan`
offloads becomes a ``call_dps_packed`` to a packed function of the simulator; the rest of the graph
stays on the host and is compiled by TVM for the CPU. Quantisation: activations per tensor,
symmetric, with the scale calibrated as max |x| over the calibration inputs; weights per output
channel, symmetric; both to the configured bit widths. The packed function quantises its input,
computes the integer convolution exactly (int8 x int8 products accumulated exactly: float64 holds
every partial sum of these sizes), and hands ``acc * s_x * s_w`` back to the host, which adds the
bias and continues in float: the semantics of an onnxruntime QDQ model with Q/DQ on the offloaded
layers' inputs and weights (see :func:`qdq_reference`).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .compile import offload_plan
from .params import VTAParams

__all__ = ["QuantizedModel", "qdq_reference", "check_against_qdq"]

_ids = itertools.count()


def _qrange(bits: int) -> tuple[int, int]:
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def quantize(x: np.ndarray, scale, bits: int) -> np.ndarray:
    lo, hi = _qrange(bits)
    return np.clip(np.round(x / scale), lo, hi)  # round half to even, as onnxruntime's QuantizeLinear


class _Layer:
    """One offloaded layer: its constant weight (OIHW, or [K, M] for dense) and attributes."""

    def __init__(self, kind, weight, stride=1, pad=0, dilation=1):
        self.kind, self.weight = kind, weight.astype(np.float64)
        self.stride, self.pad, self.dilation = stride, pad, dilation
        self.x_absmax = 0.0
        self.s_x = None
        self.s_w = None
        self.w_q = None
        self.last_x_q = None

    def float_forward(self, x):
        if self.kind == "conv":
            return F.conv2d(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(self.weight), None, self.stride,
                            self.pad, self.dilation).numpy()
        return x.astype(np.float64) @ self.weight

    def quantise_weights(self, bits):
        axes = tuple(range(1, self.weight.ndim)) if self.kind == "conv" else (0,)
        amax = np.abs(self.weight).max(axis=axes, keepdims=True)
        self.s_w = np.where(amax > 0, amax, 1.0) / _qrange(bits)[1]
        self.w_q = quantize(self.weight, self.s_w, bits)

    def int_forward(self, x, bits):
        x_q = quantize(x.astype(np.float64), self.s_x, bits)
        self.last_x_q = x_q
        if self.kind == "conv":
            acc = F.conv2d(torch.from_numpy(x_q), torch.from_numpy(self.w_q), None, self.stride, self.pad,
                           self.dilation).numpy()
            return acc * self.s_x * self.s_w.reshape(1, -1, 1, 1)
        return (x_q @ self.w_q) * self.s_x * self.s_w.reshape(1, -1)


class QuantizedModel:
    """A model whose offloaded layers run on the simulated core in int8.

    Lifecycle: construct (imports and plans), :meth:`calibrate` with sample inputs, then
    :meth:`__call__` on inputs. ``layers`` are in program order, like the offload plan.
    """

    def __init__(self, onnx_path: str | Path, hw: dict, shapes: dict | None = None):
        import tvm
        from tvm import relax
        from tvm.ir import Op
        from tvm.ir.expr import Constant
        from tvm.relax.expr_functor import PyExprMutator, mutator

        from ..deploy.tvm_build import import_relax, load_onnx

        self.p = VTAParams.from_config(hw)
        self.model = load_onnx(onnx_path, shapes)
        mod = import_relax(self.model)
        planned, self.host_ops, self.notes = offload_plan(mod)
        self.input_name = next(iter(self.model.inputs))
        self.layers: list[_Layer] = []
        uid = next(_ids)
        conv_op, matmul_op = Op.get("relax.nn.conv2d"), Op.get("relax.matmul")
        outer = self

        @mutator
        class _Offload(PyExprMutator):
            def const_value(self, e):
                if isinstance(e, Constant):
                    return e.value.numpy()
                b = self.lookup_binding(e) if isinstance(e, relax.Var) else None
                if b is not None and isinstance(b, relax.Call) and b.op == Op.get("relax.permute_dims"):
                    v = self.const_value(b.args[0])
                    return None if v is None else v.T
                return None

            def visit_call_(self, call):
                call = super().visit_call_(call)
                layer = None
                if call.op == conv_op and int(call.attrs.groups) == 1:
                    w = self.const_value(call.args[1])
                    pads = [int(v) for v in call.attrs.padding]
                    a = call.attrs
                    symmetric = (len(set(pads)) == 1 and int(a.strides[0]) == int(a.strides[1])
                                 and int(a.dilation[0]) == int(a.dilation[1]))
                    if w is not None and symmetric:
                        layer = _Layer("conv", w, int(call.attrs.strides[0]), pads[0], int(call.attrs.dilation[0]))
                elif call.op == matmul_op and len(call.args[0].ty.shape) == 2:
                    w = self.const_value(call.args[1])
                    if w is not None:
                        layer = _Layer("dense", w)
                if layer is None:
                    return call
                i = len(outer.layers)
                outer.layers.append(layer)
                name = f"explorer.vta.m{uid}.l{i}"

                def run(x, out, layer=layer):
                    a = x.numpy()
                    if outer._calibrating:
                        layer.x_absmax = max(layer.x_absmax, float(np.abs(a).max()))
                        y = layer.float_forward(a)
                    else:
                        y = layer.int_forward(a, outer.p.inp_bits)
                    out.copyfrom(y.astype("float32"))

                tvm.register_global_func(name, run, override=True)
                return relax.call_dps_packed(name, [call.args[0]], call.ty)

        m = _Offload(mod)
        for gv, func in mod.functions.items():
            if isinstance(func, relax.Function):
                m.builder_.update_func(gv, m.visit_expr(func))
        rewritten = m.builder_.get()
        if len(self.layers) != len(planned):
            from ..errors import ModelError

            raise ModelError(f"{onnx_path}: cannot run int8: the offload plan has {len(planned)} layers but only "
                             f"{len(self.layers)} have weights this rewrite can read as constants")
        self.planned = planned
        from ..deploy.tvm_build import host_target

        self.vm = relax.VirtualMachine(tvm.compile(rewritten, target=host_target()), tvm.cpu())
        self._calibrating = True
        self._tvm = tvm

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.vm["main"](self._tvm.runtime.tensor(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    def calibrate(self, samples: np.ndarray) -> None:
        """Record max |input| of every offloaded layer over ``samples`` (each a model input)."""
        self._calibrating = True
        for L in self.layers:
            L.x_absmax = 0.0
        for x in samples:
            self._run(x)
        for L in self.layers:
            L.s_x = (L.x_absmax if L.x_absmax > 0 else 1.0) / _qrange(self.p.inp_bits)[1]
            L.quantise_weights(self.p.wgt_bits)
        self._calibrating = False

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self._calibrating:
            raise RuntimeError("calibrate() first")
        return self._run(x)


def qdq_reference(q: QuantizedModel, out_path: str | Path) -> Path:
    """The same quantisation as an onnxruntime QDQ model: Q/DQ on each offloaded layer's input
    (calibrated per-tensor scale) and DQ on its int8 weight (per-channel scales).

    Offloaded layers are matched to ONNX nodes in order (Conv with group 1, Gemm/MatMul with a constant
    weight), which is the order the Relax importer emits them in.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(q.model.proto)
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    nodes = [n for n in g.node if (n.op_type == "Conv" and all(a.name != "group" or a.i == 1 for a in n.attribute)
                                   and n.input[1] in inits) or (n.op_type in ("Gemm", "MatMul") and n.input[1] in inits)]
    if len(nodes) != len(q.layers):
        raise RuntimeError(f"{len(nodes)} ONNX nodes vs {len(q.layers)} offloaded layers")
    lo, hi = _qrange(q.p.inp_bits)
    if (lo, hi) != (-128, 127):
        raise ValueError("the QDQ reference is int8: use 8-bit activations")
    new_inits, new_nodes = [], {}
    for i, (n, L) in enumerate(zip(nodes, q.layers)):
        x = n.input[0]
        s = f"vtaq{i}"
        new_inits += [numpy_helper.from_array(np.array(L.s_x, np.float32), f"{s}_sx"),
                      numpy_helper.from_array(np.array(0, np.int8), f"{s}_zx")]
        qn = helper.make_node("QuantizeLinear", [x, f"{s}_sx", f"{s}_zx"], [f"{s}_xq"])
        dq = helper.make_node("DequantizeLinear", [f"{s}_xq", f"{s}_sx", f"{s}_zx"], [f"{s}_x"])
        w_init = inits[n.input[1]]
        w = numpy_helper.to_array(w_init)
        trans_b = any(a.name == "transB" and a.i == 1 for a in n.attribute)
        if n.op_type == "Conv":
            w_q, s_w, axis = L.w_q, L.s_w.reshape(-1), 0
        else:  # our dense weight is [K, M]; ONNX stores B as [M, K] when transB
            w_q = L.w_q.T if trans_b else L.w_q
            s_w, axis = L.s_w.reshape(-1), 0 if trans_b else 1
        assert w_q.shape == w.shape, (w_q.shape, w.shape)
        new_inits += [numpy_helper.from_array(w_q.astype(np.int8), f"{s}_wq"),
                      numpy_helper.from_array(s_w.astype(np.float32), f"{s}_sw"),
                      numpy_helper.from_array(np.zeros_like(s_w, dtype=np.int8), f"{s}_zw")]
        dw = helper.make_node("DequantizeLinear", [f"{s}_wq", f"{s}_sw", f"{s}_zw"], [f"{s}_w"], axis=axis)
        n.input[0], n.input[1] = f"{s}_x", f"{s}_w"
        new_nodes[id(n)] = [qn, dq, dw]
        rank = 4 if L.kind == "conv" else 2
        g.output.append(helper.make_tensor_value_info(f"{s}_xq", TensorProto.INT8, [f"{s}_d{k}" for k in range(rank)]))
    ordered = []
    for n in g.node:
        ordered += new_nodes.get(id(n), [])
        ordered.append(n)
    del g.node[:]
    g.node.extend(ordered)
    g.initializer.extend(new_inits)
    used = {i for n in g.node for i in n.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))
    return Path(out_path)


def check_against_qdq(q: QuantizedModel, x: np.ndarray, y: np.ndarray | None, float_onnx: str | Path,
                      qdq_path: str | Path) -> dict:
    """Run ``x`` (one model input per row) through the simulated int8 model, onnxruntime's QDQ model of
    the same quantisation, and the float model; compare quantised layer inputs (in LSBs), outputs, and
    top-1 accuracy when labels ``y`` are given."""
    import onnxruntime as ort

    # onnxruntime's QuantizeLinear saturates to int8: the QDQ reference exists for 8-bit activations.
    ref = None
    if _qrange(q.p.inp_bits) == (-128, 127):
        qdq_reference(q, qdq_path)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep Q/DQ as written
        so.log_severity_level = 3
        ref = ort.InferenceSession(str(qdq_path), so, providers=["CPUExecutionProvider"])
    flt = ort.InferenceSession(str(float_onnx), providers=["CPUExecutionProvider"])
    worst_lsb = worst_out = 0.0
    hits_q = hits_f = 0
    for i in range(len(x)):
        xi = np.ascontiguousarray(x[i], dtype=np.float32)
        out = q(xi)
        if ref is not None:
            r = ref.run(None, {q.input_name: xi})
            worst_out = max(worst_out, float(np.abs(out - r[0]).max()))
            for L, xq in zip(q.layers, r[1:]):
                worst_lsb = max(worst_lsb, float(np.abs(L.last_x_q - xq.astype(np.float64)).max()))
        if y is not None:
            hits_q += int(out.reshape(-1).argmax() == y[i])
            hits_f += int(flt.run(None, {q.input_name: xi})[0].reshape(-1).argmax() == y[i])
    res = {"inputs": int(len(x))}
    if ref is not None:
        res.update({"worst_layer_input_diff_lsb": worst_lsb, "worst_output_abs_diff": worst_out})
    else:
        res["qdq_reference"] = f"none: onnxruntime's QDQ is int8, activations here are {q.p.inp_bits}-bit"
    if y is not None:
        res.update({"accuracy_int8_simulated": hits_q / len(x), "accuracy_float": hits_f / len(x)})
    return res
