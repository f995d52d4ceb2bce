"""Tuned TVM against onnxruntime for one model in each convolution layout, with and without weight
prepacking, side by side in one run; where the time goes, by kernel class, untuned and tuned.

For every setting (layout x prepack), in a process of its own: tune the model's kernels with
:func:`explorer.deploy.tune.tune_module` into a fresh database for that setting (every trial is
counted; a database already there is extended, so a killed run goes on), build with it, time the
library and onnxruntime one after the other (same input, same threads), and time every kernel of the
untuned and the tuned library alone (:func:`explorer.measure.kernels.time_kernels`), summed by class:
conv, depthwise (grouped), dense, layout transform, other.

Usage: python tools/layout_bench.py MODEL.onnx [--layouts NCHW,NHWC,NCHWc] [--prepack off,on]
       [--trials 2000] [--minutes M] [--out bench-out/layout] [--repeat 10] [--number 3]
       python tools/layout_bench.py --demo-onnx OUT.onnx   (a demo-size network: the demo's chain
       space on 28x28 inputs, a fixed random design, random weights)
Prints Markdown tables with the CPU model (paste into BENCHMARKS.md with the command and date).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from explorer.measure.local import every_core

every_core()  # TVM on every core, as onnxruntime (TVM alone starts half the logical CPUs on x86)

CLASSES = ("conv", "depthwise", "dense", "layout", "other")


def kernel_class(name: str, text: str) -> str:
    """A kernel's class from its TIR (block names: TOPI's computes keep theirs through fusion)."""
    t = text + " " + name
    if "depthwise_conv2d" in t or "group_conv2d" in t or "conv2d_grouped" in t:
        return "depthwise"
    if "conv2d" in t:
        return "conv"
    if "matmul" in t or "dense" in t:
        return "dense"
    if any(k in t for k in ("layout_trans", "transpose", "to_blocked", "to_nchw", "to_oihw")):
        return "layout"
    return "other"


def _classes(mod) -> dict:
    import tvm

    return {gv.name_hint: kernel_class(gv.name_hint, f.script()) for gv, f in mod.functions.items()
            if isinstance(f, tvm.tirx.PrimFunc)}


def _kernel_shares(lib, inputs, classes, repeat, number) -> dict:
    """Seconds per kernel class for one inference (each kernel timed alone)."""
    import numpy as np
    import tvm
    from tvm import relax

    from explorer.measure.kernels import time_kernels

    dev = tvm.cpu()
    rt = tvm.runtime.load_module(str(lib))
    vm = relax.VirtualMachine(rt, dev)
    rng = np.random.default_rng(0)
    args = [tvm.runtime.tensor(rng.random(s, dtype=np.float32), dev) for s, _ in inputs.values()]
    out = dict.fromkeys(CLASSES, 0.0)
    for name, secs, _ in time_kernels(rt, vm, dev, args, repeat=repeat, number=number):
        out[classes.get(name, kernel_class(name, ""))] += secs
    return out


def _untuned(m, target, layout, lib) -> dict:
    """Kernel seconds by class of the untuned library (built from the very module whose kernels
    are classified, so that the names match)."""
    import tvm

    from explorer.deploy.tvm_build import export_library, import_relax, lower_for_schedules

    mod = lower_for_schedules(import_relax(m, layout))
    export_library(tvm.compile(mod, target=target), lib)
    return _kernel_shares(lib, m.inputs, _classes(mod), 2, 1)


def one(a) -> None:
    """One setting, in this process: tune, build untuned and tuned, time; JSON to a.json."""
    from explorer.deploy.tune import tune_module
    from explorer.deploy.tvm_build import apply_schedules, build, host_target, import_relax, load_onnx
    from explorer.backends.tvm_deploy import time_threads

    threads = os.cpu_count() or 1
    m = load_onnx(a.model)
    out = Path(a.json).parent
    tag = Path(a.json).stem
    target = host_target(threads)
    before = _untuned(m, target, a.layout, out / f"{tag}-untuned.so")
    if a.untuned_only:  # the untuned figures again, into the setting's JSON
        rep = json.loads(Path(a.json).read_text())
        rep["before_s"] = before
        Path(a.json).write_text(json.dumps(rep, indent=2) + "\n")
        return
    t0 = time.monotonic()
    r = tune_module(import_relax(m, a.layout, a.prepack), target, a.db, trials=a.trials, num_cores=threads,
                    progress=False, label=f"bench {tag}", max_seconds=None if a.minutes is None else 60 * a.minutes)
    tune_s = time.monotonic() - t0
    lib = out / f"{tag}.so"
    card = build(m, target, lib, database=a.db, layout=a.layout, prepack=a.prepack)
    # both in fresh processes, 3 rounds interleaved: timed in this process, right after tuning, TVM
    # ran 10-40% slower than in a process of its own (ResNet-18, MobileNetV2 on a 2-core Zen 3)
    t, o, _ = time_threads(lib, a.model, m.inputs, threads, a.repeat, counts=[threads], number=a.number)
    lowered, _ = apply_schedules(import_relax(m, a.layout, a.prepack), target, a.db)
    after = _kernel_shares(lib, m.inputs, _classes(lowered), 3, 5)
    rep = r.as_json()
    Path(a.json).write_text(json.dumps({
        "layout": a.layout, "prepack": a.prepack, "trials_total": rep["trials_total"],
        "trials_this_run": rep["trials_this_run"], "tune_s": tune_s, "stopped_by": rep["stopped_by"],
        "kernels": len(card["workloads"]), "scheduled": card["scheduled_kernels"],
        "prepacked_kernels": card["prepacked_kernels"], "tvm_ms": t["median_ms"], "ort_ms": o["median_ms"],
        "before_s": before, "after_s": after}, indent=2) + "\n")


def demo_onnx(path: str) -> None:
    """The demo's search space (chain, 1x28x28 mnist5k inputs, 10 classes), a fixed random design
    (seed 0), random weights, float: a network of the demo's size and kinds of layers."""
    import numpy as np
    import torch

    from explorer.deploy.export import export_onnx
    from explorer.space import create_space
    from explorer.space.quant import QuantState

    space = create_space("chain", (1, 28, 28), 10)
    torch.manual_seed(0)
    net = space.build_network(space.random_genotype(np.random.default_rng(0)), QuantState.fixed(None, None)).eval()
    r = export_onnx(net, (1, 28, 28), path)
    print(f"wrote {r.path}; onnxruntime vs PyTorch max abs diff {r.max_abs_diff:.3g}")


