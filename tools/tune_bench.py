"""Tuning benchmarks for `explorer tune`, each run through the CLI as a user would, in one session.

1. share:  tune the demo network from an empty database (time A), then a second network from the
           same search space that differs in one layer (time B, same database, same --trials):
           B / A is what a candidate that shares workloads costs.
2. ratio:  compile each network with the database and time TVM against onnxruntime, same input,
           same threads, one after the other (demo, and MobileNetV2 with --mbv2-trials).
3. resume: kill -9 a tuning run mid-way, start it again; count the records on disk before and after.
4. table:  the CPU cost model's workload table (chain space, mnist5k shape, 2 threads, batch 1 and 4)
           measured untuned and with schedules/cpu/, side by side.

Usage: python tools/tune_bench.py [--run runs/demo] [--trials 512] [--mbv2-trials 800] [--out bench-out/tune]
       [--skip share,ratio,mbv2,resume,table]
Prints Markdown (paste into BENCHMARKS.md with the command, machine and date).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path


def cli(*args, check=True) -> tuple[str, float]:
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "explorer.cli", *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        sys.exit(f"explorer {' '.join(args)} failed:\n{r.stderr[-2000:]}")
    return r.stdout, time.monotonic() - t


def neighbour(run: Path, out: Path) -> Path:
    """The run's design with its last layer's op changed: a candidate sharing all other kernels."""
    import torch

    from explorer.deploy.export import build_module, export_onnx, load_design
    from explorer.space.design import DesignPoint

    design, _ = load_design(run)
    d = design.as_json()
    g = dict(d["genotype"])
    last = max(k for k in g if k.startswith("op_L"))
    g[last] = "conv3x3" if g[last] != "conv3x3" else "dwsep3x3"
    d["genotype"] = g
    d.pop("key", None)
    d.pop("genotype_str", None)
    nb = DesignPoint.from_json(d)
    torch.manual_seed(0)
    export_onnx(build_module(nb, None), nb.input_shape, out)
    print(f"second network: {last} -> {g[last]}")
    return out


def records(db: Path) -> int:
    f = db / "database_tuning_record.json"
    return sum(1 for ln in f.read_text().splitlines() if ln.strip()) if f.is_file() else 0


def table(out: Path) -> None:
    import statistics

    from explorer.cost.measured import distinct_items
    from explorer.deploy.schedules import database_id
    from explorer.deploy.tvm_build import toolchain_versions
    from explorer.paths import shipped_schedules
    from explorer.measure.store import Store
    from explorer.measure.workloads import measure_workloads
    from explorer.space import create_space
    from explorer.backends import load_target

    items = distinct_items(create_space("chain", (1, 28, 28), 10).cost_slots(), load_target("cpu").hardware_space())
    db = shipped_schedules("cpu")
    tc = toolchain_versions()
    with Store(out / "table.sqlite") as st:
        plain = measure_workloads(items, "cpu", 2, st, tc)
        tuned = measure_workloads(items, "cpu", 2, st, {**tc, "schedules": database_id(db)}, database=db)
        flags = [r.tuned for r in st.query(kind="workload", toolchain={**tc, "schedules": database_id(db)})]
    speed = [plain[i] / tuned[i] for i in items]
    conv = [plain[i] / tuned[i] for i in items if i[0].kind == "conv"]
    print("\n## Cost-model workload table, untuned vs schedules/cpu/ (chain, 2 threads)\n")
    print(f"{len(items)} workloads, {sum(flags)} with every kernel tuned; untuned / tuned time: median "
          f"{statistics.median(speed):.1f}x (convolutions {statistics.median(conv):.1f}x), "
          f"range {min(speed):.2f}-{max(speed):.0f}x; sum over the table {sum(plain.values()) * 1e3:.1f} ms -> "
          f"{sum(tuned.values()) * 1e3:.1f} ms")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="runs/demo")
    ap.add_argument("--trials", type=int, default=512)
    ap.add_argument("--mbv2-trials", type=int, default=800)
    ap.add_argument("--out", default="bench-out/tune")
    ap.add_argument("--skip", default="")
    a = ap.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    threads = str(os.cpu_count() or 1)
    print(f"# tune bench {time.strftime('%Y-%m-%d %H:%M')} on {platform.node()} ({threads} cores)")
    run = Path(a.run)
    demo = out / "demo.onnx"
    cli("export", str(run), "--out", str(demo))
    db = out / "db"
    if "share" not in skip:
        import shutil

        shutil.rmtree(db, ignore_errors=True)
        second = neighbour(run, out / "second.onnx")
        so_a, ta = cli("tune", str(demo), "--trials", str(a.trials), "--db", str(db), "--no-progress",
                       "--report", str(out / "demo.tune.json"))
        so_b, tb = cli("tune", str(second), "--trials", str(a.trials), "--db", str(db), "--no-progress",
                       "--report", str(out / "second.tune.json"))
        print("\n## Tuning a second network that shares workloads\n")
        print(f"demo network, empty database:\n```\n{so_a}```\nsecond network, same database:\n```\n{so_b}```")
        ra, rb = (json.loads((out / f).read_text()) for f in ("demo.tune.json", "second.tune.json"))
        print("| network | kernels | trials run | wall s |\n|---|---|---|---|")
        print(f"| demo (empty database) | {len(ra['tasks'])} | {ra['trials_this_run']} | {ta:.1f} |")
        print(f"| second (shares {sum(1 for t in rb['tasks'] if t['trials'] > t['trials_this_run'])} kernels) | "
              f"{len(rb['tasks'])} | {rb['trials_this_run']} | {tb:.1f} |")
        print(f"\nsecond / first tuning time = {tb / ta:.3f}")
    if "ratio" not in skip:
        print("\n## Tuned TVM vs onnxruntime (same input, same threads)\n")
        for name in ("demo",):
            lib = out / f"{name}.tuned.so"
            so, _ = cli("compile", str(out / f"{name}.onnx"), "--schedules", str(db), "--out", str(lib))
            print(so.strip())
            so, _ = cli("measure", str(lib), "--vs", "onnxruntime", "--num-cores", threads, "--store", str(out / "store.sqlite"))
            print(f"```\n{so}```")
    if "mbv2" not in skip:
        import torch

        from explorer.deploy.export import export_onnx
        from explorer.zoo import MobileNetV2

        torch.manual_seed(0)
        mb = out / "mbv2.onnx"
        export_onnx(MobileNetV2().eval(), (3, 224, 224), mb)
        mdb = out / "mbv2-db"
        so, t = cli("tune", str(mb), "--trials", str(a.mbv2_trials), "--db", str(mdb), "--no-progress",
                    "--report", str(out / "mbv2.tune.json"))
        print(f"\n## MobileNetV2 (224x224), {a.mbv2_trials} trials, {t:.0f} s\n```\n{so}```")
        so, _ = cli("compile", str(mb), "--schedules", str(mdb), "--out", str(out / "mbv2.tuned.so"))
        print(so.strip())
        so, _ = cli("measure", str(out / "mbv2.tuned.so"), "--vs", "onnxruntime", "--num-cores", threads,
                    "--repeat", "10", "--number", "3", "--store", str(out / "store.sqlite"))
        print(f"```\n{so}```")
    if "table" not in skip:
        table(out)
    if "resume" not in skip:
        rdb = out / "resume-db"
        import shutil

        shutil.rmtree(rdb, ignore_errors=True)
        p = subprocess.Popen([sys.executable, "-m", "explorer.cli", "tune", str(demo), "--trials", "96", "--db", str(rdb),
                              "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while records(rdb) < 40 and p.poll() is None:
            time.sleep(0.2)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        before = records(rdb)
        so, t = cli("tune", str(demo), "--trials", "96", "--db", str(rdb), "--no-progress", "--report", str(out / "resume.json"))
        r = json.loads((out / "resume.json").read_text())
        print("\n## Kill and restart\n")
        print(f"killed with {before} records on disk; the restart ran {r['trials_this_run']} trials; "
              f"database now {records(rdb)} records for a budget of 96 "
              f"({records(rdb) - before - r['trials_this_run']} lost or repeated)")


if __name__ == "__main__":
    main()
