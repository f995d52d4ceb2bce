"""Cost models: differentiable expected resources of a relaxed network + hardware.

Implementations register themselves on import; :func:`create_cost_model` imports them.
"""

from .base import COST_MODELS, RESOURCES, UNITS, CostModel

__all__ = ["COST_MODELS", "RESOURCES", "UNITS", "CostModel", "create_cost_model"]


def create_cost_model(kind: str, *args, **kwargs) -> CostModel:
    from . import measured, table, vta  # noqa: F401  (register "measured", "table", "vta")

    return COST_MODELS.create(kind, *args, **kwargs)
