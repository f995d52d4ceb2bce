"""Measured-latency cost model for CPU/GPU targets.

Prior: every distinct workload of the space, built standalone with TVM and timed on the device for
each (device, threads, batch) setting (see :mod:`explorer.measure.workloads`). The latency of a
network at a setting is the sum of its workloads' latencies; the expectation over the op and knob
distributions is exact (all settings enumerated), so it is differentiable in ``alpha`` and
``theta`` with the same ``p_o (c_o - E[c])`` gradient as the analytical model.

Learned correction: end-to-end measurements of derived networks refit
``latency = scale * sum + offset`` (non-negative least squares), which absorbs fusion, runtime
overhead and whatever standalone timing misses, and stays linear, hence differentiable.
Energy per sample is ``threads * core_w * latency / batch`` (an assumption the target states).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from ..slots import ComboTable, Slot, joint_probs
from ..space.hardware import HWConfig, HardwareSpace
from .base import COST_MODELS, CostModel, Measurement

__all__ = ["MeasuredCostModel", "KNOBS"]

KNOBS = ("DEVICE", "THREADS", "BATCH")


@COST_MODELS.register("measured")
class MeasuredCostModel(CostModel):
    """Args:
    slots, net_choices: the network space's cost slots and choices.
    hw: hardware space with knobs DEVICE, THREADS, BATCH.
    table: ``{(workload, batch, device, threads): seconds}`` covering every slot workload and setting.
    core_w: power per active thread (W), for energy.
    """

    resources = ("latency_s", "energy_j")

    def __init__(self, slots: list[Slot], net_choices: dict, hw: HardwareSpace, table: dict, core_w: float = 10.0):
        self.hw, self.slots = hw, slots
        self.combos = ComboTable(slots, net_choices)
        self.net_choices = self.combos.choices
        self.settings = list(itertools.product(*[hw.knob(k).values for k in KNOBS]))
        rows = [[sum(table[(w, b, d, t)] for w in wls) for d, t, b in self.settings] for wls in self.combos.row_workloads]
        self.per_combo = torch.tensor(rows, dtype=torch.float64).float()  # [combos, settings] seconds
        self.power = torch.tensor([t * core_w for d, t, b in self.settings])
        self.batch = torch.tensor([float(b) for d, t, b in self.settings])
        self.scale, self.offset_s = 1.0, 0.0
        self.fit_points: list[tuple[float, float]] = []

    # -- probabilities ---------------------------------------------------------------------------
    def _combo_probs(self, net_probs):
        return self.combos.probs(net_probs)

    def _setting_probs(self, hw_probs):
        return joint_probs(hw_probs, KNOBS)

    def _per_setting(self, pc):
        raw = pc @ self.per_combo  # [settings]
        lat = self.scale * raw + self.offset_s
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
            per_slot = self.combos.slot_min(self.per_combo, dim=0)
            lat = self.scale * per_slot.sum(0) + self.offset_s
            return {"latency_s": float(lat.min()), "energy_j": float((lat * self.power / self.batch).min())}

    def correction_state(self) -> dict:
        return {"scale": self.scale, "offset_s": self.offset_s}

    # -- the learned correction ------------------------------------------------------------------
    def update(self, measurements: list[Measurement]) -> None:
        """Add (standalone sum, measured end-to-end) pairs and refit ``scale`` and ``offset``."""
        from scipy.optimize import nnls

        self.fit_points.extend((self.raw_latency_s(m.genotype, m.config), m.latency_s) for m in measurements)
        if not self.fit_points:
            return
        if len(self.fit_points) < 2:
            raw, meas = self.fit_points[0]
            self.scale = meas / max(raw, 1e-12)
            return
        x = np.array([p[0] for p in self.fit_points])
        y = np.array([p[1] for p in self.fit_points])
        w = 1.0 / y  # relative error
        sol, _ = nnls(np.stack([x * w, w], 1), y * w)
        self.scale, self.offset_s = float(sol[0]), float(sol[1])


def distinct_items(slots: list[Slot], hw: HardwareSpace) -> list:
    """Every (workload, batch) the table needs, in a stable order."""
    batches = hw.knob("BATCH").values
    ws = list(dict.fromkeys(w for s in slots for wls in s.table.values() for w in wls))
    return [(w, b) for w in ws for b in batches]
