"""ONNX -> TVM Relax -> a built library for a target, with a JSON card.

Every problem with the input model (truncated file, an op the Relax frontend cannot import,
dynamic input shapes without ``--shape``) is an :class:`ExplorerError` naming the problem.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import ExplorerError

__all__ = ["ModelError", "OnnxModel", "load_onnx", "parse_shapes", "make_target", "build", "toolchain_versions"]


class ModelError(ExplorerError):
    """The ONNX model cannot be read, imported or built."""


@dataclass(frozen=True)
class OnnxModel:
    path: Path
    sha256: str
    inputs: dict  # name -> (shape tuple, dtype str)
    outputs: dict
    opset: int
    proto: object


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
    """Read and check an ONNX file; resolve every input's static shape (``shapes`` fills dynamic dims)."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: no such ONNX file")
    data = p.read_bytes()
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:
        raise ModelError(f"{p}: not a valid ONNX file (truncated or corrupt: {type(e).__name__})") from None
    if not model.graph.node:
        raise ModelError(f"{p}: not a valid ONNX file (empty graph; truncated or corrupt?)")
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
        inputs[vi.name] = (tuple(dims), _DTYPES.get(tt.elem_type, "float32"))
    if shapes:
        raise ModelError(f"--shape names {sorted(shapes)} are not inputs of the model; inputs: {sorted(inputs)}")
    outputs = {}
    for vo in model.graph.output:
        tt = vo.type.tensor_type
        outputs[vo.name] = ([d.dim_value if d.dim_value > 0 else None for d in tt.shape.dim], _DTYPES.get(tt.elem_type, "float32"))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return OnnxModel(p, hashlib.sha256(data).hexdigest(), inputs, outputs, opset, model)


def import_relax(m: OnnxModel):
    """Relax IRModule of the model; ops the frontend cannot import are named in the error."""
    import tvm
    from tvm.relax.frontend.onnx import from_onnx

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return from_onnx(m.proto, shape_dict={k: list(v[0]) for k, v in m.inputs.items()},
                             dtype_dict={k: v[1] for k, v in m.inputs.items()})
    except tvm.error.OpNotImplemented as e:
        raise ModelError(f"{m.path}: TVM cannot import this model: {str(e).strip().splitlines()[-1]}") from None
    except Exception as e:
        msg = str(e).strip().splitlines()
        raise ModelError(f"{m.path}: TVM's ONNX import failed: {msg[-1] if msg else type(e).__name__}") from None


def make_target(kind: str, num_cores: int | None = None, arch: str | None = None):
    """A TVM target: the host CPU (detected, ``num-cores`` set) or CUDA (``arch``, host llvm)."""
    import tvm
    from tvm.target import Target

    if kind == "cpu":
        from tvm.target import detect_target

        host = detect_target.detect_target_from_device(tvm.cpu())
        cfg = {k: v for k, v in json.loads(str(host)).items() if k in ("kind", "mtriple", "mcpu")}
        cfg["num-cores"] = int(num_cores or os.cpu_count() or 1)
        return Target(cfg)
    if kind in ("gpu", "cuda"):
        return Target({"kind": "cuda", "arch": arch or "sm_80"}, host="llvm")
    raise ModelError(f"unknown compile target {kind!r}; valid: cpu, gpu")


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


SCHEDULES_DIR = Path(__file__).resolve().parent.parent.parent / "schedules"


def _lower_for_schedules(mod):
    import tvm
    from tvm import relax

    return tvm.transform.Sequential([
        relax.transform.DecomposeOpsForInference(), relax.transform.LegalizeOps(),
        relax.transform.AnnotateTIROpPattern(), relax.transform.FoldConstant(), relax.transform.FuseOps(),
        relax.transform.FuseTIR()])(mod)


def apply_schedules(mod, target, database: str | os.PathLike):
    """Apply a MetaSchedule JSON database (a folder with database_workload.json and
    database_tuning_record.json) to the module's kernels. Returns (module, kernels scheduled)."""
    from tvm import relax

    d = Path(database)
    wl, rec = d / "database_workload.json", d / "database_tuning_record.json"
    if not (wl.is_file() and rec.is_file()):
        raise ModelError(f"{d}: not a schedule database (needs database_workload.json and database_tuning_record.json)")
    mod = _lower_for_schedules(mod)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        wl, rec = _subset_database(mod, target, wl, rec, Path(tmp))
        with target, open_database(wl, rec, d):
            mod = relax.transform.MetaScheduleApplyDatabase()(mod)
    return mod, scheduled_kernels(mod)[0]


def open_database(wl: Path, rec: Path, shown: Path, allow_missing: bool = False):
    """MetaSchedule's JSONDatabase over two files; an unreadable one is one error naming ``shown``."""
    from tvm.s_tir import meta_schedule as ms

    try:
        return ms.database.JSONDatabase(str(wl), str(rec), allow_missing=allow_missing, module_equality="structural")
    except Exception as e:
        msg = (str(e).strip().splitlines() or [type(e).__name__])[-1]
        raise ModelError(f"{shown}: not a readable schedule database ({msg[:200]})") from None


