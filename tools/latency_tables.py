"""How well the learned latency models rank designs on latency tables measured on real devices.

Reads NAS-Bench-201 latency tables in the form HELP publishes them (Lee et al., "HELP:
Hardware-Adaptive Efficient Latency Prediction for NAS via Meta-Learning", NeurIPS 2021; repository
HayeonLee/HELP, folder ``data/nasbench201``: ``str_arch2idx.pt`` maps genotype strings to indices,
``latency/<device>.pt`` holds the 15,625 latencies in ms), or any ``genotype,latency_ms`` CSV. The
tables are not in this repository: point ``--help-dir`` at a copy. Files are read with
``torch.load(weights_only=True)`` (plain lists and dicts; no code runs).

For every table: fit on ``--fit`` random records, evaluate Kendall tau on ``--eval`` others, for
  * ``features``: the non-negative fit of aggregate workload features (``explorer.cost.learned``);
  * ``ridge``: one-hot (edge, op) ridge regression on log latency (the baseline);
  * ``additive``: the additive (slot, option) model fitted in log space with shrinkage
    (``explorer.cost.additive``), whose row costs the search can use.

With ``--standalone-prior THREADS`` (for tables measured on this machine with TVM, such as
``tools/measure_designs.py --space nb201 ...``), the additive model is also fitted with the space's
workloads timed standalone with TVM here as its prior (``row_prior_ms``).

Usage: python tools/latency_tables.py --help-dir HELP/data/nasbench201 --devices raspi4,pixel3 [--fit 200 --eval 2000]
       EXPLORER_SCHEDULES=none python tools/latency_tables.py --devices nb201_tvm.csv --standalone-prior 2
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np


def load_table(help_dir: Path | None, device: str) -> dict[str, float]:
    """``{genotype string: latency ms}`` of one device (a HELP .pt table, or a CSV path)."""
    p = Path(device)
    if p.suffix == ".csv":
        with p.open(newline="") as fh:
            return {r["genotype"]: float(r["latency_ms"]) for r in csv.DictReader(fh)}
    import torch

    idx = torch.load(help_dir / "str_arch2idx.pt", weights_only=True)
    lat = torch.load(help_dir / "latency" / f"{device}.pt", weights_only=True)
    return {g: float(lat[i]) for g, i in idx.items() if i < len(lat)}


def onehot(space, genotypes) -> np.ndarray:
    ch = space.choices()
    cols = [(k, o) for k, opts in ch.items() for o in opts]
    return np.array([[float(g[k] == o) for k, o in cols] for g in genotypes])


def evaluate(space, table: dict, n_fit: int, n_eval: int, seed: int, row_prior=None, centre=None) -> dict:
    from scipy.stats import kendalltau
    from sklearn.linear_model import RidgeCV

    from explorer.cost.additive import AdditiveLatencyModel
    from explorer.cost.learned import LatencyModel, workload_features

    names = sorted(table)
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(names))
    fit_n, ev_n = [names[i] for i in pick[:n_fit]], [names[i] for i in pick[n_fit:n_fit + n_eval]]
    gf, ge = [space.parse_genotype(n) for n in fit_n], [space.parse_genotype(n) for n in ev_n]
    yf, ye = np.array([table[n] for n in fit_n]), np.array([table[n] for n in ev_n])
    tau = lambda a, b: float(kendalltau(a, b).statistic)  # noqa: E731
    out = {}
    Xf = np.array([workload_features(space.workloads(g)) for g in gf])
    Xe = np.array([workload_features(space.workloads(g)) for g in ge])
    m = LatencyModel("nb201", space.options(), space.input_shape, space.num_classes).fit(Xf, yf)
    out["features"] = (tau(m.predict(Xf), yf), tau(m.predict(Xe), ye))
    r = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(onehot(space, gf), np.log(yf))
    out["ridge"] = (tau(r.predict(onehot(space, gf)), yf), tau(r.predict(onehot(space, ge)), ye))
    t = time.monotonic()
    a = AdditiveLatencyModel.for_space(space).fit(gf, yf, seed=seed)
    out["additive"] = (tau(a.predict(gf), yf), tau(a.predict(ge), ye))
    _, lo, hi = a.predict_interval(ge)
    out["coverage"] = float(np.mean((ye >= lo) & (ye <= hi)))
    out["additive_s"] = time.monotonic() - t
    out["liveness"] = a.liveness
    out["lam"] = a.lam
    if centre is not None:
        c = AdditiveLatencyModel.for_space(space, centre_u=centre[0], centre_v=centre[1]).fit(gf, yf, seed=seed)
        out["few_shot"] = (tau(c.predict(gf), yf), tau(c.predict(ge), ye))
    out["model"] = a
    if row_prior is not None:
        b = AdditiveLatencyModel.for_space(space, row_prior_ms=row_prior).fit(gf, yf, seed=seed)
        out["standalone"] = (tau(b.predict(gf), yf), tau(b.predict(ge), ye))
        out["standalone_liveness"] = b.liveness
    return out


def standalone_prior(space, threads: int) -> list[float]:
    """Row prior from the space's workloads timed standalone with TVM on this CPU (cached in the
    store; untuned where ``EXPLORER_SCHEDULES=none``, as tools/measure_designs.py's tables are)."""
    from explorer.cost.additive import standalone_row_prior
    from explorer.deploy.schedules import resolve
    from explorer.deploy.tvm_build import toolchain_versions
    from explorer.measure.store import Store, default_store_path
    from explorer.measure.workloads import measure_workloads

    ws = list(dict.fromkeys(w for s in space.cost_slots() for wls in s.table.values() for w in wls))
    dbs = resolve(None, "cpu")
    with Store(default_store_path()) as st:
        got = measure_workloads([(w, 1) for w in ws], "cpu", threads, st, toolchain_versions(), database=dbs or None)
    return standalone_row_prior(space, {w: sec for (w, _), sec in got.items()})


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--help-dir", type=Path, help="HELP's data/nasbench201 folder")
    ap.add_argument("--devices", default="raspi4,pixel3,gold_6240,1080ti_1,fpga,eyeriss")
    ap.add_argument("--fit", type=int, nargs="+", default=[200, 20])
    ap.add_argument("--eval", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--few-shot", action="store_true",
                    help="also fit each table's smaller fits shrunk toward the mean factors of the other tables' largest fits")
    ap.add_argument("--standalone-prior", type=int, metavar="THREADS", default=0,
                    help="also fit with a prior of the workloads timed standalone with TVM here (for tables measured here)")
    a = ap.parse_args()
    from explorer.space import create_space

    space = create_space("nb201", (3, 32, 32), 10, channels=16, cells_per_stage=5)  # the benchmark's skeleton
    prior = standalone_prior(space, a.standalone_prior) if a.standalone_prior else None
    extra = (" additive, standalone prior |" if prior else "") + (" additive, few-shot prior from the other tables |" if a.few_shot else "")
    print("| table | fit | features train / held-out | ridge (one-hot, log) train / held-out | additive train / held-out | "
          f"ops that cost | shrinkage | 90% interval holds | fit s |{extra}")
    print("|---|---|---|---|---|---|---|---|---|" + ("---|" if prior else "") + ("---|" if a.few_shot else ""))
    devices = a.devices.split(",")
    tables = {dev: load_table(a.help_dir, dev) for dev in devices}
    big = max(a.fit)
    full = {}
    if a.few_shot:  # every table's largest fit, the source of the others' few-shot prior
        for dev in devices:
            full[dev] = evaluate(space, tables[dev], big, 10, a.seed)["model"]
    for dev in devices:
        for n in a.fit:
            centre = None
            if a.few_shot and n < big:
                from explorer.cost.additive import few_shot_centre

                centre = few_shot_centre([m for d, m in full.items() if d != dev])
            r = evaluate(space, tables[dev], n, a.eval, a.seed, prior, centre)
            f = lambda k: f"{r[k][0]:.2f} / **{r[k][1]:.2f}**" if k == "additive" else f"{r[k][0]:.2f} / {r[k][1]:.2f}"  # noqa: E731
            line = (f"| {Path(dev).stem} | {n} | {f('features')} | {f('ridge')} | {f('additive')} | {r['liveness']} | "
                    f"{r['lam']} | {r['coverage'] * 100:.0f}% | {r['additive_s']:.1f} |")
            if prior:
                line += f" {f('standalone')} ({r['standalone_liveness']}) |"
            if a.few_shot:
                line += f" {f('few_shot')} |" if "few_shot" in r else " - |"
            print(line, flush=True)


if __name__ == "__main__":
    main()
