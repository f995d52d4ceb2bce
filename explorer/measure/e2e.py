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

__all__ = ["build_design", "time_library", "measure", "tuning_state", "warm_up"]


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
    card = build(m, target, out / "m.so", database=req.get("database") or "none")
    kernels = len(card["workloads"])
    return {"lib": str(out / "m.so"), "inputs": {k: [list(s), d] for k, (s, d) in m.inputs.items()},
            "tuned": card["tuned"], "scheduled_kernels": card["scheduled_kernels"], "kernel_count": kernels,
            "tuning": tuning_state(card["scheduled_kernels"], kernels),
            "schedule_database_id": card["schedule_database_id"], "build_s": card["build_s"]}


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
