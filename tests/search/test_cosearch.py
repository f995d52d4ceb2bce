import json

import pytest
import torch

from explorer.api import build_problem, run_search
from explorer.search.baselines import random_search, sequential_search
from explorer.search.cosearch import CoSearch
from tests.conftest import tiny_config


def _search(cfg, **kw):
    prob = build_problem(cfg)
    return prob, CoSearch(prob.space, prob.hw, prob.cost_model, prob.data, cfg.search, prob.constraints(),
                          "vta", cfg.seed, **kw).run()


def test_cosearch_runs_and_records_every_step():
    cfg = tiny_config(steps=30)
    prob, r = _search(cfg)
    steps = [h for h in r.history if "event" not in h]
    assert len(steps) == r.steps == 30
    searched = [h for h in steps if h["L"] == h["L"]]
    assert searched, "no search step after warm-up"
    for h in searched:
        assert {"L1", "L2", "L", "expected", "multipliers", "entropy_ops", "entropy_knobs"} <= set(h)
        assert h["L"] == pytest.approx(h["L1"] + h["L2"])
    assert any("derived" in h for h in steps)
    assert any(h.get("event") == "prune" for h in r.history)
    prob.space.validate_genotype(r.genotype)


@pytest.mark.slow  # two full searches; the fast tier keeps make test within 5 minutes (resume tests check determinism too)
def test_same_seed_same_result_and_different_seed_differs():
    a = _search(tiny_config(steps=24, seed=3))[1]
    b = _search(tiny_config(steps=24, seed=3))[1]
    assert a.design == b.design
    la = [str(h.get("L")) for h in a.history if "event" not in h]
    lb = [str(h.get("L")) for h in b.history if "event" not in h]
    assert la == lb
    c = _search(tiny_config(steps=24, seed=4))[1]
    lc = [str(h.get("L")) for h in c.history if "event" not in h]
    assert la != lc


def test_gumbel_relaxation_runs_and_anneals():
    cfg = tiny_config(steps=20, relax="gumbel", tau_start=4.0, tau_end=0.5)
    _, r = _search(cfg)
    taus = [h["tau"] for h in r.history if "tau" in h]
    assert taus[0] > taus[-1] and taus[-1] == pytest.approx(0.5, rel=0.2)


