"""The loop's use of its source of truth, on a synthetic device (a truth table the model does not
know) so that the logic is checked exactly and fast; the real TVM path is in test_measured_search.

* what to measure: designs whose interval straddles the latency limit first;
* a doctored model is corrected in the loop and the kept design meets the limit on the truth;
* the final check repairs a design that breaks the limit on the truth.
"""

import numpy as np
import pytest

from explorer.api import build_problem
from explorer.cost.measured import MeasuredCostModel, distinct_items
from explorer.measure.base import Job, Measurer
from explorer.search.constraints import Constraints
from explorer.search.cosearch import CoSearch
from explorer.backends import load_target
from tests.conftest import tiny_config

HW = load_target("cpu").hardware_space()


def table(space, factors=None):
    out = {}
    for w, b in distinct_items(space.cost_slots(), HW):
        f = next((v for k, v in (factors or {}).items() if w.name.startswith(k)), 1.0)
        for t in HW.knob("THREADS").values:
            out[(w, b, "cpu", t)] = f * (2e-6 + (w.macs + w.hout * w.wout * w.cin) * b * 1e-9 / t)
    return out


class TruthMeasurer(Measurer):
    """A Measurer whose truth is another cost model; everything it measured is kept."""

    def __init__(self, truth):
        self.truth, self.done, self.log = truth, [], []

    def _measure(self, job):
        job.latency_s = self.truth.evaluate(job.info["genotype"], job.info["config"])["latency_s"]
        job.info["tuning"] = "synthetic"
        self.log.append(job)
        return job

    def submit(self, job):
        self.done.append(self._measure(job))
        return True

    def verify(self, job):
        return self._measure(job)

    def poll(self):
        out, self.done = self.done, []
        return out

    def drain(self, timeout_s):
        return self.poll()

    def close(self):
        pass


def setup(limit_s, factors, steps=60):
    cfg = tiny_config(steps=steps)
    cfg.search.measure_every = 5
    prob = build_problem(cfg)  # the space and data; the cost model is replaced
    space = prob.space
    cm = MeasuredCostModel(space.cost_slots(), space.choices(), HW, table(space))
    truth = MeasuredCostModel(space.cost_slots(), space.choices(), HW, table(space, factors))
    con = Constraints({"latency_s": limit_s}, {"latency_s": 0.01}, cfg.search.dual_lr, cfg.search.margin)
    return cfg, prob, cm, truth, con


def test_candidates_whose_interval_straddles_the_limit_come_first():
    cfg, prob, cm, truth, con = setup(1.0, None)
    s = CoSearch(prob.space, HW, cm, prob.data, cfg.search, con, "cpu", 0, measurer=TruthMeasurer(truth))
    g, c = s.net.derive(), s.hw.derive()
    pred, lo, hi = cm.latency_interval(g, c)
    assert lo < pred < hi
    s.con.limits["latency_s"] = pred  # the derived design straddles the limit: it goes first
    assert s._pick_candidate()[2].startswith("derived design, interval straddles")
    s.con.limits["latency_s"] = hi * 10  # nothing straddles: the derived design, once
    assert s._pick_candidate()[2] == "derived design"
    s._submitted.add(__import__("explorer.space.design", fromlist=["DesignPoint"]).DesignPoint.make(prob.space, g, "cpu", c).key())
    assert s._pick_candidate() is None


