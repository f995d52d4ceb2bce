"""Measurement throughput over TVM RPC: two servers against one, side by side in one run.

Builds K derived designs of the demo space (chain, 1x28x28, 10 classes) here, once; then, in
alternating rounds (A B A B ...: this machine is shared and its speed drifts), times all K on a
loopback cluster of one server and on one of two servers, through :class:`explorer.measure.devices.DevicePool`
with a worker per server. Each server runs models with ``--threads`` threads (default 1: two servers
on two cores each own one). Prints jobs per second for each, their ratio per round and overall, and
how far the two setups' latency figures for the same design agree (median of per-design ratios).

Usage: python tools/bench_rpc.py [--designs 8] [--rounds 3] [--repeat 20] [--number 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def build_designs(k: int, threads: int, out: Path) -> list[dict]:
    from explorer.deploy.tvm_build import host_target, target_json
    from explorer.measure.e2e import build_design
    from explorer.space import create_space
    from explorer.space.design import DesignPoint
    from explorer.space.hardware import HWConfig

    space = create_space("chain", (1, 28, 28), 10)
    hw = HWConfig((("DEVICE", "cpu"), ("THREADS", threads), ("BATCH", 1)))
    rng = np.random.default_rng(0)
    libs = []
    for i in range(k):
        d = DesignPoint.make(space, space.random_genotype(rng), "cpu", hw)
        b = build_design({"design": d.as_json(), "threads": threads, "batch": 1, "target": target_json(host_target(threads)),
                          "database": None, "out_dir": str(out / f"d{i}")})
        libs.append({"lib": b["lib"], "inputs": b["inputs"], "key": d.key()})
        print(f"built {i + 1}/{k}", file=sys.stderr, flush=True)
    return libs


def run_round(cluster, libs, repeat, number, threads) -> tuple[float, list[float]]:
    from explorer.measure.devices import DevicePool

    h, p = cluster.tracker
    with DevicePool((h, p, cluster.key), workers=cluster.devices, timeout_s=300, wait_s=120) as pool:
        # warm: each worker's child imports TVM once; not part of the throughput
        pool.map([{"lib": libs[0]["lib"], "calls": [{"fn": "main", "inputs": libs[0]["inputs"]}], "repeat": 1,
                   "number": 1, "threads": threads}] * cluster.devices)
        t = time.perf_counter()
        res = pool.map([{"lib": x["lib"], "calls": [{"fn": "main", "inputs": x["inputs"]}], "repeat": repeat,
                         "number": number, "threads": threads} for x in libs])
        wall = time.perf_counter() - t
    bad = [r for r in res if not isinstance(r, dict)]
    if bad:
        raise SystemExit(f"a timing job failed: {bad[0]}")
    return len(libs) / wall, [r["results"][0]["median_ms"] for r in res]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--designs", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--number", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    from explorer.measure.local import cpu_model
    from explorer.workers.rpc import RPCCluster

    with tempfile.TemporaryDirectory() as tmp:
        libs = build_designs(a.designs, a.threads, Path(tmp))
        with RPCCluster(1, key="bench-one", threads=a.threads) as one, \
                RPCCluster(2, key="bench-two", threads=a.threads) as two:
            rows, lat1, lat2 = [], [], []
            for r in range(a.rounds):
                t1, l1 = run_round(one, libs, a.repeat, a.number, a.threads)
                t2, l2 = run_round(two, libs, a.repeat, a.number, a.threads)
                rows.append((r + 1, t1, t2))
                lat1.append(l1)
                lat2.append(l2)
                print(f"round {r + 1}: one server {t1:.2f} jobs/s, two servers {t2:.2f} jobs/s", file=sys.stderr, flush=True)
    med1 = [statistics.median(x) for x in zip(*lat1)]
    med2 = [statistics.median(x) for x in zip(*lat2)]
    agree = statistics.median(b / a_ for a_, b in zip(med1, med2))
    print(f"CPU: {cpu_model()}; {a.designs} designs (chain space, 1x28x28), each timed {a.repeat} x {a.number} runs;"
          f" {a.threads} thread(s) per server; latency per design {min(med1):.3f}-{max(med1):.3f} ms (one server)")
    print("| round | one server, jobs/s | two servers, jobs/s | ratio |\n|---|---|---|---|")
    for r, t1, t2 in rows:
        print(f"| {r} | {t1:.2f} | {t2:.2f} | {t2 / t1:.2f} |")
    tot1, tot2 = statistics.median(t for _, t, _ in rows), statistics.median(t for _, _, t in rows)
    print(f"| median | {tot1:.2f} | {tot2:.2f} | {tot2 / tot1:.2f} |")
    print(f"latency two servers / one server, median over designs: {agree:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
