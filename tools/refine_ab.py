"""A/B of the in-loop refinement: searches with a latency limit, refinement on and off, per target
and seed; the kept design is measured on the target's truth at the end either way.

Reports per run: the model's latency for the final design (before the final measurement), the
truth (CPU: built and timed with TVM here; vta: the compiler path plus host ops), their error, and
whether the limit holds on the truth. Retraining is skipped (latency does not depend on weights).

Usage: python tools/refine_ab.py [--targets cpu,vta] [--seeds 3] [--latency-ms cpu=0.08,vta=0.08]
                                 [--budget-min 4] [--out bench-out/refine_ab]
Run as on a new machine with EXPLORER_HOME=<empty folder> EXPLORER_SCHEDULES=none.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from explorer.api import run_search
from explorer.config import load_config
from explorer.measure.local import cpu_model


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="cpu,vta")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--latency-ms", default="cpu=0.08,vta=0.08", help="limit per target")
    ap.add_argument("--budget-min", type=float, default=4.0)
    ap.add_argument("--out", default="bench-out/refine_ab")
    a = ap.parse_args()
    limits = {k: float(v) for k, _, v in (x.partition("=") for x in a.latency_ms.split(","))}
    out = Path(a.out)
    print(f"{cpu_model()}, {time.strftime('%Y-%m-%d')}; budget {a.budget_min} min per search, retraining skipped\n")
    print("| target | limit ms | seed | refine | model ms | truth ms | error | limit holds on truth | rounds | in-loop measurements | tuning |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for target in a.targets.split(","):
        for seed in range(a.seeds):
            for refine in (True, False):
                cfg = load_config(None, {"target": target, "seed": seed, "budget_min": a.budget_min, "epochs": 0,
                                         "latency_ms": limits[target]})
                cfg.search.refine = refine
                s = run_search(cfg, out / f"{target}-s{seed}-{'on' if refine else 'off'}", force=True, progress=False)
                m = s.get("measured") or {}
                model = m.get("predicted", {}).get("latency_ms", float("nan"))
                truth = m.get("figures", {}).get("latency_ms", float("nan"))
                hist = [json.loads(x) for x in open(out / f"{target}-s{seed}-{'on' if refine else 'off'}" / "history.jsonl")]
                n_meas = sum(1 for h in hist for x in h.get("measured", []) if "measured_s" in x)
                r = {"target": target, "seed": seed, "refine": refine, "model_ms": model, "truth_ms": truth,
                     "error": m.get("rel_error"), "ok": s.get("limits_met_measured"), "rounds": m.get("rounds"),
                     "in_loop": n_meas, "tuning": m.get("tuning")}
                rows.append(r)
                err = f"{r['error'] * 100:+.1f}%" if r["error"] is not None else "-"
                print(f"| {target} | {limits[target]} | {seed} | {'on' if refine else 'off'} | {model:.4f} | {truth:.4f} | {err} | "
                      f"{r['ok']} | {r['rounds']} | {n_meas} | {r['tuning'] or '-'} |", flush=True)
    (out / "refine_ab.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
