"""ONNX -> TVM Relax -> a built library for a target, with a JSON card.

Every problem with the input model (truncated file, an op the Relax frontend cannot import,
dynamic input shapes without ``--shape``) is an :class:`ExplorerError` naming the problem.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from ..fsutil import atomic_path
from .schedules import database_id, resolve, subset

__all__ = ["ModelError", "OnnxModel", "load_onnx", "parse_shapes", "host_target", "cuda_target", "as_target", "target_json",
           "build", "apply_schedules", "toolchain_versions"]


@dataclass(frozen=True)
class OnnxModel:
    path: Path
    sha256: str
    inputs: dict  # name -> (shape tuple, dtype str)
    outputs: dict
    opset: int
    proto: object


#: the most elements one input may have (1 GiB of float32): a larger one is refused before anything
#: is allocated for it (a typo such as 1x3x100000x100000 would otherwise exhaust memory when run)
MAX_INPUT_ELEMENTS = 1 << 28

_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16", 11: "float64", 9: "bool"}


def parse_shapes(specs: list[str] | None) -> dict[str, tuple[int, ...]]:
    """``["input=1x1x28x28", ...]`` -> ``{"input": (1, 1, 28, 28)}``."""
    out = {}
    for s in specs or []:
        name, sep, dims = s.partition("=")
        try:
            shape = tuple(int(d) for d in dims.lower().split("x"))
        except ValueError:
            shape = ()
        if not sep or not name or not shape or min(shape) < 1:
            raise ModelError(f"--shape {s!r}: expected NAME=DxDx..., e.g. input=1x1x28x28")
        out[name] = shape
    return out


def load_onnx(path: str | os.PathLike, shapes: dict | None = None) -> OnnxModel:
    """Read and check an ONNX file; resolve every input's static shape (``shapes`` fills dynamic dims).

    Nothing in the file runs and nothing outside its folder is read:

    - Every node, in the graph, its subgraphs and the model's functions, must be of the standard
      domain (``""``/``ai.onnx``). TVM's importer dispatches on the op type alone, so a
      ``com.evil::Relu`` would otherwise be imported as a plain Relu, and a custom domain's op has no
      meaning outside the runtime that registers it.
    - Tensors with external data (a ``.onnx.data`` file beside the model, as ``torch.onnx.export``'s
      dynamo path writes) are read here, from the model's folder, into the model. Left to them, the
      ONNX checker and TVM's import (``onnx.numpy_helper.to_array`` with no base folder) resolve
      ``location`` against the process's working directory: a model in ``/downloads`` naming
      ``secret.bin`` would read ``./secret.bin``, and its own weights beside it would not be found. A
      location that is absolute, or that leaves the model's folder (``..``, a link pointing out), is
      refused before anything is opened. Data that stays in the folder is kept usable rather than
      refused, since exporters write it by default.
    """
    import onnx

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: no such ONNX file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ModelError(f"{p}: cannot read the ONNX file ({e.strerror or type(e).__name__})") from None
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:
        raise ModelError(f"{p}: not a valid ONNX file (truncated or corrupt: {type(e).__name__})") from None
    if not model.graph.node:
        raise ModelError(f"{p}: not a valid ONNX file (empty graph; truncated or corrupt?)")
    graphs = [model.graph, *model.functions]
    while graphs:  # every node: the graph's, its subgraphs' (If/Loop/Scan bodies), the model's functions'
        g = graphs.pop()
        for n in g.node:
            if n.domain not in ("", "ai.onnx"):
                raise ModelError(f"{p}: node {n.name or n.op_type!r} is op {n.op_type!r} of domain {n.domain!r}; "
                                 "only the standard ONNX domain (ai.onnx) can be imported")
            for a in n.attribute:
                graphs.extend([a.g] if a.HasField("g") else [])
                graphs.extend(a.graphs)
    from onnx.external_data_helper import ExternalDataInfo, load_external_data_for_tensor, uses_external_data

    folder, messages = p.parent.resolve(), [model]
    while messages:  # every TensorProto anywhere in the model: initializers, attributes, sparse tensors, subgraphs
        msg = messages.pop()
        if not isinstance(msg, onnx.TensorProto):
            for fd, v in msg.ListFields():
                if fd.message_type is not None:  # a message, or a repeated field of them
                    messages.append(v) if hasattr(v, "ListFields") else messages.extend(v)
            continue
        if not uses_external_data(msg):
            continue
        try:
            loc = ExternalDataInfo(msg).location
            inside = not os.path.isabs(loc) and loc != "" and (folder / loc).resolve().is_relative_to(folder)
        except (ValueError, OSError, RuntimeError):
            loc, inside = "?", False
        if not inside:
            raise ModelError(f"{p}: tensor {msg.name!r} names external data {loc!r} outside the model's folder; "
                             "only data files beside the .onnx are read")
        try:
            load_external_data_for_tensor(msg, str(folder))
        except Exception as e:
            lines = str(e).strip().splitlines()
            raise ModelError(f"{p}: external data {loc!r} of tensor {msg.name!r} cannot be read "
                             f"({lines[0] if lines else type(e).__name__})") from None
    newest = onnx.defs.onnx_opset_version()
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx") and not 1 <= o.version <= newest:
            raise ModelError(f"{p}: opset {o.version} of the default domain is not one this onnx {onnx.__version__} "
                             f"knows (1 to {newest}); export it again with an opset in that range")
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise ModelError(f"{p}: ONNX checker rejects the model: {str(e).splitlines()[0]}") from None
    shapes = dict(shapes or {})
    inits = {i.name for i in model.graph.initializer}
    inputs = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dims = []
        for d in tt.shape.dim:
            dims.append(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None)
        if vi.name in shapes:
            given = shapes.pop(vi.name)
            if len(given) != len(dims) or any(a is not None and a != b for a, b in zip(dims, given)):
                raise ModelError(f"--shape {vi.name}: {given} does not match the model's {tuple(dims)}")
            dims = list(given)
        if any(d is None for d in dims):
            shown = "x".join("?" if d is None else str(d) for d in dims)
            raise ModelError(
                f"{p}: input {vi.name!r} has a dynamic shape {shown}; give it with --shape {vi.name}=" +
                "x".join("1" if d is None else str(d) for d in dims)
            )
        if math.prod(dims) > MAX_INPUT_ELEMENTS:
            raise ModelError(f"{p}: input {vi.name!r} of shape {'x'.join(map(str, dims))} is too large "
                             f"({math.prod(dims):.3g} elements; at most {MAX_INPUT_ELEMENTS:.3g})")
        inputs[vi.name] = (tuple(dims), _DTYPES.get(tt.elem_type, "float32"))
    if shapes:
        raise ModelError(f"--shape names {sorted(shapes)} are not inputs of the model; inputs: {sorted(inputs)}")
    outputs = {}
    for vo in model.graph.output:
        tt = vo.type.tensor_type
        outputs[vo.name] = ([d.dim_value if d.dim_value > 0 else None for d in tt.shape.dim], _DTYPES.get(tt.elem_type, "float32"))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return OnnxModel(p, hashlib.sha256(data).hexdigest(), inputs, outputs, opset, model)


#: channel block of the NCHWc layout: 8 float32 lanes, one AVX2 register (half an AVX-512 one). A
#: convolution whose channels do not divide by it (a first layer's 3 input channels) stays in NCHW.
NCHWC_BLOCK = 8

#: data layouts for the convolutions of a build (the model's inputs and outputs keep theirs):
#: ONNX's NCHW, NHWC (channels innermost: what MetaSchedule vectorises over for 1x1 and depthwise
#: convolutions), or NCHWc (channels in blocks of :data:`NCHWC_BLOCK` innermost, the layout
#: onnxruntime's MLAS kernels use), converted by Relax's ConvertLayout before tuning and building
LAYOUTS = {"NCHW": None, "NHWC": ["NHWC", "OHWI"], "NCHWc": [f"NCHW{NCHWC_BLOCK}c", f"OIHW{NCHWC_BLOCK}o"]}


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ModelError(f"--layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    return layout


def _legalize_conv2d_blocked(bb, call):
    """Lower a ``relax.nn.conv2d`` in NCHW{b}c / OIHW{b}o (what :func:`to_nchwc` leaves) to TOPI's
    blocked computes: ``conv2d_NCHWc`` (kernel relaid to OIHW{b}i{b}o, folded at build time: it is a
    constant) or ``depthwise_conv2d_NCHWc`` (kernel OIHW1i{b}o). A grouped convolution that is
    neither goes through NCHW. Convolutions in other layouts keep TVM's own lowering."""
    from tvm import ir, topi

    a = call.attrs
    data_layout, kernel_layout = str(a.data_layout), str(a.kernel_layout)
    if data_layout == "NCHW" or not data_layout.startswith("NCHW") or not kernel_layout.startswith("OIHW"):
        return ir.Op.get("relax.nn.conv2d").get_attr("FLegalize")(bb, call)
    out_layout = str(a.out_layout) or data_layout
    dtype = call.ty.dtype
    data_shape = [int(d) for d in call.args[0].ty.shape]
    channels = data_shape[1] * data_shape[4]
    groups = int(a.groups)
    kw = dict(stride=[int(s) for s in a.strides], padding=[int(p) for p in a.padding],
              dilation=[int(d) for d in a.dilation], layout=data_layout, out_layout=out_layout, out_dtype=dtype)
    blk = data_layout[4:-1]
    out_blk = out_layout[4:-1]
    if groups == 1:
        kernel = bb.emit_te(topi.layout_transform, call.args[1], kernel_layout, f"OIHW{blk}i{out_blk}o",
                            primfunc_name_hint="kernel_to_blocked")
        return bb.call_te(topi.nn.conv2d_NCHWc, call.args[0], kernel, primfunc_name_hint="conv2d_NCHWc", **kw)
    out_channels = [int(d) for d in call.args[1].ty.shape]
    if groups == channels and out_channels[0] * out_channels[4] == channels and blk == out_blk:
        # topi.nn.depthwise_conv2d_NCHWc is a stub in TVM 0.27 (its x86 compute went with Relay)
        return bb.call_te(depthwise_conv2d_nchwc, call.args[0], call.args[1], kw["stride"], kw["padding"],
                          kw["dilation"], dtype, primfunc_name_hint="depthwise_conv2d_NCHWc")
    data = bb.emit_te(topi.layout_transform, call.args[0], data_layout, "NCHW", primfunc_name_hint="data_to_nchw")
    kernel = bb.emit_te(topi.layout_transform, call.args[1], kernel_layout, "OIHW", primfunc_name_hint="kernel_to_oihw")
    out = bb.emit_te(topi.nn.conv, data, kernel, kw["stride"], kw["padding"], kw["dilation"], groups, "NCHW", "OIHW",
                     out_dtype=dtype, primfunc_name_hint="conv2d_grouped")
    return bb.call_te(topi.layout_transform, out, "NCHW", out_layout, primfunc_name_hint="out_to_blocked")


