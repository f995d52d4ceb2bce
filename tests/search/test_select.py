"""Selection of the returned design: the most accurate candidate within the limits."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from explorer.api import build_problem
from explorer.search.cosearch import CoSearch
from explorer.space.hardware import HWConfig
from explorer.search.select import (Candidate, brief_trainings, capacity, judge, near_chance, neighbours, select,
                                    through_dead, traded)
from explorer.search.train import Batches
from tests.conftest import tiny_config

OPTS = {"stem_channels": 8, "stages": [[8, 2, 2], [16, 1, 1]], "ops": ["conv3x3", "avgpool"], "activations": ["relu"]}


def _trained_on(genotype_op: str, limits=None):
    """A search whose supernet trained only the all-``genotype_op`` path, while its architecture
    weights prefer the other op everywhere."""
    cfg = tiny_config(steps=10, space_options=OPTS, limits=limits or {})
    prob = build_problem(cfg)
    s = CoSearch(prob.space, prob.hw, prob.cost_model, prob.data, cfg.search, prob.constraints(), "vta", 0)
    g_a = {k: (genotype_op if k.startswith("op_") else v[-1] if k.startswith("width") else v[0])
           for k, v in prob.space.choices().items()}
    other = "avgpool" if genotype_op == "conv3x3" else "conv3x3"
    g_b = {k: (other if k.startswith("op_") else v) for k, v in g_a.items()}
    opt = torch.optim.SGD(s.net.weight_parameters(), lr=0.05, momentum=0.9)
    b = Batches(prob.data.x_train, prob.data.y_train, 64, np.random.default_rng(0))
    probs = s.net.onehot(g_a)
    s._set_bits(s.hw.onehot(s.hw.derive()))
    for _ in range(150):
        x, y = next(b)
        loss = F.cross_entropy(s.net(x, probs), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        for k, opts in s.net.choice_options.items():
            if k.startswith("op_"):
                s.net.alpha[k].copy_(torch.tensor([3.0 if o == other else 0.0 for o in opts]))
    return prob, s, g_a, g_b


def test_selection_prefers_the_more_accurate_of_two_feasible_candidates():
    prob, s, g_a, g_b = _trained_on("conv3x3")
    assert s._derive_net()["op_L0"] == "avgpool"  # the argmax is the untrained path
    c = s.hw.derive()
    kept, scored, info = select(s, [(g_a, c), (g_b, c)], samples=0, climb_rounds=0, proxy_steps=0)
    by = {tuple(sorted(x.genotype.items())): x for x in scored}
    a, b = by[tuple(sorted(g_a.items()))], by[tuple(sorted(g_b.items()))]
    assert a.one_shot > b.one_shot + 0.2, (a.one_shot, b.one_shot)
    assert kept.one_shot == max(x.one_shot for x in scored) >= a.one_shot
    assert kept.genotype != g_b and info["derived_one_shot"] < a.one_shot - 0.2  # the argmax was passed over


def test_selection_screens_every_candidate_and_scores_the_best_in_full():
    prob, s, g_a, g_b = _trained_on("conv3x3")
    c = s.hw.derive()
    ticks = []
    kept, scored, info = select(s, [(g_a, c), (g_b, c)], samples=4, climb_rounds=0, proxy_steps=0, spend_rounds=0,
                                screen_batches=2, confirm=1, progress=ticks.append)
    assert ticks == list(range(1, len(scored) + 2))  # every screening, then the one full scoring
    assert len(scored) > 2 and info["scored"] == len(scored) and info["scored_in_full"] == 1
    assert [x.calibrated for x in scored] == [8] + [2] * (len(scored) - 1)  # the fully scored one first
    assert kept is scored[0] and kept.genotype == g_a  # the trained path led the screen and was kept


def test_selection_keeps_only_candidates_within_the_limits():
    prob, s, g_a, g_b = _trained_on("conv3x3")
    c = s.hw.derive()
    lat_a = prob.cost_model.evaluate(g_a, c)["latency_s"]
    lat_b = prob.cost_model.evaluate(g_b, c)["latency_s"]
    assert lat_b < lat_a
    s.con.limits = {"latency_s": (lat_a + lat_b) / 2}  # the trained, accurate path breaks the limit
    s.con.lam = {"latency_s": 0.0}
    kept, scored, _ = select(s, [(g_a, c), (g_b, c)], samples=4, climb_rounds=1, proxy_steps=20)
    assert scored and all(x.feasible for x in scored)
    assert kept.feasible and prob.cost_model.evaluate(kept.genotype, kept.config)["latency_s"] <= s.con.limits["latency_s"]
    # the accurate path on this hardware breaks the limit, so it is never scored (on faster hardware it may fit)
    assert all((tuple(sorted(x.genotype.items())), x.config) != (tuple(sorted(g_a.items())), c) for x in scored)


def test_selection_spends_slack_the_one_shot_score_leaves():
    """The supernet trained only the pooling path, so one-shot accuracy ranks pooling first; the limit
    leaves room for convolutions. The slack-spending climb ends on a design that computes more, still
    within the limit, and it joins the finalists; without it (0 rounds) nothing is spent."""
    prob, s, g_pool, g_conv = _trained_on("avgpool")
    c = s.hw.derive()
    lat = lambda g: prob.cost_model.evaluate(g, c)["latency_s"]  # noqa: E731
    assert lat(g_pool) < lat(g_conv)
    s.con.limits = {"latency_s": (lat(g_pool) + lat(g_conv)) / 2}
    s.con.lam = {"latency_s": 0.0}
    _, _, info0 = select(s, [(g_pool, c)], samples=0, climb_rounds=0, proxy_steps=0, spend_rounds=0)
    assert "spent" not in info0
    kept, scored, info = select(s, [(g_pool, c)], samples=0, climb_rounds=0, proxy_steps=0, spend_within=1.0)
    lead = max(scored, key=lambda x: x.one_shot)
    spent = Candidate(s.space.parse_genotype(info["spent"]["genotype"]), HWConfig.from_dict(info["spent"]["hardware"], s.hw), "")
    assert capacity(s.space, spent) > capacity(s.space, lead)
    assert prob.cost_model.evaluate(spent.genotype, spent.config)["latency_s"] <= s.con.limits["latency_s"]
    assert info["spent"]["feasible"]
    assert info["spent"]["genotype"] in [f["genotype"] for f in info["finalists"]]


def test_with_a_limit_the_climb_fills_it_past_the_one_shot_tolerance():
    """Where no upgrade scores within the tolerance of the leader (the supernet trained only pooling),
    the climb of a run with limits still goes on to a design that fills the limit; it joins the
    finalists beside the leader and the brief training judges them. Without limits nothing is filled."""
    prob, s, g_pool, g_conv = _trained_on("avgpool")
    c = s.hw.derive()
    lat = lambda g: prob.cost_model.evaluate(g, c)["latency_s"]  # noqa: E731
    kept0, _, info0 = select(s, [(g_pool, c)], samples=0, climb_rounds=0, proxy_steps=0, spend_within=0.0)
    assert "filled" not in info0  # no limit: no slack to fill
    s.con.limits = {"latency_s": (lat(g_pool) + lat(g_conv)) / 2}
    s.con.lam = {"latency_s": 0.0}
    kept, scored, info = select(s, [(g_pool, c)], samples=0, climb_rounds=0, proxy_steps=5, spend_within=-1.0)
    assert "spent" not in info  # nothing within the (impossible) tolerance
    filled = Candidate(s.space.parse_genotype(info["filled"]["genotype"]), HWConfig.from_dict(info["filled"]["hardware"], s.hw), "")
    lead = max(scored, key=lambda x: x.one_shot)
    assert capacity(s.space, filled) > capacity(s.space, lead)
    assert info["filled"]["feasible"]
    assert prob.cost_model.evaluate(filled.genotype, filled.config)["latency_s"] <= s.con.limits["latency_s"]
    assert [f["genotype"] for f in info["finalists"]][-1] == info["filled"]["genotype"]
    assert all(f["proxy"] is not None for f in info["finalists"])  # every finalist trained briefly
    # two seeds each: the first is the one-seed training, the finalist is judged by the mean
    _, _, info2 = select(s, [(g_pool, c)], samples=0, climb_rounds=0, proxy_steps=5, spend_within=-1.0, proxy_seeds=2)
    assert [f["genotype"] for f in info2["finalists"]] == [f["genotype"] for f in info["finalists"]]
    lead = max(info["finalists"], key=lambda f: (f["proxy"], -f["proxy_loss"]))
    for one, two in zip(info["finalists"], info2["finalists"]):
        assert "proxies" not in one
        if "proxies" in two:  # trained again: the mean of both rounds
            assert len(two["proxies"]) == 2 and two["proxies"][0] == one["proxy"]
            assert two["proxy"] == pytest.approx(sum(two["proxies"]) / 2)
        else:  # stopped after the first round: it trailed the leader (or was left alone in front)
            assert two["proxy"] == one["proxy"]
            assert one is lead or one["proxy"] < lead["proxy"]
    assert info2["brief_trainings"] == sum(len(f.get("proxies", [0])) for f in info2["finalists"])


def test_a_network_upgrade_the_hardware_cannot_fit_is_traded_for_a_hardware_change():
    """A convolution in place of pooling breaks the limit on the derived hardware; one knob changed
    (a faster clock) fits it. The trade keeps the bit-widths and takes the re-fit with the most slack;
    with the hardware frozen there is nothing to trade."""
    prob, s, g_pool, _ = _trained_on("avgpool")
    cm, c0 = prob.cost_model, s.hw.derive()
    up = {**g_pool, "op_L0": "conv3x3"}
    at = lambda g, c: cm.evaluate(g, c)["latency_s"]  # noqa: E731
    faster = HWConfig(tuple((k, 200 if k == "HW_FREQ_MHZ" else v) for k, v in c0.values), c0.fixed)
    assert at(up, faster) < at(up, c0)
    s.con.limits = {"latency_s": (at(up, c0) + at(up, faster)) / 2}

    def add(g, c, source):
        cand = Candidate(dict(g), c, source, cm.evaluate(g, c))
        cand.feasible = s.con.violation(cand.figures) == 0
        return cand

    over = add(up, c0, "spend")
    assert not over.feasible
    here = capacity(s.space, Candidate(g_pool, c0, ""))
    [t] = traded(s, [over], add, here)
    assert t.feasible and t.genotype == up and t.source == "trade"
    assert t.config.bits() == c0.bits() and t.config["HW_FREQ_MHZ"] == 300  # most slack of the fits
    assert [k for k in dict(c0.values) if t.config[k] != c0[k]] == ["HW_FREQ_MHZ"]
    s.hw.freeze(c0)
    assert traded(s, [over], add, here) == []


def test_capacity_counts_live_ops_only():
    """nb201: a convolution fed only through ``none`` computes a constant; it adds no capacity, and
    opening its input does."""
    from explorer.space import create_space

    space = create_space("nb201", (1, 16, 16), 10)
    c = HWConfig((), ())
    dead = space.parse_genotype("|none~0|+|avg_pool_3x3~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|")
    cut = space.parse_genotype("|none~0|+|avg_pool_3x3~0|none~1|+|skip_connect~0|none~1|skip_connect~2|")
    opened = space.parse_genotype("|skip_connect~0|+|avg_pool_3x3~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|")
    cap = lambda g: capacity(space, Candidate(g, c, ""))[0]  # noqa: E731
    assert cap(dead) == cap(cut) < cap(opened)


def test_where_no_single_change_adds_capacity_the_climb_looks_two_changes_away():
    """nb201: node 2 gets no input and feeds nothing (edges 2_0, 2_1, 3_2 are ``none``), and every
    live edge already holds the largest op; no single change computes more. Two changes (an op into
    node 2 and one out of it) do: the climb's next steps are those, each through a dead edge. The
    chain space has no dead choices: nothing."""
    cfg = tiny_config(steps=2, space="nb201", space_options={"channels": 4})
    prob = build_problem(cfg)
    s = CoSearch(prob.space, prob.hw, prob.cost_model, prob.data, cfg.search, prob.constraints(), "vta", 0)
    c = s.hw.derive()
    g = s.space.parse_genotype("|nor_conv_3x3~0|+|none~0|none~1|+|nor_conv_3x3~0|nor_conv_3x3~1|none~2|")
    pool = {}

    def add(g2, c2, source, again=False):
        cand = Candidate(dict(g2), c2, source, feasible=True)
        return pool.setdefault(cand.key(), cand)

    cur = Candidate(g, c, "climb", feasible=True)
    here = capacity(s.space, cur)
    near = [n for n in neighbours(s, g, c, add, "spend", pruned=True) if n is not None]
    assert not [n for n in near if capacity(s.space, n) > here]  # stuck by single changes
    ups = through_dead(s, cur, near, add, here)
    assert ups and all(capacity(s.space, u) > here for u in ups)
    for u in ups:
        changed = {k for k in g if u.genotype[k] != g[k]}
        assert len(changed) == 2 and changed & {"edge_2_0", "edge_2_1", "edge_3_2"}
    assert {k for u in ups for k in g if u.genotype[k] != g[k]} == {"edge_2_0", "edge_2_1", "edge_3_2"}
    prob2, s2, g_pool, _ = _trained_on("avgpool")
    c2 = s2.hw.derive()
    cur2 = Candidate(g_pool, c2, "climb", feasible=True)
    near2 = [n for n in neighbours(s2, g_pool, c2, add, "spend", pruned=True) if n is not None]
    assert through_dead(s2, cur2, near2, add, capacity(s2.space, cur2)) == []


def test_near_chance():
    assert near_chance(0.11, 10) and not near_chance(0.5, 10) and near_chance(0.54, 2) and not near_chance(0.7, 2)


def test_proxy_training_ends_annealed(monkeypatch):
    """The brief training from scratch that decides between finalists (and scores random search's
    samples) follows the retraining's one-cycle schedule: it peaks at the given rate and ends near
    zero, so that a candidate's score does not depend on where a constant rate left its last steps."""
    from explorer.data import load_dataset
    from explorer.space import create_space
    from explorer.space.quant import QuantState
    from explorer.search.train import proxy_train

    data = load_dataset("digits", seed=0)
    space = create_space("chain", data.input_shape, data.num_classes, **OPTS)
    g = {k: v[0] for k, v in space.choices().items()}
    torch.manual_seed(0)
    net = space.build_network(g, QuantState.fixed(None, None))
    rates = []
    step = torch.optim.SGD.step

    def recording(self, *a, **kw):
        rates.append(self.param_groups[0]["lr"])
        return step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.SGD, "step", recording)
    loss, acc = proxy_train(net, data, 40, 64, 0.2, seed=1)
    assert len(rates) == 40
    assert abs(max(rates) - 0.2) < 0.01 and rates[-1] < 0.2 / 100 and rates[0] < 0.2 / 10
    assert acc > 0.5 and np.isfinite(loss)


