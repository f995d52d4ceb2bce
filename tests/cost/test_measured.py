"""The measured-latency model: gradient identity on a synthetic table, real TVM timings, refit."""

import json
import numpy as np
import pytest

from explorer.cost.base import Measurement
from explorer.cost.measured import MeasuredCostModel, distinct_items
from explorer.slots import alu, conv
from explorer.deploy.tvm_build import toolchain_versions
from explorer.measure.store import Store
from explorer.measure.workloads import measure_workloads
from explorer.space import create_space
from explorer.backends import load_target


@pytest.fixture(scope="module")
def synthetic():
    space = create_space("chain", (1, 12, 12), 10, stem_channels=8, stages=[[8, 2, 2], [16, 1, 1]])
    hw = load_target("cpu").hardware_space()
    items = distinct_items(space.cost_slots(), hw)
    table = {}
    for w, b in items:
        for t in hw.knob("THREADS").values:
            table[(w, b, "cpu", t)] = 1e-6 + (w.macs + w.hout * w.wout * w.cin) * b * 1e-10 / t
    return space, hw, MeasuredCostModel(space.cost_slots(), space.choices(), hw, table)


def test_knobs_trade_latency_against_energy(synthetic):
    space, hw, cm = synthetic
    g = space.random_genotype(np.random.default_rng(0))
    base = dict(hw.default_config().values)
    mk = lambda **kw: type(hw.default_config())(tuple({**base, **kw}.items()))  # noqa: E731
    one, four = cm.evaluate(g, mk(BATCH=1)), cm.evaluate(g, mk(BATCH=4))
    assert four["latency_s"] > one["latency_s"] and four["energy_j"] < one["energy_j"]
    t1, t2 = cm.evaluate(g, mk(THREADS=1)), cm.evaluate(g, mk(THREADS=2))
    assert t2["latency_s"] < t1["latency_s"]


def test_correction_refit_learns_a_global_ratio(synthetic):
    """End-to-end truth = 1.7 x the standalone sum + 20 us: after 12 records, held-out designs are
    predicted within 10%."""
    space, hw, cm = synthetic
    rng = np.random.default_rng(1)
    cfg = hw.default_config()
    truth = lambda g: 1.7 * cm.raw_latency_s(g, cfg) + 2e-5  # noqa: E731
    cm.update([Measurement(g, cfg, truth(g)) for g in (space.random_genotype(rng) for _ in range(12))])
    test = [space.random_genotype(rng) for _ in range(30)]
    err = [abs(cm.evaluate(g, cfg)["latency_s"] / truth(g) - 1) for g in test]
    assert max(err) < 0.10, err
    assert cm.correction_state()["records"] == 12
    cm.factor[:] = 1.0
    cm.offset_s, cm.fit_points = 0.0, []


def test_real_workload_timings_are_cached(tmp_path):
    items = [(conv("c", 8, 16, 12, 12, 3), 1), (conv("c", 8, 16, 12, 12, 3, stride=2), 1),
             (alu("maxpool", 8, 12, 12, 6, 6, 9, load_elems=8 * 144, store_elems=8 * 36, op="max_pool"), 1),
             (alu("act.relu", 16, 6, 6, 6, 6, 1), 4)]
    tc = toolchain_versions()
    with Store(tmp_path / "s.sqlite") as st:
        got = measure_workloads(items, "cpu", 1, st, tc, repeat=3, number=3)
        assert all(0 < v < 0.1 for v in got.values())
        # a bigger conv takes longer than its strided twin (a quarter of the outputs)
        assert got[items[0]] > got[items[1]]
        n = st.count()
        again = measure_workloads(items, "cpu", 1, st, tc)
        assert again == pytest.approx(got) and st.count() == n  # from the store, not measured again


@pytest.mark.slow  # TVM tuning or builds: the slow tier
def test_workload_table_with_a_schedule_database_is_tuned(tmp_path):
    """The cost model's standalone workloads, tuned into a database, are timed with it applied:
    records say tuned, the database's identity keys the cache, tuned code is faster than untuned."""
    from tvm import relax

    from explorer.deploy.tune import tune_module
    from explorer.deploy.tvm_build import database_id, host_target
    from explorer.measure.workloads import relax_function

    items = [(conv("c", 16, 32, 14, 14, 3), 1), (alu("act.relu", 16, 6, 6, 6, 6, 1), 1)]
    bb = relax.BlockBuilder()
    relax_function(bb, "w0", *items[0])
    r = tune_module(bb.get(), host_target(1), tmp_path / "db", trials=8, num_cores=1, per_iter=4, progress=False)
    assert r.new_trials == 8 and all(t.best_s for t in r.tasks)
    tc = toolchain_versions()
    with Store(tmp_path / "s.sqlite") as st:
        plain = measure_workloads(items, "cpu", 1, st, tc, repeat=5, number=5)
        dtc = {**tc, "schedules": database_id(tmp_path / "db")}
        tuned = measure_workloads(items, "cpu", 1, st, dtc, repeat=5, number=5, database=tmp_path / "db")
        flags = {json.loads(rec.key)["name"]: rec.tuned for rec in st.query(kind="workload", toolchain=dtc)}
        assert flags == {"c": True, "act.relu": False}  # only the conv's kernel is in the database
        assert not any(rec.tuned for rec in st.query(kind="workload", toolchain=tc))
    assert tuned[items[0]] < plain[items[0]] / 2  # the default schedule is a naive loop nest
