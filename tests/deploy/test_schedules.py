"""Which schedule databases a build uses, and where tuning writes (explorer.deploy.schedules)."""

import os

import pytest

from explorer.deploy.schedules import database_id, default_databases, resolve, user_database
from explorer.errors import ModelError
from explorer.paths import shipped_schedules


def _db(d, text="x"):
    d.mkdir(parents=True)
    (d / "database_workload.json").write_text(text + "\n")
    (d / "database_tuning_record.json").write_text("")
    return d


def test_defaults_are_the_users_then_the_shipped(tmp_path, monkeypatch):
    monkeypatch.delenv("EXPLORER_SCHEDULES", raising=False)
    monkeypatch.setenv("EXPLORER_HOME", str(tmp_path / "home"))
    assert user_database("cpu") == tmp_path / "home" / "schedules" / "cpu"  # where `explorer tune` writes
    shipped = [shipped_schedules("cpu")] if (shipped_schedules("cpu") / "database_workload.json").is_file() else []
    assert default_databases("cpu") == shipped
    mine = _db(tmp_path / "home" / "schedules" / "cpu")
    assert default_databases("cpu") == [mine, *shipped]
    assert default_databases("vta") == []  # no database for a target nobody tuned


def test_environment_and_explicit_choices(tmp_path, monkeypatch):
    a, b = _db(tmp_path / "a", "1"), _db(tmp_path / "b", "2")
    monkeypatch.setenv("EXPLORER_SCHEDULES", f"{a}{os.pathsep}{b}")
    assert default_databases("cpu") == [a, b]
    monkeypatch.setenv("EXPLORER_SCHEDULES", "none")
    assert default_databases("cpu") == [] and resolve(None, "cpu") == []
    assert resolve("none", "cpu") == [] and resolve(str(a), "cpu") == [a]
    with pytest.raises(ModelError, match="not a schedule database"):
        resolve(str(tmp_path / "missing"), "cpu")
    # identity: one database keeps its own id; a list has its own; contents change it
    assert database_id([a]) == database_id(a) != database_id(b)
    assert database_id([a, b]) not in (database_id(a), database_id(b))
    before = database_id(a)
    (a / "database_tuning_record.json").write_text("[0]\n")
    assert database_id(a) != before