def test_where_a_truth_will_judge_the_kept_design_candidates_keep_the_margin():
    """With a truth to check the kept design (a measurer, refinement on), every candidate selection
    scores fits the limit less the loop's margin on the model: one that fills the limit on the model
    breaks it on the truth by the model's error."""
    prob, s, g_pool, g_conv = _trained_on("avgpool")
    c = s.hw.derive()
    lat = lambda g: prob.cost_model.evaluate(g, c)["latency_s"]  # noqa: E731
    limit = (lat(g_pool) + lat(g_conv)) / 2
    s.con.limits, s.con.lam = {"latency_s": limit}, {"latency_s": 0.0}
    _, scored, _ = select(s, [(g_pool, c)], samples=4, climb_rounds=1, proxy_steps=0, spend_within=-1.0)
    assert max(x.figures["latency_s"] for x in scored) > limit * (1 - s.cfg.margin)  # the slack is filled
    s.measurer, s.cfg.refine = object(), True
    _, scored, _ = select(s, [(g_pool, c)], samples=4, climb_rounds=1, proxy_steps=0, spend_within=-1.0)
    assert scored and max(x.figures["latency_s"] for x in scored) <= limit * (1 - s.cfg.margin)


def test_finalists_tied_on_the_brief_training_go_to_the_lower_validation_loss(monkeypatch):
    """Equal validation accuracies after the brief training (a small validation set ties often) are
    decided by the training's validation loss, not by the one-shot score (biased to parameter-free
    ops): here every finalist ties on accuracy and the one that fills the limit has the lowest loss;
    it is kept though the leader scores better one-shot. Its loss is recorded."""
    import explorer.search.select as sel

    prob, s, g_pool, g_conv = _trained_on("avgpool")
    c = s.hw.derive()
    lat = lambda g: prob.cost_model.evaluate(g, c)["latency_s"]  # noqa: E731
    s.con.limits = {"latency_s": (lat(g_pool) + lat(g_conv)) / 2}
    s.con.lam = {"latency_s": 0.0}
    # the brief training's verdict, fixed: accuracy 0.9 for all, loss falling with the parameters
    monkeypatch.setattr(sel, "proxy_train", lambda net, *a: (1.0 / (1 + sum(p.numel() for p in net.parameters())), 0.9))
    kept, scored, info = select(s, [(g_pool, c)], samples=0, climb_rounds=0, proxy_steps=5, spend_within=-1.0)
    fin = info["finalists"]
    assert len(fin) >= 2 and len({f["proxy"] for f in fin}) == 1
    best = min(fin, key=lambda f: f["proxy_loss"])
    assert best["one_shot"] < max(f["one_shot"] for f in fin)  # the one-shot score would pick another
    assert s.space.format_genotype(kept.genotype) == best["genotype"] and info["kept_by"] == "brief training"
    assert best["genotype"] == info["filled"]["genotype"]


