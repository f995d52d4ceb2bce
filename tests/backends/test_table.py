"""A device known only by its latency table: ``explorer costmodel fit`` on the table, then
``explorer search --latency-table`` prices the search with it (the ``latency-table`` backend)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from explorer.data import load_dataset
from explorer.space import create_space
from explorer.space.design import DesignPoint
from explorer.space.hardware import HWConfig

def test_search_for_a_device_known_by_its_table(tmp_path):
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
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "EXPLORER_HOME": str(tmp_path / "home")}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "explorer.cli", *args], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=600)

    fit = cli("costmodel", "fit", "--space", "chain", "--records", "table.csv", "--out", "phone.json")
    assert fit.returncode == 0, fit.stderr
    limit = float(np.median(lat))
    r = cli("search", "--latency-table", "phone.json", "--dataset", "digits", "--steps", "20",
            "--epochs", "0", "--latency-ms", f"{limit:.4f}", "--out", "run", "--no-progress")
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["limits_met"] and 0 < s["figures"]["latency_ms"] <= limit
    assert set(s["figures"]) == {"latency_ms"}  # the backend prices latency only
    design = json.loads((tmp_path / "run" / "design.json").read_text())
    assert design["target"] == "phone"
    bad = cli("search", "--latency-table", "phone.json", "--dataset", "digits", "--area-mm2", "1",
              "--out", "run2", "--no-progress")
    assert bad.returncode == 2 and "it has no area_mm2 limit" in bad.stderr
    # a model fitted for another input shape refuses to price this search (in-process: same error path)
    from explorer.cost.learned import load_latency_model
    from explorer.cost.table import TableCostModel
    from explorer.errors import ConfigError

    model, _ = load_latency_model(tmp_path / "phone.json")
    with pytest.raises(ConfigError, match="the latency table's model is for space 'chain'"):
        TableCostModel(create_space("chain", (1, 28, 28), 10), model)
