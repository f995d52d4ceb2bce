import math

import pytest
import torch

from explorer.cost import create_cost_model
from explorer.slots import conv
from explorer.space import create_space
from explorer.space.base import Slot
from explorer.space.hardware import HWConfig
from explorer.backends import load_target


@pytest.fixture(scope="module")
def setup():
    space = create_space("chain", (1, 16, 16), 10, stem_channels=8, stages=[[16, 2, 2], [32, 1, 2]])
    hw = load_target("vta").hardware_space()
    cm = create_cost_model("vta", space.cost_slots(), space.choices(), hw)
    return space, hw, cm


def _random_probs(names_sizes, gen):
    return {k: torch.softmax(torch.randn(n, generator=gen), 0) for k, n in names_sizes.items()}


def test_every_knob_gets_a_gradient(setup):
    space, hw, cm = setup
    net_p = {k: torch.full((len(v),), 1.0 / len(v)) for k, v in space.choices().items()}
    out = cm.predict(net_p, hw.probs())
    total = out["latency_s"] / out["latency_s"].detach() + out["energy_j"] / out["energy_j"].detach() + out["area_mm2"] / out["area_mm2"].detach()
    total.backward()
    for k, t in hw.theta.items():
        assert t.grad is not None and t.grad.abs().sum() > 0, k


def _single(hw, w):
    slots = [Slot("one", (), {(): [w]})]
    return create_cost_model("vta", slots, {}, hw)


@pytest.mark.parametrize("log_bi,log_bo", [(4, 4), (3, 5), (5, 3)])
def test_gemm_ops_closed_form(log_bi, log_bo):
    """GEMM ops = ceil(Cin/BLOCK_IN) * ceil(Cout/BLOCK_OUT) * Hout * Wout * Kh * Kw (batch 1)."""
    hw = load_target("vta").hardware_space()
    w = conv("c", 40, 72, 14, 14, 3, stride=2)
    cm = _single(hw, w)
    cfg = HWConfig(tuple({**dict(hw.default_config().values), "LOG_BLOCK_IN": log_bi, "LOG_BLOCK_OUT": log_bo}.items()))
    ev = cm.evaluate({}, cfg)
    bi, bo = 2**log_bi, 2**log_bo
    assert ev["gemm_ops"] == math.ceil(40 / bi) * math.ceil(72 / bo) * 7 * 7 * 9


def test_compute_bound_layer_near_mac_bound():
    hw = load_target("vta").hardware_space()
    w = conv("big", 256, 256, 14, 14, 3)
    cm = _single(hw, w)
    cfg = HWConfig(tuple({**dict(hw.default_config().values), "DRAM_BW_GBPS": 4.0}.items()))
    ev = cm.evaluate({}, cfg)
    bound = w.macs / (1 * 16 * 16)
    assert bound <= ev["cycles"] <= 1.2 * bound


def test_bigger_core_is_faster_and_larger():
    hw = load_target("vta").hardware_space()
    cm = _single(hw, conv("c", 64, 64, 14, 14, 3))
    base = dict(hw.default_config().values)
    small = cm.evaluate({}, HWConfig(tuple({**base, "LOG_BLOCK_IN": 3, "LOG_BLOCK_OUT": 3}.items())))
    big = cm.evaluate({}, HWConfig(tuple({**base, "LOG_BLOCK_IN": 5, "LOG_BLOCK_OUT": 5}.items())))
    assert big["gemm_ops"] < small["gemm_ops"] and big["area_mm2"] > small["area_mm2"]


def test_four_bit_weights_cut_traffic_and_area():
    hw = load_target("vta").hardware_space()
    cm = _single(hw, conv("c", 256, 256, 7, 7, 3))
    base = dict(hw.default_config().values)
    b8 = cm.evaluate({}, HWConfig(tuple(base.items())))
    b4 = cm.evaluate({}, HWConfig(tuple({**base, "LOG_WGT_WIDTH": 2}.items())))
    assert b4["load_bytes"] < b8["load_bytes"] and b4["area_mm2"] < b8["area_mm2"] and b4["energy_j"] < b8["energy_j"]


def test_knob_expectation_is_exact_over_the_top_combinations(setup):
    """One-hot knobs: predict is the exact figure. A settled knob distribution (most mass on a few
    combinations): the top-K expectation is closer to the full expectation over all 1,944 knob
    combinations than pricing the expected knob values (knob_topk = 0)."""
    space, hw, cm = setup
    gen = torch.Generator().manual_seed(0)
    g = space.random_genotype(__import__("numpy").random.default_rng(0))
    c = hw.default_config()
    got = cm.predict(cm.combos.onehot(g), hw.onehot(c))
    ref = cm.evaluate(g, c)
    for k in ("latency_s", "energy_j", "area_mm2"):
        assert float(got[k]) == pytest.approx(ref[k], rel=1e-5)
    net_p = _random_probs({k: len(v) for k, v in space.choices().items()}, gen)
    hw_p = {k.name: torch.softmax(3.0 * torch.randn(len(k.values), generator=gen), 0) for k in hw.knobs}
    exact = cm.exact_expectation(net_p, hw_p)["latency_s"]
    keep = cm.knob_topk
    try:
        cm.knob_topk = 0
        mean = float(cm.predict(net_p, hw_p)["latency_s"])
        cm.knob_topk = 16
        top = float(cm.predict(net_p, hw_p)["latency_s"])
    finally:
        cm.knob_topk = keep
    assert abs(top / exact - 1) < abs(mean / exact - 1), (exact, mean, top)
