"""The ``latency-table`` backend: a device the project cannot run, known by a table of measured
latencies (``explorer costmodel fit`` turns the table into a model file).

``explorer search --latency-table lat.json`` (or ``--target lat.json``) searches for that device: the
target is made from the model file by :func:`explorer.backends.target.table_target` (one fixed
device; latency is what it prices).
"""

from __future__ import annotations

from .base import BACKENDS, TargetBackend

__all__ = ["LatencyTableBackend"]


@BACKENDS.register("latency-table")
class LatencyTableBackend(TargetBackend):
    resources = ("latency_s",)

    def cost_model(self, space, hw, calibration=None, store_path=None, progress=False):
        from ..cost.learned import load_latency_model
        from ..cost.table import TableCostModel
        from ..errors import ConfigError

        path = self.target.options.get("latency_model")
        if not path:
            raise ConfigError(f"target {self.name!r}: [options] latency_model = \"FILE\" (from explorer costmodel fit) is missing")
        model, _ = load_latency_model(path)
        if not hasattr(model, "row_costs_ms"):
            raise ConfigError(f"{path}: a search needs the additive model (explorer costmodel fit, the default --model)")
        return TableCostModel(space, model)