def _pct(d: dict) -> str:
    total = sum(d.values()) or 1.0
    return " | ".join(f"{100 * d[c] / total:.0f}" for c in CLASSES)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?")
    ap.add_argument("--layouts", default="NCHW,NHWC,NCHWc")
    ap.add_argument("--prepack", default="off,on", help="off, on, or off,on")
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--minutes", type=float, help="time budget per setting (whichever budget is spent first)")
    ap.add_argument("--out", default="bench-out/layout")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--number", type=int, default=3)
    ap.add_argument("--demo-onnx", dest="demo_onnx", metavar="OUT.onnx", help="write the demo-size network and stop")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--layout", help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    ap.add_argument("--json", help=argparse.SUPPRESS)
    ap.add_argument("--untuned-only", dest="untuned_only", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.demo_onnx:
        return demo_onnx(a.demo_onnx)
    if a.one:
        a.prepack = a.prepack == "on"
        return one(a)
    if not a.model:
        ap.error("MODEL.onnx is required")

    from explorer.measure.local import cpu_model

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    name = Path(a.model).stem
    rows = []
    for layout in a.layouts.split(","):
        for pp in a.prepack.split(","):
            tag = f"{name}-{layout}-prepack-{pp}"
            cmd = [sys.executable, __file__, a.model, "--one", "--layout", layout, "--prepack", pp, "--trials",
                   str(a.trials), "--db", str(out / f"db-{tag}"), "--json", str(out / f"{tag}.json"),
                   "--repeat", str(a.repeat), "--number", str(a.number)] + (["--minutes", str(a.minutes)] if a.minutes else [])
            t0 = time.monotonic()
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                print(f"{tag}: failed after {time.monotonic() - t0:.0f} s:\n{p.stderr[-1500:]}", flush=True)
                continue
            r = json.loads((out / f"{tag}.json").read_text())
            rows.append(r)
            print(f"{tag}: {r['trials_total']} trials ({r['tune_s']:.0f} s), TVM {r['tvm_ms']:.3f} ms, onnxruntime "
                  f"{r['ort_ms']:.3f} ms, ratio {r['tvm_ms'] / r['ort_ms']:.2f}", flush=True)
    print(f"\n{name}, {os.cpu_count()} threads, CPU: {cpu_model()}, {time.strftime('%Y-%m-%d %H:%M')}\n")
    print("| layout | prepack | trials | tuning wall s | kernels tuned (prepacked) | TVM median ms | onnxruntime median ms "
          "| TVM / onnxruntime |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['layout']} | {'on' if r['prepack'] else 'off'} | {r['trials_total']} | {r['tune_s']:.0f} | "
              f"{r['scheduled']} of {r['kernels']} ({r['prepacked_kernels']}) | {r['tvm_ms']:.3f} | {r['ort_ms']:.3f} | "
              f"{r['tvm_ms'] / r['ort_ms']:.2f} |")
    print("\nShare of kernel time by class, % (untuned -> tuned; each kernel timed alone):\n")
    print("| layout | prepack | untuned ms: " + " / ".join(CLASSES) + " % | tuned ms: " + " / ".join(CLASSES) + " % |")
    print("|---|---|---|---|")
    for r in rows:
        b, t = r["before_s"], r["after_s"]
        print(f"| {r['layout']} | {'on' if r['prepack'] else 'off'} | {1e3 * sum(b.values()):.2f}: {_pct(b).replace(' | ', ' / ')} "
              f"| {1e3 * sum(t.values()):.3f}: {_pct(t).replace(' | ', ' / ')} |")


if __name__ == "__main__":
    main()
