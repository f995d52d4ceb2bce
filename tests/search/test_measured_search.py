"""`explorer search --target cpu`: real TVM timings, background end-to-end measurements, refit."""

import time

import pytest

from explorer.api import build_problem
from explorer.deploy.tvm_build import toolchain_versions
from explorer.measure.background import BackgroundMeasurer
from explorer.measure.store import Store
from explorer.search.cosearch import CoSearch
from tests.conftest import tiny_config


@pytest.mark.slow  # 30-40 s of TVM workload timing: the slow tier (make test-slow, run by CI)
def test_cpu_search_measures_in_background_and_refits(tmp_path):
    cfg = tiny_config(steps=60, space_options={"stem_channels": 8, "stages": [[8, 1, 2], [16, 1, 1]]})
    cfg.target = "cpu"
    cfg.objective = {"latency_s": 0.05}
    cfg.search.measure_every = 5
    prob = build_problem(cfg, store_path=tmp_path / "s.sqlite")
    calls = []
    with Store(tmp_path / "s.sqlite") as st:
        m = BackgroundMeasurer(st, toolchain_versions(), repeat=5)
        for name in ("poll", "submit"):  # time every call the search makes into the worker
            f = getattr(m, name)

            def timed(*a, f=f, name=name):
                t = time.monotonic()
                out = f(*a)
                calls.append((name, time.monotonic() - t))
                return out

            setattr(m, name, timed)
        try:
            r = CoSearch(prob.space, prob.hw, prob.cost_model, prob.data, cfg.search, prob.constraints(), "cpu",
                         0, measurer=m).run()
        finally:
            m.close()
        e2e = st.query(kind="e2e")
    got = [x for h in r.history for x in h.get("measured", []) if "measured_s" in x]
    assert got, "no background measurement arrived"
    assert all(x["measured_s"] > 0 and x["predicted_s"] > 0 for x in got)
    assert e2e and all(rec.ok for rec in e2e)
    assert prob.cost_model.fit_points  # the correction was refit
    # builds (seconds) are never waited on; the search waits only while a built library is timed
    assert len(calls) >= cfg.search.steps and max(d for _, d in calls) < 1.0, max(calls, key=lambda c: c[1])
    assert all(x["tuning"] == "untuned" and x["timing_wait_s"] < 1.0 for x in got if not x["cached"])
    # the kept design was measured on the truth at the end, and the summary's figures come from it
    assert r.measured is not None and r.measured["figures"]["latency_s"] > 0
    assert r.measured["limits_met_measured"] in (True, False)
    assert any(h.get("event") == "verify" for h in r.history)
    # kernel-level truth: each fresh measurement's kernels were timed and attributed to slot groups
    fresh = [x for x in got if not x["cached"]]
    assert fresh and all(x.get("kernel_groups", 0) > 0 for x in fresh), [x.get("attribution") for x in fresh]
    assert prob.cost_model.correction_state()["kernel_parts"] > 0


@pytest.mark.slow  # MetaSchedule tuning inside a search: the slow tier
def test_cpu_search_tunes_the_leading_candidate(tmp_path):
    """Spare time in the loop tunes the leading candidate on this machine (the search waiting), so the
    kept design is measured, and arrives, with tuned kernels."""
    cfg = tiny_config(steps=30, space_options={"stem_channels": 8, "stages": [[8, 1, 2], [16, 1, 1]]})
    cfg.target = "cpu"
    cfg.objective = {"latency_s": 0.05}
    cfg.search.measure_every = 5
    cfg.search.tune_minutes = 0.6
    prob = build_problem(cfg, store_path=tmp_path / "s.sqlite")
    with Store(tmp_path / "s.sqlite") as st:
        m = BackgroundMeasurer(st, toolchain_versions(), repeat=5, tune_db=str(tmp_path / "db"))
        try:
            r = CoSearch(prob.space, prob.hw, prob.cost_model, prob.data, cfg.search, prob.constraints(), "cpu",
                         0, measurer=m).run()
        finally:
            m.close()
    tunes = [h for h in r.history if h.get("event") == "tune"]
    assert len(tunes) == len(cfg.search.stages) + 1, tunes  # each stage boundary, then the kept design
    assert all("error" not in t for t in tunes), tunes
    assert sum(t["trials_this_run"] for t in tunes) > 0 and tunes[-1]["design"] == r.design.key()
    # the time budget holds, give or take the batch in flight and the worker's start
    assert sum(t["elapsed_s"] for t in tunes) < 60 * cfg.search.tune_minutes + 60
    # the final measurement ran code with the schedules tuned here
    assert r.measured is not None and r.measured["tuning"] != "untuned", r.measured
    from explorer.deploy.schedules import manifest

    # the kept design's kernels are in the database (selection may keep another thread count than the
    # stage boundaries' designs had, so their keys may be there too)
    assert tunes[-1]["key"] in list(manifest(tmp_path / "db"))
