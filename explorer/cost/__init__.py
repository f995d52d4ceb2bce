"""Cost models: differentiable expected resources of a relaxed network + hardware."""

from .base import COST_MODELS, RESOURCES, UNITS, CostModel
from . import vta as _vta  # noqa: F401  (registers "vta")

__all__ = ["COST_MODELS", "RESOURCES", "UNITS", "CostModel"]
