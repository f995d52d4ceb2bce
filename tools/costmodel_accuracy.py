"""How well do the latency models predict held-out derived networks' TVM latency on this machine?

Reads records from tools/measure_designs.py; fits on the first --fit records (at most 50
measurements), evaluates on the rest. Models:
  measured  - standalone workload latencies (TVM, this machine) summed, with the learned correction
              latency = scale * sum + offset fitted on the --fit end-to-end measurements;
  features  - non-negative linear model on workload features (explorer costmodel fit).

Usage: python tools/costmodel_accuracy.py --records records.csv [--fit 50] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from explorer.cost.learned import LatencyModel, evaluate_predictions, workload_features
from explorer.cost.measured import MeasuredCostModel, distinct_items
from explorer.deploy.tvm_build import toolchain_versions
from explorer.measure.store import Store, default_store_path
from explorer.measure.workloads import measure_workloads
from explorer.space import create_space
from explorer.space.design import DesignPoint
from explorer.space.hardware import HardwareSpace, HWConfig, Knob


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", required=True)
    ap.add_argument("--fit", type=int, default=50)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--store", default=str(default_store_path()))
    args = ap.parse_args()
    import csv

    rows = list(csv.DictReader(open(args.records, newline="")))
    first = json.loads(rows[0]["design_json"])
    space = create_space(first["space"], tuple(first["input_shape"]), first["num_classes"], **first["space_options"])
    hw = HardwareSpace([Knob("DEVICE", ("cpu",), "cpu"), Knob("THREADS", (args.threads,), args.threads),
                        Knob("BATCH", (1,), 1)])
    slots = space.cost_slots()
    with Store(args.store) as st:
        got = measure_workloads(distinct_items(slots, hw), "cpu", args.threads, st, toolchain_versions())
    table = {(w, b, "cpu", args.threads): s for (w, b), s in got.items()}
    cm = MeasuredCostModel(slots, space.choices(), hw, table)
    cfg = HWConfig((("DEVICE", "cpu"), ("THREADS", args.threads), ("BATCH", 1)))
    genos = [DesignPoint.from_json(json.loads(r["design_json"])).genotype_dict for r in rows]
    y = np.array([float(r["latency_ms"]) for r in rows]) / 1e3
    raw = np.array([cm.raw_latency_s(g, cfg) for g in genos])
    fit, test = slice(0, args.fit), slice(args.fit, None)
    uncorrected = evaluate_predictions(raw[test], y[test])
    cm.update(list(zip(raw[fit], y[fit])))
    pred = np.array([cm.evaluate(g, cfg)["latency_s"] for g in genos])
    corrected = evaluate_predictions(pred[test], y[test])
    X = np.array([workload_features(space.workloads(g)) for g in genos])
    fm = LatencyModel(space.name, space.options(), space.input_shape, space.num_classes).fit(X[fit], y[fit])
    feat = evaluate_predictions(fm.predict(X[test]), y[test])
    print(f"records: {len(rows)} (fit on {args.fit}, held out {len(rows) - args.fit}); "
          f"measured latency {y.min() * 1e3:.3f}-{y.max() * 1e3:.3f} ms; correction scale={cm.scale:.3f} offset={cm.offset_s * 1e3:.4f} ms")
    print("| model | kendall tau | spearman rho | within +-10% | mean abs rel err |\n|---|---|---|---|---|")
    for name, m in (("standalone workload sum (no correction)", uncorrected), ("measured + learned correction", corrected),
                    ("workload-feature NNLS", feat)):
        print(f"| {name} | {m['kendall_tau']:.3f} | {m['spearman_rho']:.3f} | {m['within_10pct'] * 100:.1f}% | {m['mean_abs_rel_err'] * 100:.1f}% |")


if __name__ == "__main__":
    main()
