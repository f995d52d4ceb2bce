"""How well the trained supernet ranks designs: Spearman correlation of one-shot accuracy (BatchNorm
recalibrated, as the selection scores candidates) against accuracy after retraining from scratch.

Runs one co-search with the given settings (the Python API: the same loop ``explorer search`` runs),
then scores every design of ``--cells`` (a JSON object {genotype: retrained test accuracy}, such as
the ``random_cells.json`` that ``tools/nb201_quality.py`` caches) in the supernet it trained. A rank
correlation near 1 means one-shot accuracy can choose between designs; near 0 means only retraining
can (which is why the selection trains its finalists briefly from scratch).

Usage: python tools/oneshot_rank.py --cells bench-out/nb201/random_cells.json --space nb201
           [--dataset mnist5k] [--target MODEL.json --latency-ms L] [--seed 0] [--config FILE.toml]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def spearman(a, b) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    def ranks(x):
        x = np.asarray(x, dtype=float)
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        for v in np.unique(x):  # ties share their mean rank
            r[x == v] = r[x == v].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", required=True, type=Path, help="JSON {genotype: retrained accuracy}")
    ap.add_argument("--space", default="nb201")
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--target", default=None, help="target name or a fitted latency-table model (JSON)")
    ap.add_argument("--latency-ms", type=float, default=None, dest="latency_ms")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default=None, help="TOML config for the search")
    ap.add_argument("--out", type=Path, default=None, help="write the scores as JSON here")
    a = ap.parse_args()

    from explorer.api import build_problem
    from explorer.config import load_config
    from explorer.measure.local import cpu_model
    from explorer.search.cosearch import CoSearch

    over = {"space": a.space, "dataset": a.dataset, "seed": a.seed}
    if a.target:
        over["target"] = a.target
    if a.latency_ms is not None:
        over["latency_ms"] = a.latency_ms
    cfg = load_config(a.config, over)
    prob = build_problem(cfg, progress=False)
    cells = json.loads(a.cells.read_text())
    t = time.monotonic()
    s = CoSearch(prob.space, prob.hw, prob.cost_model, prob.data, cfg.search, prob.constraints(), prob.target.name, cfg.seed)
    res = s.run()
    search_s = time.monotonic() - t
    c = prob.hw.derive()
    rows = []
    for text, acc in cells.items():
        g = prob.space.parse_genotype(text)
        rows.append({"genotype": text, "retrained": acc, "one_shot": s.one_shot_accuracy(g, c)})
    rho = spearman([r["one_shot"] for r in rows], [r["retrained"] for r in rows])
    print(f"CPU: {cpu_model()}; {a.space} on {a.dataset}; seed {a.seed}; search {search_s:.0f} s "
          f"({res.steps} steps, stop: {res.stop_reason}); {time.strftime('%Y-%m-%d')}")
    print("| one-shot | retrained | design |\n|---|---|---|")
    for r in sorted(rows, key=lambda r: -r["retrained"]):
        print(f"| {r['one_shot']:.3f} | {r['retrained']:.4f} | `{r['genotype']}` |")
    print(f"Spearman(one-shot, retrained) over {len(rows)} designs: {rho:.3f}")
    if a.out:
        a.out.write_text(json.dumps({"spearman": rho, "n": len(rows), "rows": rows, "search_s": search_s}, indent=1))


if __name__ == "__main__":
    main()
