"""Step time and peak memory of the supernet with 3, 6 and 9 candidate ops per layer, per relaxation.

Each (ops, relax) setting runs in a process of its own (so that its peak memory is its own): the
demo's problem (mnist5k, chain space, vta target) restricted to the first N ops of the chain space,
``--steps`` search steps (architecture, hardware and weight updates; no warm-up, no pruning), the
first ``--skip`` not timed. Prints ms per step and the peak resident memory the steps added (the process's peak after the last
step but one, less its memory before the loop), and the
ratio 9 ops / 3 ops for each relaxation, measured side by side in one run.

Usage: python tools/bench_supernet.py [--steps 30] [--skip 5] [--repeat 3] [--relax softmax sample] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

import numpy as np

OPS = ["conv3x3", "dwsep3x3", "skip", "conv5x5", "dwsep5x5", "maxpool", "dil3x3", "avgpool", "zero"]


def learning(relax: str, steps: int, seed: int) -> list[float]:
    """Mean training loss per fifth of a warm-up of ``steps`` weight steps (9 ops): how fast the shared
    weights learn when every option is computed (softmax) or one uniformly drawn path is (sample)."""
    import torch

    from explorer.api import build_problem
    from explorer.config import load_config
    from explorer.search.cosearch import CoSearch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    cfg = load_config(None, {"steps": steps + 1, "seed": seed, "budget_min": 60})
    s = cfg.search
    s.relax, s.warmup_steps, s.warmup_fraction, s.stages = relax, steps, 0.99, []
    s.checkpoint_every = s.checkpoint_s = 0
    prob = build_problem(cfg)
    search = CoSearch(prob.space, prob.hw, prob.cost_model, prob.data, s, prob.constraints(), "vta", seed)
    losses = []
    for _ in range(steps):
        xt, yt = next(search.train_b)
        losses.append(search._network_step(xt, yt, None, None, 1.0, False, warm=True)[2])
    k = max(1, steps // 5)
    return [float(np.mean(losses[i:i + k])) for i in range(0, steps, k)]


def one(n_ops: int, relax: str, steps: int, skip: int, seed: int) -> dict:
    import torch

    from explorer.api import build_problem
    from explorer.config import load_config
    from explorer.search.cosearch import CoSearch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    cfg = load_config(None, {"steps": steps, "seed": seed, "budget_min": 60})
    cfg.space_options = {"ops": OPS[:n_ops]}
    s = cfg.search
    s.relax, s.warmup_steps, s.stages, s.eval_every, s.checkpoint_every, s.checkpoint_s = relax, 0, [], 10**6, 0, 0
    s.tau_start, s.tau_end = (4.0, 0.5) if relax != "softmax" else (1.0, 1.0)
    prob = build_problem(cfg)
    peaks = []  # after each step but the last (whose record follows the final evaluation of the derived design)
    search = CoSearch(prob.space, prob.hw, prob.cost_model, prob.data, s, prob.constraints(), "vta", seed,
                      on_step=lambda rec: peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))
    with open("/proc/self/statm") as f:
        rss0 = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    r = search.run()
    peak = peaks[-2]
    t = [h["time_s"] for h in r.history if "event" not in h]
    per_step = (t[-1] - t[skip]) / max(1, len(t) - 1 - skip)
    return {"ops": n_ops, "relax": relax, "ms_per_step": 1e3 * per_step, "peak_mb_added": max(0, peak - rss0) / 2**20,
            "peak_mb": peak / 2**20}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--skip", type=int, default=5)
    ap.add_argument("--ops", type=int, nargs="+", default=[3, 6, 9])
    ap.add_argument("--relax", nargs="+", default=["softmax", "sample"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--learn", type=int, default=0, metavar="STEPS",
                    help="also: training loss over a warm-up of STEPS weight steps, per relaxation (9 ops)")
    ap.add_argument("--one", nargs=2, metavar=("OPS", "RELAX"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(int(a.one[0]), a.one[1], a.steps, a.skip, a.seed)))
        return
    from explorer.measure.local import cpu_model

    runs: dict = {}
    # one process per setting; the settings interleaved, --repeat rounds, the median kept, so that a
    # burst of load on the shared machine falls on one round of every setting, not on one setting
    for rnd in range(a.repeat):
        for relax in a.relax:
            for n in a.ops:
                out = subprocess.run([sys.executable, __file__, "--one", str(n), relax, "--steps", str(a.steps),
                                      "--skip", str(a.skip), "--seed", str(a.seed)], capture_output=True, text=True, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                runs.setdefault((relax, n), []).append(r)
                print(f"round {rnd + 1}: {relax:8s} {n} ops: {r['ms_per_step']:8.1f} ms/step  peak +{r['peak_mb_added']:7.1f} MB",
                      flush=True)
    rows = []
    for (relax, n), rs in runs.items():
        rows.append({"ops": n, "relax": relax, "rounds": len(rs),
                     **{k: float(np.median([r[k] for r in rs])) for k in ("ms_per_step", "peak_mb_added", "peak_mb")}})
    print(f"\nCPU: {cpu_model()}; torch threads: {os.environ.get('BENCH_THREADS', '1')}; steps timed: {a.steps - a.skip - 1}; median of {a.repeat} rounds")
    print("| relax | ops | ms / step | peak memory added (MB) | time vs fewest ops | memory vs fewest ops |")
    print("|---|---|---|---|---|---|")
    for relax in a.relax:
        sub = [r for r in rows if r["relax"] == relax]
        base = sub[0]
        for r in sub:
            print(f"| {relax} | {r['ops']} | {r['ms_per_step']:.1f} | {r['peak_mb_added']:.1f} | "
                  f"{r['ms_per_step'] / base['ms_per_step']:.2f}x | {r['peak_mb_added'] / max(base['peak_mb_added'], 1e-9):.2f}x |")
    if a.learn:
        print(f"\nTraining loss over a warm-up of {a.learn} weight steps (9 ops, mnist5k, mean per fifth):")
        for relax in a.relax:
            curve = learning(relax, a.learn, a.seed)
            rows.append({"relax": relax, "learn_steps": a.learn, "loss_per_fifth": curve})
            print(f"| {relax} | " + " | ".join(f"{v:.2f}" for v in curve) + " |", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