def depthwise_conv2d_nchwc(data, kernel, stride, padding, dilation, out_dtype):
    """Depthwise convolution in NCHW{b}c: ``data`` (N, C/b, H, W, b), ``kernel`` (C/b, 1, KH, KW, b)
    (OIHW{b}o of a depthwise kernel), ``padding`` (top, left, bottom, right)."""
    from tvm import te, topi

    n, cc, h, w, b = (int(d) for d in data.shape)
    _, _, kh, kw, _ = (int(d) for d in kernel.shape)
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = stride, dilation, padding
    oh = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    ow = (w + pl + pr - (kw - 1) * dw - 1) // sw + 1
    padded = topi.nn.pad(data, (0, 0, pt, pl, 0), (0, 0, pb, pr, 0), name="data_pad") if pt or pl or pb or pr else data
    ry, rx = te.reduce_axis((0, kh), name="ry"), te.reduce_axis((0, kw), name="rx")
    return te.compute(
        (n, cc, oh, ow, b),
        lambda i, c, y, x, k: te.sum(padded[i, c, y * sh + ry * dh, x * sw + rx * dw, k].astype(out_dtype)
                                     * kernel[c, 0, ry, rx, k].astype(out_dtype), axis=[ry, rx]),
        name="depthwise_conv2d_NCHWc", tag="depthwise_conv2d_NCHWc")


