"""The cost-model interface: differentiable expected resources of a relaxed (network, hardware)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from ..registry import Registry
from ..units import RESOURCES, UNITS  # noqa: F401  (re-exported: views of explorer.units)
from ..slots import joint_probs  # noqa: F401  (re-exported)

__all__ = ["CostModel", "COST_MODELS", "RESOURCES", "UNITS", "Measurement", "joint_probs"]

COST_MODELS: Registry = Registry("cost model")


@dataclass(frozen=True)
class Measurement:
    """The measured latency of one derived design (network genotype + hardware configuration)."""

    genotype: dict
    config: object  # HWConfig
    latency_s: float
    #: kernel-level truth, where the measurer timed kernels and they could be attributed:
    #: ``((slot indices, seconds), ...)`` for groups of consecutive slots (explorer.measure.kernels)
    parts: tuple = ()


class CostModel(ABC):
    """Maps architecture and hardware probabilities to expected resource figures.

    Lifecycle: built by the target's backend for one (network space, hardware space); the search
    calls :meth:`predict` every step (differentiable in both probability sets, and so in ``alpha``
    and ``theta``), :meth:`evaluate` on derived designs, :meth:`update` when the loop's source of
    truth (see :class:`explorer.backends.Measurer`) returns measured designs, and records
    :meth:`correction_state` beside each measurement. :meth:`lower_bounds` is the cheapest value any
    design of the spaces can reach, per resource, used to reject impossible limits up front.

    Invariants every implementation keeps (the contract tests check them): ``predict`` at one-hot
    probabilities equals ``evaluate``; ``predict`` is linear in each architecture choice's
    probabilities, so ``d E[c] / d alpha_o = p_o (c_o - E[c])``; ``lower_bounds`` is below every
    design.
    """

    resources: tuple[str, ...] = RESOURCES

    @abstractmethod
    def predict(self, net_probs: dict[str, torch.Tensor], hw_probs: dict[str, torch.Tensor],
                exact: bool = False) -> dict[str, torch.Tensor]:
        """Expected figures ``{resource: scalar tensor}`` under the two probability sets. ``exact``:
        no smooth relaxation (ceilings exact), so one-hot probabilities give :meth:`evaluate`'s figures."""

    @abstractmethod
    def evaluate(self, genotype: dict[str, str], config) -> dict[str, float]:
        """Exact figures of one derived design (at least every resource in :attr:`resources`)."""

    @abstractmethod
    def lower_bounds(self) -> dict[str, float]:
        """The cheapest value of every resource over all designs of the spaces."""

    def update(self, measurements: list[Measurement]) -> None:  # noqa: B027  (optional)
        """Learn from measured designs. A purely analytical model learns nothing (the default)."""

    def correction_state(self) -> dict:
        """What the model has learned from measurements so far (JSON-able, for the history)."""
        return {}