def test_a_finalist_far_behind_after_a_round_of_brief_training_trains_no_more(monkeypatch):
    """Each round of brief training, a finalist whose mean trails the leader's by more than the
    leader's standard error on the validation set stops; one within it trains on. The kept design
    is the best of those that trained every round."""
    import explorer.search.select as sel

    prob, s, g_pool, g_conv = _trained_on("avgpool")
    c = s.hw.derive()
    g_far = {**g_pool, "op_L0": "conv3x3"}
    n_val = len(s.data.y_val)
    se = (max(0.9 * 0.1, 1 / n_val) / n_val) ** 0.5
    params = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    sizes = {params(s.space.build_network(g, sel.QuantState.fixed(*c.bits()))): g for g in (g_pool, g_conv, g_far)}
    assert len(sizes) == 3
    # round 0: the convolutions lead at 0.9, pooling just behind (within one standard error), the
    # half-convolution design far behind; later rounds: pooling 0.9, the convolutions 0.88
    first = {id(g_conv): 0.9, id(g_pool): 0.9 - se / 2, id(g_far): 0.9 - 3 * se}
    later = {id(g_conv): 0.88, id(g_pool): 0.9, id(g_far): 1.0}
    calls = []

    def fake(net, data, steps, bs, lr, seed):
        g = sizes[params(net)]
        calls.append((id(g), seed))
        return 0.1, (first if seed == s.seed + 100 else later)[id(g)]

    monkeypatch.setattr(sel, "proxy_train", fake)
    fin = [Candidate(dict(g), c, "climb") for g in (g_conv, g_pool, g_far)]
    trained, alive = brief_trainings(s, fin, 5, 3, s.seed)
    assert trained == len(calls) == 3 + 2 + 2  # the far one trained once
    assert [len(f.proxies) for f in fin] == [3, 3, 1]
    assert alive == fin[:2]
    assert fin[0].proxy == pytest.approx((0.9 + 0.88 + 0.88) / 3)
    assert fin[1].proxy == pytest.approx((0.9 - se / 2 + 0.9 + 0.9) / 3)
    assert max(alive, key=sel._judged) is fin[1]
    # one training each where the seeds are 1; all three rounds where every finalist stays level
    assert brief_trainings(s, fin, 5, 1, s.seed)[0] == 3
    first = later = {id(g_conv): 0.9, id(g_pool): 0.9, id(g_far): 0.9}
    assert brief_trainings(s, fin, 5, 3, s.seed) == (9, fin)
    # far behind on accuracy but with a lower validation loss than the leader's: it trains on
    first, later = {id(g_conv): 0.9, id(g_pool): 0.9 - 3 * se, id(g_far): 0.9 - 3 * se}, {id(g_conv): 0.9, id(g_pool): 0.9, id(g_far): 0.9}
    loss = {id(g_conv): 0.1, id(g_pool): 0.1, id(g_far): 0.05}

    def fake_loss(net, data, steps, bs, lr, seed):
        g = sizes[params(net)]
        return loss[id(g)], (first if seed == s.seed + 100 else later)[id(g)]

    monkeypatch.setattr(sel, "proxy_train", fake_loss)
    trained, alive = brief_trainings(s, fin, 5, 3, s.seed)
    assert trained == 3 + 2 + 2 and alive == [fin[0], fin[2]]