def test_hardware_step_moves_only_theta():
    cfg = tiny_config(steps=1)
    prob = build_problem(cfg)
    s = CoSearch(prob.space, prob.hw, prob.cost_model, prob.data, cfg.search, prob.constraints(), "vta", 0)
    w0 = [p.detach().clone() for p in s.net.weight_parameters()]
    a0 = [p.detach().clone() for p in s.net.arch_parameters()]
    t0 = [p.detach().clone() for p in s.hw.hw_parameters()]
    xv, yv = next(s.val_b)
    s._hardware_step(xv, yv, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(w0, s.net.weight_parameters()))
    assert all(torch.equal(a, b) for a, b in zip(a0, s.net.arch_parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(t0, s.hw.hw_parameters()))


def _unconstrained_and_limited(limit_key, resource, factor=0.5, steps=40):
    # unconstrained: no limits and no cost objective, accuracy alone
    free = _search(tiny_config(steps=steps, objective={}))[1]
    limit = free.figures[resource] * factor
    shown = limit * (1e3 if resource in ("latency_s", "energy_j") else 1.0)
    _, lim = _search(tiny_config(steps=steps, objective={}, limits={limit_key: shown}))
    return free, lim, limit


@pytest.mark.slow  # two searches to convergence (10 s each on 2 cores): the slow tier, which CI runs
@pytest.mark.parametrize("limit_key,resource", [("latency_ms", "latency_s"), ("area_mm2", "area_mm2")])
def test_limit_at_half_the_unconstrained_design_is_met(limit_key, resource):
    free, lim, limit = _unconstrained_and_limited(limit_key, resource)
    assert lim.figures[resource] <= limit
    assert lim.feasible
    mult = [h["multipliers"] for h in lim.history if "multipliers" in h]
    assert max(m[resource] for m in mult) > 0  # the dual variable really worked


def test_sequential_and_random_baselines():
    cfg = tiny_config(steps=20)
    prob = build_problem(cfg)
    r = sequential_search(prob.space, prob.hw, prob.cost_model, prob.data, cfg, prob.constraints(), "vta")
    prob.space.validate_genotype(r.genotype)
    prob = build_problem(cfg)
    cfg.search.steps = 3
    rr = random_search(prob.space, prob.hw, prob.cost_model, prob.data, cfg, prob.constraints(), "vta", proxy_steps=5)
    assert rr.steps == 3 and rr.feasible
    assert isinstance(rr.history, list) and rr.proxy_val_accuracy is None  # the fields in their places


def test_random_baseline_writes_its_run_folder(tmp_path):
    """A baseline through the same path as the co-search (summary, near-chance check, verdict)."""
    from explorer.api import run_search

    s = run_search(tiny_config(steps=2, select_proxy_steps=5), tmp_path / "r", method="random", progress=False)
    assert s["method"] == "random" and s["steps"] == 2 and s.get("proxy_val_accuracy") is None
    assert 0 <= s["one_shot_val_accuracy"] <= 1 and (tmp_path / "r" / "summary.json").is_file()


def test_run_folder(tmp_path):
    cfg = tiny_config(steps=12, epochs=1)
    s = run_search(cfg, tmp_path / "run", progress=False)
    d = tmp_path / "run"
    for f in ("config.json", "design.json", "hw_config.json", "history.jsonl", "summary.json", "search.png", "weights.pt"):
        assert (d / f).is_file(), f
    hw = json.loads((d / "hw_config.json").read_text())
    assert {"LOG_BATCH", "LOG_BLOCK_IN", "LOG_BLOCK_OUT", "LOG_INP_BUFF_SIZE", "LOG_WGT_BUFF_SIZE",
            "LOG_ACC_BUFF_SIZE", "LOG_UOP_BUFF_SIZE", "LOG_INP_WIDTH", "LOG_WGT_WIDTH", "LOG_ACC_WIDTH"} <= set(hw)
    lines = (d / "history.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines)
    assert 0.0 <= s["test_accuracy"] <= 1.0
    assert not (tmp_path / "run.partial").exists()
    # the kept design went through the compiler path; the summary has the whole network's figure
    whole = s["measured"]["whole_network"]
    assert whole["offloaded_layers"] > 0 and whole["cycles"] == whole["gemm_cycles"] + whole["host_cycles_model"]
    assert s["limits_met_measured"] in (True, False) and s["measured"]["figures"]["latency_ms"] > 0
    assert any(json.loads(line).get("event") == "verify" for line in lines)


def test_existing_run_is_never_replaced_without_force(tmp_path):
    from explorer.errors import ConfigError

    d = tmp_path / "run"
    d.mkdir()
    (d / "summary.json").write_text("{}")
    with pytest.raises(ConfigError, match="already holds a run"):
        run_search(tiny_config(steps=2), d, progress=False)
    assert (d / "summary.json").read_text() == "{}"


def test_sampled_supernet_computes_one_path_and_learns_arch():
    """relax = "sample": one option per choice in the forward pass (the others have weight exactly 0
    and are not computed), the Gumbel-softmax gradient reaches every unpruned logit, and a search
    in that mode runs, anneals and keeps a valid design."""
    from explorer.space.base import relaxed_probs

    logits = torch.zeros(5, requires_grad=True)
    mask = torch.tensor([True, True, True, False, True])
    gen = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(200):
        p = relaxed_probs(logits, mask, "sample", 1.0, gen)
        assert int((p.detach() != 0).sum()) == 1 and float(p.detach()[3]) == 0.0
        assert float(p.detach().max()) == pytest.approx(1.0)
        seen.add(int(p.detach().argmax()))
    assert seen == {0, 1, 2, 4}  # every unmasked option is drawn, the masked one never
    (p * torch.arange(5.0)).sum().backward()
    assert logits.grad is not None and float(logits.grad.abs().sum()) > 0 and float(logits.grad[3]) == 0.0
    cfg = tiny_config(steps=30, relax="sample", tau_start=4.0, tau_end=0.5)
    prob, r = _search(cfg)
    prob.space.validate_genotype(r.genotype)
    steps = [h for h in r.history if "event" not in h]
    assert steps[0]["tau"] > steps[-1]["tau"]
    moved = [h["probs"]["network"] for h in steps if h["L"] == h["L"]]
    assert moved and any(abs(v - 1 / len(d)) > 1e-3 for d in moved[-1].values() for v in d.values())


@pytest.mark.parametrize("relax", ["softmax", "sample"])
def test_a_dead_cell_is_never_kept_where_none_is_cheapest(relax):
    """nb201 on the VTA model: `none` costs nothing, so a tight latency limit pulls every edge to it.
    The search still returns a cell whose output depends on its input, and says whether it meets the
    limit by that cell's own figures."""
    from explorer.space.nb201 import live_edges

    cfg = tiny_config(steps=40, space="nb201", space_options={"channels": 4}, relax=relax, alpha_lr=0.05)
    prob = build_problem(cfg)
    lb = prob.cost_model.lower_bounds()["latency_s"]
    cfg = tiny_config(steps=40, space="nb201", space_options={"channels": 4}, relax=relax, alpha_lr=0.05,
                      limits={"latency_ms": lb * 1e3 * 1.001})
    prob, r = _search(cfg)
    assert live_edges(r.genotype), prob.space.format_genotype(r.genotype)
    for h in r.history:
        if "derived" in h:
            assert live_edges(prob.space.parse_genotype(h["derived"]["genotype"]))
    assert r.feasible == (prob.constraints().violation(r.figures) == 0)


@pytest.mark.slow  # a search run past its last stage (14 s on 2 cores): the slow tier, which CI runs
def test_threshold_stop_fires_after_the_last_stage_and_is_recorded(tmp_path):
    cfg = tiny_config(steps=60, stages=[[0.3, 3], [0.5, 2]])
    cfg.search.threshold = 10.0  # any scale-free loss is below it: the stop fires at its first chance
    summary = run_search(cfg, tmp_path / "run", progress=False, do_retrain=False)
    assert summary["stop_reason"] == "threshold" and "<= threshold 10" in summary["stop_detail"]
    assert summary["steps"] < 60
    hist = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    prunes = [h for h in hist if h.get("event") == "prune"]
    assert len(prunes) == 2 and summary["steps"] >= prunes[-1]["step"]  # every stage reached first
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["stop_reason"] == "threshold"
    # threshold 0 is off; patience fires, on a loss that stops improving
    cfg = tiny_config(steps=60, stages=[[0.3, 3]])
    cfg.search.threshold, cfg.search.patience, cfg.search.min_improvement = 0.0, 3, 0.9
    _, r = _search(cfg)
    assert r.stop_reason == "patience" and "architecture steps" in r.stop_detail and r.steps < 60
    # counted within the last stage: the pruned supernet gets its patience's worth of steps
    prune = [h["step"] for h in r.history if h.get("event") == "prune"][-1]
    assert r.steps >= prune + cfg.search.patience * cfg.search.arch_every, (prune, r.steps)
    cfg.search.patience = 0
    _, r = _search(cfg)
    assert r.stop_reason == "steps" and r.steps == 60


@pytest.mark.slow  # long (10-20 s on 2 cores): the slow tier, which CI runs
def test_entropy_regulariser_makes_the_final_distribution_decisive():
    def final_entropy(w):
        cfg = tiny_config(steps=40, stages=[], alpha_lr=0.05)
        cfg.search.entropy_weight, cfg.search.arch_every, cfg.search.threshold = w, 1, None
        r = _search(cfg)[1]
        return [h for h in r.history if "entropy_ops" in h][-1]["entropy_ops"]

    free, pushed = final_entropy(0.0), final_entropy(5.0)
    assert pushed < free - 0.2, (free, pushed)
