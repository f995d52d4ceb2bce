"""Deployment targets, loaded from ``targets/*.toml`` (data only)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, UnknownNameError
from .space.hardware import HardwareSpace, Knob

__all__ = ["Target", "load_target", "target_names", "TARGETS_DIR"]

TARGETS_DIR = Path(__file__).resolve().parent.parent / "targets"


@dataclass(frozen=True)
class Target:
    """A deployment target: its hardware knobs, fixed fields and the cost model that prices it."""

    name: str
    kind: str
    description: str
    cost_model: str
    knobs: tuple[Knob, ...]
    fixed: tuple[tuple[str, object], ...]
    power: tuple[tuple[str, float], ...] = ()

    def hardware_space(self, init: str = "default") -> HardwareSpace:
        """Knobs start biased (+1 logit) to the target's default configuration: with no pressure
        from accuracy, limits or the objective, the search keeps the known-good default."""
        return HardwareSpace(list(self.knobs), dict(self.fixed), init=init)


def target_names(directory: Path = TARGETS_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.toml"))


def load_target(name_or_path: str, directory: Path = TARGETS_DIR) -> Target:
    """A target by name (``targets/<name>.toml``) or by path to a TOML file."""
    p = Path(name_or_path)
    if p.suffix != ".toml":
        p = directory / f"{name_or_path}.toml"
        if not p.is_file():
            raise UnknownNameError(f"unknown target {name_or_path!r}; valid: {', '.join(target_names(directory))}")
    try:
        d = tomllib.loads(p.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{p}: not a readable target TOML ({e})") from None
    try:
        knobs = tuple(
            Knob(k, tuple(v["values"]), v.get("default", v["values"][0])) for k, v in d.get("knobs", {}).items()
        )
        return Target(
            name=d.get("name", p.stem),
            kind=d.get("kind", "accelerator"),
            description=d.get("description", ""),
            cost_model=d["cost_model"],
            knobs=knobs,
            fixed=tuple(d.get("fixed", {}).items()),
            power=tuple((k, float(v)) for k, v in d.get("power", {}).items()),
        )
    except (KeyError, TypeError, IndexError, ValueError) as e:
        raise ConfigError(f"{p}: malformed target ({type(e).__name__}: {e})") from None