def test_of_finalists_tied_on_accuracy_the_lower_validation_loss_is_kept():
    """After the brief trainings, a finalist within the given fraction of the leader's standard error
    on the validation set and with a lower validation loss is kept over the leader; one farther
    behind is not, however low its loss; with no tie fraction the accuracy alone decides."""
    n_val = 500
    se = (0.96 * 0.04 / n_val) ** 0.5

    def fin(proxy, loss):
        c = Candidate({}, None, "climb")
        c.proxy, c.proxy_loss = proxy, loss
        return c

    lead, near, far = fin(0.96, 0.12), fin(0.96 - 0.4 * se, 0.09), fin(0.96 - 0.6 * se, 0.05)
    assert judge([lead, near, far], n_val, 0.5) is near
    assert judge([far, lead], n_val, 0.5) is lead
    assert judge([lead, near, far], n_val, 0.0) is lead
    assert judge([lead, near, far], n_val, 1.0) is far
    # of two at the same accuracy the lower loss wins even with no tie fraction (the old rule)
    twin = fin(0.96, 0.10)
    assert judge([lead, twin], n_val, 0.0) is twin


def test_finalists_are_checked_on_the_truth_before_the_brief_training():
    """Where a cheap truth judges the finalists, the design the filling climb ended on is replaced by
    the last step of its climb that holds there, a finalist that breaks a limit is dropped, and every
    verdict is recorded; a truth that cannot judge (None) drops nothing."""
    prob, s, g_pool, g_conv = _trained_on("avgpool")
    c = s.hw.derive()
    lat = lambda g: prob.cost_model.evaluate(g, c)["latency_s"]  # noqa: E731
    s.con.limits = {"latency_s": (lat(g_pool) + lat(g_conv)) / 2}
    s.con.lam = {"latency_s": 0.0}
    kw = dict(samples=0, climb_rounds=0, proxy_steps=0, spend_within=-1.0)
    _, _, info = select(s, [(g_pool, c)], **kw)
    filled = info["filled"]["genotype"]
    names = [f["genotype"] for f in info["finalists"]]
    assert filled in names and len(names) >= 2
    asked = []

    def truth(g, cfg):  # the filled design breaks the limit on this truth, every other design holds
        asked.append(s.space.format_genotype(g))
        return s.space.format_genotype(g) != filled

    kept, _, info2 = select(s, [(g_pool, c)], truth=truth, **kw)
    names2 = [f["genotype"] for f in info2["finalists"]]
    assert filled not in names2 and s.space.format_genotype(kept.genotype) != filled
    checks = {t["genotype"]: t["holds"] for t in info2["truth_checks"]}
    assert checks[filled] is False and sum(v is True for v in checks.values()) >= 1
    assert set(asked) == set(checks)
    # the filled design's place goes to the climb's step before it (it holds here)
    assert all(checks.get(n) is True for n in names2) and len(names2) == len(names)
    assert names2[:-1] == [n for n in names if n != filled][:len(names2) - 1]
    _, _, info3 = select(s, [(g_pool, c)], truth=lambda g, cfg: None, **kw)
    assert [f["genotype"] for f in info3["finalists"]] == names
