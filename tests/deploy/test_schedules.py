"""Which schedule databases a build uses, and where tuning writes (explorer.deploy.schedules)."""

import json
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


def _target(mcpu, cores=2):
    return {"kind": "llvm", "mtriple": "x86_64-pc-linux-gnu", "mcpu": mcpu, "num-cores": cores}


def test_target_key_names_what_a_schedule_was_tuned_for():
    from tvm.target import Target

    from explorer.deploy.schedules import target_key

    assert target_key(_target("znver5", 16)) == "llvm/x86_64/znver5/16c"
    assert target_key(Target(_target("rocketlake"))) == "llvm/x86_64/rocketlake/2c"
    assert target_key(_target("rocketlake")) != target_key(_target("rocketlake", 4)) != target_key(_target("znver5", 4))
    assert target_key({"kind": "cuda", "arch": "sm_90"}) == "cuda/sm_90"


def test_subset_keeps_only_one_targets_records(tmp_path):
    """Records tuned for another CPU are left out of a build (and reported), not applied."""
    from explorer.deploy.schedules import manifest, note_tuning, subset

    d = tmp_path / "db"
    d.mkdir()
    (d / "database_workload.json").write_text('["111", "mod-a"]\n["222", "mod-b"]\n["333", "mod-c"]\n')
    rec = lambda i, mcpu, s: json.dumps([i, [[], [s], _target(mcpu), []]])  # noqa: E731
    (d / "database_tuning_record.json").write_text("\n".join([
        rec(0, "rocketlake", 1e-5), rec(0, "znver5", 5e-6), rec(1, "znver5", 2e-6), rec(2, "rocketlake", 3e-6)]) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    wl, r, others = subset({"111", "222"}, [d], out, key="llvm/x86_64/rocketlake/2c")
    assert [json.loads(x)[0] for x in wl.read_text().splitlines()] == ["111", "222"]
    kept = [json.loads(x) for x in r.read_text().splitlines()]
    assert len(kept) == 1 and kept[0][0] == 0 and kept[0][1][2]["mcpu"] == "rocketlake"
    assert others == {"111": ["llvm/x86_64/znver5/2c"], "222": ["llvm/x86_64/znver5/2c"]}
    _, r_all, _ = subset({"111", "222"}, [d], out)  # no key: everything (a warm start reads all)
    assert len(r_all.read_text().splitlines()) == 3
    # the manifest says per key which input shapes and models were tuned
    note_tuning(d, "llvm/x86_64/znver5/2c", [[1, 1, 28, 28]], "demo", 24)
    note_tuning(d, "llvm/x86_64/znver5/2c", [[1, 1, 28, 28], [1, 3, 224, 224]], "mbv2", 8)
    m = manifest(d)["llvm/x86_64/znver5/2c"]
    assert m["input_shapes"] == [[1, 1, 28, 28], [1, 3, 224, 224]] and m["trials"] == 32 and m["models"] == ["demo", "mbv2"]


def test_shipped_database_says_what_it_was_tuned_for():
    from explorer.deploy.schedules import manifest

    d = shipped_schedules("cpu")
    if not (d / "README.json").is_file():
        pytest.skip("no shipped database in this checkout")
    (key, entry), = manifest(d).items()
    assert key.startswith("llvm/") and entry["input_shapes"] == [[1, 28, 28]]
