"""How far the VTA model's relaxed prediction is from the expectation it stands for, over a search.

Runs the VTA co-search (the demo's settings unless told) and every --every steps compares, at the
search's current op and knob probabilities:
  * mean:   c(E[knob]) with smoothed ceilings (``knob_topk = 0``);
  * top-K:  the exact expectation over the K most probable knob combinations, renormalised;
  * exact:  the expectation over all combinations of the relaxed knobs (the reference);
and the exact figure of the design the search would derive at that step. Also the time of one
forward + backward of each, as the search pays it.

Usage: python tools/relaxation_gap.py [--steps 500] [--every 50] [--topk 16 64] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from explorer.api import build_problem
from explorer.config import load_config
from explorer.measure.local import cpu_model
from explorer.search.cosearch import CoSearch


def timed(cm, net_p, hw_p, k):
    cm.knob_topk = k
    leaf = {n: p.detach().clone().requires_grad_(True) for n, p in hw_p.items()}
    t = time.perf_counter()
    out = cm.predict({n: p.detach() for n, p in net_p.items()}, leaf)
    out["latency_s"].backward()
    return float(out["latency_s"]), time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--topk", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--search-topk", type=int, default=0, help="knob_topk the search itself uses")
    a = ap.parse_args()
    cfg = load_config(None, {"steps": a.steps, "seed": a.seed, "budget_min": 60})
    prob = build_problem(cfg)
    cm = prob.cost_model
    cm.knob_topk = a.search_topk
    s = CoSearch(prob.space, prob.hw, cm, prob.data, cfg.search, prob.constraints(), "vta", cfg.seed)
    rows = []

    def probe(rec):
        if "event" in rec or rec["step"] % a.every:
            return
        keep = cm.knob_topk
        with torch.no_grad():
            net_p, hw_p = s.net.probs(), s.hw.probs()
        ref = cm.exact_expectation(net_p, hw_p)["latency_s"]
        got = {"mean": timed(cm, net_p, hw_p, 0)}
        for k in a.topk:
            got[f"top-{k}"] = timed(cm, net_p, hw_p, k)
        cm.knob_topk = keep
        derived = cm.evaluate(s.net.derive(), s.hw.derive())["latency_s"]
        rows.append((rec["step"], ref, got, derived))

    s.on_step = probe
    s.run()
    print(f"{cpu_model()}, {time.strftime('%Y-%m-%d')}; VTA co-search, demo settings, seed {a.seed}, "
          f"search uses knob_topk={a.search_topk}; latency in ms\n")
    names = list(rows[0][2])
    print("| step | exact E[latency] | " + " | ".join(f"{n} (gap)" for n in names) + " | derived design |")
    print("|---" * (3 + len(names)) + "|")
    for step, ref, got, derived in rows:
        cells = " | ".join(f"{got[n][0] * 1e3:.4f} ({(got[n][0] / ref - 1) * 100:+.1f}%)" for n in names)
        print(f"| {step} | {ref * 1e3:.4f} | {cells} | {derived * 1e3:.4f} |")
    print("\nmean |gap| over the probes: " + ", ".join(
        f"{n} {np.mean([abs(g[n][0] / r - 1) for _, r, g, _ in rows]) * 100:.1f}%" for n in names))
    print("forward + backward per step: " + ", ".join(
        f"{n} {np.median([g[n][1] for _, _, g, _ in rows]) * 1e3:.1f} ms" for n in names))


if __name__ == "__main__":
    main()
