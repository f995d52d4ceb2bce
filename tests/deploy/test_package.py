"""explorer deploy: a run becomes a folder a user can load and run."""

import json
import subprocess
import sys

import pytest

from explorer.api import run_search
from tests.conftest import run_cli, tiny_config


@pytest.mark.slow  # a search, export, build and package: the slow tier (the fast tier keeps compile and measure)
def test_deploy_a_run(tmp_path):
    run_search(tiny_config(steps=12, epochs=2), tmp_path / "run", progress=False)
    r = run_cli("deploy", str(tmp_path / "run"), "--out", str(tmp_path / "dep"))
    assert r.returncode == 0, r.stderr
    card = json.loads((tmp_path / "dep" / "card.json").read_text())
    assert card["latency_ms"]["tvm_median"] > 0 and card["latency_ms"]["onnxruntime_median"] > 0
    assert card["accuracy"]["dataset"] == "digits" and 0 <= card["accuracy"]["test_accuracy"] <= 1
    assert card["export_max_abs_diff"] <= 1e-4
    # the layout and prepacking it was built with, and why: by default compared here (untuned: tests see no database)
    lc = card["layout_choice"]
    assert (card["build"]["layout"], card["build"]["prepack"]) == (lc["layout"], lc["prepack"]) and len(lc["probes"]) == 3
    assert lc["why"].startswith("measured on this machine: each setting built untuned")
    assert (lc["layout"], lc["prepack"]) == min(((p["tvm_ms"], p["layout"], p["prepack"]) for p in lc["probes"]))[1:]
    # TVM and onnxruntime each timed with 1 .. all cores in fresh processes, each reported at its fastest
    th = card["threads"]
    assert set(th["tvm_ms"]) == set(th["onnxruntime_ms"]) and "1" in th["tvm_ms"]
    assert th["tvm_ms"][str(th["tvm"])] == min(th["tvm_ms"].values()) == card["latency_ms"]["tvm_median"]
    assert th["onnxruntime_ms"][str(th["onnxruntime"])] == card["latency_ms"]["onnxruntime_median"]
    assert f'"TVM_NUM_THREADS", "{th["tvm"]}"' in (tmp_path / "dep" / "run_example.py").read_text()
    assert f"({th['tvm']} thread" in r.stdout
    ex = subprocess.run([sys.executable, str(tmp_path / "dep" / "run_example.py")], capture_output=True, text=True,
                        timeout=120)
    assert ex.returncode == 0 and ex.stdout.startswith("class "), ex.stderr
    again = run_cli("deploy", str(tmp_path / "run"), "--out", str(tmp_path / "dep"))
    assert again.returncode == 2 and "not empty" in again.stderr
    bad = run_cli("deploy", str(tmp_path / "run"), "--target", "vta", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "does not deploy libraries" in bad.stderr, bad.stderr
    assert card["build"]["tuned"] is False and card["build"]["scheduled_kernels"] == 0  # tests see no database (conftest)
    assert card["tuning"]["status"].startswith("skipped (untuned on purpose") and "tuning: skipped" in r.stdout


@pytest.mark.slow  # TVM tuning or builds: the slow tier
def test_deploy_tuned_library(tmp_path):
    """`explorer tune RUN` then `deploy`: every kernel of the library runs a tuned schedule."""
    run_search(tiny_config(steps=6, epochs=1), tmp_path / "run", progress=False)
    # tuned for this CPU with all its cores, as deploy builds: a 1-core tuning would be another key
    t = run_cli("tune", str(tmp_path / "run"), "--trials", "24", "--per-iter", "2", "--db", str(tmp_path / "db"),
                "--no-progress")
    assert t.returncode == 0, t.stderr
    r = run_cli("deploy", str(tmp_path / "run"), "--out", str(tmp_path / "dep"), "--schedules", str(tmp_path / "db"),
                "--trials", "24", "--layout", "NCHW")
    assert r.returncode == 0 and "library tuned" in r.stdout, r.stdout + r.stderr
    card = json.loads((tmp_path / "dep" / "card.json").read_text())
    assert card["build"]["tuned"] and card["build"]["scheduled_kernels"] == card["kernels"]
    # tuned before: nothing more (records MetaSchedule filed under a structurally equal duplicate of
    # a workload do not count for this model's kernels, so the total can be a batch short of 24)
    assert card["tuning"]["trials_this_run"] == 0 and 0 < card["tuning"]["trials_total"] <= 24


@pytest.mark.slow  # TVM tuning or builds: the slow tier
def test_deploy_tunes_on_this_machine_by_default(tmp_path, monkeypatch):
    """No database anywhere (a new machine): deploy tunes within its budget, into the user's database."""
    monkeypatch.delenv("EXPLORER_SCHEDULES")
    monkeypatch.setenv("EXPLORER_HOME", str(tmp_path / "home"))
    run_search(tiny_config(steps=6, epochs=1), tmp_path / "run", progress=False)
    r = run_cli("deploy", str(tmp_path / "run"), "--out", str(tmp_path / "dep"), "--tune-minutes", "0.5", "--layout", "NCHW",
                "--no-progress")
    assert r.returncode == 0, r.stderr
    tn = json.loads((tmp_path / "dep" / "card.json").read_text())["tuning"]
    assert tn["status"] == "tuned here" and tn["default_budget"] and tn["budget_minutes"] == 0.5
    assert tn["stopped_by"] == "time" and 0 < tn["trials_this_run"] == tn["trials_total"] < tn["budget_trials"]
    assert tn["tuning_s"] < 30 + 60  # the batch in flight finishes after the time budget
    assert tn["database"] == str(tmp_path / "home" / "schedules" / "cpu") and "tuning on this machine" in r.stdout
    from explorer.deploy.schedules import manifest

    (key, entry), = manifest(tmp_path / "home" / "schedules" / "cpu").items()
    assert key == tn["key"] and entry["trials"] == tn["trials_this_run"] and entry["input_shapes"] == [[1, 1, 8, 8]]


@pytest.mark.slow  # TVM tuning and four builds: the slow tier
def test_deploy_auto_layout_keeps_the_fastest_measured_setting(tmp_path, monkeypatch):
    """--layout auto: every candidate setting is tuned with its share, built and timed here; the card
    lists them and the library is built in the fastest one."""
    from explorer.backends.tvm_deploy import AUTO_CANDIDATES

    monkeypatch.delenv("EXPLORER_SCHEDULES")
    monkeypatch.setenv("EXPLORER_HOME", str(tmp_path / "home"))
    run_search(tiny_config(steps=6, epochs=1), tmp_path / "run", progress=False)
    r = run_cli("deploy", str(tmp_path / "run"), "--out", str(tmp_path / "dep"), "--layout", "auto", "--trials", "30",
                "--tune-minutes", "2", "--no-progress")
    assert r.returncode == 0, r.stderr
    card = json.loads((tmp_path / "dep" / "card.json").read_text())
    lc = card["layout_choice"]
    assert [(p["layout"], p["prepack"]) for p in lc["probes"]] == list(AUTO_CANDIDATES)
    fastest = min(lc["probes"], key=lambda p: p["tvm_ms"])
    assert (lc["layout"], lc["prepack"]) == (fastest["layout"], fastest["prepack"])
    assert (card["build"]["layout"], card["build"]["prepack"]) == (lc["layout"], lc["prepack"])
    assert all(p["tvm_ms"] > 0 and 0 < p["trials"] <= 30 for p in lc["probes"])
    assert lc["why"].startswith("measured on this machine") and "layout, compared on this machine" in r.stdout
    assert card["tuning"]["status"] == "tuned here" and card["tuning"]["trials_total"] <= 30
    assert not list((tmp_path / "dep").glob("probe-*"))  # the comparison's libraries are not shipped
    assert card["accuracy"]["test_accuracy"] >= 0 and card["export_max_abs_diff"] <= 1e-4