def clip_to_ops(mod):
    """ONNX's Clip (ReLU6) as Relax's maximum/minimum ops: the ONNX importer emits it as two opaque
    TE kernels, which stop ConvertLayout (the data would be converted back to NCHW around every
    activation). A ``call_tir`` of a ``maximum``/``minimum`` kernel with a scalar bound (folded to a
    constant first) becomes the Relax op; kernels no longer called are dropped."""
    import tvm
    from tvm import relax

    mod = relax.transform.FoldConstant()(relax.transform.DecomposeOpsForInference()(mod))

    @relax.expr_functor.mutator
    class _ClipToOps(relax.PyExprMutator):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            if isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.call_tir" \
                    and isinstance(call.args[0], tvm.ir.GlobalVar) and isinstance(call.args[1], relax.Tuple):
                base, args = call.args[0].name_hint.rstrip("0123456789"), call.args[1].fields
                if base in ("maximum", "minimum") and len(args) == 2 and isinstance(args[1], tvm.ir.expr.Constant) \
                        and len(args[1].ty.shape) == 0:
                    return (relax.op.maximum if base == "maximum" else relax.op.minimum)(args[0], args[1])
            return call

    mut = _ClipToOps(mod)
    for gv, f in mod.functions.items():
        if isinstance(f, relax.Function):
            mut.builder_.update_func(gv, mut.visit_expr(f))
    return relax.transform.DeadCodeElimination()(mut.builder_.get())


