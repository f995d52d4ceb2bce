"""Calibrate the analytical VTA cost model against the simulator.

The analytical model's cycles for a GEMM layer are a non-negative combination of its terms
(:data:`explorer.cost.vta.CYCLE_FEATURES`); calibration simulates (layer, configuration) pairs and
refits the weights by non-negative least squares on relative error. :class:`SimRefiner` does the
same during a search: every few steps it takes the derived design through the same path as
``explorer compile --target vta`` (ONNX export, TVM import, offload plan, lowering, simulation) and
refits, shrunk toward the calibration (or the model's prior weights), so one design's few layers
never replace what was known.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from ..cost.vta import CYCLE_FEATURES, DEFAULT_CYCLE_WEIGHTS, VTACostModel
from ..measure.base import Measurer
from ..slots import Workload, conv
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


def fit_weights(X: np.ndarray, y: np.ndarray, prior=None, lam: float = 0.0) -> tuple[float, ...]:
    """Non-negative weights minimising the squared relative error, plus ``lam`` x the squared
    relative distance to ``prior`` (weights the prior sets to 0 are measured against 0.25)."""
    from scipy.optimize import nnls

    wgt = 1.0 / np.maximum(y, 1.0)
    A, b = X * wgt[:, None], y * wgt
    if prior is not None and lam > 0:
        p = np.asarray(prior, dtype=float)
        s = np.where(p > 0, p, 0.25)
        A = np.vstack([A, np.sqrt(lam) * np.diag(1.0 / s)])
        b = np.r_[b, np.sqrt(lam) * p / s]
    sol, _ = nnls(A, b)
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


REFIT_PRIOR_LAM = 1.0  # how strongly the in-loop refit holds to the calibration / prior weights


def whole_network(design_json: dict, config: HWConfig, cm: VTACostModel, genotype: dict) -> dict:
    """The design through the compiler path (export -> import -> offload -> lower -> simulate) plus
    the ops left on the host, priced by the analytical model (a stated model: the same ALU/DMA terms
    at the accelerator's clock; nothing here measures a host CPU). Cycles, per-layer points, host ops."""
    import tempfile

    from ..deploy.export import build_module, export_onnx
    from ..space.design import DesignPoint
    from .compile import compile_stats

    d = DesignPoint.from_json(design_json)
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "m.onnx"
        export_onnx(build_module(d, None), d.input_shape, p)
        stats = compile_stats(p, vta_json(config))
    points = []
    for L in stats["layers"]:
        x = L["layer"]
        # the same constructor as the space's workloads, so the features (requantisation on the ALU
        # included) are the ones the model prices the layer with
        w = conv("gemm", x["cin"], x["cout"], x["hin"], x["win"], x["k"], x["stride"], 1, x.get("dilation", 1), x["n"])
        if (w.hout, w.wout) != (x["hout"], x["wout"]):
            w = dataclasses.replace(w, hout=x["hout"], wout=x["wout"])
        points.append((cm.layer_features(w, config), float(L["cycles"])))
    # the model prices work off the GEMM core with its prior weights (never refit): the same here
    host = sum(float(np.dot(DEFAULT_CYCLE_WEIGHTS, cm.layer_features(w, config)))
               for w in cm.space_workloads(genotype) if not (w.kind == "conv" and w.groups == 1))
    gemm = float(stats["total"]["cycles"])
    return {"gemm_cycles": gemm, "host_cycles_model": host, "cycles": gemm + host,
            "offloaded_layers": stats["offloaded_layers"], "host_ops": stats["host_ops"], "points": points}


class SimRefiner(Measurer):
    """In-search refinement for the VTA target: the same ``submit``/``poll``/``drain``/``close`` surface
    as :class:`~explorer.measure.background.BackgroundMeasurer`; a submitted design goes through
    :func:`whole_network` at once (about a second) and the model is refit before ``poll`` returns it."""

    def __init__(self, cm: VTACostModel, points: list | None = None):
        self.cm = cm
        self.points = [(list(r), float(v)) for r, v in (points or [])]
        self.prior = tuple(cm.correction or DEFAULT_CYCLE_WEIGHTS)  # the calibration, or the model's prior
        self.done: list = []
        self.seen: set = set()
        self.refit = True  # False: report the truth, leave the model as it is (search.refine = false)

    refits_model = True

    def _truth(self, job) -> None:
        g, c = job.info["genotype"], job.info["config"]
        job.info["predicted_s"] = self.cm.evaluate(g, c)["latency_s"]
        try:
            res = whole_network(job.design, c, self.cm, g)
        except BufferCapacityError as e:
            job.error = f"does not fit the configuration's buffers: {e}"
            return
        except Exception as e:  # a design the compiler path cannot take is a failed measurement
            job.error = f"{type(e).__name__}: {e}"
            return
        job.latency_s = res["cycles"] / (c["HW_FREQ_MHZ"] * 1e6)
        job.info["whole_network"] = {k: v for k, v in res.items() if k != "points"}
        if not self.refit:
            return
        self.points += [(list(map(float, f)), y) for f, y in res["points"]]
        X = np.array([p[0] for p in self.points])
        y = np.array([p[1] for p in self.points])
        self.cm.correction = fit_weights(X, y, self.prior, REFIT_PRIOR_LAM)

    def submit(self, job) -> bool:
        if job.key in self.seen:
            return False
        self.seen.add(job.key)
        self._truth(job)
        self.done.append(job)
        return True

    def verify(self, job):
        """The whole network of a design, now (the end of a search)."""
        self._truth(job)
        return job

    def poll(self) -> list:
        out, self.done = self.done, []
        return out

    def drain(self, timeout_s: float) -> list:
        return self.poll()

    def close(self) -> None:
        pass

    def state_dict(self) -> dict:
        """What the refiner has learned (for a search checkpoint): its simulated points, the designs
        it has seen, and the cycle weights it refit into the model. Plain data."""
        return {"points": [[[float(x) for x in r], float(v)] for r, v in self.points], "seen": sorted(self.seen),
                "correction": None if self.cm.correction is None else [float(w) for w in self.cm.correction]}

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict` (the prior stays the one this refiner was built with)."""
        self.points = [(list(map(float, r)), float(v)) for r, v in state["points"]]
        self.seen = set(state["seen"])
        self.cm.correction = None if state["correction"] is None else tuple(float(w) for w in state["correction"])
