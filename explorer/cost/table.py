"""A device known by its latency table: the additive model ``explorer costmodel fit`` wrote, as a
differentiable cost model of the search.

The additive model prices every (slot, options) row of the space (:mod:`explorer.cost.additive`), so
the expected latency under the op distribution is exact, ``E = b + sum_rows p_row c_row``, and its
alpha-gradient is ``p_o (c_o - E)``. The table says nothing about the hardware knobs: its device is
fixed, so only latency is priced.
"""

from __future__ import annotations

import json
import shlex

import torch

from .base import COST_MODELS, CostModel

__all__ = ["TableCostModel"]


@COST_MODELS.register("table")
class TableCostModel(CostModel):
    """Args:
    space: the network space the search runs on (the model's space and options must match).
    model: a fitted :class:`~explorer.cost.additive.AdditiveLatencyModel`.
    """

    resources = ("latency_s",)

    def __init__(self, space, model):
        from ..errors import ConfigError
        from ..slots import ComboTable

        if (model.space, dict(model.space_options), tuple(model.input_shape)) != (
                space.name, dict(space.options()), tuple(space.input_shape)):
            shape = "x".join(map(str, space.input_shape))
            opts = " ".join(f"--option {shlex.quote(k + '=' + json.dumps(v, separators=(',', ':')))}"
                            for k, v in space.options().items())
            toml = ", ".join(f"{k} = {json.dumps(v)}" for k, v in dict(model.space_options).items())
            raise ConfigError(
                f"the latency table's model is for space {model.space!r} {dict(model.space_options)} at input "
                f"{'x'.join(map(str, model.input_shape))}; this search is {space.name!r} {space.options()} at {shape}. "
                f"Fit the table for this search's skeleton: `explorer costmodel fit --space {space.name} --input-shape "
                f"{shape} --classes {space.num_classes} {opts} --records TABLE.csv --out MODEL.json`"
                + (f"; or search with the model's skeleton: [space_options] {toml} in the search's --config, on data "
                   f"of {'x'.join(map(str, model.input_shape))}" if model.space == space.name else ""))
        self.model = model.bind(space)
        self.combos = ComboTable(space.cost_slots(), space.choices())
        self.net_choices = self.combos.choices
        self.row_s = torch.tensor(self.model.row_costs_ms() * 1e-3, dtype=torch.float64).float()
        self.intercept_s = float(self.model.intercept_ms) * 1e-3

    def predict(self, net_probs, hw_probs, exact: bool = False) -> dict[str, torch.Tensor]:
        return {"latency_s": self.combos.probs(net_probs) @ self.row_s + self.intercept_s}

    def evaluate(self, genotype, config) -> dict[str, float]:
        with torch.no_grad():
            return {"latency_s": float(self.predict(self.combos.onehot(genotype), {})["latency_s"])}

    def lower_bounds(self) -> dict[str, float]:
        with torch.no_grad():
            return {"latency_s": float(self.combos.slot_min(self.row_s).sum()) + self.intercept_s}

    def correction_state(self) -> dict:
        return {"liveness": self.model.liveness, "shrinkage": self.model.lam}
