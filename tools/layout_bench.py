"""Tuned TVM against onnxruntime for one model in each convolution layout, side by side in one run.

For every layout: `explorer tune MODEL --layout L --trials N --db OUT/db-L` (a fresh database per
layout, so every trial is counted), `explorer compile --layout L --schedules OUT/db-L`, then the
library and onnxruntime timed one after the other (same input, same threads). A database that is
already there is extended (the tuner counts its records), so a killed run goes on.

Usage: python tools/layout_bench.py MODEL.onnx [--layouts NCHW,NHWC] [--trials 2000] [--minutes M]
       [--out bench-out/layout] [--repeat 10] [--number 3]
Prints a Markdown table with the CPU model (paste into BENCHMARKS.md with the command and date).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def cli(*args) -> tuple[str, float]:
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "explorer.cli", *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"explorer {' '.join(args)} failed:\n{r.stderr[-2000:]}")
    return r.stdout, time.monotonic() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--layouts", default="NCHW,NHWC")
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--minutes", type=float, help="time budget per layout (whichever budget is spent first)")
    ap.add_argument("--out", default="bench-out/layout")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--number", type=int, default=3)
    a = ap.parse_args()

    from explorer.deploy.tvm_build import load_onnx
    from explorer.measure.local import cpu_model, measure_onnxruntime, measure_tvm

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    m = load_onnx(a.model)
    threads = os.cpu_count() or 1
    name = Path(a.model).stem
    rows = []
    for layout in a.layouts.split(","):
        db = out / f"db-{name}-{layout}"
        rep = out / f"tune-{name}-{layout}.json"
        extra = ["--minutes", str(a.minutes)] if a.minutes else []
        _, tune_s = cli("tune", a.model, "--layout", layout, "--trials", str(a.trials), "--db", str(db), "--report",
                        str(rep), "--no-progress", *extra)
        r = json.loads(rep.read_text())
        lib = out / f"{name}-{layout}.so"
        cli("compile", a.model, "--layout", layout, "--schedules", str(db), "--out", str(lib))
        card = json.loads(Path(str(lib) + ".json").read_text())
        t = measure_tvm(lib, m.inputs, repeat=a.repeat, number=a.number)
        o = measure_onnxruntime(a.model, m.inputs, threads, repeat=a.repeat, number=a.number)
        rows.append((layout, r["trials_total"], r["trials_this_run"], tune_s, card["scheduled_kernels"],
                     len(card["workloads"]), t["median_ms"], o["median_ms"]))
        print(f"{layout}: {r['trials_total']} trials ({r['trials_this_run']} this run, {tune_s:.0f} s), "
              f"TVM {t['median_ms']:.3f} ms, onnxruntime {o['median_ms']:.3f} ms, ratio {t['median_ms'] / o['median_ms']:.2f}",
              flush=True)
    print(f"\n{name}, {threads} threads, CPU: {cpu_model()}, {time.strftime('%Y-%m-%d')}\n")
    print("| layout | trials | tuning wall s (this run) | kernels tuned | TVM median ms | onnxruntime median ms | TVM / onnxruntime |")
    print("|---|---|---|---|---|---|---|")
    for layout, total, new, secs, sched, kernels, tvm_ms, ort_ms in rows:
        print(f"| {layout} | {total} | {secs:.0f} ({new} trials) | {sched} of {kernels} | {tvm_ms:.3f} | {ort_ms:.3f} | "
              f"{tvm_ms / ort_ms:.2f} |")


if __name__ == "__main__":
    main()
