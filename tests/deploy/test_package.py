"""explorer deploy: a run becomes a folder a user can load and run."""

import json
import subprocess
import sys

import pytest

from explorer.api import run_search
from tests.conftest import run_cli, tiny_config


def test_deploy_a_run(tmp_path):
    run_search(tiny_config(steps=12, epochs=2), tmp_path / "run", progress=False)
    r = run_cli("deploy", str(tmp_path / "run"), "--out", str(tmp_path / "dep"))
    assert r.returncode == 0, r.stderr
    card = json.loads((tmp_path / "dep" / "card.json").read_text())
    assert card["latency_ms"]["tvm_median"] > 0 and card["latency_ms"]["onnxruntime_median"] > 0
    assert card["accuracy"]["dataset"] == "digits" and 0 <= card["accuracy"]["test_accuracy"] <= 1
    assert card["export_max_abs_diff"] <= 1e-4
    ex = subprocess.run([sys.executable, str(tmp_path / "dep" / "run_example.py")], capture_output=True, text=True,
                        timeout=120)
    assert ex.returncode == 0 and ex.stdout.startswith("class "), ex.stderr
    again = run_cli("deploy", str(tmp_path / "run"), "--out", str(tmp_path / "dep"))
    assert again.returncode == 2 and "not empty" in again.stderr
    bad = run_cli("deploy", str(tmp_path / "run"), "--target", "vta", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "does not deploy libraries" in bad.stderr, bad.stderr
    assert card["build"]["tuned"] is False and card["build"]["scheduled_kernels"] == 0  # tests see no database (conftest)


@pytest.mark.slow  # TVM tuning or builds: the slow tier
def test_deploy_tuned_library(tmp_path):
    """`explorer tune RUN` then `deploy`: every kernel of the library runs a tuned schedule."""
    run_search(tiny_config(steps=6, epochs=1), tmp_path / "run", progress=False)
    t = run_cli("tune", str(tmp_path / "run"), "--trials", "24", "--per-iter", "2", "--db", str(tmp_path / "db"),
                "--num-cores", "1", "--no-progress")
    assert t.returncode == 0, t.stderr
    r = run_cli("deploy", str(tmp_path / "run"), "--out", str(tmp_path / "dep"), "--schedules", str(tmp_path / "db"))
    assert r.returncode == 0 and "library tuned" in r.stdout, r.stdout + r.stderr
    card = json.loads((tmp_path / "dep" / "card.json").read_text())
    assert card["build"]["tuned"] and card["build"]["scheduled_kernels"] == card["kernels"]
