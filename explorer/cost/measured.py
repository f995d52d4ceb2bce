"""Measured-latency cost model for CPU/GPU targets.

Prior: every distinct workload of the space, built standalone with TVM and timed on the device for
each (device, threads, batch) setting (see :mod:`explorer.measure.workloads`). The latency of a
network at a setting is the sum of its workloads' latencies; the expectation over the op and knob
distributions is exact (all settings enumerated), so it is differentiable in ``alpha`` and
``theta`` with the same ``p_o (c_o - E[c])`` gradient as the analytical model.

Learned correction: end-to-end measurements of derived networks refit one factor per (slot, option)
row, ``c_row = standalone_row * exp(g + u[option] + v[choice=option])`` (``g`` shared by all rows,
``u`` pooled over every slot where the option appears; fixed slots share one factor), plus an end-to-end overhead term, with the
robust log-space fit of :func:`explorer.cost.additive.solve_log_factors`: ridge shrinkage toward the
standalone timings (strength by cross-validation once there are enough records), soft-L1 loss so a
few measurements the model cannot explain are down-weighted (and flagged), not fitted. A measurement
that says an op is dearer than its standalone timing raises that op's row costs, so the search's
``p_o (c_o - E[c])`` gradient changes with it; the model stays linear in the op distribution.
Energy per sample is ``threads * core_w * latency / batch`` (an assumption the target states).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from ..slots import ComboTable, Slot, joint_probs
from .additive import LAMBDAS, _soft_l1, factor_incidence, row_options, solve_log_factors
from ..space.hardware import HWConfig, HardwareSpace
from .base import COST_MODELS, CostModel, Measurement

__all__ = ["MeasuredCostModel", "KNOBS"]

KNOBS = ("DEVICE", "THREADS", "BATCH")
# Shrinkage until there are CV_MIN records to choose it by cross-validation. Measured on a doctored
# table (one op 3x too cheap, 5 derived designs, 20 trials): 0.3 learnt the op's rank in 20, 3.0 in 15.
LAM_FEW = 0.3
CV_MIN = 8
B_WEIGHT = 0.001  # the overhead term is nearly free once records disagree on it
U_WEIGHT = 0.03  # u (pooled per option) moves 1/0.03 x more cheaply than v (per choice)
OUTLIER_LOG = math.log(2.0)  # a measurement further than 2x from the refit model is flagged
# Spread (log) of a prediction before any measurement: how far standalone sums were from end-to-end
# latency (measured: mean abs error 4.8%, tails to ~25% on this project's CPU tables)
PRIOR_SIGMA_LOG = 0.15


@COST_MODELS.register("measured")
class MeasuredCostModel(CostModel):
    """Args:
    slots, net_choices: the network space's cost slots and choices.
    hw: hardware space with knobs DEVICE, THREADS, BATCH.
    table: ``{(workload, batch, device, threads): seconds}`` covering every slot workload and setting.
    core_w: power per active thread (W), for energy.
    """

    resources = ("latency_s", "energy_j")
    #: figures that scale with measured latency (energy = power x latency / batch)
    latency_proportional = ("energy_j",)

    def __init__(self, slots: list[Slot], net_choices: dict, hw: HardwareSpace, table: dict, core_w: float = 10.0):
        self.hw, self.slots = hw, slots
        self.combos = ComboTable(slots, net_choices)
        self.net_choices = self.combos.choices
        self.settings = list(itertools.product(*[hw.knob(k).values for k in KNOBS]))
        rows = [[sum(table[(w, b, d, t)] for w in wls) for d, t, b in self.settings] for wls in self.combos.row_workloads]
        self.per_combo = torch.tensor(rows, dtype=torch.float64).float()  # [combos, settings] seconds
        self.power = torch.tensor([t * core_w for d, t, b in self.settings])
        self.batch = torch.tensor([float(b) for d, t, b in self.settings])
        row_kinds, row_keys = row_options(self.combos, fixed_kind="(fixed)")
        # "(all)": one factor shared by every row, the cheapest way to say "everything is x% dearer"
        kinds, keys, Pu, Pv = factor_incidence([[*k, "(all)"] for k in row_kinds], row_keys)
        self._kinds, self._keys, self._Pu, self._Pv = kinds, keys, Pu, Pv
        self.factor = torch.ones(len(self.combos))  # learned per-row correction of the standalone timings
        self.offset_s = 0.0  # end-to-end overhead the rows do not explain
        self.fit_points: list[tuple[np.ndarray, int, float]] = []  # (rows of the design, setting, seconds)
        self.part_points: list[tuple[np.ndarray, int, float]] = []  # kernel time of groups of a design's rows
        self._part_design: list[int] = []  # which end-to-end record each part belongs to
        self._state = {"records": 0}
        self._cov = None  # Laplace covariance of (factor parameters, log overhead) after a refit
        self._sigma_log = PRIOR_SIGMA_LOG

    # -- probabilities ---------------------------------------------------------------------------
    def _combo_probs(self, net_probs):
        return self.combos.probs(net_probs)

    def _setting_probs(self, hw_probs):
        return joint_probs(hw_probs, KNOBS)

    def _per_setting(self, pc):
        lat = pc @ (self.per_combo * self.factor[:, None]) + self.offset_s  # [settings]
        return lat, lat * self.power / self.batch

    def predict(self, net_probs, hw_probs, exact: bool = False) -> dict[str, torch.Tensor]:
        """Expected latency and energy; exact for any probabilities (every setting is enumerated)."""
        ps = self._setting_probs(hw_probs)
        lat, energy = self._per_setting(self._combo_probs(net_probs))
        return {"latency_s": lat @ ps, "energy_j": energy @ ps}

    def _onehots(self, genotype, config: HWConfig):
        return self.combos.onehot(genotype), self.hw.onehot(config)

    def raw_latency_s(self, genotype, config) -> float:
        """Sum of the standalone workload latencies (before the correction)."""
        net, hwp = self._onehots(genotype, config)
        with torch.no_grad():
            return float((self._combo_probs(net) @ self.per_combo) @ self._setting_probs(hwp))

    def evaluate(self, genotype, config) -> dict[str, float]:
        net, hwp = self._onehots(genotype, config)
        with torch.no_grad():
            return {k: float(v) for k, v in self.predict(net, hwp).items()}

    def lower_bounds(self) -> dict[str, float]:
        with torch.no_grad():
            per_slot = self.combos.slot_min(self.per_combo * self.factor[:, None], dim=0)
            lat = per_slot.sum(0) + self.offset_s
            return {"latency_s": float(lat.min()), "energy_j": float((lat * self.power / self.batch).min())}

    def correction_state(self) -> dict:
        return dict(self._state)

    def latency_interval(self, genotype, config, z: float = 1.645) -> tuple[float, float, float]:
        """(prediction, low, high) latency in seconds, ``z`` standard deviations in log latency
        (1.645: 90%): the refit parameters' spread plus the residual scale, or the prior's spread
        (:data:`PRIOR_SIGMA_LOG`) before any measurement."""
        net, hwp = self._onehots(genotype, config)
        with torch.no_grad():
            rows = self._combo_probs(net).double().numpy()
            s = int(torch.argmax(self._setting_probs(hwp)))
        c = rows * self.per_combo[:, s].double().numpy() * self.factor.double().numpy()
        pred = float(c.sum()) + self.offset_s
        sd = self._sigma_log
        if self._cov is not None:
            g = np.r_[c @ np.hstack([self._Pu, self._Pv]), self.offset_s] / max(pred, 1e-15)
            sd = math.sqrt(max(float(g @ self._cov @ g), 0.0) + self._sigma_log ** 2)
        return pred, pred * math.exp(-z * sd), pred * math.exp(z * sd)

    # -- the learned correction ------------------------------------------------------------------
    def update(self, measurements: list[Measurement]) -> None:
        """Add end-to-end measurements of designs (and, where given, the kernel time of groups of
        their slots, ``Measurement.parts``) and refit the per-row factors and the overhead."""
        slot_of_row = self.combos.row_slot.numpy()
        for m in measurements:
            net, hwp = self._onehots(m.genotype, m.config)
            with torch.no_grad():
                rows = self._combo_probs(net).double().numpy()
                setting = int(torch.argmax(self._setting_probs(hwp)))
            self.fit_points.append((rows, setting, float(m.latency_s)))
            for slots, sec in m.parts:
                part = rows * np.isin(slot_of_row, list(slots))
                if sec > 0 and part.any():
                    self.part_points.append((part, setting, float(sec)))
                    self._part_design.append(len(self.fit_points) - 1)
        if self.fit_points:
            self._refit()

    def _design_matrix(self, points) -> tuple[np.ndarray, np.ndarray]:
        """Records x rows, each row weighted by its standalone time (ms) at the record's setting."""
        pc = self.per_combo.double().numpy() * 1e3
        A = np.stack([rows * pc[:, s] for rows, s, _ in points])
        return A, np.array([lat * 1e3 for _, _, lat in points])

    def _solve(self, A, y, lam, b_mask=None):
        ones = np.ones(A.shape[1])
        e2e = y if b_mask is None else y[np.asarray(b_mask) > 0]
        b0 = 0.02 * float(np.median(e2e))
        return solve_log_factors(A, y, ones, self._Pu, self._Pv, lam, b0, b_prior=b0, b_weight=B_WEIGHT,
                                 u_weight=U_WEIGHT, b_mask=b_mask)

    def _refit(self) -> None:
        """Robust fit of all records (end-to-end ones with the overhead term, kernel-level parts
        without); records it still misses by more than 2x are flagged as outliers (contention, a
        failed timing) and left out of the final fit."""
        A, y = self._design_matrix(self.fit_points + self.part_points)
        n, n_e2e = len(y), len(self.fit_points)
        bm = (np.arange(n) < n_e2e).astype(float)
        design = np.r_[np.arange(n_e2e), np.asarray(self._part_design, dtype=int)]
        # Outliers are records the other records contradict, not records far from the prior: with
        # fewer than CV_MIN measured designs nothing is flagged (a large but consistent error, an op
        # 3x dearer than its standalone timing, must be learnt, not rejected); then a first fit at
        # the cross-validated shrinkage flags what it still misses by more than 2x.
        keep = np.ones(n, dtype=bool)
        if n_e2e >= CV_MIN:
            first = self._solve(A, y, self._choose_lam(A, y, bm, design)[0], bm)
            keep = np.abs(first["residuals"]) <= OUTLIER_LOG
            if keep[:n_e2e].sum() < 2:  # the model cannot tell which ones are wrong
                keep[:] = True
        lam, cv = self._choose_lam(A[keep], y[keep], bm[keep], design[keep])
        fit = self._solve(A[keep], y[keep], lam, bm[keep])
        z = np.r_[fit["u"], fit["v"]]
        self.factor = torch.tensor(np.exp(np.hstack([self._Pu, self._Pv]) @ z), dtype=torch.float32)
        self.offset_s = fit["b"] / 1e3
        self._cov, self._sigma_log = np.asarray(fit["cov"]), max(fit["sigma_log"], 0.02)
        self._state = {
            "records": n_e2e, "kernel_parts": n - n_e2e, "lam": lam, "cv_log_error": cv, "offset_ms": fit["b"],
            "sigma_log": fit["sigma_log"], "outliers": [int(i) for i in np.flatnonzero(~keep[:n_e2e])],
            "part_outliers": int((~keep[n_e2e:]).sum()),
            "factors": {k: round(float(np.exp(u)), 4) for k, u in zip(self._kinds, fit["u"]) if abs(u) > 1e-3},
        }

    def _choose_lam(self, A, y, b_mask, design) -> tuple[float, float | None]:
        """The shrinkage: LAM_FEW below CV_MIN measured designs, else by 4-fold cross-validation of
        the robust log error, folds by design (a design's parts are held out with it). Returns (lam,
        its cross-validated error or None)."""
        if len(np.unique(design)) < CV_MIN:
            return LAM_FEW, None
        fold = design % 4
        P = np.hstack([self._Pu, self._Pv])
        scores = []
        for cand in LAMBDAS:
            err = []
            for f in range(4):
                tr, te = fold != f, fold == f
                if not (b_mask[tr] > 0).any():
                    continue
                fit = self._solve(A[tr], y[tr], cand, b_mask[tr])
                c = np.exp(P @ np.r_[fit["u"], fit["v"]])
                err.append(np.mean(_soft_l1(np.log(b_mask[te] * fit["b"] + A[te] @ c) - np.log(y[te]))))
            scores.append(float(np.mean(err)) if err else float("inf"))
        k = int(np.argmin(scores))
        return LAMBDAS[k], scores[k]


def distinct_items(slots: list[Slot], hw: HardwareSpace) -> list:
    """Every (workload, batch) the table needs, in a stable order."""
    batches = hw.knob("BATCH").values
    ws = list(dict.fromkeys(w for s in slots for wls in s.table.values() for w in wls))
    return [(w, b) for w in ws for b in batches]
