"""A new kind of target is one backend module and one TOML: nothing else in the package changes.

The test writes both into a temporary folder: a backend priced by the additive latency model that
``explorer costmodel fit`` fits on a table of measured designs (here synthetic), named in the TOML
as ``module:Class``, then runs ``explorer search`` on it end to end in a fresh process.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from explorer.data import load_dataset
from explorer.space import create_space
from explorer.space.design import DesignPoint
from explorer.space.hardware import HWConfig

BACKEND = textwrap.dedent('''
    """A target priced by a latency table: the additive model `explorer costmodel fit` wrote."""
    import json

    import torch

    from explorer.backends import TargetBackend
    from explorer.cost.additive import AdditiveLatencyModel
    from explorer.cost.base import CostModel
    from explorer.slots import ComboTable


    class TableCostModel(CostModel):
        """The fitted model prices each (slot, options) row of the space: the expectation over the
        architecture is exact and differentiable."""

        resources = ("latency_s",)

        def __init__(self, space, path):
            m = AdditiveLatencyModel.from_json(json.loads(open(path).read()), path).bind(space)
            self.combos = ComboTable(space.cost_slots(), space.choices())
            self.row_s = torch.tensor(m.row_costs_ms()).float() * 1e-3
            self.intercept_s = m.intercept_ms * 1e-3

        def predict(self, net_probs, hw_probs, exact=False):
            return {"latency_s": self.combos.probs(net_probs) @ self.row_s + self.intercept_s}

        def evaluate(self, genotype, config):
            with torch.no_grad():
                return {"latency_s": float(self.predict(self.combos.onehot(genotype), {})["latency_s"])}

        def lower_bounds(self):
            return {"latency_s": float(self.combos.slot_min(self.row_s).sum()) + self.intercept_s}


    class TableBackend(TargetBackend):
        resources = ("latency_s",)

        def cost_model(self, space, hw, calibration=None, store_path=None, progress=False):
            return TableCostModel(space, self.target.options["latency_model"])
''')

TOML = '''
name = "phone"
backend = "tablebackend:TableBackend"
description = "a device known only by its latency table"
[knobs.THREADS]
values = [1]
[options]
latency_model = "{model}"
'''


def test_a_new_target_kind_searches_end_to_end(tmp_path):
    d = load_dataset("digits")
    space = create_space("chain", d.input_shape, d.num_classes)
    rng = np.random.default_rng(0)
    rows, lat = [], []
    for _ in range(60):  # "measured" designs: latency grows with the MACs they do
        g = space.random_genotype(rng)
        ms = 0.05 + 2e-6 * sum(w.macs for w in space.workloads(g)) * (1 + 0.03 * rng.standard_normal())
        dp = DesignPoint.make(space, g, "phone", HWConfig((("THREADS", 1),)))
        rows.append(f'"{json.dumps(dp.as_json()).replace(chr(34), chr(34) * 2)}",{ms:.6f}')
        lat.append(ms)
    (tmp_path / "table.csv").write_text("design_json,latency_ms\n" + "\n".join(rows) + "\n")
    (tmp_path / "tablebackend.py").write_text(BACKEND)
    (tmp_path / "phone.toml").write_text(TOML.format(model=tmp_path / "phone.json"))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "PYTHONWARNINGS": "ignore", "EXPLORER_HOME": str(tmp_path / "home")}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "explorer.cli", *args], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=600)

    fit = cli("costmodel", "fit", "--space", "chain", "--records", "table.csv", "--out", "phone.json")
    assert fit.returncode == 0, fit.stderr
    limit = float(np.median(lat))
    r = cli("search", "--target", str(tmp_path / "phone.toml"), "--dataset", "digits", "--steps", "20",
            "--epochs", "0", "--latency-ms", f"{limit:.4f}", "--out", "run", "--no-progress")
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["limits_met"] and 0 < s["figures"]["latency_ms"] <= limit
    assert set(s["figures"]) == {"latency_ms"}  # the backend prices latency only
    design = json.loads((tmp_path / "run" / "design.json").read_text())
    assert design["target"] == "phone"
    bad = cli("search", "--target", str(tmp_path / "phone.toml"), "--dataset", "digits", "--area-mm2", "1",
              "--out", "run2", "--no-progress")
    assert bad.returncode == 2 and "it has no area_mm2 limit" in bad.stderr
