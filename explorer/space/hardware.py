"""Hardware spaces: discrete knobs relaxed by logits, and the derived configuration."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import ConfigError
from .base import relaxed_probs

__all__ = ["Knob", "HWConfig", "HardwareSpace", "BIT_KNOBS"]

# The hardware-space vocabulary for numerics: a target whose hardware changes the numerics (fixed
# point of a chosen width) offers these knobs, log2 of the activation and weight bits; the search then
# fake-quantises the supernet, so the task loss depends on theta. Targets without them compute in float.
BIT_KNOBS = ("LOG_INP_WIDTH", "LOG_WGT_WIDTH")


@dataclass(frozen=True)
class Knob:
    """One hardware parameter with a finite set of ``values`` and a ``default`` among them."""

    name: str
    values: tuple
    default: object

    def __post_init__(self):
        if not self.values:
            raise ConfigError(f"knob {self.name}: needs at least one value")
        if self.default not in self.values:
            raise ConfigError(f"knob {self.name}: default {self.default!r} is not one of {list(self.values)}")


@dataclass(frozen=True)
class HWConfig:
    """A concrete hardware configuration: knob values plus fixed fields, hashable.

    How a target writes it to ``hw_config.json`` is its backend's choice (the accelerator writes
    ``vta_config.json`` field names).
    """

    values: tuple[tuple[str, object], ...]
    fixed: tuple[tuple[str, object], ...] = field(default=())

    def __getitem__(self, k):
        return dict(self.values)[k]

    def as_dict(self) -> dict:
        return {**dict(self.fixed), **dict(self.values)}

    def bits(self) -> tuple[int | None, int | None]:
        """(activation bits, weight bits) from the :data:`BIT_KNOBS`; ``None`` where the target
        computes in float."""
        d = dict(self.values)
        return tuple(2 ** d[k] if k in d else None for k in BIT_KNOBS)  # type: ignore[return-value]

    @classmethod
    def from_dict(cls, d: dict, space: "HardwareSpace") -> "HWConfig":
        """Parse a ``{field: value}`` dict against ``space`` (knobs missing take their default)."""
        d = dict(d)
        vals = {}
        for k in space.knobs:
            v = d.pop(k.name, k.default)
            if v not in k.values:
                raise ConfigError(f"hardware config: {k.name}={v!r} is not one of {list(k.values)}")
            vals[k.name] = v
        fixed = dict(space.fixed)
        for k, v in d.items():
            if k not in fixed:
                raise ConfigError(
                    f"hardware config: unknown field {k!r}; valid: {', '.join([kn.name for kn in space.knobs] + list(fixed))}"
                )
            if v != fixed[k]:
                raise ConfigError(f"hardware config: {k}={v!r} is fixed at {fixed[k]!r} for this target")
        return cls(tuple(vals.items()), tuple(fixed.items()))


class HardwareSpace(nn.Module):
    """Relaxed hardware knobs: ``theta.<knob>`` logits over each knob's values.

    Lifecycle mirrors :class:`~explorer.space.base.SuperNet`: :meth:`probs` each step, :meth:`derive`
    at the end; :meth:`onehot` evaluates a concrete :class:`HWConfig`.
    """

    def __init__(self, knobs: list[Knob], fixed: dict | None = None, init: str = "uniform"):
        super().__init__()
        self.knobs = list(knobs)
        self.fixed = dict(fixed or {})
        self.theta = nn.ParameterDict({k.name: nn.Parameter(torch.zeros(len(k.values))) for k in self.knobs})
        for k in self.knobs:
            self.register_buffer(f"mask_{k.name}", torch.ones(len(k.values), dtype=torch.bool))
        if init == "default":
            with torch.no_grad():
                for k in self.knobs:
                    self.theta[k.name][k.values.index(k.default)] = 1.0

    def knob(self, name: str) -> Knob:
        for k in self.knobs:
            if k.name == name:
                return k
        raise KeyError(name)

    def hw_parameters(self) -> list[nn.Parameter]:
        return list(self.theta.values())

    def freeze(self, config: HWConfig) -> None:
        """Restrict every knob to ``config``'s value (hardware held fixed, e.g. a sequential baseline)."""
        with torch.no_grad():
            for k in self.knobs:
                m = getattr(self, f"mask_{k.name}")
                m.zero_()
                m[k.values.index(config[k.name])] = True

    def probs(self, relax: str = "softmax", tau: float = 1.0, generator=None) -> dict[str, torch.Tensor]:
        return {
            k.name: relaxed_probs(self.theta[k.name], getattr(self, f"mask_{k.name}"), relax, tau, generator)
            for k in self.knobs
        }

    def onehot(self, config: HWConfig) -> dict[str, torch.Tensor]:
        out = {}
        for k in self.knobs:
            t = torch.zeros(len(k.values))
            t[k.values.index(config[k.name])] = 1.0
            out[k.name] = t
        return out

    def derive(self) -> HWConfig:
        vals = []
        for k in self.knobs:
            logits = self.theta[k.name].detach().masked_fill(~getattr(self, f"mask_{k.name}"), float("-inf"))
            vals.append((k.name, k.values[int(torch.argmax(logits))]))
        return HWConfig(tuple(vals), tuple(self.fixed.items()))

    def default_config(self) -> HWConfig:
        return HWConfig(tuple((k.name, k.default) for k in self.knobs), tuple(self.fixed.items()))

    def config_from_indices(self, idx: dict[str, int]) -> HWConfig:
        return HWConfig(tuple((k.name, k.values[idx[k.name]]) for k in self.knobs), tuple(self.fixed.items()))

    def load_config(self, path: str | Path) -> HWConfig:
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: not a readable hardware config JSON ({e})") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: hardware config must be a JSON object")
        return HWConfig.from_dict(d, self)
