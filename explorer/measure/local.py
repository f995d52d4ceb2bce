"""Local runners: TVM's VM (median and spread after warm-up) and onnxruntime on the same input."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np

from ..errors import ModelError

__all__ = ["measure_tvm", "measure_onnxruntime", "summarize", "random_inputs", "cpu_model", "every_core", "numerics"]


def cpu_model() -> str:
    """The CPU's model name (stated beside every speed figure)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def numerics() -> dict:
    """What fixes a search's floating-point arithmetic on this machine, so what a seed reproduces: the
    PyTorch version, the instruction set its CPU kernels dispatch to (``ATEN_CPU_CAPABILITY`` caps it),
    oneDNN's cap (``ONEDNN_MAX_CPU_ISA``, "native" when unset), PyTorch's intra-op threads and the CPU.
    Two runs with one seed and equal ``numerics`` keep the same design; across instruction sets the
    rounding differs, training drifts apart over hundreds of steps, and a near tie can go the other way
    (an AVX-512 machine and the same machine capped at AVX2 kept different demo designs)."""
    import torch

    return {"torch": torch.__version__, "kernels": torch.backends.cpu.get_cpu_capability(),
            "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "native"),
            "threads": torch.get_num_threads(), "cpu": cpu_model()}


def every_core() -> None:
    """TVM's thread pool on every core of this machine, as the target (``num-cores``) and
    onnxruntime use them, unless ``TVM_NUM_THREADS`` is set already. Left to itself, TVM starts half
    the logical CPUs on x86 (it assumes two hyper-threads per core): one thread on a 2-core machine
    without them. Read once per process, when the pool starts: call before the first kernel runs."""
    os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))


def summarize(samples_s: list[float]) -> dict:
    """Timing samples (seconds) -> median, 10th and 90th percentile and spread in milliseconds."""
    ms = sorted(s * 1e3 for s in samples_s)
    q = lambda f: ms[min(len(ms) - 1, int(round(f * (len(ms) - 1))))]  # noqa: E731
    return {"median_ms": statistics.median(ms), "p10_ms": q(0.1), "p90_ms": q(0.9),
            "std_ms": statistics.pstdev(ms), "n": len(ms)}


def random_inputs(inputs: dict, seed: int) -> dict:
    """``{name: (shape, dtype)}`` -> ``{name: array}``, uniform in [0, 1), the same for the same ``seed``."""
    rng = np.random.default_rng(seed)
    return {k: rng.random(shape, dtype=np.float32).astype(dtype) for k, (shape, dtype) in inputs.items()}


def measure_tvm(lib: str | os.PathLike, inputs: dict, repeat: int = 30, number: int = 10, seed: int = 0,
                device: str = "cpu", kernels: bool = False) -> dict:
    """Time ``main`` of a built library with ``vm.time_evaluator`` (``repeat`` x ``number`` runs) on
    ``device`` (TVM's device type name: cpu, cuda, ...). With ``kernels``, also every kernel alone
    (``kernels``: [name, seconds, argument shapes] in program order; see
    :func:`explorer.measure.kernels.time_kernels`)."""
    every_core()
    import tvm
    from tvm import relax

    lib = Path(lib)
    if not lib.is_file():
        raise ModelError(f"{lib}: no such library")
    dev = tvm.device(device)
    if not dev.exist:
        raise ModelError(f"no {device} device on this machine to measure {lib.name} on")
    try:
        rt = tvm.runtime.load_module(str(lib))
    except Exception as e:
        raise ModelError(f"{lib}: not a TVM library for this machine ({type(e).__name__})") from None
    vm = relax.VirtualMachine(rt, dev)
    args = [tvm.runtime.tensor(v, dev) for v in random_inputs(inputs, seed).values()]
    vm["main"](*args)  # warm-up
    f = vm.time_evaluator("main", dev, number=number, repeat=repeat, min_repeat_ms=0)
    res = f(*args)
    out = summarize(list(res.results))
    out.update({"runner": "tvm", "repeat": repeat, "number": number})
    if kernels:
        from .kernels import time_kernels

        out["kernels"] = time_kernels(rt, vm, dev, args)
        out["kernels_ms"] = sum(k[1] for k in out["kernels"]) * 1e3
    return out


def measure_onnxruntime(onnx_path: str | os.PathLike, inputs: dict, threads: int, repeat: int = 30,
                        number: int = 10, seed: int = 0) -> dict:
    """Time an onnxruntime session with ``threads`` intra-op threads, on the same inputs."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    feed = random_inputs(inputs, seed)
    for _ in range(max(3, number)):
        sess.run(None, feed)
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(number):
            sess.run(None, feed)
        samples.append((time.perf_counter() - t) / number)
    out = summarize(samples)
    out.update({"runner": "onnxruntime", "threads": threads, "repeat": repeat, "number": number,
                "version": ort.__version__})
    return out