def _subset_database(lowered, target, wl: Path, rec: Path, out: Path) -> tuple[Path, Path]:
    """The database's entries for this module's kernels only, written to ``out``.

    A database for a whole search space holds hundreds of kernels (tens of MB, ~7 s to load);
    a model needs a dozen. Workload lines start with MetaSchedule's structural hash, so the
    model's kernels are found without deserialising the others.
    """
    import tvm_ffi
    from tvm.s_tir import meta_schedule as ms

    wanted = {str(tvm_ffi.structural_hash(t.dispatched[0])) for t in ms.relax_integration.extract_tasks(lowered, target)}
    remap, wl_lines = {}, []
    for i, line in enumerate(x for x in wl.read_text().splitlines() if x.strip()):
        h = line[2 : line.find('"', 2)] if line.startswith('["') else None
        if h in wanted:
            remap[i] = len(wl_lines)
            wl_lines.append(line)
    rec_lines = []
    for line in rec.read_text().splitlines():
        head, sep, rest = line.partition(",")
        try:
            idx = int(head.strip().lstrip("["))
        except ValueError:
            continue
        if sep and idx in remap:
            rec_lines.append(f"[{remap[idx]},{rest}")
    (out / "w.json").write_text("".join(x + "\n" for x in wl_lines))
    (out / "r.json").write_text("".join(x + "\n" for x in rec_lines))
    return out / "w.json", out / "r.json"


def database_id(database: str | os.PathLike | None) -> str | None:
    """Identity of a schedule database's contents (hash of its two files), or None."""
    if database is None:
        return None
    h = hashlib.sha256()
    for name in ("database_workload.json", "database_tuning_record.json"):
        f = Path(database) / name
        h.update(f.read_bytes() if f.is_file() else b"")
    return h.hexdigest()[:16]


def scheduled_kernels(mod) -> tuple[int, int]:
    """(kernels with a tuned schedule, all kernels) of a lowered module."""
    import tvm

    fs = [f for _, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)]
    return sum(1 for f in fs if f.attrs is not None and bool(f.attrs.get("tirx.is_scheduled", False))), len(fs)


def default_database(target_kind: str) -> Path | None:
    """``schedules/<target>/`` when it holds a database."""
    d = SCHEDULES_DIR / target_kind
    return d if (d / "database_workload.json").is_file() else None


def build(m: OnnxModel, target_kind: str, out_lib: str | os.PathLike, num_cores: int | None = None,
          arch: str | None = None, database: str | os.PathLike | None = None) -> dict:
    """Build ``m`` for the target and write ``out_lib`` (.so) plus ``<out_lib>.json`` (the card).

    The target's schedule database (``database``, else ``schedules/<target>/`` when present) is
    applied to every kernel it covers; the card says which database and how many kernels.
    """
    import tvm

    mod = import_relax(m)
    target = make_target(target_kind, num_cores, arch)
    if isinstance(database, str) and database.lower() == "none":  # untuned on purpose (e.g. to compare)
        database = None
    else:
        database = database or default_database(target_kind)
    scheduled = 0
    if database is not None:
        mod, scheduled = apply_schedules(mod, target, database)
    t0 = time.monotonic()
    try:
        ex = tvm.compile(mod, target=target)
    except Exception as e:
        msg = str(e).strip().splitlines()
        raise ModelError(f"{m.path}: TVM build for {target_kind} failed: {msg[-1] if msg else type(e).__name__}") from None
    build_s = time.monotonic() - t0
    out_lib = Path(out_lib)
    out_lib.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_lib.with_name(out_lib.name + ".tmp.so")
    ex.export_library(str(tmp))
    os.replace(tmp, out_lib)
    card = {
        "model": str(m.path.resolve()),
        "model_sha256": m.sha256,
        "target": json.loads(str(target)) if str(target).startswith("{") else str(target),
        "target_kind": target_kind,
        "inputs": {k: {"shape": list(v[0]), "dtype": v[1]} for k, v in m.inputs.items()},
        "outputs": {k: {"shape": v[0], "dtype": v[1]} for k, v in m.outputs.items()},
        "opset": m.opset,
        "toolchain": toolchain_versions(),
        "workloads": workloads(mod) if database is None else sorted(
            gv.name_hint for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)),
        "schedule_database": str(database) if database else None,
        "schedule_database_id": database_id(database),
        "scheduled_kernels": scheduled,
        # every kernel runs a tuned schedule: what the store's `tuned` flag records
        "tuned": bool(database) and scheduled == scheduled_kernels(mod)[1] and scheduled > 0,
        "build_s": round(build_s, 3),
        "library": str(out_lib),
    }
    card_path = out_lib.with_suffix(out_lib.suffix + ".json")
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card
