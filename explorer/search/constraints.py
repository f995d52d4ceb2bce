"""Resource limits as constraints: dual ascent on multipliers, feasibility, and repair."""

from __future__ import annotations

import math

import torch

from ..config import LIMIT_KEYS
from ..cost.base import UNITS, CostModel
from ..errors import InfeasibleLimitsError

__all__ = ["Constraints", "check_feasible", "repair"]


class Constraints:
    """Lagrange multipliers ``lambda_k >= 0`` for each limited resource.

    The penalty added to a loss is ``sum_k lambda_k * E[c_k] / limit_k`` (multipliers held constant
    in the gradient) plus ``sum_k w_k * log(E[c_k] / ref_k)``, the always-on objective weights.
    After each step :meth:`ascend` raises ``lambda_k`` while ``E[c_k]`` exceeds
    ``limit_k * (1 - margin)`` and lowers it (not below 0) otherwise.
    """

    def __init__(self, limits: dict[str, float], objective: dict[str, float], dual_lr: float, margin: float):
        self.limits = dict(limits)
        self.objective = {k: float(v) for k, v in objective.items() if v > 0}
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

    def ascend(self, cost: dict[str, torch.Tensor]) -> None:
        for k in self.lam:
            g = float(cost[k].detach()) / (self.limits[k] * (1 - self.margin)) - 1.0
            self.lam[k] = max(0.0, self.lam[k] + self.dual_lr * g)

    def violation(self, figures: dict[str, float]) -> float:
        """Sum of relative excess over the limits (0 when all hold)."""
        return sum(max(0.0, figures[k] / lim - 1.0) for k, lim in self.limits.items())

    def objective_value(self, figures: dict[str, float]) -> float:
        ref = self.ref or {k: 1.0 for k in figures}
        return sum(w * math.log(figures[k] / ref[k]) for k, w in self.objective.items())


def fmt(resource: str, value_si: float) -> str:
    unit, f = UNITS[resource]
    return f"{value_si * f:.4g} {unit}"


def check_feasible(cost_model: CostModel, limits: dict[str, float]) -> dict[str, float]:
    """Raise :class:`InfeasibleLimitsError` if a limit is below the cheapest possible design."""
    if not limits:
        return {}
    lb = cost_model.lower_bounds()
    bad = [k for k, lim in limits.items() if lim < lb[k]]
    if bad:
        names = {v[0]: k for k, v in LIMIT_KEYS.items()}
        parts = [f"{names[k]}={fmt(k, limits[k])} but the cheapest design needs {fmt(k, lb[k])}" for k in bad]
        raise InfeasibleLimitsError("impossible limits: " + "; ".join(parts))
    return lb


def repair(cost_model: CostModel, genotype: dict, config, hw_space, constraints: Constraints, prefs, max_moves: int = 64):
    """Greedy repair of a derived design that breaks a limit.

    Each move changes one network choice or one hardware knob to the option that most reduces the
    violation (ties broken by the search's preference ``prefs[name][option]``, its probability),
    until every limit holds or no move helps. Returns (genotype, config, moves).
    """
    g, cfg = dict(genotype), config
    cur = cost_model.evaluate(g, cfg)
    moves = []
    for _ in range(max_moves):
        v0 = constraints.violation(cur)
        if v0 == 0:
            break
        best = None
        for name, opts in cost_model.net_choices.items():
            for o in opts:
                if o == g[name] or prefs.get(name, {}).get(o, 1.0) == 0.0:
                    continue
                cand = {**g, name: o}
                fig = cost_model.evaluate(cand, cfg)
                key = (constraints.violation(fig), -prefs.get(name, {}).get(o, 0.0))
                if best is None or key < best[0]:
                    best = (key, cand, cfg, fig, f"{name}={o}")
        for k in hw_space.knobs:
            for v in k.values:
                if v == cfg[k.name] or prefs.get(k.name, {}).get(v, 1.0) == 0.0:
                    continue
                cand_cfg = type(cfg)(tuple((n, v if n == k.name else x) for n, x in cfg.values), cfg.fixed)
                fig = cost_model.evaluate(g, cand_cfg)
                key = (constraints.violation(fig), -prefs.get(k.name, {}).get(v, 0.0))
                if best is None or key < best[0]:
                    best = (key, g, cand_cfg, fig, f"{k.name}={v}")
        if best is None or best[0][0] >= v0:
            break
        _, g, cfg, cur, move = best
        moves.append(move)
    return g, cfg, moves
