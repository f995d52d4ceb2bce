"""Rebuild (or extend) the repository's schedule database for the built-in search spaces.

What is tuned, each distinct kernel once (MetaSchedule's structural hash), into the shipped ``schedules/cpu/``
(at the top of the repository, see :mod:`explorer.paths`):

* every standalone workload the measured cost model times for the CPU target (``targets/cpu.toml``:
  all BATCH values), for each built-in space at the default data set's input shape, so a
  ``search --target cpu`` prices tuned code;
* the fused kernels of sampled derived networks of each space (conv + bias + activation + residual
  add, as the ONNX export lowers them) and of the demo run's design when it exists, so candidates
  compiled during a search start tuned.

The run is resumable: records already in the database count (``explorer tune``'s rules), so a
stopped rebuild goes on where it stopped, and raising ``--trials`` extends it.

Usage: python tools/build_schedules.py [--trials 1200] [--per-iter 2] [--networks 12] [--db DIR]
       python tools/build_schedules.py --merge bench-out/tune/db   # add another database's records
       python tools/build_schedules.py --trials 0 --coverage 10   # kernels of 10 unseen candidates per space
                                                                  # that the database covers
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def workload_module(space, hw):
    """One Relax module holding every distinct standalone workload of ``space`` for the CPU target."""
    from tvm import relax

    from explorer.cost.measured import distinct_items
    from explorer.measure.workloads import relax_function

    bb = relax.BlockBuilder()
    items = distinct_items(space.cost_slots(), hw)
    for i, (w, b) in enumerate(items):
        relax_function(bb, f"w{i}", w, b)
    return bb.get(), len(items)


def network_modules(space, n: int, seed: int, tmp: Path, extra_designs=()):
    """Relax modules of ``n`` random derived networks of ``space`` (and of ``extra_designs``)."""
    from explorer.deploy.tvm_build import import_relax, load_onnx

    rng = np.random.default_rng(seed)
    designs = [random_design(space, rng) for _ in range(n)] + list(extra_designs)
    return [import_relax(load_onnx(export(d, i, tmp / f"n{i}.onnx"))) for i, d in enumerate(designs)]


def random_design(space, rng):
    from explorer.space.design import DesignPoint
    from explorer.backends import load_target

    hw = load_target("vta").hardware_space()  # the export only reads the weight width from it
    return DesignPoint.make(space, space.random_genotype(rng), "vta", hw.config_from_indices({k.name: 0 for k in hw.knobs}))


def export(design, seed: int, out: Path) -> Path:
    """The design's network (random weights: kernels do not depend on them) as ONNX."""
    import torch

    from explorer.deploy.export import build_module, export_onnx

    torch.manual_seed(seed)
    return export_onnx(build_module(design, None), design.input_shape, out).path


def merge(src: Path, dst: Path | None) -> int:
    """Add ``src``'s workloads and tuning records to ``dst`` (default: the shipped schedules/cpu)."""
    from explorer.deploy.schedules import merge as merge_db
    from explorer.paths import shipped_schedules

    n, skipped = merge_db(src, dst or shipped_schedules("cpu"))
    if skipped:
        print(f"skipped {skipped} records whose traces name blocks the destination's copy of the kernel calls otherwise")
    return n


def coverage(shape, classes, n: int, seed: int, db: str) -> None:
    """Compile ``n`` random candidates per space (not among the tuned ones) with the database:
    the share of their kernels it schedules."""
    from explorer.deploy.tvm_build import build, host_target, load_onnx
    from explorer.errors import ExplorerError
    from explorer.space import SPACES, create_space

    print("| space | candidates | kernels scheduled / all | fully tuned candidates |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in sorted(SPACES.names()):
            space = create_space(name, shape, classes)
            mods_dir = Path(tmp) / name
            mods_dir.mkdir()
            done = total = full = exported = 0
            for i in range(n):
                try:
                    net = export(random_design(space, np.random.default_rng(seed + i)), seed + i, mods_dir / f"c{i}.onnx")
                except ExplorerError:  # a candidate whose output ignores its input: nothing to compile
                    continue
                exported += 1
                card = build(load_onnx(net), host_target(), mods_dir / f"c{i}.so", database=db)
                done += card["scheduled_kernels"]
                total += len(card["workloads"])
                full += int(card["tuned"])
            print(f"| {name} | {exported} of {n} sampled (the rest ignore their input) | {done} / {total} ({100 * done / max(1, total):.0f}%) | {full} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=1200)
    ap.add_argument("--per-iter", type=int, default=2)
    ap.add_argument("--coverage", type=int, default=0, help="then compile N unseen random candidates per space")
    ap.add_argument("--merge", metavar="DIR", help="only add the records of another schedule database, then stop")
    ap.add_argument("--networks", type=int, default=12, help="random derived networks per space")
    ap.add_argument("--dataset", default="mnist5k", help="sets the input shape of the spaces' layers")
    ap.add_argument("--db", default=None, help="default: the shipped database, schedules/cpu")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    if a.merge:
        n = merge(Path(a.merge), Path(a.db) if a.db else None)
        print(f"merged {n} records from {a.merge}")
        return
    from explorer.data import load_dataset
    from explorer.deploy.export import load_design
    from explorer.deploy.tune import tune_module
    from explorer.space import SPACES, create_space
    from explorer.backends import load_target

    d = load_dataset(a.dataset, seed=0)
    shape, classes = tuple(d.x_train.shape[1:]), int(d.num_classes)
    hw = load_target("cpu").hardware_space()
    mods, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in sorted(SPACES.names()):
            space = create_space(name, shape, classes)
            mod, n = workload_module(space, hw)
            mods.append(mod)
            extra = []
            if name == "chain" and Path("runs/demo/design.json").is_file():
                extra = [load_design("runs/demo")[0]]
            mods += network_modules(space, a.networks, a.seed, Path(tmp), extra)
            notes.append(f"{name}: {n} standalone workloads, {a.networks + len(extra)} networks")
    print(f"# schedules for {a.dataset} {shape}: " + "; ".join(notes))
    t = time.monotonic()
    from explorer.deploy.tvm_build import host_target
    from explorer.paths import shipped_schedules

    r = tune_module(mods, host_target(os.cpu_count()), a.db or shipped_schedules("cpu"), trials=a.trials,
                    num_cores=os.cpu_count(), per_iter=a.per_iter, seed=a.seed, label="schedules/cpu")
    rep = r.as_json()
    print(f"{len(rep['tasks'])} distinct kernels; {rep['trials_this_run']} trials this run, {rep['trials_total']} in total; "
          f"{time.monotonic() - t:.0f} s; database {r.database}")
    if a.coverage:
        coverage(shape, classes, a.coverage, a.seed + 1000, r.database)
    info = Path(r.database, "README.json")
    old = json.loads(info.read_text()) if info.is_file() else {}
    info.write_text(json.dumps({**old, **{
        "built_by": "tools/build_schedules.py", "dataset": a.dataset, "input_shape": list(shape), "spaces": notes,
        "target": rep["target"], "kernels": len(rep["tasks"]), "trials": rep["trials_total"],
        "date": time.strftime("%Y-%m-%d")}}, indent=2) + "\n")


if __name__ == "__main__":
    main()
