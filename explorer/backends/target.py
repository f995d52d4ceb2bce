"""Deployment targets: data-only TOML files that name the backend which prices, measures and builds them.

Where targets are found: a path to a ``.toml`` file; else ``<name>.toml`` in the user's folder
(``$EXPLORER_HOME/targets``, see :mod:`explorer.paths`), then among the targets shipped with the
package (``targets/`` at the top of the repository, package data in a wheel).

A target TOML::

    name = "cpu"
    backend = "tvm-cpu"            # a registered backend, or "package.module:Class" for a plug-in
    description = "..."
    [knobs.THREADS]                # the hardware knobs the search relaxes
    values = [1, 2]
    default = 2
    [fixed]                        # fields of the configuration that are not searched
    [power]                        # figures the backend's energy model reads
    [options]                      # anything else the backend reads (a latency table, a device key)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, UnknownNameError
from ..fsutil import read_toml
from ..space.hardware import HardwareSpace, Knob

__all__ = ["Target", "load_target", "target_names", "table_target"]

_KEYS = {"name", "backend", "description", "knobs", "fixed", "power", "options"}


@dataclass(frozen=True)
class Target:
    """A deployment target: its backend, hardware knobs, fixed fields, power figures and options."""

    name: str
    backend_name: str
    description: str
    knobs: tuple[Knob, ...]
    fixed: tuple[tuple[str, object], ...]
    power: tuple[tuple[str, float], ...] = ()
    options: dict = field(default_factory=dict, hash=False, compare=False)
    path: str = ""

    def hardware_space(self, init: str = "default") -> HardwareSpace:
        """Knobs start biased (+1 logit) to the target's default configuration: with no pressure
        from accuracy, limits or the objective, the search keeps the known-good default."""
        return HardwareSpace(list(self.knobs), dict(self.fixed), init=init)

    def backend(self):
        """This target's :class:`~explorer.backends.base.TargetBackend`."""
        from .base import create_backend

        return create_backend(self)


def table_target(path: str | Path) -> Target:
    """A target for the device a latency model file describes (the ``latency-table`` backend's)."""
    p = Path(path)
    return Target(name=p.stem, backend_name="latency-table", description=f"a device known by its latency table ({p.name})",
                  knobs=(Knob("DEVICE", (p.stem,), p.stem),), fixed=(), options={"latency_model": str(p)}, path=str(p))


def _dirs() -> list[Path]:
    from ..paths import shipped_targets_dir, user_targets_dir

    return [user_targets_dir(), shipped_targets_dir()]


def target_names() -> list[str]:
    """Every target found by name: the user's and the shipped ones."""
    return sorted({p.stem for d in _dirs() if d.is_dir() for p in d.glob("*.toml")})


def load_target(name_or_path: str | Path) -> Target:
    """A target by name (the user's targets first, then the shipped ones), by path to a TOML file, or
    by path to a latency model file (``.json``, from ``explorer costmodel fit``)."""
    p = Path(name_or_path)
    if p.suffix == ".json":  # a latency model file: the device its table was measured on
        if not p.is_file():
            raise ConfigError(f"{p}: no such latency model file (explorer costmodel fit writes one)")
        return table_target(p)
    if p.suffix != ".toml":
        found = [d / f"{name_or_path}.toml" for d in _dirs() if (d / f"{name_or_path}.toml").is_file()]
        if not found:
            raise UnknownNameError(f"unknown target {str(name_or_path)!r}; valid: {', '.join(target_names())}")
        p = found[0]
    d = read_toml(p, "not a readable target TOML")
    unknown = sorted(set(d) - _KEYS)
    if unknown:
        raise ConfigError(f"{p}: unknown key(s) {unknown}; valid: {', '.join(sorted(_KEYS))}")
    if not isinstance(d.get("backend"), str):
        from .base import backend_names

        raise ConfigError(f"{p}: needs backend = \"...\" (one of {', '.join(backend_names())}, or module:Class)")
    for k in ("name", "description"):
        if k in d and not isinstance(d[k], str):
            raise ConfigError(f"{p}: {k} must be a string, got {d[k]!r}")
    bad = [k for k, v in d.get("power", {}).items()
           if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)] \
        if isinstance(d.get("power", {}), dict) else ["(not a table)"]
    if bad:
        raise ConfigError(f"{p}: [power] figures must be finite numbers: {', '.join(map(str, bad))}")
    try:
        knobs = tuple(
            Knob(k, tuple(v["values"]), v.get("default", v["values"][0])) for k, v in d.get("knobs", {}).items()
        )
        return Target(
            name=d.get("name", p.stem),
            backend_name=d["backend"],
            description=d.get("description", ""),
            knobs=knobs,
            fixed=tuple(d.get("fixed", {}).items()),
            power=tuple((k, float(v)) for k, v in d.get("power", {}).items()),
            options=dict(d.get("options", {})),
            path=str(p),
        )
    except (KeyError, TypeError, IndexError, ValueError, AttributeError) as e:
        raise ConfigError(f"{p}: malformed target ({type(e).__name__}: {e})") from None