def to_nchwc(mod):
    """Convolutions (and the elementwise ops between them) in the blocked NCHW{b}c layout, lowered to
    TOPI's NCHWc computes: Relax's ConvertLayout to NCHW{b}c / OIHW{b}o, then a LegalizeOps whose
    conv2d is :func:`_legalize_conv2d_blocked` (the route TVM's own Adreno pipeline takes). Returns a
    module whose operators are all lowered to TIR."""
    import tvm
    from tvm import relax

    mod = relax.transform.ConvertLayout({"relax.nn.conv2d": LAYOUTS["NCHWc"]})(clip_to_ops(mod))
    mod = relax.transform.Normalize()(mod)
    # topi.nn.conv2d_NCHWc asks for a current target (and does not use it): the module is not yet
    # bound to one, the kernels are the same for every CPU
    with tvm.target.Target.current(allow_none=True) or tvm.target.Target({"kind": "llvm"}):
        return relax.transform.LegalizeOps({"relax.nn.conv2d": _legalize_conv2d_blocked})(mod)


def import_relax(m: OnnxModel, layout: str = "NCHW", prepack: bool = False):
    """Relax IRModule of the model, its convolutions in ``layout`` (:data:`LAYOUTS`); ops the
    frontend cannot import are named in the error. ``prepack``: constant weights are laid out for
    the tuned kernels once, at build time (:func:`lower_for_schedules`); the choice travels with the
    module (its ``explorer_prepack`` attribute), so tuning and building see the same kernels."""
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    check_layout(layout)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mod = from_onnx(m.proto, shape_dict={k: list(v[0]) for k, v in m.inputs.items()},
                            dtype_dict={k: v[1] for k, v in m.inputs.items()})
            if layout == "NCHWc":
                mod = to_nchwc(mod)
            elif LAYOUTS[layout]:
                mod = relax.transform.ConvertLayout({"relax.nn.conv2d": LAYOUTS[layout]})(clip_to_ops(mod))
    except tvm.error.OpNotImplemented as e:
        raise ModelError(f"{m.path}: TVM cannot import this model: {str(e).strip().splitlines()[-1]}") from None
    except Exception as e:
        msg = str(e).strip().splitlines()
        raise ModelError(f"{m.path}: TVM's ONNX import failed: {msg[-1] if msg else type(e).__name__}") from None
    return with_prepack(mod, prepack)


