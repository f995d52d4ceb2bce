"""A learned latency model: non-negative linear regression on workload features.

Each network is described by the workloads its slots lower to (see :mod:`explorer.slots`):
multiply-accumulates per convolution kind, ALU element-operations, bytes moved, and the number of
kernels. Latency is fitted as a non-negative combination of these (``scipy.optimize.nnls``), so the
model stays linear in the workload table and its expectation over the op distribution is
differentiable like the analytical model's. This is how latency tables measured on any device
(``genotype,latency_ms`` for nb201, ``design_json,latency_ms`` for chain) become a cost model.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..slots import Workload, workload_features_basic
from ..errors import ConfigError, DataError

__all__ = ["FEATURES", "workload_features", "LatencyModel", "read_table", "read_records", "load_latency_model",
           "predict_table", "evaluate_predictions"]

FEATURES = ("macs_k1", "macs_k3", "macs_k5", "macs_other", "alu_elem_ops", "bytes", "kernels")


def workload_features(wls: list[Workload]) -> np.ndarray:
    """Aggregate features of a list of workloads (one network)."""
    f = dict.fromkeys(FEATURES, 0.0)
    for w in wls:
        macs, alu_ops, kernels = workload_features_basic([w])
        f["alu_elem_ops"] += alu_ops
        f["kernels"] += kernels
        if w.kind == "conv":
            f[{1: "macs_k1", 3: "macs_k3", 5: "macs_k5"}.get(w.kh, "macs_other")] += macs
            f["bytes"] += w.n * (w.cin * w.hin * w.win + w.cout * w.hout * w.wout) + w.cout * (w.cin // w.groups) * w.kh * w.kw
        else:
            f["bytes"] += w.load_elems + w.store_elems
    return np.array([f[k] for k in FEATURES], dtype=np.float64)


@dataclass
class LatencyModel:
    """latency_ms = intercept + sum_k coef_k * feature_k, all coefficients >= 0."""

    space: str
    space_options: dict
    input_shape: tuple
    num_classes: int
    coef: np.ndarray | None = None
    intercept: float = 0.0
    scale: np.ndarray | None = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> "LatencyModel":
        from scipy.optimize import nnls

        if len(y) < 2:
            raise DataError("need at least 2 records to fit a latency model")
        self.scale = np.maximum(X.max(axis=0), 1e-12)
        A = np.hstack([X / self.scale, np.ones((len(y), 1))])
        # Relative error is what matters (+-10%): weight each row by 1 / latency.
        w = 1.0 / np.maximum(y, 1e-9)
        sol, _ = nnls(A * w[:, None], y * w)
        self.coef, self.intercept = sol[:-1], float(sol[-1])
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.coef is None:
            raise ConfigError("latency model is not fitted")
        return (X / self.scale) @ self.coef + self.intercept

    def save(self, path: str | Path) -> None:
        d = {"kind": "nnls-workload-features", "features": list(FEATURES), "space": self.space,
             "space_options": self.space_options, "input_shape": list(self.input_shape),
             "num_classes": self.num_classes, "coef": self.coef.tolist(), "intercept": self.intercept,
             "scale": self.scale.tolist()}
        Path(path).write_text(json.dumps(d, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "LatencyModel":
        try:
            d = json.loads(Path(path).read_text())
            m = cls(d["space"], d["space_options"], tuple(d["input_shape"]), d["num_classes"])
            m.coef, m.intercept, m.scale = np.array(d["coef"]), float(d["intercept"]), np.array(d["scale"])
            if list(d["features"]) != list(FEATURES):
                raise ValueError("feature set differs from this version")
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{path}: not a latency model file ({type(e).__name__}: {e})") from None
        return m


def read_table(path: str | Path, space) -> tuple[list[dict], np.ndarray, list[str]]:
    """Read ``genotype,latency_ms`` (nb201 strings) or ``design_json,latency_ms`` rows: genotypes,
    latencies (ms) and the rows' keys."""
    from ..space.design import DesignPoint

    p = Path(path)
    try:
        with p.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{p}: not a readable CSV ({e})") from None
    if not rows:
        raise DataError(f"{p}: no records")
    cols = {c for c in rows[0] if c is not None}  # None: the key DictReader gives a row's extra fields
    key = "genotype" if "genotype" in cols else "design_json" if "design_json" in cols else None
    if key is None or "latency_ms" not in cols:
        raise DataError(f"{p}: needs columns genotype,latency_ms (nb201) or design_json,latency_ms (chain); got {sorted(cols)}")
    G, y, ids = [], [], []
    for i, r in enumerate(rows, start=2):
        try:
            lat = float(r["latency_ms"])
            if not math.isfinite(lat) or lat <= 0:
                raise ValueError
        except (TypeError, ValueError):
            raise DataError(f"{p}:{i}: latency_ms must be a positive number, got {r.get('latency_ms')!r}") from None
        if r[key] is None:  # a short row
            raise DataError(f"{p}:{i}: no {key} (the row has fewer fields than the header)")
        try:
            if key == "genotype":
                g = space.parse_genotype(r["genotype"])
            else:
                g = DesignPoint.from_json(json.loads(r["design_json"])).genotype_dict
                space.validate_genotype(g)
        except (ConfigError, ValueError) as e:  # ValueError: json's, an integer of over 4300 digits among them
            raise DataError(f"{p}:{i}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        except RecursionError:
            raise DataError(f"{p}:{i}: {key} nested too deeply") from None
        G.append(g)
        y.append(lat)
        ids.append(r[key])
    return G, np.array(y), ids


def read_records(path: str | Path, space) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Workload features of every record of a table (see :func:`read_table`), latencies and keys."""
    G, y, ids = read_table(path, space)
    return np.array([workload_features(space.workloads(g)) for g in G]), y, ids


def load_latency_model(path: str | Path):
    """A model file written by ``explorer costmodel fit``, of either kind, with its space attached
    (additive models) — returns (model, space)."""
    from ..space import create_space
    from .additive import AdditiveLatencyModel

    try:
        d = json.loads(Path(path).read_text())
        kind = d.get("kind")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
        raise ConfigError(f"{path}: not a latency model file ({type(e).__name__}: {e})") from None
    if kind == AdditiveLatencyModel.kind:
        m = AdditiveLatencyModel.from_json(d, path)
    else:
        m = LatencyModel.load(path)
    space = create_space(m.space, m.input_shape, m.num_classes, **m.space_options)
    if kind == AdditiveLatencyModel.kind:
        m.bind(space)
    return m, space


def predict_table(model, space, genotypes: list[dict]) -> np.ndarray:
    """Predicted latency (ms) of genotypes with either kind of model."""
    if isinstance(model, LatencyModel):
        return model.predict(np.array([workload_features(space.workloads(g)) for g in genotypes]))
    return model.predict(genotypes)


def evaluate_predictions(pred: np.ndarray, y: np.ndarray) -> dict:
    from scipy.stats import kendalltau, spearmanr

    rel = np.abs(pred - y) / y
    return {"n": int(len(y)), "kendall_tau": float(kendalltau(pred, y).statistic),
            "spearman_rho": float(spearmanr(pred, y).statistic), "within_10pct": float(np.mean(rel <= 0.10)),
            "mean_abs_rel_err": float(rel.mean())}
