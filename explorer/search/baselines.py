"""Baselines run in the same harness as the co-search, for comparison at an equal budget.

* ``random``: sample (genotype, hardware) pairs uniformly; discard those that break a limit;
  train each briefly on the train split, score on val (loss + objective); keep the best.
* ``sequential``: network search with no hardware in the loop (hardware fixed at the target's
  default, no cost terms on ``alpha``) for half the budget, then a hardware search for the fixed
  network (``alpha`` frozen) for the other half.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from ..config import RunConfig
from ..space.design import DesignPoint
from ..space.quant import QuantState
from .constraints import Constraints
from .cosearch import CoSearch, SearchResult
from .train import proxy_train

__all__ = ["random_search", "sequential_search"]


def random_search(space, hw, cost_model, data, cfg: RunConfig, constraints: Constraints, target: str,
                  proxy_steps: int = 60, on_sample=None, measurer=None) -> SearchResult:
    """Random search within ``cfg.search.budget_min`` of wall-clock time. The kept design is checked
    on the target's truth (``measurer``) and repaired there as the co-search's is; ``feasible`` is
    its figures' verdict, not assumed."""
    rng = np.random.default_rng(cfg.seed)
    t0 = time.monotonic()
    budget_s = cfg.search.budget_min * 60
    best, history, n = None, [], 0
    while time.monotonic() - t0 < budget_s and n < cfg.search.steps:
        g = space.random_genotype(rng)
        c = hw.config_from_indices({k.name: int(rng.integers(len(k.values))) for k in hw.knobs})
        fig = cost_model.evaluate(g, c)
        n += 1
        if constraints.violation(fig) > 0:
            history.append({"sample": n, "feasible": False, "figures": fig})
            continue
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed + n)
            net = space.build_network(g, QuantState.fixed(*c.bits()))
        val_loss, val_acc = proxy_train(net, data, proxy_steps, cfg.search.batch_size, cfg.search.proxy_lr, cfg.seed + n)
        score = val_loss + constraints.objective_value(fig)
        rec = {"sample": n, "feasible": True, "figures": fig, "val_accuracy": val_acc, "score": score,
               "time_s": round(time.monotonic() - t0, 3)}
        history.append(rec)
        if on_sample:
            on_sample(rec)
        if best is None or score < best[0]:
            best = (score, n, g, c, fig, val_acc)
    if best is None:
        from ..errors import InfeasibleLimitsError

        raise InfeasibleLimitsError("random search found no design within the limits in its budget")
    _, bn, g, c, fig, val_acc = best
    stop = "budget" if n < cfg.search.steps else "steps"
    detail = f"{n} samples drawn" + (f" in the {cfg.search.budget_min:g}-minute budget" if stop == "budget" else "")
    measured, moves = None, []
    if measurer is not None:
        checker = CoSearch(space, hw, cost_model, data, cfg.search, constraints, target, cfg.seed, measurer=measurer)
        g2, c2, measured, moves = checker.verify_on_truth(g, c, n, history)
        if (g2, c2) != (g, c):  # repaired on the truth: its proxy accuracy is no longer known
            g, c, val_acc = g2, c2, float("nan")
        fig = cost_model.evaluate(g, c)
    return SearchResult(DesignPoint.make(space, g, target, c), g, c, fig, constraints.violation(fig) == 0, bn, n,
                        time.monotonic() - t0, stop, moves, val_acc, history, stop_detail=detail, measured=measured)


def sequential_search(space, hw, cost_model, data, cfg: RunConfig, constraints: Constraints, target: str,
                      on_step=None, measurer=None) -> SearchResult:
    """Network first (hardware-blind), then hardware for that network; half the budget each. The
    second half has the target's truth (``measurer``) in its loop and checks its kept design on it,
    as the co-search does."""
    half = dataclasses.replace(cfg.search, budget_min=cfg.search.budget_min / 2, steps=max(1, cfg.search.steps // 2))
    hw.freeze(hw.default_config())
    blind = Constraints({}, {}, 0.0, constraints.margin)
    first = CoSearch(space, hw, cost_model, data, half, blind, target, cfg.seed, update_hw=False,
                     cost_on_alpha=False, on_step=on_step)
    r1 = first.run()
    # Phase 2: the network is fixed; only the hardware (and the weights, under its bit widths) move.
    with torch.no_grad():
        for k in hw.knobs:
            getattr(hw, f"mask_{k.name}").fill_(True)
    first.net.freeze(r1.genotype)
    second_cfg = dataclasses.replace(half, warmup_steps=0, stages=[])
    second = CoSearch(space, hw, cost_model, data, second_cfg, constraints, target, cfg.seed + 1,
                      update_alpha=False, supernet=first.net, on_step=on_step, measurer=measurer)
    r2 = second.run()
    r2.history = r1.history + r2.history
    r2.wall_s += r1.wall_s
    r2.steps += r1.steps
    return r2
