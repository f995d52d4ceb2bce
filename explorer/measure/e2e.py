"""End-to-end latency of one derived design on a CPU/GPU, in worker processes.

Two halves, so that the timing can run while nothing else does (see
:class:`~explorer.measure.background.BackgroundMeasurer`):

* :func:`build_design` takes ``{"design": ..., "batch": B, "threads": T, "target": TVM target JSON,
  "database": [schedule folders] or None, "out_dir": folder}``, builds the network (latency does not
  depend on the weights), exports it to ONNX, compiles it with TVM into ``out_dir`` and returns the
  library, its inputs and its tuning state;
* :func:`time_library` times a built library (``{"lib": ..., "inputs": ..., "repeat", "number",
  "device_type", "kernels": bool}``; with ``kernels`` also every kernel alone).

:func:`measure` does both in one call (tools, and the final check of a search).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

__all__ = ["build_design", "time_library", "measure", "tuning_state", "warm_up", "tune_design"]


def tuning_state(scheduled: int, kernels: int) -> str:
    """How the measured code was scheduled: "tuned", "partly tuned (k of n kernels)" or "untuned"."""
    if kernels and scheduled >= kernels:
        return "tuned"
    return f"partly tuned ({scheduled} of {kernels} kernels)" if scheduled else "untuned"


def warm_up() -> None:
    """Import what timing needs, so that a timer process is ready before its first library."""
    import tvm  # noqa: F401
    from tvm import relax  # noqa: F401


def build_design(req: dict) -> dict:
    from ..deploy.export import build_module, export_onnx
    from ..deploy.tvm_build import as_target, build, load_onnx
    from ..space.design import DesignPoint

    design = DesignPoint.from_json(req["design"])
    out = Path(req["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    p = out / "m.onnx"
    export_onnx(build_module(design, None), design.input_shape, p, batch=int(req.get("batch", 1)))
    m = load_onnx(p)
    target = as_target(req["target"], num_cores=int(req["threads"]))
    card = build(m, target, out / "m.so", database=req.get("database") or "none", cc=req.get("cc"))
    kernels = len(card["workloads"])
    return {"lib": str(out / "m.so"), "inputs": {k: [list(s), d] for k, (s, d) in m.inputs.items()},
            "tuned": card["tuned"], "scheduled_kernels": card["scheduled_kernels"], "kernel_count": kernels,
            "tuning": tuning_state(card["scheduled_kernels"], kernels),
            "schedule_database_id": card["schedule_database_id"], "schedule_key": card["schedule_key"],
            "warm_start_only_kernels": card["warm_start_only_kernels"], "build_s": card["build_s"]}


def tune_design(req: dict) -> dict:
    """Tune a derived design's kernels (``{"design", "batch", "threads", "target", "db": folder,
    "warm_start": [folders], "deadline": time.time() to stop by, "out_dir"}``) into ``db``; the
    tuner's summary. The process's start and the export count against the deadline."""
    import time

    from ..deploy.export import build_module, export_onnx
    from ..deploy.tune import tune_module
    from ..deploy.tvm_build import as_target, import_relax, load_onnx
    from ..space.design import DesignPoint

    design = DesignPoint.from_json(req["design"])
    out = Path(req["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    export_onnx(build_module(design, None), design.input_shape, out / "t.onnx", batch=int(req.get("batch", 1)))
    m = load_onnx(out / "t.onnx")
    threads = int(req["threads"])
    res = tune_module(import_relax(m), as_target(req["target"], num_cores=threads), req["db"], trials=None,
                      num_cores=threads, progress=False, max_seconds=max(0.0, float(req["deadline"]) - time.time()),
                      warm_start=req.get("warm_start"), input_shapes=[list(v[0]) for v in m.inputs.values()],
                      label=f"tune {design.key()[:16]}")
    rep = res.as_json()
    tuned = sum(1 for t in rep["tasks"] if t["best_us"] is not None)
    return {**{k: rep[k] for k in ("key", "budget_trials", "stopped_by", "trials_this_run", "trials_total",
                                   "warm_start_trials", "elapsed_s", "estimated_kernel_ms")},
            "kernels": len(rep["tasks"]), "kernels_with_records": tuned}


def time_library(req: dict) -> dict:
    from .local import measure_tvm

    inputs = {k: (tuple(s), d) for k, (s, d) in req["inputs"].items()}
    return measure_tvm(req["lib"], inputs, repeat=int(req.get("repeat", 15)), number=int(req.get("number", 10)),
                       device=req.get("device_type", "cpu"), kernels=bool(req.get("kernels")))


def measure(req: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        built = build_design({**req, "out_dir": tmp})
        out = time_library({**req, **built})
        out.update({k: v for k, v in built.items() if k not in ("lib", "inputs")})
        return out
