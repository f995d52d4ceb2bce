"""The cost-model interface: differentiable expected resources of a relaxed (network, hardware)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from ..registry import Registry

__all__ = ["CostModel", "COST_MODELS", "RESOURCES", "UNITS", "joint_probs"]

COST_MODELS: Registry = Registry("cost model")

# Resource name -> (unit shown to people, factor from SI).
RESOURCES = ("latency_s", "energy_j", "area_mm2")
UNITS = {"latency_s": ("ms", 1e3), "energy_j": ("mJ", 1e3), "area_mm2": ("mm2", 1.0)}


def joint_probs(probs: dict[str, torch.Tensor], names) -> torch.Tensor:
    """Probabilities of every combination of the independent choices ``names`` (C order), flattened."""
    p = probs[names[0]]
    for k in names[1:]:
        p = (p[:, None] * probs[k][None, :]).reshape(-1)
    return p


class CostModel(ABC):
    """Maps architecture and hardware probabilities to expected resource figures.

    ``predict`` is differentiable in both probability sets (and so in ``alpha`` and ``theta``);
    ``evaluate`` gives the exact figures of one derived design; ``lower_bounds`` the cheapest value
    any design of the spaces can reach, per resource, used to reject impossible limits up front.
    """

    resources: tuple[str, ...] = RESOURCES

    @abstractmethod
    def predict(self, net_probs: dict[str, torch.Tensor], hw_probs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

    @abstractmethod
    def evaluate(self, genotype: dict[str, str], config) -> dict[str, float]: ...

    @abstractmethod
    def lower_bounds(self) -> dict[str, float]: ...
