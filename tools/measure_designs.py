"""Measure random derived designs of a space with TVM on this machine: records that train and test
latency models (``explorer costmodel fit/eval``, ``tools/costmodel_accuracy.py``).

Each design: standalone network (latency does not depend on weights) -> ONNX -> TVM build for the
host CPU -> median latency, exactly as the search's background worker does. Also stored.

Usage: python tools/measure_designs.py --n 80 --out records.csv [--space chain] [--dataset mnist5k] [--threads 2]
       python tools/measure_designs.py --space nb201 --input-shape 3x32x32 --option channels=16 --option cells_per_stage=5 \
           --n 300 --out nb201_tvm.csv      # a NAS-Bench-201 table at the benchmark's skeleton (genotype,latency_ms)

Without a schedule database for the space's kernels (``EXPLORER_SCHEDULES=none`` makes sure) the
table is of TVM's untuned code.
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
from explorer.errors import ExplorerError
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
    ap.add_argument("--number", type=int, default=10, help="runs per repeat")
    ap.add_argument("--store", default=str(default_store_path()))
    ap.add_argument("--input-shape", default=None, help="CxHxW instead of the data set's (e.g. 3x32x32)")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--option", action="append", default=[], metavar="KEY=JSON", help="space option, e.g. channels=16")
    args = ap.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    options = {k: json.loads(v) for k, _, v in (o.partition("=") for o in args.option)}
    if args.input_shape:
        shape, classes = tuple(int(v) for v in args.input_shape.split("x")), args.classes
    else:
        d = load_dataset(args.dataset)
        shape, classes = d.input_shape, d.num_classes
    space = create_space(args.space, shape, classes, **options)
    rng = np.random.default_rng(args.seed)
    cfg = HWConfig((("DEVICE", "cpu"), ("THREADS", args.threads), ("BATCH", 1)))
    knobs = {"device": "cpu", "threads": args.threads, "batch": 1}
    backend = load_target("cpu").backend()
    rows, skipped = [], []
    col = "genotype" if args.space == "nb201" else "design_json"  # the benchmark's own key for nb201
    with Store(args.store) as st:
        for _ in tqdm(range(args.n), desc="measure designs", unit="design"):
            dp = DesignPoint.make(space, space.random_genotype(rng), "cpu", cfg)
            try:
                t = measure({"design": dp.as_json(), "threads": args.threads, "batch": 1, "repeat": args.repeat,
                             "number": args.number, "target": target_json(backend.tvm_target(args.threads)), "device_type": backend.device_type,
                             "database": [str(x) for x in backend.databases()]})
            except ExplorerError as e:  # e.g. an nb201 cell whose output ignores its input: nothing to run
                skipped.append(str(e))
                continue
            st.add(MeasureRecord(dp.key(), "e2e", "cpu", knobs, toolchain_versions(), latency_ms=t["median_ms"],
                                 payload={**t, "design": dp.as_json()}))
            key = space.format_genotype(dp.genotype_dict) if args.space == "nb201" else json.dumps(dp.as_json())
            rows.append({col: key, "latency_ms": f"{t['median_ms']:.6f}"})
            with open(args.out, "w", newline="") as fh:  # rewritten after every design: a killed run keeps its records
                w = csv.DictWriter(fh, fieldnames=[col, "latency_ms"])
                w.writeheader()
                w.writerows(rows)
    print(f"wrote {len(rows)} records to {args.out}" + (f"; skipped {len(skipped)}: {skipped[0]}" if skipped else ""))


if __name__ == "__main__":
    main()
