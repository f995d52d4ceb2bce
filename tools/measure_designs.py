"""Measure random derived designs of a space with TVM on this machine: the records that train and
test the learned latency model (``explorer costmodel fit/eval``).

Each design: standalone network (random weights: latency does not depend on them) -> ONNX ->
TVM build for the host CPU -> median latency. Every build and measurement also goes to the store.

Usage: python tools/measure_designs.py --n 80 --out records.csv [--space chain] [--dataset mnist5k]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from explorer.data import load_dataset
from explorer.deploy.export import export_onnx
from explorer.deploy.tvm_build import build, load_onnx, toolchain_versions
from explorer.measure.local import measure_tvm
from explorer.measure.store import MeasureRecord, Store, default_store_path
from explorer.space import create_space
from explorer.space.design import DesignPoint
from explorer.space.quant import QuantState
from explorer.targets import load_target


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=80)
    ap.add_argument("--out", required=True)
    ap.add_argument("--space", default="chain")
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--store", default=str(default_store_path()))
    args = ap.parse_args()
    d = load_dataset(args.dataset)
    space = create_space(args.space, d.input_shape, d.num_classes)
    hw = load_target("vta").hardware_space()
    rng = np.random.default_rng(args.seed)
    threads = os.cpu_count() or 1
    rows = []
    with Store(args.store) as st, tempfile.TemporaryDirectory() as tmp:
        for i in tqdm(range(args.n), desc="measure designs", unit="design"):
            g = space.random_genotype(rng)
            dp = DesignPoint.make(space, g, "cpu", hw.default_config())
            torch.manual_seed(i)
            net = space.build_network(g, QuantState.fixed(None, None)).eval()
            onnx_path = Path(tmp) / f"d{i}.onnx"
            export_onnx(net, d.input_shape, onnx_path)
            m = load_onnx(onnx_path)
            build(m, "cpu", Path(tmp) / f"d{i}.so", num_cores=threads)
            t = measure_tvm(Path(tmp) / f"d{i}.so", m.inputs, repeat=args.repeat, number=10)
            st.add(MeasureRecord(dp.key(), "measure", "cpu", {"threads": threads}, toolchain_versions(),
                                 latency_ms=t["median_ms"], payload={**t, "design": dp.as_json()}))
            rows.append({"design_json": json.dumps(dp.as_json()), "latency_ms": f"{t['median_ms']:.6f}"})
    with open(args.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["design_json", "latency_ms"])
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {len(rows)} records to {args.out}")


if __name__ == "__main__":
    main()
