"""An additive (slot, option) latency model for users' latency tables, fitted in log space with shrinkage.

Latency of a network = ``b + sum over its slots of c[slot, chosen options]``: additive over the same
rows the search's cost models use (:class:`explorer.slots.ComboTable`), so it is linear in the op
distribution and keeps the ``p_o (c_o - E[c])`` gradient. Every row's cost is a prior times a learned
factor, ``c_row = prior_row * exp(u[op kind] + v[choice, option])``:

* the prior comes from the row's workloads (multiply-accumulates, ALU element operations and
  kernels, with three scales fitted to the table), so rows nobody measured are still priced; where
  the workloads were timed standalone on the table's device (``row_prior_ms``, e.g. TVM on this
  CPU), the prior is a fitted scale of those timings plus a per-op constant instead;
* ``u`` pools every row with the same option (every ``nor_conv_3x3``, wherever it is), ``v`` each
  (choice, option); a row of several choices (op, activation, width) sums its options' factors. Both
  are shrunk toward 0 (the prior) by ridge penalties whose strength is chosen by cross-validation
  on the table, so 20 records lean on the prior and thousands on the data.

The fit minimises a robust (soft L1) loss of log-latency error — relative error, so slow designs do
not dominate, and robust, so a few records the model cannot explain (measurement noise, contention)
are down-weighted instead of pulling every cost: on public device tables this alone took held-out
Kendall tau from 0.69 to 0.81 (Raspberry Pi 4) — with :func:`scipy.optimize.least_squares` and an
analytic Jacobian. Whether an op whose output never
reaches the cell output costs anything depends on the runtime that measured the table (an eager framework runs it, a compiled
graph drops it, a compiler that folds constants also drops ops fed only through "none"): with a
space that knows which choices are live (``live_choices`` and its ``LIVENESS`` modes), every reading
is fitted and the one that cross-validates best is kept (``liveness``: "all" or a mode).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..slots import ComboTable, workload_features_basic

__all__ = ["AdditiveLatencyModel", "factor_incidence", "row_options", "solve_log_factors", "standalone_row_prior", "few_shot_centre"]

LAMBDAS = (0.03, 0.3, 3.0, 30.0, 300.0, 3000.0)
F_SCALE = 0.1  # log-error beyond which a record counts linearly, not quadratically (soft L1)


def _soft_l1(r, f=F_SCALE):
    """The robust loss of the fit, also the cross-validation score (a few gross outliers in a
    held-out fold must not choose the shrinkage)."""
    return 2 * f * f * (np.sqrt(1 + (r / f) ** 2) - 1)


def _row_work(wls) -> tuple[float, float, float, float]:
    """What a row's prior is a non-negative combination of: MACs, ALU element ops, kernels, and a
    constant (what any op costs in a framework that launches it even when it does nothing)."""
    return (*workload_features_basic(wls), 1.0)


def factor_incidence(row_kinds: list[list[str]], row_keys: list[list[str]]):
    """(kinds, keys, Pu, Pv): a row's log factor is the sum over its options of ``u[option]`` (pooled
    wherever the option appears, ``Pu``) and of ``v[choice=option]`` (``Pv``)."""
    kinds = sorted({k for ks in row_kinds for k in ks})
    keys = sorted({k for ks in row_keys for k in ks})
    ki, vi = {k: i for i, k in enumerate(kinds)}, {k: i for i, k in enumerate(keys)}
    Pu = np.zeros((len(row_kinds), len(kinds)))
    Pv = np.zeros((len(row_keys), len(keys)))
    for r, (ks, vs) in enumerate(zip(row_kinds, row_keys)):
        for k in ks:
            Pu[r, ki[k]] = 1.0
        for k in vs:
            Pv[r, vi[k]] = 1.0
    return kinds, keys, Pu, Pv


def row_options(ct: ComboTable, fixed_kind: str | None = None):
    """Per row of ``ct``: its options (the ``u`` kinds) and its ``choice=option`` pairs (the ``v``
    keys). Rows of fixed slots get ``[fixed_kind]`` (one pooled factor) or nothing."""
    kinds, keys = [], []
    for si, s in enumerate(ct.slots):
        for combo in s.table:
            opts = [ct.choices[a][j] for a, j in zip(s.axes, combo)]
            kinds.append(opts if s.axes or fixed_kind is None else [fixed_kind])
            keys.append([f"{a}={o}" for a, o in zip(s.axes, opts)])
    return kinds, keys


def solve_log_factors(A, y, prior, Pu, Pv, lam: float, b0: float, u_weight: float = 0.1,
                      b_prior: float | None = None, b_weight: float = 0.1, centre=None, b_mask=None) -> dict:
    """Fit ``y ~ exp(b) + A @ (prior * exp(Pu u + Pv v))`` in log space with a robust (soft L1) loss
    and ridge penalties ``lam * u_weight * |u|^2 + lam * |v|^2`` that shrink every factor toward the
    prior. ``A`` may carry per-record weights (a record's own prior, e.g. at its hardware setting,
    with ``prior`` all ones). With ``b_prior`` the intercept is shrunk toward it too (in log, as
    ``u``); without, it is free. ``centre`` = (u0, v0) shrinks toward those factors instead of 0 (a
    prior learnt on other devices' tables). ``b_mask`` (0/1 per record) says which records include
    the intercept (an end-to-end figure does, a part of a network does not). Returns u, v, b, the Laplace covariance of (u, v, log b) and the robust
    residual scale of log latency."""
    from scipy.optimize import least_squares

    nu, nv = Pu.shape[1], Pv.shape[1]
    ly = np.log(y)
    P = np.hstack([Pu, Pv])
    su, sv = np.sqrt(lam * u_weight), np.sqrt(lam)
    sb, lb0 = (np.sqrt(lam * b_weight), np.log(b_prior)) if b_prior is not None else (0.0, 0.0)
    u0, v0 = (np.asarray(centre[0], float), np.asarray(centre[1], float)) if centre is not None else (np.zeros(nu), np.zeros(nv))

    bm = np.ones(len(y)) if b_mask is None else np.asarray(b_mask, dtype=float)

    def parts(z):
        c = prior * np.exp(P @ z[:-1])
        return c, bm * np.exp(z[-1]) + A @ c

    def res(z):
        _, pred = parts(z)
        return np.r_[np.log(pred) - ly, su * (z[:nu] - u0), sv * (z[nu:nu + nv] - v0), sb * (z[-1] - lb0)]

    def jac(z):
        c, pred = parts(z)
        top = np.hstack([(A @ (c[:, None] * P)) / pred[:, None], (bm * np.exp(z[-1]) / pred)[:, None]])
        pen = np.zeros((nu + nv + 1, nu + nv + 1))
        pen[:nu, :nu] = np.eye(nu) * su
        pen[nu:nu + nv, nu:nu + nv] = np.eye(nv) * sv
        pen[-1, -1] = sb
        return np.vstack([top, pen])

    z0 = np.r_[u0, v0, np.log(max(b0, 1e-9))]
    sol = least_squares(res, z0, jac=jac, method="trf", loss="soft_l1", f_scale=F_SCALE, ftol=1e-6, xtol=1e-6)
    # Laplace approximation of the parameters' spread, for prediction intervals: the residual
    # scale is estimated robustly (1.4826 x median absolute log error), as the fit is robust.
    J = jac(sol.x)
    n = len(y)
    r = res(sol.x)[:n]
    H = np.linalg.pinv(J.T @ J)
    dof = n - float(np.trace(J[:n] @ H @ J[:n].T))  # records left after the effective parameters
    sigma2 = (1.4826 * float(np.median(np.abs(r)))) ** 2 * n / max(dof, 1.0)
    return {"u": sol.x[:nu], "v": sol.x[nu:nu + nv], "b": float(np.exp(sol.x[-1])), "cov": (sigma2 * H).tolist(),
            "sigma_log": float(np.sqrt(sigma2)), "residuals": r}


@dataclass
class AdditiveLatencyModel:
    """See the module docstring. Build with :meth:`for_space`, then :meth:`fit` on genotypes and latencies."""

    space: str
    space_options: dict
    input_shape: tuple
    num_classes: int
    liveness: str = "all"  # which ops cost: "all", or one of the space's LIVENESS modes
    lam: float = 1.0
    prior_scales: list = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])  # ms per MAC, ALU op, kernel, op
    intercept_ms: float = 0.0
    u: dict = field(default_factory=dict)  # option -> log factor
    v: dict = field(default_factory=dict)  # "choice=option" -> log factor
    cov: list = field(default_factory=list)  # Laplace covariance of (u, v, log intercept), in that order
    sigma_log: float = 0.0  # residual scale of log latency (robust)
    sigma_cv: float = 0.0  # held-out scale of log error in the cross-validation (robust)
    # per row, the standalone time of its workloads (ms) where they were measured on the table's
    # device: then the prior is a scale of these plus a per-op constant, not the workload features
    row_prior_ms: list | None = None
    # factors learnt on other devices' tables (few-shot): shrink toward them instead of toward 0
    centre_u: dict | None = None
    centre_v: dict | None = None
    kind = "additive-log"

    # -- structure --------------------------------------------------------------------------------
    def _setup(self, space):
        self._space = space
        self._ct = ComboTable(space.cost_slots(), space.choices())
        if self.row_prior_ms is not None:
            if len(self.row_prior_ms) != len(self._ct):
                raise ConfigError(f"row_prior_ms has {len(self.row_prior_ms)} rows; the space has {len(self._ct)}")
            self._work = np.stack([np.asarray(self.row_prior_ms, dtype=float), np.ones(len(self._ct))], 1)
            if len(self.prior_scales) != 2:
                self.prior_scales = [0.0, 0.0]
        else:
            self._work = np.array([_row_work(w) for w in self._ct.row_workloads])  # [rows, prior features]
        self._fixed = np.array([len(s.axes) == 0 for s in self._ct.slots])[self._ct.row_slot.numpy()]
        self._kinds, self._keys = row_options(self._ct)
        self._row_index = {rc: r for r, rc in enumerate(self._row_combos())}
        self._group_cache = None
        return self

    def _row_combos(self):
        for si, s in enumerate(self._ct.slots):
            for combo in s.table:
                yield si, combo

    def incidence(self, genotypes: list[dict], liveness: str | None = None) -> np.ndarray:
        """[records, rows]: 1 where a row is part of a genotype and runs under ``liveness``."""
        mode = self.liveness if liveness is None else liveness
        live_fn = getattr(self._space, "live_choices", None)
        A = np.zeros((len(genotypes), len(self._ct)))
        idx = self._row_index
        for i, g in enumerate(genotypes):
            live = None if mode == "all" or live_fn is None else live_fn(g, mode)
            for si, s in enumerate(self._ct.slots):
                if live is not None and s.axes and not all(a in live for a in s.axes):
                    continue
                combo = tuple(self._ct.choices[a].index(g[a]) for a in s.axes)
                A[i, idx[(si, combo)]] = 1.0
        return A

    # -- the model -------------------------------------------------------------------------------
    def _prior(self, scales) -> np.ndarray:
        p = self._work @ np.asarray(scales)
        floor = max(1e-9, 1e-3 * float(np.median(p[p > 0]))) if (p > 0).any() else 1e-9
        return np.maximum(p, floor)

    def _groups(self):
        """Row -> factor incidence (see :func:`factor_incidence`); fixed by the space: built once."""
        if self._group_cache is None:
            self._group_cache = factor_incidence(self._kinds, self._keys)
        return self._group_cache

    def row_costs_ms(self) -> np.ndarray:
        """Cost of every row (ms); fixed rows are folded into the intercept."""
        kinds, keys, Pu, Pv = self._groups()
        u = np.array([self.u.get(k, 0.0) for k in kinds])
        v = np.array([self.v.get(k, 0.0) for k in keys])
        c = self._prior(self.prior_scales) * np.exp(Pu @ u + Pv @ v)
        return np.where(self._fixed, 0.0, c)

    def predict(self, genotypes: list[dict]) -> np.ndarray:
        return self.intercept_ms + self.incidence(genotypes) @ self.row_costs_ms()

    def predict_interval(self, genotypes: list[dict], z: float = 1.645) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(prediction, low, high) in ms: a two-sided interval of ``z`` standard deviations in log
        latency (1.645: 90%), from the parameters' spread and the table's residual scale."""
        pred = self.predict(genotypes)
        if not self.cov:
            return pred, pred, pred
        _, _, Pu, Pv = self._groups()
        c = self.row_costs_ms()
        A = self.incidence(genotypes)
        g = np.hstack([A @ (c[:, None] * np.hstack([Pu, Pv])), np.full((len(pred), 1), self.intercept_ms)]) / pred[:, None]
        cov = np.asarray(self.cov)
        sd = np.maximum(np.sqrt(np.einsum("ij,jk,ik->i", g, cov, g) + self.sigma_log ** 2), self.sigma_cv)
        return pred, pred * np.exp(-z * sd), pred * np.exp(z * sd)

    # -- fitting -----------------------------------------------------------------------------------
    def _fit_prior(self, A, y):
        """Non-negative scales of the prior and an intercept, in log space (a first guess)."""
        from scipy.optimize import least_squares

        W = A[:, ~self._fixed] @ self._work[~self._fixed]  # [records, features] work per record
        k = W.shape[1]
        scale = np.maximum(W.mean(0), 1e-12)

        def res(z):
            s = np.exp(z[:k]) / scale
            return np.log(np.exp(z[k]) + W @ s) - np.log(y)

        z0 = np.r_[np.log(np.full(k, np.median(y) / k)), np.log(np.median(y) / 10)]
        sol = least_squares(res, z0, method="trf")
        return list(np.exp(sol.x[:k]) / scale), float(np.exp(sol.x[k]))

    def _solve(self, A, y, lam, scales, b0):
        kinds, keys, Pu, Pv = self._groups()
        prior = np.where(self._fixed, 0.0, self._prior(scales))
        centre = None
        if self.centre_u is not None or self.centre_v is not None:
            centre = ([(self.centre_u or {}).get(k, 0.0) for k in kinds], [(self.centre_v or {}).get(k, 0.0) for k in keys])
        f = solve_log_factors(A, y, prior, Pu, Pv, lam, b0, centre=centre)
        self.cov, self.sigma_log = f["cov"], f["sigma_log"]
        return dict(zip(kinds, f["u"].tolist())), dict(zip(keys, f["v"].tolist())), f["b"]

    def fit(self, genotypes: list[dict], latencies_ms, seed: int = 0, folds: int = 4) -> "AdditiveLatencyModel":
        """Fit to measured latencies; the shrinkage (and, where the space knows liveness, which ops
        cost) is chosen by ``folds``-fold cross-validation of the robust log error."""
        y = np.asarray(latencies_ms, dtype=float)
        if len(y) < 2:
            raise DataError("need at least 2 records to fit a latency model")
        options = ["all", *getattr(self._space, "LIVENESS", ())]
        rng = np.random.default_rng(seed)
        fold = rng.permutation(len(y)) % max(2, min(folds, len(y)))
        best = None
        for mode in options:
            A = self.incidence(genotypes, mode)
            for lam in LAMBDAS:
                err, held = [], []
                for f in np.unique(fold):
                    tr, te = fold != f, fold == f
                    scales, b0 = self._fit_prior(A[tr], y[tr])
                    u, v, b = self._solve(A[tr], y[tr], lam, scales, b0)
                    self.prior_scales, self.u, self.v, self.intercept_ms = scales, u, v, b
                    pred = b + A[te] @ self.row_costs_ms()
                    err.append(np.mean(_soft_l1(np.log(pred) - np.log(y[te]))))
                    held.append(np.log(pred) - np.log(y[te]))
                score = float(np.mean(err))
                if best is None or score < best[0]:
                    best = (score, mode, lam, np.concatenate(held))
        _, self.liveness, self.lam, held = best
        A = self.incidence(genotypes)
        scales, b0 = self._fit_prior(A, y)
        self.u, self.v, self.intercept_ms = self._solve(A, y, self.lam, scales, b0)
        self.prior_scales = scales
        self.cv_score = best[0]  # mean robust log error of the chosen setting, held out
        # the held-out spread is an honest floor for prediction intervals (few records: the Laplace
        # spread around a near-interpolating fit is too narrow)
        self.sigma_cv = 1.4826 * float(np.median(np.abs(held)))
        return self

    # -- files -----------------------------------------------------------------------------------
    def save(self, path) -> None:
        d = {"kind": self.kind, "space": self.space, "space_options": self.space_options,
             "input_shape": list(self.input_shape), "num_classes": self.num_classes,
             "liveness": self.liveness, "lam": self.lam, "prior_scales": list(self.prior_scales),
             "intercept_ms": self.intercept_ms, "u": self.u, "v": self.v, "cov": self.cov,
             "sigma_log": self.sigma_log, "sigma_cv": self.sigma_cv}
        if self.row_prior_ms is not None:
            d["row_prior_ms"] = [float(x) for x in self.row_prior_ms]
        Path(path).write_text(json.dumps(d, indent=2) + "\n")

    @classmethod
    def from_json(cls, d: dict, path="") -> "AdditiveLatencyModel":
        try:
            m = cls(d["space"], d["space_options"], tuple(d["input_shape"]), d["num_classes"], str(d["liveness"]),
                    float(d["lam"]), list(d["prior_scales"]), float(d["intercept_ms"]), dict(d["u"]), dict(d["v"]),
                    list(d.get("cov", [])), float(d.get("sigma_log", 0.0)), float(d.get("sigma_cv", 0.0)),
                    d.get("row_prior_ms"))
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{path}: not an additive latency model ({type(e).__name__}: {e})") from None
        return m

    @classmethod
    def for_space(cls, space, **kw) -> "AdditiveLatencyModel":
        """``row_prior_ms`` (optional): per row of the space's :class:`~explorer.slots.ComboTable`,
        the standalone time of its workloads on the table's device (see :func:`standalone_row_prior`)."""
        return cls(space.name, space.options(), tuple(space.input_shape), space.num_classes, **kw)._setup(space)

    def bind(self, space) -> "AdditiveLatencyModel":
        """Attach the space (after :meth:`from_json`)."""
        return self._setup(space)


def standalone_row_prior(space, per_workload_s: dict) -> list[float]:
    """Per row of ``space``'s ComboTable, the sum of its workloads' standalone times in ms, from
    ``{workload: seconds}`` (e.g. :func:`explorer.measure.workloads.measure_workloads` at batch 1)."""
    ct = ComboTable(space.cost_slots(), space.choices())
    return [1e3 * sum(per_workload_s[w] for w in wls) for wls in ct.row_workloads]


def few_shot_centre(models: list["AdditiveLatencyModel"]) -> tuple[dict, dict]:
    """The mean factors (u, v) of models fitted on other devices' tables of the same space: a prior
    for a new device's few records (``centre_u``, ``centre_v``)."""
    us = [m.u for m in models]
    vs = [m.v for m in models]
    mean = lambda ds: {k: float(np.mean([d.get(k, 0.0) for d in ds])) for k in sorted({k for d in ds for k in d})}  # noqa: E731
    return mean(us), mean(vs)
