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
import torch.nn.functional as F

from ..config import RunConfig
from ..space.design import DesignPoint
from ..space.quant import QuantState
from .constraints import Constraints
from .cosearch import CoSearch, SearchResult
from .train import Batches, accuracy

__all__ = ["random_search", "sequential_search"]


def random_search(space, hw, cost_model, data, cfg: RunConfig, constraints: Constraints, target: str,
                  proxy_steps: int = 60, on_sample=None) -> SearchResult:
    """Random search within ``cfg.search.budget_min`` of wall-clock time."""
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
        opt = torch.optim.SGD(net.parameters(), lr=cfg.search.w_lr, momentum=0.9)
        batches = Batches(data.x_train, data.y_train, cfg.search.batch_size, np.random.default_rng(cfg.seed + n))
        net.train()
        for _ in range(proxy_steps):
            xb, yb = next(batches)
            loss = F.cross_entropy(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            net.eval()
            val_loss = float(F.cross_entropy(net(torch.from_numpy(data.x_val)), torch.from_numpy(data.y_val)))
        val_acc = accuracy(net, data.x_val, data.y_val)
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
    return SearchResult(DesignPoint.make(space, g, target, c), g, c, fig, True, bn, n,
                        time.monotonic() - t0, "budget", [], val_acc, history)


def sequential_search(space, hw, cost_model, data, cfg: RunConfig, constraints: Constraints, target: str,
                      on_step=None) -> SearchResult:
    """Network first (hardware-blind), then hardware for that network; half the budget each."""
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
                      update_alpha=False, supernet=first.net, on_step=on_step)
    r2 = second.run()
    r2.history = r1.history + r2.history
    r2.wall_s += r1.wall_s
    r2.steps += r1.steps
    return r2