@pytest.mark.slow  # 80 search steps with 16 refits: the slow tier
def test_a_doctored_model_is_corrected_and_the_limit_holds_on_the_truth():
    """The model thinks convolutions cost a third of what they do; the limit sits where that
    matters. With refinement the kept design meets the limit on the truth, and the model's final
    figure for it is within 10% of the truth."""
    factors = {"conv3x3": 3.0, "conv5x5": 3.0, "dil3x3": 3.0, "stem": 3.0}
    cfg, prob, cm, truth, con = setup(0, factors, steps=80)
    # the loop as this test was built for (the derived design, architecture every step, a fifth of
    # warm-up): with the new defaults (fewer architecture steps, so fewer in-loop measurements, and
    # selection keeping a candidate the doctored model put just inside the limit) three verify rounds
    # did not repair it on the truth once (see BENCHMARKS.md, issue 25: short of the bar)
    cfg.search.selection, cfg.search.arch_every, cfg.search.warmup_fraction = "loss", 1, 0.2
    g0 = prob.space.random_genotype(np.random.default_rng(0))
    con.limits["latency_s"] = 0.6 * truth.evaluate(g0, HW.default_config())["latency_s"]
    m = TruthMeasurer(truth)
    r = CoSearch(prob.space, HW, cm, prob.data, cfg.search, con, "cpu", 0, measurer=m).run()
    assert len(m.log) >= 3
    assert r.measured["limits_met_measured"] is True
    t = truth.evaluate(r.genotype, r.hw_config)["latency_s"]
    assert t <= con.limits["latency_s"] * (1 + 1e-9)
    assert abs(cm.evaluate(r.genotype, r.hw_config)["latency_s"] / t - 1) < 0.10
    events = [h for h in r.history if h.get("event") == "verify"]
    assert events and events[-1]["limits_met_measured"] is True


def test_the_final_check_repairs_on_the_truth():
    """No in-loop measurement at all (measure_every beyond the run): the kept design meets the limit
    in the model but not on the truth; the final check measures it, refits, repairs, measures again.
    (Kept by the loss, so there are no other finalists to fall back on: see the test below.)"""
    factors = {"conv3x3": 4.0, "conv5x5": 4.0, "dil3x3": 4.0, "dwsep": 4.0, "stem": 4.0}
    cfg, prob, cm, truth, con = setup(0, factors, steps=40)
    cfg.search.measure_every = 10_000
    cfg.search.selection = "loss"
    g0 = prob.space.random_genotype(np.random.default_rng(1))
    con.limits["latency_s"] = 0.8 * truth.evaluate(g0, HW.default_config())["latency_s"]
    m = TruthMeasurer(truth)
    r = CoSearch(prob.space, HW, cm, prob.data, cfg.search, con, "cpu", 0, measurer=m).run()
    verify = [h for h in r.history if h.get("event") == "verify"]
    assert verify and len(m.log) == len(verify)
    assert verify[0]["limits_met_measured"] is False  # the model's design breaks the limit on the truth
    assert r.measured["rounds"] > 1 and r.repaired
    assert r.measured["limits_met_measured"] is True
    assert truth.evaluate(r.genotype, r.hw_config)["latency_s"] <= con.limits["latency_s"] * (1 + 1e-9)


@pytest.mark.parametrize("refine", [False, True])
def test_a_random_search_design_is_judged_on_the_truth(refine):
    """The random baseline gets the co-search's final check: its kept design (within the limit on the
    model) is measured; on a truth where it breaks the limit it is reported so (refine off), or
    repaired until it holds there (refine on). ``feasible`` is computed, never assumed."""
    from explorer.search.baselines import random_search

    factors = {"conv3x3": 4.0, "conv5x5": 4.0, "dil3x3": 4.0, "dwsep": 4.0, "stem": 4.0}
    cfg, prob, cm, truth, con = setup(0, factors, steps=60)
    cfg.search.refine = refine
    # refine off: below the cheapest design on the truth (the model, 4x too cheap on convolutions,
    # still finds designs within it); on: a limit that designs can meet on the truth too
    con.limits["latency_s"] = (1.3 if refine else 0.95) * truth.lower_bounds()["latency_s"]
    m = TruthMeasurer(truth)
    r = random_search(prob.space, HW, cm, prob.data, cfg, con, "cpu", proxy_steps=5, measurer=m)
    assert m.log, "the kept design was not measured"
    on_truth = truth.evaluate(r.genotype, r.hw_config)["latency_s"] <= con.limits["latency_s"] * (1 + 1e-9)
    assert r.measured["limits_met_measured"] is on_truth
    assert r.feasible == (con.violation(cm.evaluate(r.genotype, r.hw_config)) == 0)
    if refine:
        assert on_truth
    else:
        assert r.measured["limits_met_measured"] is False and r.feasible  # the model says yes, the truth says no