def with_prepack(mod, prepack: bool = True):
    """The module marked for weight prepacking (or not): see :func:`lower_for_schedules`."""
    return mod.with_attr("explorer_prepack", bool(prepack))


def prepacked(mod) -> bool:
    return bool(mod.attrs is not None and "explorer_prepack" in mod.attrs and bool(mod.attrs["explorer_prepack"]))


def host_target(num_cores: int | None = None):
    """The host CPU as a TVM target (detected ``mtriple``/``mcpu``; ``num-cores`` set, tuning needs it)."""
    import tvm
    from tvm.target import Target, detect_target

    host = detect_target.detect_target_from_device(tvm.cpu())
    cfg = {k: v for k, v in json.loads(str(host)).items() if k in ("kind", "mtriple", "mcpu")}
    cfg["num-cores"] = int(num_cores or os.cpu_count() or 1)
    return Target(cfg)


def cuda_target(arch: str | None = None):
    """An NVIDIA GPU as a TVM target (``arch``, default sm_80; host code for the host CPU)."""
    from tvm.target import Target

    return Target({"kind": "cuda", "arch": arch or "sm_80"}, host="llvm")


def export_library(ex, path, cc: str | None = None) -> None:
    """Write a compiled module as a shared library; ``cc`` names a (cross) C++ compiler for a device
    of another architecture (e.g. ``aarch64-linux-gnu-g++``), else the host's is used. A compiler
    that fails is a :class:`~explorer.errors.ModelError` with its last line."""
    from ..errors import ModelError

    kw = {}
    if cc:
        from tvm.support import cc as tvm_cc  # (tvm.contrib.cc before 0.2x)

        kw["fcompile"] = tvm_cc.cross_compiler(cc)
    try:
        ex.export_library(str(path), **kw)
    except Exception as e:  # noqa: BLE001 - the compiler's failure, as one line
        lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
        raise ModelError(f"linking the library with {cc or 'the host compiler'} failed: "
                         f"{lines[-1][:300] if lines else type(e).__name__}") from None


def as_target(target, num_cores: int | None = None):
    """A TVM target from a Target or its JSON dict; ``num_cores`` replaces a CPU target's ``num-cores``."""
    from tvm.target import Target

    if isinstance(target, Target):
        target = json.loads(str(target)) if str(target).startswith("{") else target
    if isinstance(target, dict):
        target = dict(target)
        if num_cores and "num-cores" in target:
            target["num-cores"] = int(num_cores)
        host = target.pop("host", None)
        return Target(target, host=host) if host else Target(target)
    return Target(target)


def target_json(target) -> dict:
    """A TVM target as a JSON-able dict (to pass to a child process)."""
    return json.loads(str(target)) if str(target).startswith("{") else {"kind": str(target)}


def toolchain_versions() -> dict:
    import onnx
    import tvm

    out = {"tvm": tvm.__version__, "onnx": onnx.__version__}
    try:
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return out


