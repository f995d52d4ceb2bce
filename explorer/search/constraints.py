"""Resource limits as constraints: dual ascent on multipliers, feasibility, and repair."""

from __future__ import annotations

import math

import torch

from ..cost.base import CostModel
from ..errors import InfeasibleLimitsError
from ..units import by_name

__all__ = ["Constraints", "check_feasible", "repair"]


class Constraints:
    """Lagrange multipliers ``lambda_k >= 0`` for each limited resource.

    The penalty added to a loss is ``sum_k lambda_k * E[c_k] / limit_k`` (multipliers held constant
    in the gradient: the Lagrangian of ``E[c_k] <= limit_k``) plus ``sum_k w_k * log(E[c_k] / ref_k)``
    for the resources that have an objective weight and no limit. A limit is a constraint, not a
    cost to push below: once the derived design fits, its multiplier falls to 0 and accuracy alone
    moves the design, spending the slack.
    After each step :meth:`ascend` raises ``lambda_k`` while the derived design's ``c_k`` exceeds
    ``limit_k * (1 - margin)`` and lowers it (not below 0) otherwise.
    """

    def __init__(self, limits: dict[str, float], objective: dict[str, float], dual_lr: float, margin: float):
        self.limits = dict(limits)
        # a limited resource is a constraint only: below its limit, cost is not worth accuracy
        self.objective = {k: float(v) for k, v in objective.items() if v > 0 and k not in self.limits}
        self.dual_lr, self.margin = dual_lr, margin
        self.lam = {k: 0.0 for k in self.limits}
        self.ref: dict[str, float] = {}

    def penalty(self, cost: dict[str, torch.Tensor]) -> torch.Tensor:
        if not self.ref:
            self.ref = {k: max(float(v.detach()), 1e-30) for k, v in cost.items()}
        total = torch.zeros(())
        for k, lam in self.lam.items():
            total = total + lam * cost[k] / self.limits[k]
        for k, w in self.objective.items():
            total = total + w * torch.log(cost[k] / self.ref[k])
        return total

    def ascend(self, figures: dict[str, float]) -> None:
        """Dual ascent on the figures of the design the search would derive now.

        The limits bind the derived (argmax) design, not the relaxed expectation: a multiplier
        keeps rising only while the derived design breaks its limit, so the search does not
        over-compress once the design it would return fits.
        """
        for k in self.lam:
            # log ratio, clipped: a design 2x over its limit and one 2x under move lambda equally
            g = math.log(max(float(figures[k]), 1e-30) / (self.limits[k] * (1 - self.margin)))
            self.lam[k] = max(0.0, self.lam[k] + self.dual_lr * max(-1.0, min(1.0, g)))

    def violation(self, figures: dict[str, float]) -> float:
        """Sum of relative excess over the limits (0 when all hold)."""
        return sum(max(0.0, figures[k] / lim - 1.0) for k, lim in self.limits.items())

    def objective_value(self, figures: dict[str, float]) -> float:
        ref = self.ref or {k: 1.0 for k in figures}
        return sum(w * math.log(figures[k] / ref[k]) for k, w in self.objective.items())


def check_feasible(cost_model: CostModel, limits: dict[str, float]) -> dict[str, float]:
    """Raise :class:`InfeasibleLimitsError` if a limit is below the cheapest possible design."""
    if not limits:
        return {}
    lb = cost_model.lower_bounds()
    bad = [k for k, lim in limits.items() if lim < lb[k]]
    if bad:
        parts = [f"{r.limit_key}={r.fmt(limits[r.name])} but the cheapest design needs {r.fmt(lb[r.name])}"
                 for r in map(by_name, bad)]
        raise InfeasibleLimitsError("impossible limits: " + "; ".join(parts))
    return lb


def repair(cost_model: CostModel, genotype: dict, config, hw_space, constraints: Constraints, prefs, max_moves: int = 64,
           valid=None):
    """Greedy repair of a derived design that breaks a limit.

    Each move changes one network choice or one hardware knob. Among the moves that reduce the
    violation, it takes the one that reduces it most per nat of the search's preference given up,
    ``log(p_current / p_new)`` with ``p`` from ``prefs[name][option]`` (every option of every
    network choice and knob; pruned options, at probability 0, are never used), until every limit
    holds or no move helps. A move to a genotype that ``valid(genotype)`` refuses (a network whose
    output no longer depends on its input) is never taken. Returns (genotype, config, moves).
    """
    g, cfg = dict(genotype), config
    cur = cost_model.evaluate(g, cfg)

    def price(name, old, new):
        p_old = max(prefs.get(name, {}).get(old, 1.0), 1e-6)
        p_new = max(prefs.get(name, {}).get(new, 1.0), 1e-6)
        return max(math.log(p_old / p_new), 0.01)

    moves = []
    for _ in range(max_moves):
        v0 = constraints.violation(cur)
        if v0 == 0:
            break
        candidates = []
        for name in genotype:
            for o in prefs.get(name, ()):
                if o != g[name] and prefs.get(name, {}).get(o, 1.0) > 0.0 and (valid is None or valid({**g, name: o})):
                    candidates.append(({**g, name: o}, cfg, f"{name}={o}", price(name, g[name], o)))
        for k in hw_space.knobs:
            for v in k.values:
                if v != cfg[k.name] and prefs.get(k.name, {}).get(v, 1.0) > 0.0:
                    c2 = type(cfg)(tuple((n, v if n == k.name else x) for n, x in cfg.values), cfg.fixed)
                    candidates.append((g, c2, f"{k.name}={v}", price(k.name, cfg[k.name], v)))
        best = None
        for cand_g, cand_c, move, cost in candidates:
            fig = cost_model.evaluate(cand_g, cand_c)
            gain = v0 - constraints.violation(fig)
            if gain <= 0:
                continue
            key = gain / cost
            if best is None or key > best[0]:
                best = (key, cand_g, cand_c, fig, move)
        if best is None:
            break
        _, g, cfg, cur, move = best
        moves.append(move)
    return g, cfg, moves
