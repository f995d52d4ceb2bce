"""Calibration of the analytical VTA model against the simulator, and its use in the search."""

import json

import numpy as np

import pytest

from explorer.accel.calibrate import calibrate, load_calibration, simulate_pair
from explorer.api import build_problem, run_search
from explorer.config import load_config
from tests.conftest import run_cli, tiny_config


def test_calibration_beats_the_prior_on_held_out_pairs():
    prob = build_problem(load_config(None, {"dataset": "digits"}))
    wls = [w for s in prob.space.cost_slots() for v in s.table.values() for w in v]
    res = calibrate(prob.cost_model, wls, 500, seed=1)
    cal, prior = res["held_out"]["calibrated"], res["held_out"]["prior"]
    assert cal["n"] == 100
    assert cal["within_10pct"] >= 0.95 and cal["within_10pct"] > prior["within_10pct"]
    assert all(w >= 0 for w in res["weights"])


def test_simulate_pair_reports_configs_that_do_not_fit():
    from explorer.slots import conv
    from explorer.space.hardware import HWConfig

    prob = build_problem(load_config(None, {"dataset": "digits"}))
    w = next(x for s in prob.space.cost_slots() for v in s.table.values() for x in v if x.kind == "conv")
    assert simulate_pair(w, prob.hw.default_config()) > 0
    small = HWConfig(tuple({**dict(prob.hw.default_config().values), "LOG_WGT_BUFF_SIZE": 16,
                            "LOG_BLOCK_IN": 5, "LOG_BLOCK_OUT": 5}.items()))
    # one BLOCK_IN x BLOCK_OUT slice of a 7x7 kernel (49 KiB) is more than half the weight buffer (32 KiB)
    assert simulate_pair(conv("big", 512, 512, 7, 7, 7), small) is None


@pytest.mark.slow  # hundreds of simulated layers, then a search: the slow tier
def test_cli_calibrate_and_search_with_it(tmp_path):
    out = tmp_path / "cal.json"
    r = run_cli("calibrate", "--dataset", "digits", "--samples", "200", "--out", str(out))
    assert r.returncode == 0 and "calibrated held-out" in r.stdout, r.stderr
    cal = load_calibration(out)
    cfg = tiny_config(steps=30, epochs=1)
    cfg.calibration = str(out)
    cfg.search.measure_every = 10
    prob = build_problem(cfg)
    assert prob.cost_model.correction == tuple(cal["weights"])
    s = run_search(cfg, tmp_path / "run", progress=False)
    sim = s["simulated"]
    assert sim["simulated_cycles"] > 0 and abs(sim["rel_error"]) < 0.25
    hist = [json.loads(x) for x in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    got = [m for h in hist for m in h.get("measured", []) if "measured_s" in m]
    assert got and all(np.isfinite(m["rel_error"]) for m in got)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    r = run_cli("search", "--dataset", "digits", "--calibration", str(bad), "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "not a VTA calibration file" in r.stderr


def test_whole_network_is_priced_like_the_model():
    """The compiler path's GEMM layers have the features the model prices the space's GEMM
    workloads with, and the host part is what the model charges for the rest: so a design the model
    prices exactly has no error but the simulator's."""
    from explorer.accel.calibrate import whole_network
    from explorer.cost.vta import DEFAULT_CYCLE_WEIGHTS
    from explorer.space.design import DesignPoint

    prob = build_problem(tiny_config())
    cm, c = prob.cost_model, prob.hw.default_config()
    g = prob.space.random_genotype(np.random.default_rng(2))
    d = DesignPoint.make(prob.space, g, "vta", c)
    r = whole_network(d.as_json(), c, cm, g)
    gemm = [w for w in cm.space_workloads(g) if w.kind == "conv" and w.groups == 1]
    assert r["offloaded_layers"] == len(gemm)
    got = sorted(tuple(np.round(f, 3)) for f, _ in r["points"])
    want = sorted(tuple(np.round(cm.layer_features(w, c), 3)) for w in gemm)
    assert got == want
    assert r["gemm_cycles"] == sum(simulate_pair(w, c) for w in gemm)
    rest = sum(float(np.dot(DEFAULT_CYCLE_WEIGHTS, cm.layer_features(w, c))) for w in cm.space_workloads(g) if w not in gemm)
    assert r["host_cycles_model"] == pytest.approx(rest)


def test_model_follows_the_searched_tiling():
    """The analytical model's DRAM loads and (prior) cycles of ResNet-18's layer shapes track the
    simulator's under the searched tiling, over random configurations."""
    from explorer.accel.calibrate import conv_layer
    from explorer.accel.params import VTAParams, vta_json
    from explorer.accel.sim import BufferCapacityError, run_layer
    from explorer.cost.vta import VTACostModel
    from explorer.slots import Slot, conv
    from explorer.backends import load_target

    hw = load_target("vta").hardware_space()
    shapes = [(64, 64, 56, 3, 1), (64, 128, 56, 3, 2), (64, 128, 56, 1, 2), (128, 128, 28, 3, 1), (256, 256, 14, 3, 1),
              (256, 512, 14, 3, 2), (512, 512, 7, 3, 1), (512, 1000, 1, 1, 1)]
    rng = np.random.default_rng(0)
    load_err, cyc_err = [], []
    for _ in range(40):
        cin, cout, h, k, s = shapes[int(rng.integers(len(shapes)))]
        w = conv("c", cin, cout, h, h, k, stride=s)
        c = hw.config_from_indices({x.name: int(rng.integers(len(x.values))) for x in hw.knobs})
        try:
            st = run_layer(conv_layer(w), VTAParams.from_config(vta_json(c)))
        except BufferCapacityError:
            continue
        ev = VTACostModel([Slot("one", (), {(): [w]})], {}, hw).evaluate({}, c)
        loads = st.inp_load_bytes + st.wgt_load_bytes + st.acc_load_bytes + st.uop_load_bytes
        load_err.append(abs(ev["load_bytes"] / loads - 1))
        cyc_err.append(abs(ev["cycles"] / st.cycles - 1))
    assert len(load_err) >= 30
    assert np.median(load_err) < 0.1 and np.mean(np.array(load_err) < 0.25) >= 0.8, sorted(load_err)
    assert np.mean(cyc_err) < 0.05, sorted(cyc_err)
