"""Measure every distinct workload of a search space standalone on a CPU/GPU, with TVM.

All workloads of one (device, threads) setting are built as functions of ONE Relax module (one
compiler invocation), then each function is timed with ``time_evaluator``. The build and timing run
in a worker process (:class:`explorer.workers.pool.WorkerPool`) so that the thread count
(``TVM_NUM_THREADS``) is really applied and a hang is killed. Results are
cached in the store, keyed by the workload, batch, device, threads and toolchain.

When the target has a schedule database (``schedules/<device>/``, written by ``explorer tune`` and
``tools/build_schedules.py``), it is applied before the build, so the cost model prices tuned code;
each record says whether all of its kernels had a tuned schedule (``tuned``), and the database's
identity is part of the toolchain key, so tuning more re-measures instead of mixing old figures.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from ..slots import Workload
from ..errors import ModelError
from .store import MeasureRecord, Store

__all__ = ["relax_function", "measure_workloads", "time_workloads", "build_workloads"]


def _key(w: Workload, batch: int) -> str:
    return json.dumps({**asdict(w), "name": w.name.split(".")[-1] if w.kind == "conv" else w.name, "n": batch},
                      sort_keys=True)


def relax_function(bb, name: str, w: Workload, batch: int):
    """Emit ``name`` computing workload ``w`` on ``batch`` samples into the BlockBuilder ``bb``."""
    import numpy as np
    from tvm import relax

    x = relax.Var("x", relax.TensorType((batch, w.cin, w.hin, w.win), "float32"))
    rng = np.random.default_rng(0)
    with bb.function(name, [x]):
        with bb.dataflow():
            if w.kind == "conv":
                wt = relax.const(rng.standard_normal((w.cout, w.cin // w.groups, w.kh, w.kw)).astype("float32"))
                pad = w.dilation * (w.kh - 1) // 2
                y = bb.emit(relax.op.nn.conv2d(x, wt, strides=w.stride, padding=pad, dilation=w.dilation, groups=w.groups))
                y = bb.emit(relax.op.nn.relu(y))  # the fused epilogue of a conv layer
            elif w.op == "depthwise_conv2d":  # a grouped conv on a CPU
                k = w.kh
                wt = relax.const(rng.standard_normal((w.cin, 1, k, k)).astype("float32"))
                y = bb.emit(relax.op.nn.conv2d(x, wt, strides=w.stride, padding=(k - 1) // 2, groups=w.cin))
            elif w.op == "global_avg_pool":
                y = bb.emit(relax.op.mean(x, axis=[2, 3], keepdims=True))
            elif w.op == "max_pool":
                y = bb.emit(relax.op.nn.max_pool2d(x, 3, w.stride, 1))
            elif w.op == "avg_pool_2x2":  # NAS-Bench-201's 2x2 average-pool shortcut
                y = bb.emit(relax.op.nn.avg_pool2d(x, 2, 2, 0, ceil_mode=True))
            elif w.op == "avg_pool":
                y = bb.emit(relax.op.nn.avg_pool2d(x, 3, w.stride, 1, count_include_pad=False))
            elif w.op == "elementwise":  # activations, residual adds, node sums
                y = x
                for _ in range(max(1, w.alu_ops)):
                    y = bb.emit(relax.op.maximum(relax.op.add(y, x), relax.const(0.0, "float32")))
            else:
                raise ValueError(f"workload {w.name!r}: no operator {w.op!r} to build")
            out = bb.emit_output(y)
        bb.emit_func_output(out)


def _compile_workloads(req: dict):
    """``req["items"]`` as functions ``w0, w1, ...`` of one Relax module, compiled for the TVM target
    ``req["target"]`` (schedule databases ``req["database"]`` applied): (executable, names, tuned)."""
    import re

    import tvm
    from tvm import relax

    from ..deploy.tvm_build import apply_schedules, as_target

    bb = relax.BlockBuilder()
    names = []
    for i, (w, batch) in enumerate(req["items"]):
        relax_function(bb, f"w{i}", Workload(**w), batch)
        names.append(f"w{i}")
    target = as_target(req["target"], num_cores=req["threads"])
    mod = bb.get()
    tuned = [False] * len(names)
    if req.get("database"):
        mod, _ = apply_schedules(mod, target, req["database"])
        done = {gv.name_hint for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)
                and f.attrs is not None and bool(f.attrs.get("tirx.is_scheduled", False))}
        for i, n in enumerate(names):
            called = set(re.findall(r"call_tir\(\s*(?:cls\.)?(\w+)", mod[n].script()))
            tuned[i] = bool(called) and called <= done
    return tvm.compile(mod, target=target), names, tuned


def build_workloads(req: dict) -> dict:
    """In a worker process: compile the workloads (as :func:`time_workloads`) and write them as one
    library ``req["lib"]`` (linked with ``req["cc"]`` where a device needs a cross compiler), to be
    timed elsewhere; ``{"lib", "names", "tuned"}``."""
    from pathlib import Path

    from ..deploy.tvm_build import export_library

    ex, names, tuned = _compile_workloads(req)
    Path(req["lib"]).parent.mkdir(parents=True, exist_ok=True)
    export_library(ex, req["lib"], req.get("cc"))
    return {"lib": req["lib"], "names": names, "tuned": tuned}


def time_workloads(req: dict) -> dict:
    """In a worker process: compile the workloads, then time each here."""
    import numpy as np
    import tvm
    from tvm import relax

    ex, names, tuned = _compile_workloads(req)
    dev = tvm.device(req["device_type"])
    vm = relax.VirtualMachine(ex, dev)
    out = []
    for (w, batch), n in zip(req["items"], names):
        x = tvm.runtime.tensor(np.random.default_rng(0).random((batch, w["cin"], w["hin"], w["win"]), dtype=np.float32), dev)
        vm[n](x)
        r = vm.time_evaluator(n, dev, number=req["number"], repeat=req["repeat"], min_repeat_ms=0)(x)
        out.append(sorted(r.results)[len(r.results) // 2])
    return {"seconds": out, "tuned": tuned}


def measure_workloads(items: list[tuple[Workload, int]], device: str, threads: int, store: Store, toolchain: dict,
                      repeat: int = 7, number: int = 5, chunk: int = 400, progress=None, database=None,
                      target: dict | None = None, device_type: str = "cpu", timeout_s: float = 3600.0,
                      devices=None, where: dict | None = None, cc: str | None = None) -> dict:
    """Latency (s) of each (workload, batch) on ``device`` with ``threads``; measured once, then cached.

    ``target``: the TVM target as a JSON dict (default: the host CPU); ``device_type``: TVM's name of
    the device that runs it. ``database``: schedule databases applied before the build (their
    identity belongs in ``toolchain``). Each chunk is built and timed in a worker process, killed
    after ``timeout_s``. Returns ``{(workload, batch): seconds}``. ``progress(done, total)`` is
    called per chunk.

    ``devices``: a :class:`~explorer.measure.devices.DevicePool`: each chunk is built here as one
    library (linked with ``cc``) and its functions are timed on the pool's devices, split into one
    job per worker; ``where`` (e.g. ``{"rpc_key": ...}``) joins the knobs of every record.
    """
    from ..workers.pool import WorkerError, WorkerPool

    if target is None:
        from ..deploy.tvm_build import host_target, target_json

        target = target_json(host_target(threads))
    if database is not None and not isinstance(database, (list, tuple)):
        database = [database]
    knobs = {"device": device, "threads": threads, **(where or {})}
    have = {}
    for r in store.query(kind="workload", target=device, knobs=knobs, toolchain=toolchain, ok=True):
        have[r.key] = r.latency_ms / 1e3
    todo = [(w, b) for w, b in dict.fromkeys(items) if _key(w, b) not in have]
    done = 0
    for i in range(0, len(todo), chunk):
        part = todo[i : i + chunk]
        req = {"items": [(asdict(w), b) for w, b in part], "target": target, "device_type": device_type,
               "threads": threads, "repeat": repeat, "number": number,
               "database": [str(d) for d in database] if database else None}
        env = {"TVM_NUM_THREADS": threads, "OMP_NUM_THREADS": threads, "PYTHONWARNINGS": "ignore"}
        try:
            if devices is None:
                with WorkerPool(env, timeout_s=timeout_s) as pool:
                    got = pool.run(time_workloads, req)
            else:
                got = _time_on_devices(req, part, devices, cc, env, timeout_s)
        except (WorkerError, ModelError) as e:
            err = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            for w, b in part:
                store.add(MeasureRecord(_key(w, b), "workload", device, knobs, toolchain, ok=False, error=err))
            raise ModelError(f"measuring {len(part)} workloads on {device} failed: {err}") from None
        for (w, b), sec, tuned in zip(part, got["seconds"], got["tuned"]):
            store.add(MeasureRecord(_key(w, b), "workload", device, knobs, toolchain, latency_ms=sec * 1e3, tuned=tuned))
            have[_key(w, b)] = sec
        done += len(part)
        if progress:
            progress(done, len(todo))
    return {(w, b): have[_key(w, b)] for w, b in items}


def _time_on_devices(req: dict, part: list, devices, cc: str | None, env: dict, timeout_s: float) -> dict:
    """Build ``part`` here as one library, then time its functions on the pool's devices, one job per
    worker (each job uploads the library once). ``{"seconds", "tuned", "servers"}``."""
    import tempfile

    from ..workers.pool import WorkerPool
    from .devices import DeviceError

    with tempfile.TemporaryDirectory(prefix="explorer-wl-") as tmp:
        with WorkerPool(env, timeout_s=timeout_s) as pool:
            built = pool.run(build_workloads, {**req, "lib": f"{tmp}/workloads.so", "cc": cc})
        calls = [{"fn": n, "inputs": {"x": [[b, w.cin, w.hin, w.win], "float32"]}} for n, (w, b) in zip(built["names"], part)]
        n = max(1, min(devices.workers, len(calls)))
        chunks = [calls[i::n] for i in range(n)]
        got = devices.map([{"lib": built["lib"], "calls": c, "device_type": req["device_type"], "threads": req["threads"],
                            "repeat": req["repeat"], "number": req["number"]} for c in chunks])
    bad = [g for g in got if isinstance(g, DeviceError)]
    if bad:
        raise ModelError(str(bad[0]))
    seconds = {}
    for c, g in zip(chunks, got):
        for call, r in zip(c, g["results"]):
            seconds[call["fn"]] = r["median_ms"] / 1e3
    return {"seconds": [seconds[nm] for nm in built["names"]], "tuned": built["tuned"],
            "servers": sorted({g["server"] for g in got})}
