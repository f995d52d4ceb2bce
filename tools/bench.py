"""Benchmarks for the co-search, run side by side in one process tree (this machine is shared).

1. co-search vs sequential vs random search at an equal wall-clock budget on mnist5k: retrained
   test accuracy, latency, energy and area of each derived design.
2. Limits: an accuracy-only (unconstrained) co-search, then limits at half its latency and half its
   area; the derived designs must meet them.
3. Supernet vs plain network: training-step time and peak memory, each measured in a fresh process.

4. TVM (untuned, and with the repository's schedules/cpu/) vs onnxruntime on the demo network and
   MobileNetV2 (tuned figures for both: tools/tune_bench.py).
5. ResNet-18 on the VTA-style target, and calibration of the analytical model against the simulator.

Usage: python tools/bench.py [--budget-min 3] [--out bench-out] [--skip supernet,compare,limits,compiler,vta]
Prints Markdown tables (paste into BENCHMARKS.md with the command, machine and date).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from explorer.api import run_search
from explorer.config import load_config


def row(name, s):
    f = s["figures"]
    return (f"| {name} | {s.get('test_accuracy', float('nan')) * 100:.2f} | {f['latency_ms']:.4f} | "
            f"{f['energy_mJ']:.4f} | {f['area_mm2']:.3f} | {s['search_s']:.0f} | {s['steps']} |")


HEADER = ("| method | test acc % | latency ms | energy mJ | area mm2 | search s | steps/samples |\n"
          "|---|---|---|---|---|---|---|")


def compare(args, out: Path):
    print(f"\n## co-search vs baselines, {args.budget_min} min search budget each, mnist5k, chain, vta\n")
    print(HEADER)
    for method in ("cosearch", "sequential", "random"):
        cfg = load_config(None, {"budget_min": args.budget_min, "steps": 100000})  # time binds for all
        cfg.search.progress = "time"
        s = run_search(cfg, out / method, method=method, force=True, progress=False)
        print(row(method, s), flush=True)


def limits(args, out: Path):
    print(f"\n## limits hold (mnist5k, chain, vta; {args.budget_min} min per search)\n")
    print("| run | limit | test acc % | latency ms | energy mJ | area mm2 | met | repair moves |\n|---|---|---|---|---|---|---|---|")
    base = load_config(None, {"budget_min": args.budget_min})
    base.search.progress = "time"
    base.objective = {}
    free = run_search(base, out / "unconstrained", force=True, progress=False)
    f = free["figures"]

    def line(name, lim, s):
        g = s["figures"]
        print(f"| {name} | {lim} | {s['test_accuracy'] * 100:.2f} | {g['latency_ms']:.4f} | {g['energy_mJ']:.4f} | "
              f"{g['area_mm2']:.3f} | {s['limits_met']} | {len(s['repaired_moves'])} |", flush=True)

    line("unconstrained (accuracy only)", "-", free)
    for key, val in (("latency_ms", f["latency_ms"] / 2), ("area_mm2", f["area_mm2"] / 2)):
        cfg = load_config(None, {"budget_min": args.budget_min, key: val})
        cfg.search.progress = "time"
        cfg.objective = {}
        s = run_search(cfg, out / f"limit-{key}", force=True, progress=False)
        line(f"{key} <= half", f"{val:.4g}", s)


SUPERNET_PROBE = r"""
import json, resource, sys, time, torch, torch.nn.functional as F
from explorer.data import load_dataset
from explorer.space import create_space
from explorer.space.quant import QuantState
torch.manual_seed(0)
kind = sys.argv[1]
d = load_dataset("mnist5k")
s = create_space("chain", d.input_shape, d.num_classes)
qs = QuantState((8, 4))
x, y = torch.from_numpy(d.x_train[:64]), torch.from_numpy(d.y_train[:64])
if kind == "supernet":
    net = s.build_supernet(qs)
    p = torch.softmax(torch.zeros(2), 0)
    qs.set(p, p)
    fwd = lambda: net(x, net.probs())
else:
    g = {k: v[0] for k, v in s.choices().items()}
    g.update({k: "1.0" for k in g if k.startswith("width")})
    net = s.build_network(g, QuantState.fixed(8, 8))
    fwd = lambda: net(x)
