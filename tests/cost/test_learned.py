import csv

import numpy as np
import pytest

from explorer.cost.learned import FEATURES, LatencyModel, evaluate_predictions, read_records, workload_features
from explorer.space import create_space
from explorer.space.nb201 import EDGES, NB201_OPS, edge_name

from tests.conftest import run_cli as cli


@pytest.fixture(scope="module")
def nb201_records(tmp_path_factory):
    """Latencies from a hidden linear law of the workload features, with 3% noise."""
    space = create_space("nb201", (3, 32, 32), 10, channels=16, cells_per_stage=5)
    rng = np.random.default_rng(0)
    law = np.array([2e-7, 3e-7, 0.0, 0.0, 5e-8, 1e-7, 0.004])
    path = tmp_path_factory.mktemp("rec") / "nb201.csv"
    rows = []
    for _ in range(120):
        g = {edge_name(j, i): NB201_OPS[int(rng.integers(5))] for j, i in EDGES}
        x = workload_features(space.workloads(g))
        rows.append({"genotype": space.format_genotype(g), "latency_ms": float(0.05 + x @ law) * (1 + 0.03 * rng.standard_normal())})
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["genotype", "latency_ms"])
        w.writeheader()
        w.writerows(rows)
    return path


def test_fit_recovers_a_linear_law(nb201_records):
    space = create_space("nb201", (3, 32, 32), 10, channels=16, cells_per_stage=5)
    X, y, _ = read_records(nb201_records, space)
    assert X.shape == (120, len(FEATURES))
    m = LatencyModel("nb201", space.options(), (3, 32, 32), 10).fit(X[:80], y[:80])
    r = evaluate_predictions(m.predict(X[80:]), y[80:])
    assert r["kendall_tau"] > 0.8 and r["within_10pct"] > 0.9
    assert (m.coef >= 0).all()


@pytest.mark.slow  # three CLI processes fitting models (~12 s): the slow tier
def test_cli_fit_and_eval(nb201_records, tmp_path):
    model = tmp_path / "m.json"
    r = cli("costmodel", "fit", "--space", "nb201", "--records", str(nb201_records), "--out", str(model))
    assert r.returncode == 0, r.stderr
    assert "held-out" in r.stdout and "kendall_tau" in r.stdout
    r = cli("costmodel", "eval", str(model), "--records", str(nb201_records))
    assert r.returncode == 0 and "within_10pct" in r.stdout, r.stderr


@pytest.mark.parametrize("text, message", [
    ("foo,bar\n1,2\n", "needs columns"),
    ("genotype,latency_ms\n|nor_conv_3x3~0|,1.0\n", "malformed NAS-Bench-201 genotype"),
    ("genotype,latency_ms\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,-3\n", "positive number"),
    ("", "no records"),
])
def test_bad_records_exit_2(tmp_path, text, message):
    p = tmp_path / "r.csv"
    p.write_text(text)
    r = cli("costmodel", "fit", "--space", "nb201", "--records", str(p), "--out", str(tmp_path / "m.json"))
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_model_file_round_trip_and_bad_file(tmp_path, nb201_records):
    space = create_space("nb201", (3, 32, 32), 10, channels=16, cells_per_stage=5)
    X, y, _ = read_records(nb201_records, space)
    m = LatencyModel("nb201", space.options(), (3, 32, 32), 10).fit(X, y)
    m.save(tmp_path / "m.json")
    m2 = LatencyModel.load(tmp_path / "m.json")
    assert np.allclose(m.predict(X), m2.predict(X))
    (tmp_path / "bad.json").write_text("{}")
    r = cli("costmodel", "eval", str(tmp_path / "bad.json"), "--records", str(nb201_records))
    assert r.returncode == 2 and "not a latency model" in r.stderr