def workloads(mod) -> list[str]:
    """Names of the primitive (TIR) functions after legalisation: the module's distinct kernels."""
    import tvm
    from tvm import relax

    seq = tvm.transform.Sequential([relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
                                    relax.transform.FuseOps(), relax.transform.FuseTIR()])
    lowered = seq(mod)
    return sorted(gv.name_hint for gv, f in lowered.functions.items() if isinstance(f, tvm.tirx.PrimFunc))


def lower_for_schedules(mod, prepack: bool | None = None):
    """The module's operators lowered to TIR and fused: the kernels MetaSchedule tunes and its
    database is applied to. With ``prepack`` (default: the module's mark, :func:`import_relax`),
    each kernel's constant weights are marked layout-free (``AttachAttrLayoutFreeBuffers``): a
    tuned schedule may then lay them out as it reads them best, and :func:`finish_prepack` moves that
    relayout out of the kernel into the build (these are other workloads than without prepack)."""
    import tvm
    from tvm import relax

    prepack = prepacked(mod) if prepack is None else prepack
    return tvm.transform.Sequential([
        relax.transform.DecomposeOpsForInference(), relax.transform.LegalizeOps(),
        relax.transform.AnnotateTIROpPattern(), relax.transform.FoldConstant(), relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
        *([relax.transform.CanonicalizeBindings(), relax.transform.AttachAttrLayoutFreeBuffers()] if prepack else [])])(mod)


_lower_for_schedules = lower_for_schedules


def finish_prepack(mod):
    """After the schedules are applied: the weight relayouts they carry (MetaSchedule's layout
    rewrite) split into kernels of their own and folded into the constants, once, at build time
    (``SplitLayoutRewritePreproc``, ``LiftTransformParams``, ``FoldConstant``: TVM's
    ``static_shape_tuning_pipeline(cpu_weight_prepack=True)`` for a model whose weights are constants,
    so the library's interface is unchanged)."""
    import tvm
    from tvm import relax

    return tvm.transform.Sequential([relax.transform.SplitLayoutRewritePreproc(), relax.transform.LiftTransformParams(),
                                     relax.transform.FoldConstant(), relax.transform.DeadCodeElimination()])(mod)


def apply_schedules(mod, target, database):
    """Apply MetaSchedule JSON databases (a folder, or a list of folders, see
    :mod:`explorer.deploy.schedules`) to the module's kernels: only records tuned for this target's
    :func:`~explorer.deploy.schedules.target_key`. Returns (lowered module, use) where ``use`` says
    ``scheduled`` (kernels with a schedule tuned for this target), ``kernels``, ``warm_start_only``
    (kernels whose only records were tuned for another target: left untuned) and ``other_keys``."""
    import tempfile

    import tvm_ffi
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    from .schedules import check_target, open_database, resolve, target_key

    dbs = resolve(database if isinstance(database, (list, tuple)) else Path(database), "")
    prepack = prepacked(mod)
    mod = lower_for_schedules(mod, prepack)
    wanted = {str(tvm_ffi.structural_hash(t.dispatched[0])) for t in ms.relax_integration.extract_tasks(mod, target)}
    shown = ", ".join(map(str, dbs))
    key = target_key(target)
    with tempfile.TemporaryDirectory() as tmp:
        wl, rec, others = subset(wanted, dbs, Path(tmp), key=key)
        check_target({k for ks in others.values() for k in ks}, target, shown)
        with target, open_database(wl, rec, shown):
            mod = relax.transform.MetaScheduleApplyDatabase()(mod)
        if prepack:
            mod = finish_prepack(mod)
        hashes = [line[2:].split('"', 1)[0] for line in wl.read_text().splitlines()]
        with_own = {hashes[int(line[1 : line.index(",")])] for line in rec.read_text().splitlines() if line.startswith("[")}
    done, total = scheduled_kernels(mod)
    use = {"key": key, "scheduled": done, "kernels": total,
           "warm_start_only": len(set(others) - with_own),
           "other_keys": sorted({k for ks in others.values() for k in ks})}
    return mod, use


