"""DesignPoint: a derived network + hardware configuration; frozen, hashable, JSON round trip."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["DesignPoint"]


@dataclass(frozen=True)
class DesignPoint:
    """The key of every result: which space and options, which genotype, which hardware."""

    space: str
    space_options: str  # canonical JSON of the space's options
    genotype: tuple[tuple[str, str], ...]
    target: str
    hardware: tuple[tuple[str, object], ...]  # knob values (vta_config names for the VTA target)
    input_shape: tuple[int, ...]
    num_classes: int

    @classmethod
    def make(cls, space, genotype: dict, target: str, hw_config, ) -> "DesignPoint":
        return cls(
            space=space.name,
            space_options=json.dumps(space.options(), sort_keys=True),
            genotype=tuple((k, genotype[k]) for k in space.choices()),
            target=target,
            hardware=tuple(hw_config.values),
            input_shape=tuple(space.input_shape),
            num_classes=space.num_classes,
        )

    @property
    def genotype_dict(self) -> dict[str, str]:
        return dict(self.genotype)

    @property
    def hardware_dict(self) -> dict:
        return dict(self.hardware)

    def key(self) -> str:
        """A short stable hash (store key, file names)."""
        return hashlib.sha256(json.dumps(self.as_json(), sort_keys=True).encode()).hexdigest()[:16]

    def as_json(self) -> dict:
        return {
            "space": self.space,
            "space_options": json.loads(self.space_options),
            "genotype": dict(self.genotype),
            "target": self.target,
            "hardware": dict(self.hardware),
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
        }

    @classmethod
    def from_json(cls, d: dict) -> "DesignPoint":
        try:
            return cls(
                space=d["space"],
                space_options=json.dumps(d.get("space_options", {}), sort_keys=True),
                genotype=tuple((str(k), str(v)) for k, v in d["genotype"].items()),
                target=d["target"],
                hardware=tuple(d["hardware"].items()),
                input_shape=tuple(int(x) for x in d["input_shape"]),
                num_classes=int(d["num_classes"]),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise ConfigError(f"malformed design JSON ({type(e).__name__}: {e})") from None
