"""A device known only by its latency table: ``explorer costmodel fit`` on the table, then
``explorer search --latency-table`` prices the search with it (the ``latency-table`` backend)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from explorer.space import create_space

from ..conftest import make_table_target


@pytest.mark.slow  # a fit and a search (~18 s): the slow tier
def test_search_for_a_device_known_by_its_table(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "EXPLORER_HOME": str(tmp_path / "home")}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "explorer.cli", *args], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=600)

    _, lat = make_table_target(tmp_path)  # fits phone.json with `explorer costmodel fit`
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
    space28 = create_space("chain", (1, 28, 28), 10)
    with pytest.raises(ConfigError, match="the latency table's model is for space 'chain'") as e:
        TableCostModel(space28, model)
    # the refusal names the command that fits the table for this search; run as given, it is accepted
    import re
    import shlex

    from explorer.cli import main

    cmd = shlex.split(re.search(r"`explorer (costmodel fit [^`]+)`", str(e.value)).group(1))
    assert "--input-shape" in cmd and cmd[cmd.index("--input-shape") + 1] == "1x28x28"
    cmd = [str(tmp_path / "phone.csv") if a == "TABLE.csv" else str(tmp_path / "phone28.json") if a == "MODEL.json" else a
           for a in cmd]
    assert main(cmd) == 0
    TableCostModel(space28, load_latency_model(tmp_path / "phone28.json")[0])