def test_a_repair_on_the_truth_allows_for_what_the_model_still_misses():
    """A cost model that learns nothing from the measurement (the extreme of a smoothed correction)
    still calls the kept design feasible after the truth said no: the repair must meet the limit
    divided by the model's remaining under-estimate, so that it holds on the truth, not just move
    until the model is satisfied (which, here, it already is)."""
    factors = {"conv3x3": 4.0, "conv5x5": 4.0, "dil3x3": 4.0, "dwsep": 4.0, "stem": 4.0}
    cfg, prob, cm, truth, con = setup(0, factors, steps=40)
    cfg.search.measure_every = 10_000
    cfg.search.selection = "loss"  # no other finalists to fall back on: the repair is what is tested
    cm.update = lambda measurements: None  # learns nothing
    g0 = prob.space.random_genotype(np.random.default_rng(1))
    con.limits["latency_s"] = 0.8 * truth.evaluate(g0, HW.default_config())["latency_s"]
    m = TruthMeasurer(truth)
    r = CoSearch(prob.space, HW, cm, prob.data, cfg.search, con, "cpu", 0, measurer=m).run()
    verify = [h for h in r.history if h.get("event") == "verify"]
    assert verify[0]["limits_met_measured"] is False
    assert r.repaired and r.measured["rounds"] > 1
    assert r.measured["limits_met_measured"] is True
    assert truth.evaluate(r.genotype, r.hw_config)["latency_s"] <= con.limits["latency_s"] * (1 + 1e-9)


def test_a_finalist_that_breaks_the_limit_on_the_truth_gives_way_to_one_that_holds():
    """The kept finalist fits the limit on the model but not on the truth (its convolutions cost 4x
    there); the next finalist by brief training, pooling only, holds on the truth as it is and is
    kept, unrepaired. Without fall-backs the kept one is repaired."""
    factors = {"conv3x3": 4.0, "conv5x5": 4.0, "dil3x3": 4.0, "dwsep": 4.0}
    cfg, prob, cm, truth, con = setup(0, factors)
    space, c = prob.space, HW.default_config()
    conv = {k: ("conv3x3" if k.startswith("op_") else v[0]) for k, v in space.choices().items()}
    pool = {**conv, **{k: "maxpool" for k in conv if k.startswith("op_")}}
    assert cm.evaluate(conv, c)["latency_s"] > cm.evaluate(pool, c)["latency_s"]
    con.limits["latency_s"] = 1.05 * cm.evaluate(conv, c)["latency_s"]  # both fit on the model
    assert truth.evaluate(conv, c)["latency_s"] > con.limits["latency_s"] >= truth.evaluate(pool, c)["latency_s"]
    selection = {"finalists": [{"genotype": space.format_genotype(g), "hardware": c.as_dict(), "proxy": p}
                               for g, p in ((pool, 0.80), (conv, 0.90))]}
    m = TruthMeasurer(truth)
    s = CoSearch(space, HW, cm, prob.data, cfg.search, con, "cpu", 0, measurer=m)
    history = []
    g, c2, out, moves = s.verify_finalists(conv, c, 0, history, selection)
    assert (g, c2) == (pool, c) and not moves and out["limits_met_measured"] is True
    assert [h["limits_met_measured"] for h in history if h.get("event") == "verify"] == [False, True]
    g, _, out, moves = s.verify_finalists(conv, c, 0, [], None)  # no fall-backs: repaired
    assert g != pool and moves