def scheduled_kernels(mod) -> tuple[int, int]:
    """(kernels with a tuned schedule, all kernels) of a lowered module."""
    import tvm

    fs = [f for _, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)]
    return sum(1 for f in fs if f.attrs is not None and bool(f.attrs.get("tirx.is_scheduled", False))), len(fs)


def build(m: OnnxModel, target, out_lib: str | os.PathLike, database=None, target_name: str = "",
          layout: str = "NCHW", cc: str | None = None, prepack: bool = False) -> dict:
    """Build ``m`` for the TVM ``target`` (a Target or its JSON dict) and write ``out_lib`` (.so) plus
    ``<out_lib>.json`` (the card); ``target_name`` is the explorer target it is for.

    The schedule databases (``database``: a folder, a list, ``"none"``, or ``None`` for the defaults
    of :func:`explorer.deploy.schedules.default_databases`) are applied to every kernel they cover;
    the card says which databases and how many kernels. ``layout`` and ``prepack`` (see
    :func:`import_relax`) must be those the schedules were tuned with: other layouts and prepacking
    make other kernels.
    """
    import tvm

    mod = import_relax(m, layout, prepack)
    target = as_target(target)
    databases = resolve(database, target_name)
    from .schedules import target_key

    use = {"key": target_key(target), "scheduled": 0, "warm_start_only": 0, "other_keys": []}
    if databases:
        mod, use = apply_schedules(mod, target, databases)
    scheduled = use["scheduled"]
    t0 = time.monotonic()
    try:
        ex = tvm.compile(mod, target=target)
    except Exception as e:
        msg = str(e).strip().splitlines()
        raise ModelError(f"{m.path}: TVM build for {target_name or target.kind.name} failed: {msg[-1] if msg else type(e).__name__}") from None
    build_s = time.monotonic() - t0
    out_lib = Path(out_lib)
    out_lib.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_lib, suffix=".tmp.so") as tmp:  # the linker reads the extension
        export_library(ex, tmp, cc)
    card = {
        "model": str(m.path.resolve()),
        "model_sha256": m.sha256,
        "target": json.loads(str(target)) if str(target).startswith("{") else str(target),
        "target_kind": target_name,
        "inputs": {k: {"shape": list(v[0]), "dtype": v[1]} for k, v in m.inputs.items()},
        "outputs": {k: {"shape": v[0], "dtype": v[1]} for k, v in m.outputs.items()},
        "opset": m.opset,
        "layout": layout,
        **({"layout_block": NCHWC_BLOCK} if layout == "NCHWc" else {}),
        # constant weights laid out for the tuned kernels at build time (only kernels with a tuned
        # schedule that rewrites a weight's layout are changed by it: prepacked_kernels)
        "prepack": bool(prepack),
        "prepacked_kernels": sum(1 for gv, f in mod.functions.items()
                                 if isinstance(f, tvm.tirx.PrimFunc) and gv.name_hint.endswith("_prepacked")),
        "toolchain": toolchain_versions(),
        "workloads": workloads(mod) if not databases else sorted(
            gv.name_hint for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)),
        "schedule_database": os.pathsep.join(map(str, databases)) or None,
        "schedule_databases": [str(d) for d in databases],
        "schedule_database_id": database_id(databases),
        "scheduled_kernels": scheduled,
        # what the schedules were tuned for; kernels whose only schedules are another target's run
        # untuned (those schedules only seed tuning: `explorer tune`, `explorer deploy`)
        "schedule_key": use["key"],
        "warm_start_only_kernels": use["warm_start_only"],
        "other_schedule_keys": use["other_keys"],
        # every kernel runs a schedule tuned for this target: what the store's `tuned` flag records
        "tuned": bool(databases) and scheduled == scheduled_kernels(mod)[1] and scheduled > 0,
        "build_s": round(build_s, 3),
        "library": str(out_lib),
    }
    card_path = out_lib.with_suffix(out_lib.suffix + ".json")
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card