base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for _ in range(3):
    F.cross_entropy(fwd(), y).backward()
ts = []
for _ in range(10):
    t = time.perf_counter(); F.cross_entropy(fwd(), y).backward(); ts.append(time.perf_counter() - t)
ts.sort()
print(json.dumps({"step_s": ts[len(ts) // 2], "peak_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_kb) / 1024}))
"""


def supernet(args, out: Path):
    print("\n## supernet vs plain network (chain on mnist5k, batch 64, forward + backward, median of 10)\n")
    res = {}
    for kind in ("plain", "supernet"):
        r = subprocess.run([sys.executable, "-c", SUPERNET_PROBE, kind], capture_output=True, text=True, check=True)
        res[kind] = json.loads(r.stdout.strip().splitlines()[-1])
    print("| network | step ms | peak extra memory MB |\n|---|---|---|")
    for k, v in res.items():
        print(f"| {k} (all 8/9 ops, 3 activations, width masks) | {v['step_s'] * 1e3:.1f} | {v['peak_mb']:.0f} |" if k == "supernet"
              else f"| {k} (conv3x3 everywhere, full width) | {v['step_s'] * 1e3:.1f} | {v['peak_mb']:.0f} |")
    print(f"\nratio supernet / plain: step time {res['supernet']['step_s'] / res['plain']['step_s']:.1f}x, "
          f"peak memory {res['supernet']['peak_mb'] / max(1e-9, res['plain']['peak_mb']):.1f}x")


def _cli(*args) -> str:
    r = subprocess.run([sys.executable, "-m", "explorer.cli", *args], capture_output=True, text=True,
                       env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if r.returncode != 0:
        raise SystemExit(f"explorer {' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout


def compiler(args, out: Path):
    """TVM (untuned / schedules/cpu/) vs onnxruntime on the demo network (this bench's co-search run) and MobileNetV2."""
    print("\n## TVM vs onnxruntime, same input and threads\n")
    from explorer.deploy.export import export_onnx
    from explorer.zoo import MobileNetV2
    import torch

    run = out / "cosearch"
    if not (run / "weights.pt").is_file():
        print("(skipped: needs the co-search run of the compare section)")
        return
    _cli("export", str(run), "--out", str(out / "demo.onnx"))
    torch.manual_seed(0)
    export_onnx(MobileNetV2().eval(), (3, 224, 224), out / "mbv2.onnx")
    for name, extra in (("demo.onnx", []), ("mbv2.onnx", ["--repeat", "10", "--number", "3"])):
        for sched in ("none", "default"):
            pick = ["--schedules", "none"] if sched == "none" else []
            print(f"{name} ({'untuned' if sched == 'none' else 'schedules/cpu/'}):\n" +
                  _cli("measure", str(out / name), "--vs", "onnxruntime", "--store", str(out / "store.sqlite"), *extra, *pick))


def vta(args, out: Path):
    """ResNet-18 on the VTA-style target, and the calibration of the analytical model."""
    print("\n## VTA-style target: ResNet-18 (224x224) and calibration\n")
    from explorer.deploy.export import export_onnx
    from explorer.zoo import ResNet18
    import torch

    torch.manual_seed(0)
    export_onnx(ResNet18().eval(), (3, 224, 224), out / "resnet18.onnx")
    t = time.monotonic()
    print(_cli("compile", str(out / "resnet18.onnx"), "--target", "vta", "--out", str(out / "resnet18.vta.json")))
    print(f"(compile + simulate: {time.monotonic() - t:.1f} s)")
    print(_cli("calibrate", "--samples", "1500", "--out", str(out / "vta_calibration.json")))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget-min", type=float, default=3.0)
    ap.add_argument("--out", default="bench-out")
    ap.add_argument("--skip", default="")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    skip = set(filter(None, args.skip.split(",")))
    print(f"# bench {time.strftime('%Y-%m-%d %H:%M')} on {platform.node()} ({os.cpu_count()} cores, {platform.processor() or platform.machine()})")
    for name, fn in (("supernet", supernet), ("compare", compare), ("limits", limits), ("compiler", compiler),
                     ("vta", vta)):
        if name not in skip:
            fn(args, out)


if __name__ == "__main__":
    main()
