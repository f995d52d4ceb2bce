"""What selection costs and how far its cheap screen agrees with the full one-shot score.

Trains the demo's supernet once (``explorer search --dataset mnist5k --space chain --target vta``'s
loop, through the Python API, selection off), saves it to ``--cache``, then on that supernet:
times :func:`explorer.search.select.select` with the given ``--screen-batches`` (the number of
scorings, their mean cost, the proxy trainings' time, the kept design), and scores the first
``--compare`` candidates again with 8, 4, 2 and 1 calibration batches on all or half the validation
images: the Spearman correlation of each cheap score with the full one, and whether the full
score's best stays in the cheap score's top 12.

Usage: python tools/select_bench.py [--cache bench-out/select_net.pt] [--screen-batches 2] [--compare 60]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from explorer.api import build_problem
from explorer.config import load_config
from explorer.search import select as S
from explorer.search.cosearch import CoSearch
from oneshot_rank import spearman


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="bench-out/select_net.pt", help="the trained supernet (made if absent)")
    ap.add_argument("--screen-batches", type=int, default=2)
    ap.add_argument("--compare", type=int, default=60, help="candidates scored again with cheaper settings")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    cfg = load_config(None, {"dataset": "mnist5k", "space": "chain", "target": "vta", "seed": a.seed})
    prob = build_problem(cfg)
    search = CoSearch(prob.space, prob.hw, prob.cost_model, prob.data, cfg.search, prob.constraints(),
                      prob.target.name, cfg.seed)
    cache = Path(a.cache)
    if cache.exists():
        st = torch.load(cache, weights_only=True)
        search.net.load_state_dict(st["net"])
        search.hw.load_state_dict(st["hw"])
    else:
        cfg.search.selection = "loss"
        t = time.perf_counter()
        search.run()
        print(f"search (selection off) {time.perf_counter() - t:.1f} s", flush=True)
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"net": search.net.state_dict(), "hw": search.hw.state_dict()}, cache)

    scorings, proxies = [], []

    def timed(fn, into):
        def run(*args, **kw):
            t = time.perf_counter()
            out = fn(*args, **kw)
            into.append(time.perf_counter() - t)
            return out
        return run

    full_score, full_proxy = S.recalibrated_accuracy, S.proxy_train
    S.recalibrated_accuracy, S.proxy_train = timed(full_score, scorings), timed(full_proxy, proxies)
    try:
        t = time.perf_counter()
        kept, scored, _ = S.select(search, [], proxy_steps=cfg.search.select_proxy_steps, seed=a.seed,
                                   screen_batches=a.screen_batches)
        total = time.perf_counter() - t
    finally:
        S.recalibrated_accuracy, S.proxy_train = full_score, full_proxy
    print(f"select, screen on {a.screen_batches} batches: {total:.1f} s; {len(scorings)} scorings "
          f"{sum(scorings):.1f} s ({1e3 * np.mean(scorings):.0f} ms each); {len(proxies)} proxy trainings {sum(proxies):.1f} s")
    print(f"kept ({kept.source}, one-shot {kept.one_shot:.3f}, proxy {kept.proxy}): {prob.space.format_genotype(kept.genotype)}")

    data, cands = search.data, scored[:a.compare]

    def scores(batches: int, n_val: int) -> tuple[list, float]:
        calib = S.calibration_batches(data, a.seed, batches=batches)
        t, out = time.perf_counter(), []
        for c in cands:
            search._set_bits(search.hw.onehot(c.config))
            out.append(full_score(search.net, search.net.onehot(c.genotype), calib, data.x_val[:n_val], data.y_val[:n_val])[0])
        return out, (time.perf_counter() - t) / max(1, len(cands))

    full, _ = scores(8, len(data.y_val))
    best = int(np.argmax(full))
    print("| calibration batches | validation images | ms / candidate | Spearman vs full | full best in top 12 |")
    print("|---|---|---|---|---|")
    for nb, nv in ((8, len(data.y_val)), (4, len(data.y_val)), (2, len(data.y_val)), (2, len(data.y_val) // 2), (1, len(data.y_val) // 2)):
        v, dt = scores(nb, nv)
        top = np.argsort(v)[::-1][:12]
        print(f"| {nb} | {nv} | {1e3 * dt:.0f} | {spearman(v, full):.3f} | {'yes' if best in top else 'no'} |")


if __name__ == "__main__":
    main()
