"""Search quality on the nb201 cell space against real devices' latency tables.

For each device (a NAS-Bench-201 latency table as HELP publishes it: Lee et al., "HELP:
Hardware-Adaptive Efficient Latency Prediction for NAS via Meta-Learning", NeurIPS 2021; repository
HayeonLee/HELP, folder ``data/nasbench201``) the tool fits a latency model on ``--fit`` rows with
``explorer costmodel fit`` (for this search's skeleton), then, at each ``--percentiles`` percentile
of the table's latencies, runs ``explorer search --space nb201 --latency-table MODEL --latency-ms L``
(the Python API, same thing) and checks the derived cell:

* connected: its output depends on its input;
* within the limit on the *table* (the device's measured latency of that cell, not the model's);
* its one-shot accuracy within 2 points of the best one-shot accuracy among the designs the run
  evaluated (the selection's candidates);
* retrained ``--epochs`` epochs, its test accuracy against ``--random`` random connected cells within
  the same limit on the table, retrained the same way (the bar: at or above their 75th percentile).

Random cells are drawn in one seeded order shared by every setting and retrained once each
(cached in ``OUT/random_cells.json``), so settings reuse each other's retraining.

Usage: python tools/nb201_quality.py --help-dir HELP/data/nasbench201 [--devices raspi4,pixel3]
           [--percentiles 25 50] [--seeds 0] [--epochs 5] [--random 20] [--out bench-out/nb201]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--help-dir", required=True, type=Path)
    ap.add_argument("--devices", default="raspi4,pixel3")
    ap.add_argument("--percentiles", type=float, nargs="+", default=[25, 50])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--fit", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--random", type=int, default=20)
    ap.add_argument("--config", default=None, help="TOML config for the searches (search settings)")
    ap.add_argument("--budget-min", type=float, default=60.0,
                    help="each search's wall-clock cap in minutes: high, so that its planned steps bind (a loaded "
                         "2-core machine took ~25 min for 500 nb201 steps, past the default 20)")
    ap.add_argument("--out", type=Path, default=Path("bench-out/nb201"))
    a = ap.parse_args()

    import torch

    from explorer.api import run_search
    from explorer.cli import main as cli
    from explorer.config import load_config
    from explorer.data import load_dataset
    from explorer.measure.local import cpu_model
    from explorer.search.train import retrain
    from explorer.space import create_space
    from explorer.space.nb201 import live_edges
    from explorer.space.quant import QuantState

    from latency_tables import load_table

    a.out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(a.dataset, seed=0)
    space = create_space("nb201", data.input_shape, data.num_classes)
    base_cfg = load_config(a.config, {"space": "nb201", "dataset": a.dataset, "epochs": a.epochs})
    cache_f = a.out / "random_cells.json"
    cache = json.loads(cache_f.read_text()) if cache_f.exists() else {}

    def retrained(genotype_str: str) -> float:
        if genotype_str not in cache:
            g = space.parse_genotype(genotype_str)
            with torch.random.fork_rng():
                torch.manual_seed(0)
                net = space.build_network(g, QuantState.fixed(None, None))
            t = time.monotonic()
            cache[genotype_str] = retrain(net, data, base_cfg.retrain, 0)["test_accuracy"]
            print(f"  random cell {genotype_str}: {cache[genotype_str]:.4f} ({time.monotonic() - t:.0f} s)", flush=True)
            cache_f.write_text(json.dumps(cache, indent=1))
        return cache[genotype_str]

    rows = []
    for dev in a.devices.split(","):
        table = load_table(a.help_dir, dev)
        names = sorted(table)
        pick = np.random.default_rng(0).permutation(len(names))[:a.fit]
        rec_f, model_f = a.out / f"{dev}_{a.fit}.csv", a.out / f"{dev}.json"
        with rec_f.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["genotype", "latency_ms"])
            for i in pick:
                w.writerow([names[i], table[names[i]]])
        shape = "x".join(map(str, data.input_shape))
        assert cli(["costmodel", "fit", "--space", "nb201", "--records", str(rec_f), "--out", str(model_f), "--holdout", "0",
                    "--input-shape", shape, "--classes", str(data.num_classes),
                    *sum((["--option", f"{k}={v}"] for k, v in space.options().items()), [])]) == 0
        lat = np.array([table[n] for n in names])
        order = [names[i] for i in np.random.default_rng(1).permutation(len(names))]
        for pct in a.percentiles:
            limit = float(np.percentile(lat, pct))
            pool = [n for n in order if table[n] <= limit and live_edges(space.parse_genotype(n))][:a.random]
            rand = sorted(retrained(n) for n in pool)
            p75 = float(np.percentile(rand, 75))
            for seed in a.seeds:
                cfg = load_config(a.config, {"space": "nb201", "dataset": a.dataset, "epochs": a.epochs, "seed": seed,
                                             "target": str(model_f), "latency_ms": limit,
                                             "budget_min": a.budget_min})
                t = time.monotonic()
                s = run_search(cfg, a.out / f"{dev}-p{pct:g}-s{seed}", force=True, progress=False)
                g = space.parse_genotype(s["genotype"])
                sel = s.get("selection") or {}
                row = {"device": dev, "percentile": pct, "limit_ms": limit, "seed": seed, "genotype": s["genotype"],
                       "connected": bool(live_edges(g)), "table_ms": table[s["genotype"]],
                       "model_ms": s["figures"]["latency_ms"], "one_shot": s.get("one_shot_val_accuracy"),
                       "best_one_shot": sel.get("best_one_shot"), "test_accuracy": s.get("test_accuracy"),
                       "random_p75": p75, "random_median": float(np.median(rand)), "random_n": len(rand),
                       "stop_reason": s["stop_reason"], "search_s": s["search_s"], "wall_s": time.monotonic() - t}
                row["within_table"] = row["table_ms"] <= limit
                row["one_shot_gap"] = (None if row["best_one_shot"] is None or row["one_shot"] is None
                                       else row["best_one_shot"] - row["one_shot"])
                rows.append(row)
                print(json.dumps(row), flush=True)
    (a.out / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"\nCPU: {cpu_model()}; data {a.dataset}; {a.epochs} epochs of retraining; {time.strftime('%Y-%m-%d')}")
    print("| device | limit (pct) | seed | cell | connected | table ms | one-shot (best) | test acc | random p75 (median, n) | search s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['device']} | {r['limit_ms']:.3f} ms (p{r['percentile']:g}) | {r['seed']} | `{r['genotype']}` | "
              f"{'yes' if r['connected'] else 'NO'} | {r['table_ms']:.3f} {'ok' if r['within_table'] else 'OVER'} | "
              f"{r['one_shot'] or float('nan'):.3f} ({r['best_one_shot'] or float('nan'):.3f}) | "
              f"{(r['test_accuracy'] or float('nan')) * 100:.2f}% | {r['random_p75'] * 100:.2f}% "
              f"({r['random_median'] * 100:.2f}%, {r['random_n']}) | {r['search_s']:.0f} |")


if __name__ == "__main__":
    main()
