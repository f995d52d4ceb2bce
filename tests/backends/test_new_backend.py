"""A new kind of target is one backend module and one TOML: nothing else in the package changes.

The test writes both into a temporary folder — a toy accelerator whose throughput is a searched knob,
named in the TOML as ``module:Class`` — and runs ``explorer search`` on it end to end in a fresh process.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

BACKEND = textwrap.dedent('''
    """An accelerator of GMACS giga-MACs per second and a fixed cost per kernel launch."""
    import torch

    from explorer.backends import TargetBackend
    from explorer.cost.base import CostModel
    from explorer.slots import ComboTable, workload_features_basic


    class ThroughputCostModel(CostModel):
        resources = ("latency_s",)

        def __init__(self, space, hw, launch_s):
            self.hw, self.combos = hw, ComboTable(space.cost_slots(), space.choices())
            work = torch.tensor([workload_features_basic(w) for w in self.combos.row_workloads], dtype=torch.float64)
            gmacs = torch.tensor([float(v) for v in hw.knob("GMACS").values], dtype=torch.float64)
            # [rows, knob values]: seconds of each row on each throughput
            self.row_s = ((work[:, :1] + work[:, 1:2]) / (gmacs[None, :] * 1e9) + work[:, 2:3] * launch_s).float()

        def predict(self, net_probs, hw_probs, exact=False):
            return {"latency_s": (self.combos.probs(net_probs) @ self.row_s) @ hw_probs["GMACS"]}

        def evaluate(self, genotype, config):
            with torch.no_grad():
                return {"latency_s": float(self.predict(self.combos.onehot(genotype), self.hw.onehot(config))["latency_s"])}

        def lower_bounds(self):
            with torch.no_grad():
                return {"latency_s": float(self.combos.slot_min(self.row_s, dim=0).sum(0).min())}


    class ThroughputBackend(TargetBackend):
        resources = ("latency_s",)
        required_knobs = ("GMACS",)

        def cost_model(self, space, hw, calibration=None, store_path=None, progress=False):
            return ThroughputCostModel(space, hw, float(self.target.options["launch_us"]) * 1e-6)
''')

TOML = """
name = "toy"
backend = "toybackend:ThroughputBackend"
description = "a toy accelerator: throughput searched, launches cost"
[knobs.GMACS]
values = [1, 4, 16]
default = 1
[options]
launch_us = 2.0
"""


@pytest.mark.slow  # a fit, a search and its checks (~20 s): the slow tier
def test_a_new_target_kind_searches_end_to_end(tmp_path):
    (tmp_path / "toybackend.py").write_text(BACKEND)
    (tmp_path / "toy.toml").write_text(TOML)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "PYTHONWARNINGS": "ignore", "EXPLORER_HOME": str(tmp_path / "home")}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "explorer.cli", *args], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=600)

    r = cli("search", "--target", "toy.toml", "--dataset", "digits", "--steps", "30", "--epochs", "0",
            "--latency-ms", "0.05", "--out", "run", "--no-progress")
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["limits_met"] and 0 < s["figures"]["latency_ms"] <= 0.05 and set(s["figures"]) == {"latency_ms"}
    assert s["hardware"]["GMACS"] in (1, 4, 16)
    assert json.loads((tmp_path / "run" / "design.json").read_text())["target"] == "toy"
    bad = cli("search", "--target", "toy.toml", "--dataset", "digits", "--area-mm2", "1", "--out", "r2", "--no-progress")
    assert bad.returncode == 2 and "it has no area_mm2 limit" in bad.stderr
