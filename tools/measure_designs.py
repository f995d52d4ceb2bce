"""Measure random derived designs of a space with TVM on this machine: records that train and test
latency models (``explorer costmodel fit/eval``, ``tools/costmodel_accuracy.py``).

Each design: standalone network (latency does not depend on weights) -> ONNX -> TVM build for the
host CPU -> median latency, exactly as the search's background worker does. Also stored.

Usage: python tools/measure_designs.py --n 80 --out records.csv [--space chain] [--dataset mnist5k] [--threads 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import os

import numpy as np
from tqdm import tqdm

from explorer.data import load_dataset
from explorer.backends import load_target
from explorer.deploy.tvm_build import target_json, toolchain_versions
from explorer.measure.e2e import measure
from explorer.measure.store import MeasureRecord, Store, default_store_path
from explorer.space import create_space
from explorer.space.design import DesignPoint
from explorer.space.hardware import HWConfig


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=80)
    ap.add_argument("--out", required=True)
    ap.add_argument("--space", default="chain")
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--store", default=str(default_store_path()))
    args = ap.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    d = load_dataset(args.dataset)
    space = create_space(args.space, d.input_shape, d.num_classes)
    rng = np.random.default_rng(args.seed)
    cfg = HWConfig((("DEVICE", "cpu"), ("THREADS", args.threads), ("BATCH", 1)))
    knobs = {"device": "cpu", "threads": args.threads, "batch": 1}
    backend = load_target("cpu").backend()
    rows = []
    with Store(args.store) as st:
        for _ in tqdm(range(args.n), desc="measure designs", unit="design"):
            dp = DesignPoint.make(space, space.random_genotype(rng), "cpu", cfg)
            t = measure({"design": dp.as_json(), "threads": args.threads, "batch": 1, "repeat": args.repeat,
                         "target": target_json(backend.tvm_target(args.threads)), "device_type": backend.device_type,
                         "database": [str(x) for x in backend.databases()]})
            st.add(MeasureRecord(dp.key(), "e2e", "cpu", knobs, toolchain_versions(), latency_ms=t["median_ms"],
                                 payload={**t, "design": dp.as_json()}))
            rows.append({"design_json": json.dumps(dp.as_json()), "latency_ms": f"{t['median_ms']:.6f}"})
    with open(args.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["design_json", "latency_ms"])
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {len(rows)} records to {args.out}")


if __name__ == "__main__":
    main()
