"""Calibrate the analytical VTA cost model against the simulator.

The analytical model's cycles for a GEMM layer are a non-negative combination of its terms
(:data:`explorer.cost.vta.CYCLE_FEATURES`); calibration simulates (layer, configuration) pairs and
refits the weights by non-negative least squares on relative error. :class:`SimRefiner` does the
same during a search: every few steps it simulates the derived design's layers and refits.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..cost.vta import CYCLE_FEATURES, DEFAULT_CYCLE_WEIGHTS, VTACostModel
from ..slots import Workload
from ..space.hardware import HWConfig
from .params import VTAParams, vta_json
from .sim import BufferCapacityError, ConvLayer, run_layer

__all__ = ["conv_layer", "simulate_pair", "fit_weights", "calibrate", "load_calibration", "SimRefiner"]


def conv_layer(w: Workload) -> ConvLayer:
    pad = w.dilation * (w.kh - 1) // 2
    return ConvLayer(w.name, w.cin, w.cout, w.hin, w.win, w.kh, w.kw, w.stride, pad, w.dilation, w.n)


def simulate_pair(w: Workload, config: HWConfig) -> int | None:
    """Simulated cycles of a GEMM workload on a configuration (None if it does not fit)."""
    try:
        return run_layer(conv_layer(w), VTAParams.from_config(vta_json(config))).cycles
    except BufferCapacityError:
        return None


def fit_weights(X: np.ndarray, y: np.ndarray) -> tuple[float, ...]:
    from scipy.optimize import nnls

    wgt = 1.0 / np.maximum(y, 1.0)
    sol, _ = nnls(X * wgt[:, None], y * wgt)
    return tuple(float(v) for v in sol)


def _within(pred, y):
    rel = np.abs(pred - y) / y
    from scipy.stats import kendalltau

    return {"within_10pct": float(np.mean(rel <= 0.10)), "mean_abs_rel_err": float(rel.mean()),
            "kendall_tau": float(kendalltau(pred, y).statistic), "n": int(len(y))}


def calibrate(cm: VTACostModel, workloads: list[Workload], n: int, seed: int = 0, holdout: float = 0.2,
              progress=None) -> dict:
    """Simulate ``n`` random (GEMM workload, configuration) pairs, fit on part, report on the rest."""
    rng = np.random.default_rng(seed)
    hw = cm.hw
    gemm = [w for w in dict.fromkeys(workloads) if w.kind == "conv" and w.groups == 1]
    rows, ys, t0, tries = [], [], time.monotonic(), 0
    while len(ys) < n and tries < 20 * n:
        tries += 1
        w = gemm[int(rng.integers(len(gemm)))]
        c = hw.config_from_indices({k.name: int(rng.integers(len(k.values))) for k in hw.knobs})
        cyc = simulate_pair(w, c)
        if cyc is None:
            continue
        rows.append(cm.layer_features(w, c))
        ys.append(cyc)
        if progress:
            progress(len(ys), n)
    X, y = np.array(rows), np.array(ys, dtype=float)
    idx = rng.permutation(len(y))
    k = int(round(holdout * len(y)))
    test, train = idx[:k], idx[k:]
    weights = fit_weights(X[train], y[train])
    prior = np.array(DEFAULT_CYCLE_WEIGHTS)
    return {
        "features": list(CYCLE_FEATURES),
        "weights": list(weights),
        "prior_weights": list(DEFAULT_CYCLE_WEIGHTS),
        "pairs": int(len(y)),
        "train": int(len(train)),
        "held_out": {"prior": _within(X[test] @ prior, y[test]), "calibrated": _within(X[test] @ np.array(weights), y[test])},
        "seconds": round(time.monotonic() - t0, 2),
        "points": [[list(map(float, r)), float(v)] for r, v in zip(X[train], y[train])],
    }


def load_calibration(path: str | Path) -> dict:
    from ..errors import ConfigError

    try:
        d = json.loads(Path(path).read_text())
        if list(d["features"]) != list(CYCLE_FEATURES) or len(d["weights"]) != len(CYCLE_FEATURES):
            raise ValueError("its features differ from this version's")
        return d
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{path}: not a VTA calibration file ({type(e).__name__}: {e})") from None


class SimRefiner:
    """In-search refinement for the VTA target: the same ``submit``/``poll``/``drain``/``close`` surface
    as :class:`~explorer.measure.background.BackgroundMeasurer`, but simulation takes milliseconds,
    so a submitted design is simulated at once and the model refit before ``poll`` returns it."""

    def __init__(self, cm: VTACostModel, points: list | None = None):
        self.cm = cm
        self.points = [(list(r), float(v)) for r, v in (points or [])]
        self.done: list = []
        self.seen: set = set()

    def submit(self, job) -> bool:
        if job.key in self.seen:
            return False
        self.seen.add(job.key)
        g, c = job.info["genotype"], job.info["config"]
        job.info["predicted_s"] = self.cm.evaluate(g, c)["latency_s"]
        f_hz = c["HW_FREQ_MHZ"] * 1e6
        sim_cycles, new = 0.0, []
        other = 0.0
        for w in self.cm.space_workloads(g):
            if w.kind == "conv" and w.groups == 1:
                cyc = simulate_pair(w, c)
                if cyc is None:
                    job.error = f"{w.name} does not fit the configuration's buffers"
                    self.done.append(job)
                    return True
                sim_cycles += cyc
                new.append((self.cm.layer_features(w, c), float(cyc)))
            else:
                other += float(np.dot(DEFAULT_CYCLE_WEIGHTS, self.cm.layer_features(w, c)))
        job.latency_s = (sim_cycles + other) / f_hz
        self.points += new
        X = np.array([p[0] for p in self.points])
        y = np.array([p[1] for p in self.points])
        self.cm.correction = fit_weights(X, y)
        self.done.append(job)
        return True

    def poll(self) -> list:
        out, self.done = self.done, []
        return out

    def drain(self, timeout_s: float) -> list:
        return self.poll()

    def close(self) -> None:
        pass
