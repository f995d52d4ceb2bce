"""How well do the latency models predict held-out derived networks' TVM latency on this machine?

Reads records from tools/measure_designs.py; refits on the first k records (k in --steps, at most
--fit), evaluates on the records after --fit. Models:
  measured  - standalone workload latencies (TVM, this machine) summed: the search's prior; then the
              same model after its in-loop refit (per-(slot, option) factors, see
              explorer.cost.measured) on k end-to-end measurements fed one at a time, as in a search;
  features  - non-negative linear model on workload features (explorer costmodel fit).
--outliers N multiplies N of the fitted records by 10-25x (contention) to show what they cost.

Usage: python tools/costmodel_accuracy.py --records records.csv [--fit 50] [--threads 2] [--outliers 3]
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from explorer.cost.base import Measurement
from explorer.cost.learned import LatencyModel, evaluate_predictions, workload_features
from explorer.cost.measured import MeasuredCostModel, distinct_items
from explorer.deploy.tvm_build import toolchain_versions
from explorer.measure.local import cpu_model
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
    ap.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20, 50], help="refit after this many records")
    ap.add_argument("--outliers", type=int, default=0, help="fitted records to make 10-25x slower")
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
    test = slice(args.fit, None)
    y_fit = y[: args.fit].copy()
    rng = np.random.default_rng(0)
    bad = rng.choice(args.fit, size=min(args.outliers, args.fit), replace=False) if args.outliers else []
    y_fit[bad] *= rng.uniform(10, 25, len(bad))
    results = [("standalone workload sum (no refit)", 0, evaluate_predictions(raw[test], y[test]))]
    fed = 0
    for k in sorted({min(k, args.fit) for k in args.steps}):
        cm.update([Measurement(g, cfg, float(v)) for g, v in zip(genos[fed:k], y_fit[fed:k])])  # one search refit per batch
        fed = k
        pred = np.array([cm.evaluate(g, cfg)["latency_s"] for g in genos[test]])
        results.append((f"measured + refit on {k} records", k, evaluate_predictions(pred, y[test])))
    X = np.array([workload_features(space.workloads(g)) for g in genos])
    fm = LatencyModel(space.name, space.options(), space.input_shape, space.num_classes).fit(X[: args.fit], y_fit)
    results.append((f"workload-feature NNLS on {args.fit} records", args.fit, evaluate_predictions(fm.predict(X[test]), y[test])))
    st = cm.correction_state()
    print(f"{cpu_model()}; records: {len(rows)} (refit on up to {args.fit}, {len(bad)} of them made 10-25x slower; "
          f"held out {len(rows) - args.fit}); measured latency {y.min() * 1e3:.3f}-{y.max() * 1e3:.3f} ms; "
          f"refit: lam={st.get('lam')}, overhead {st.get('offset_ms', 0):.4f} ms, outliers flagged {st.get('outliers')}")
    print("| model | kendall tau | spearman rho | within +-10% | mean abs rel err |\n|---|---|---|---|---|")
    for name, _, m in results:
        print(f"| {name} | {m['kendall_tau']:.3f} | {m['spearman_rho']:.3f} | {m['within_10pct'] * 100:.1f}% | {m['mean_abs_rel_err'] * 100:.1f}% |")


if __name__ == "__main__":
    main()
