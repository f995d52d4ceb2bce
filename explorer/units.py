"""The resources a design is priced in: one table, and every spelling of their names derived from it.

A resource has

- an SI name (``latency_s``): what cost models return, limits hold inside a search, histories record;
- a unit shown to people and its factor from SI (``ms``, ``1e3``);
- a display name (``latency``), for labels and messages;
- a limit key (``latency_ms``): the name in a config's ``[limits]`` table and, as ``--latency-ms``, the
  CLI flag; its value is in the shown unit.

A summary writes each figure in the shown unit under :attr:`Resource.figure_key`, ``display_unit``
(``latency_ms``, ``energy_mJ``, ``area_mm2``); the limit key of energy is lower case (``energy_mj``).

Standard library only: the config and the CLI read this table without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Resource", "RESOURCES_TABLE", "RESOURCES", "UNITS", "LIMIT_KEYS", "by_name", "by_limit_key",
           "by_figure_key", "user_figures"]


@dataclass(frozen=True)
class Resource:
    """One priced resource (see the module's docstring for what each name is used for)."""

    name: str
    unit: str
    si_factor: float
    display: str
    limit_key: str
    #: what one figure is counted over, for help texts ("energy limit per inference"); "" for none
    per: str = ""

    @property
    def figure_key(self) -> str:
        """The key of the figure in the shown unit in a summary: ``latency_ms``, ``energy_mJ``."""
        return f"{self.display}_{self.unit}"

    @property
    def flag(self) -> str:
        """The CLI flag of the limit: ``--latency-ms``."""
        return "--" + self.limit_key.replace("_", "-")

    @property
    def label(self) -> str:
        """``latency (ms)``: an axis or column label."""
        return f"{self.display} ({self.unit})"

    def to_user(self, value_si: float):
        """A value in SI units in the shown unit (works on tensors and arrays too)."""
        return value_si * self.si_factor

    def from_user(self, value):
        """A value in the shown unit (a limit as given) in SI units."""
        # multiplying by the reciprocal: 1 / 1e3 is the double 1e-3, so limits come out as they always have
        return value * (1.0 / self.si_factor)

    def fmt(self, value_si: float) -> str:
        """``12.35 ms``: a value in SI units, shown."""
        return f"{self.to_user(value_si):.4g} {self.unit}"


#: every resource, in the order figures are listed and plotted
RESOURCES_TABLE: tuple[Resource, ...] = (
    Resource("latency_s", "ms", 1e3, "latency", "latency_ms"),
    Resource("energy_j", "mJ", 1e3, "energy", "energy_mj", per="inference"),
    Resource("area_mm2", "mm2", 1.0, "area", "area_mm2"),
)

_BY_NAME = {r.name: r for r in RESOURCES_TABLE}
_BY_LIMIT_KEY = {r.limit_key: r for r in RESOURCES_TABLE}
_BY_FIGURE_KEY = {r.figure_key: r for r in RESOURCES_TABLE}


def by_name(name: str) -> Resource:
    """The resource of an SI name (``latency_s``); KeyError for another name."""
    return _BY_NAME[name]


def by_limit_key(key: str) -> Resource:
    """The resource of a config/CLI limit key (``latency_ms``); KeyError for another key."""
    return _BY_LIMIT_KEY[key]


def by_figure_key(key: str) -> Resource:
    """The resource of a summary's figure key (``energy_mJ``); KeyError for another key."""
    return _BY_FIGURE_KEY[key]


def user_figures(figures: dict) -> dict:
    """``{SI name: value}`` as a summary writes it, ``{figure key: value in the shown unit}``; keys that
    are not resources pass through unchanged."""
    out = {}
    for k, v in figures.items():
        r = _BY_NAME.get(k)
        out[r.figure_key if r else k] = r.to_user(v) if r else v
    return out


# Views of the table in the shapes older code reads.
#: the SI names
RESOURCES: tuple[str, ...] = tuple(r.name for r in RESOURCES_TABLE)
#: SI name -> (unit shown to people, factor from SI)
UNITS: dict[str, tuple[str, float]] = {r.name: (r.unit, r.si_factor) for r in RESOURCES_TABLE}
#: config/CLI limit key -> (SI name, factor to SI)
LIMIT_KEYS: dict[str, tuple[str, float]] = {r.limit_key: (r.name, 1.0 / r.si_factor) for r in RESOURCES_TABLE}
