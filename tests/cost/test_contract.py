"""One contract, every registered cost model: what the search relies on, checked on each.

A cost model registered without a builder here fails ``test_every_registered_model_is_covered``.
"""

import numpy as np
import pytest
import torch

from explorer.cost import COST_MODELS, create_cost_model
from explorer.cost.measured import distinct_items
from explorer.space import create_space
from explorer.backends import load_target

SPACES = {
    "chain": ((1, 12, 12), {"stem_channels": 8, "stages": [[8, 2, 2], [16, 1, 1]]}),
    "nb201": ((3, 8, 8), {"channels": 8, "cells_per_stage": 1}),
}


def _vta(space):
    hw = load_target("vta").hardware_space()
    return hw, create_cost_model("vta", space.cost_slots(), space.choices(), hw)


def _measured(space):
    """The measured model on a synthetic table: the contract is about its algebra, not the timings."""
    hw = load_target("cpu").hardware_space()
    table = {}
    for w, b in distinct_items(space.cost_slots(), hw):
        for t in hw.knob("THREADS").values:
            table[(w, b, "cpu", t)] = 1e-6 + (w.macs + w.hout * w.wout * w.cin) * b * 1e-10 / t
    return hw, create_cost_model("measured", space.cost_slots(), space.choices(), hw, table)


def _table(space):
    """The table model fitted to a synthetic device whose latency follows the MACs."""
    from explorer.backends.target import table_target
    from explorer.cost.additive import AdditiveLatencyModel

    rng = np.random.default_rng(0)
    G = [space.random_genotype(rng) for _ in range(30)]
    y = [0.05 + 1e-6 * sum(w.macs for w in space.workloads(g)) for g in G]
    hw = table_target("device.json").hardware_space()
    return hw, create_cost_model("table", space, AdditiveLatencyModel.for_space(space).fit(G, y))


BUILDERS = {"vta": _vta, "measured": _measured, "table": _table}


def test_every_registered_model_is_covered():
    from explorer.cost import measured, table, vta  # noqa: F401  (register)

    assert set(COST_MODELS.names()) == set(BUILDERS), "add a builder for every registered cost model"


@pytest.fixture(scope="module", params=[(k, s) for k in sorted(BUILDERS) for s in sorted(SPACES)],
                ids=lambda p: f"{p[0]}-{p[1]}")
def model(request):
    kind, sname = request.param
    shape, opts = SPACES[sname]
    space = create_space(sname, shape, 10, **opts)
    hw, cm = BUILDERS[kind](space)
    return space, hw, cm


def _random_config(hw, rng):
    return hw.config_from_indices({k.name: int(rng.integers(len(k.values))) for k in hw.knobs})


def test_one_hot_prediction_equals_evaluation(model):
    space, hw, cm = model
    rng = np.random.default_rng(0)
    for _ in range(6):
        g, c = space.random_genotype(rng), _random_config(hw, rng)
        ev = cm.evaluate(g, c)
        net = {k: torch.tensor([float(o == g[k]) for o in opts]) for k, opts in space.choices().items()}
        pred = cm.predict(net, hw.onehot(c), exact=True)
        assert set(cm.resources) <= set(pred) and set(cm.resources) <= set(ev)
        for k in cm.resources:
            assert float(pred[k]) == pytest.approx(ev[k], rel=1e-5)


def test_alpha_gradient_identity(model):
    """d E[c] / d alpha_o = p_o (c_o - E[c]), c_o the expected cost with option o chosen; and it
    agrees with central differences."""
    space, hw, cm = model
    gen = torch.Generator().manual_seed(0)
    logits = {k: torch.randn(len(v), generator=gen, requires_grad=True) for k, v in space.choices().items()}
    hw_p = {k: p.detach() for k, p in hw.probs().items()}
    names = list(space.choices())[:: max(1, len(space.choices()) // 3)]
    for resource in [r for r in ("latency_s", "energy_j") if r in cm.resources]:
        for v in logits.values():
            v.grad = None
        probs = {k: torch.softmax(v, 0) for k, v in logits.items()}
        E_t = cm.predict(probs, hw_p)[resource]
        E_t.backward()
        E = E_t.detach()
        for name in names:
            p = probs[name].detach()
            for o in range(len(p)):
                one = {k: v.detach() for k, v in probs.items()}
                one[name] = torch.nn.functional.one_hot(torch.tensor(o), len(p)).float()
                c_o = float(cm.predict(one, hw_p)[resource])
                want = float(p[o]) * (c_o - float(E))
                assert logits[name].grad[o].item() == pytest.approx(want, rel=1e-3, abs=1e-6 * abs(float(E)))

                def f(delta):
                    lg = {k: v.detach().clone().double() for k, v in logits.items()}
                    lg[name][o] += delta
                    return float(cm.predict({k: torch.softmax(v, 0).float() for k, v in lg.items()}, hw_p)[resource])

                num = (f(1e-3) - f(-1e-3)) / 2e-3
                assert logits[name].grad[o].item() == pytest.approx(num, rel=2e-2, abs=1e-3 * abs(float(E)))


def test_lower_bounds_below_every_design(model):
    space, hw, cm = model
    lb = cm.lower_bounds()
    assert set(lb) == set(cm.resources)
    rng = np.random.default_rng(1)
    for _ in range(25):
        ev = cm.evaluate(space.random_genotype(rng), _random_config(hw, rng))
        for k in lb:
            assert lb[k] <= ev[k] * (1 + 1e-6)


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_update_and_correction_state_are_json(kind):
    import json

    from explorer.cost.base import Measurement

    shape, opts = SPACES["chain"]
    space = create_space("chain", shape, 10, **opts)
    hw, cm = BUILDERS[kind](space)
    cm.update([])  # nothing measured yet: nothing to learn, no failure
    g, c = space.random_genotype(np.random.default_rng(2)), hw.default_config()
    cm.update([Measurement(g, c, 2 * cm.evaluate(g, c)["latency_s"])])
    json.dumps(cm.correction_state())
