"""End-to-end latency of one derived design on a CPU/GPU, in a worker process.

:func:`measure` takes ``{"design": ..., "threads": T, "batch": B, "target": TVM target JSON,
"device_type": "cpu"|"cuda", "database": [schedule folders] or None}``, builds the network (latency
does not depend on the weights), exports it to ONNX, compiles it with TVM, times it and returns the
figures. :class:`~explorer.measure.background.BackgroundMeasurer` runs it in a
:class:`~explorer.workers.WorkerPool` whose child has ``TVM_NUM_THREADS`` set.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

__all__ = ["measure"]


def measure(req: dict) -> dict:
    from ..deploy.export import build_module, export_onnx
    from ..deploy.tvm_build import as_target, build, load_onnx
    from ..space.design import DesignPoint
    from .local import measure_tvm

    design = DesignPoint.from_json(req["design"])
    net = build_module(design, None)
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "m.onnx"
        export_onnx(net, design.input_shape, p, batch=int(req.get("batch", 1)))
        m = load_onnx(p)
        target = as_target(req["target"], num_cores=int(req["threads"]))
        card = build(m, target, Path(tmp) / "m.so", database=req.get("database") or "none")
        out = measure_tvm(Path(tmp) / "m.so", m.inputs, repeat=int(req.get("repeat", 15)),
                          number=int(req.get("number", 10)), device=req.get("device_type", "cpu"))
        out.update({"tuned": card["tuned"], "scheduled_kernels": card["scheduled_kernels"],
                    "kernels": len(card["workloads"]), "schedule_database_id": card["schedule_database_id"]})
        return out
