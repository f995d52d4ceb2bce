"""End-to-end latency of one derived design on a CPU/GPU, in a child process.

``python -m explorer.measure.e2e`` reads ``{"design": ..., "threads": T, "batch": B, "device": D}`` as
JSON on stdin, builds the network (latency does not depend on the weights), exports it to ONNX,
compiles it with TVM, times it, and prints ``RESULT {...}``. A child process per measurement keeps
the search process free and applies ``TVM_NUM_THREADS`` for real.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path


def measure(req: dict) -> dict:
    from ..deploy.export import build_module, export_onnx
    from ..deploy.tvm_build import build, load_onnx
    from ..space.design import DesignPoint
    from .local import measure_tvm

    design = DesignPoint.from_json(req["design"])
    net = build_module(design, None)
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "m.onnx"
        export_onnx(net, design.input_shape, p, batch=int(req.get("batch", 1)))
        m = load_onnx(p)
        card = build(m, req.get("device", "cpu"), Path(tmp) / "m.so", num_cores=int(req["threads"]))
        out = measure_tvm(Path(tmp) / "m.so", m.inputs, repeat=int(req.get("repeat", 15)),
                          number=int(req.get("number", 10)), device=req.get("device", "cpu"))
        out.update({"tuned": card["tuned"], "scheduled_kernels": card["scheduled_kernels"],
                    "kernels": len(card["workloads"]), "schedule_database_id": card["schedule_database_id"]})
        return out


def main() -> int:
    req = json.loads(sys.stdin.read())
    try:
        out = measure(req)
    except Exception as e:  # reported as a failed record by the parent
        print("ERROR " + json.dumps(f"{type(e).__name__}: {e}"))
        return 1
    print("RESULT " + json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
