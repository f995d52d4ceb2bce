"""The table of resources: one row per resource, and every other spelling of a resource's name (config
limit keys, CLI flags, summary figure keys, units) one of its columns."""

import argparse
import math

import pytest

from explorer import units as resources
from explorer.units import LIMIT_KEYS, RESOURCES, RESOURCES_TABLE, UNITS, Resource


def test_rows_are_what_files_and_flags_spell():
    """The names are file formats (config TOML, summary.json, history records) and CLI flags: pinned."""
    got = [(r.name, r.unit, r.si_factor, r.display, r.limit_key, r.figure_key, r.flag) for r in RESOURCES_TABLE]
    assert got == [("latency_s", "ms", 1e3, "latency", "latency_ms", "latency_ms", "--latency-ms"),
                   ("energy_j", "mJ", 1e3, "energy", "energy_mj", "energy_mJ", "--energy-mj"),
                   ("area_mm2", "mm2", 1.0, "area", "area_mm2", "area_mm2", "--area-mm2")]
    with pytest.raises(AttributeError):
        RESOURCES_TABLE[0].unit = "s"  # frozen


@pytest.mark.parametrize("r", RESOURCES_TABLE, ids=lambda r: r.name)
def test_units_round_trip(r: Resource):
    for v in (1e-9, 0.003, 0.1, 1.0, 2.5, 17.0, 1234.5):
        assert math.isclose(r.from_user(r.to_user(v)), v, rel_tol=1e-15)
        assert math.isclose(r.to_user(r.from_user(v)), v, rel_tol=1e-15)
    # from_user is the multiplication limits always used (v * 1e-3), bit for bit
    assert r.from_user(7.3) == 7.3 * LIMIT_KEYS[r.limit_key][1]
    assert r.fmt(r.from_user(12.5)) == f"12.5 {r.unit}"


def test_lookups_and_views_agree_with_the_table():
    for r in RESOURCES_TABLE:
        assert resources.by_name(r.name) is r
        assert resources.by_limit_key(r.limit_key) is r
        assert resources.by_figure_key(r.figure_key) is r
        assert UNITS[r.name] == (r.unit, r.si_factor)
        assert LIMIT_KEYS[r.limit_key] == (r.name, 1 / r.si_factor)
    assert RESOURCES == tuple(r.name for r in RESOURCES_TABLE)
    for lookup in (resources.by_name, resources.by_limit_key, resources.by_figure_key):
        with pytest.raises(KeyError):
            lookup("watts")
    # the views where older code imports them are the same objects
    from explorer import config
    from explorer.cost import base

    assert base.RESOURCES is RESOURCES and base.UNITS is UNITS and config.LIMIT_KEYS is LIMIT_KEYS


def test_user_figures():
    out = resources.user_figures({"latency_s": 0.0125, "energy_j": 3e-4, "area_mm2": 2.5, "val_accuracy": 0.9})
    assert out == pytest.approx({"latency_ms": 12.5, "energy_mJ": 0.3, "area_mm2": 2.5, "val_accuracy": 0.9})
    assert list(out) == ["latency_ms", "energy_mJ", "area_mm2", "val_accuracy"]


def _limit_options(parser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """``{flag: dest}`` of the options of ``explorer COMMAND`` that look like resource limits."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    units = ("-ms", "-mj", "-mm2", "-s", "-j", "-w")
    return {o: a.dest for a in sub._actions for o in a.option_strings
            if o.startswith("--") and o.lower().endswith(units)}


@pytest.mark.parametrize("command", ["search", "explore"])
def test_every_cli_limit_flag_is_a_row(command):
    from explorer.cli import _parser

    flags = _limit_options(_parser(), command)
    assert flags == {r.flag: r.limit_key for r in RESOURCES_TABLE}


def test_every_config_limit_key_is_a_row(tmp_path):
    from explorer.config import load_config
    from explorer.errors import ConfigError

    assert set(LIMIT_KEYS) == {r.limit_key for r in RESOURCES_TABLE}
    toml = tmp_path / "c.toml"
    toml.write_text("[limits]\n" + "".join(f"{r.limit_key} = 2.0\n" for r in RESOURCES_TABLE))
    cfg = load_config(toml)
    assert cfg.limits_si() == {r.name: r.from_user(2.0) for r in RESOURCES_TABLE}
    toml.write_text("[limits]\nenergy_mJ = 1.0\n")  # the figure key is not a limit key
    with pytest.raises(ConfigError, match="unknown limit 'energy_mJ'"):
        load_config(toml)


def test_objectives_are_the_figure_keys():
    from explorer.explore.pareto import OBJECTIVES

    assert OBJECTIVES == ("latency_ms", "energy_mJ", "area_mm2")
