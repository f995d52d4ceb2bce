"""What the in-loop refit of the measured-latency model learns from end-to-end measurements: a
doctored op cost is corrected (rank and gradient sign), gross outliers do not spoil held-out error,
and per-op errors of the standalone timings are learnt."""

import numpy as np
import pytest
import torch

from explorer.cost.base import Measurement
from explorer.cost.measured import MeasuredCostModel, distinct_items
from explorer.space import create_space
from explorer.backends import load_target

SPACE = create_space("chain", (1, 12, 12), 10, stem_channels=8, stages=[[8, 2, 2], [16, 1, 1]])
HW = load_target("cpu").hardware_space()
CFG = HW.default_config()


def table(factors: dict | None = None) -> dict:
    """A synthetic standalone table (latency ~ MACs + outputs); ``factors`` scales named workloads."""
    out = {}
    for w, b in distinct_items(SPACE.cost_slots(), HW):
        f = next((v for k, v in (factors or {}).items() if w.name.startswith(k)), 1.0)
        for t in HW.knob("THREADS").values:
            out[(w, b, "cpu", t)] = f * (1e-6 + (w.macs + w.hout * w.wout * w.cin) * b * 1e-10 / t)
    return out


def model(factors=None) -> MeasuredCostModel:
    return MeasuredCostModel(SPACE.cost_slots(), SPACE.choices(), HW, table(factors))


def hw_onehot():
    return {k.name: torch.tensor([1.0 if v == k.default else 0.0 for v in k.values]) for k in HW.knobs}


def conv5_gradients(cm) -> list[float]:
    """d E[latency] / d alpha(conv5x5) in every layer, with each layer's ops at 50/50 between
    conv3x3 and conv5x5 (the other choices uniform): positive when conv5x5 is the dearer one."""
    ch = SPACE.choices()
    alpha = {}
    for k, v in ch.items():
        p = torch.full((len(v),), 1.0 / len(v))
        if k.startswith("op_"):
            p = torch.full((len(v),), 1e-9)
            p[v.index("conv3x3")] = p[v.index("conv5x5")] = 0.5
        alpha[k] = torch.log(p).requires_grad_(True)
    cm.predict({k: torch.softmax(a, 0) for k, a in alpha.items()}, hw_onehot())["latency_s"].backward()
    return [float(alpha[k].grad[ch[k].index("conv5x5")]) for k in ch if k.startswith("op_")]


def with_ops(g, rng):
    return {k: (["conv3x3", "conv5x5"][rng.integers(2)] if k.startswith("op_") else v) for k, v in g.items()}


@pytest.mark.parametrize("seed", range(5))
def test_a_doctored_op_is_corrected_within_five_measurements(seed):
    """The prior prices conv5x5 at a third of its true cost, so it ranks it below conv3x3 and the cost
    term's gradient pushes toward it; five measured derived designs (they share all but their ops, as
    a search's derived designs do) must put the rank and the gradient's sign right."""
    truth, cm = model(), model({"conv5x5": 1 / 3})
    assert all(g > 0 for g in conv5_gradients(truth)) and all(g < 0 for g in conv5_gradients(cm))
    rng = np.random.default_rng(seed)
    base = SPACE.random_genotype(rng)
    for _ in range(5):
        g = with_ops(base, rng)
        cm.update([Measurement(g, CFG, truth.evaluate(g, CFG)["latency_s"] * float(np.exp(rng.normal(0, 0.03))))])
    assert all(g > 0 for g in conv5_gradients(cm))
    three = {k: ("conv3x3" if k.startswith("op_") else v) for k, v in base.items()}
    five = {k: ("conv5x5" if k.startswith("op_") else v) for k, v in base.items()}
    assert cm.evaluate(five, CFG)["latency_s"] > cm.evaluate(three, CFG)["latency_s"]


def held_out_error(cm, truth, test) -> float:
    return float(np.median([abs(cm.evaluate(g, CFG)["latency_s"] / truth.evaluate(g, CFG)["latency_s"] - 1) for g in test]))


def test_gross_outliers_do_not_spoil_the_refit():
    """30 measurements of a truth whose per-op costs differ from the prior, then 3 more that are
    10-25x off (contention): the held-out error must not grow, and the three are flagged."""
    truth = model({"conv5x5": 2.0, "dwsep": 0.5, "maxpool": 1.5})
    rng = np.random.default_rng(0)
    train = [SPACE.random_genotype(rng) for _ in range(30)]
    test = [SPACE.random_genotype(rng) for _ in range(60)]
    cm = model()
    before = held_out_error(cm, truth, test)
    cm.update([Measurement(g, CFG, truth.evaluate(g, CFG)["latency_s"]) for g in train])
    clean = held_out_error(cm, truth, test)
    bad = [SPACE.random_genotype(rng) for _ in range(3)]
    cm.update([Measurement(g, CFG, f * truth.evaluate(g, CFG)["latency_s"]) for g, f in zip(bad, (10.0, 25.0, 15.0))])
    dirty = held_out_error(cm, truth, test)
    assert clean < before / 2
    assert dirty <= clean * 1.1 + 0.005, (before, clean, dirty)
    assert set(cm.correction_state()["outliers"]) >= {30, 31, 32}


@pytest.mark.slow  # 40 refits with cross-validation: the slow tier
def test_per_op_errors_of_the_standalone_timings_are_learnt():
    """Truth differs from the prior per op (0.4x-2.5x): after 40 measurements >= 90% of held-out
    designs are within 10%, against far fewer before."""
    rng = np.random.default_rng(3)
    ops = ["conv3x3", "conv5x5", "dwsep3x3", "dwsep5x5", "dil3x3", "maxpool", "avgpool", "act"]
    truth = model({o: float(f) for o, f in zip(ops, np.exp(rng.uniform(np.log(0.4), np.log(2.5), len(ops))))})
    cm = model()
    test = [SPACE.random_genotype(rng) for _ in range(100)]
    within = lambda: np.mean([abs(cm.evaluate(g, CFG)["latency_s"] / truth.evaluate(g, CFG)["latency_s"] - 1) <= 0.1 for g in test])  # noqa: E731
    before = within()
    cm.update([Measurement(g, CFG, truth.evaluate(g, CFG)["latency_s"]) for g in (SPACE.random_genotype(rng) for _ in range(40))])
    assert within() >= 0.9 > before + 0.2, (before, within())


def slot_parts(truth, g) -> tuple:
    """Kernel-level truth of a design as the measurer gives it: the time of groups of slots (here
    one group per slot), from the truth model's rows."""
    rows = truth.combos.probs(truth.combos.onehot(g)).numpy()
    setting = int(torch.argmax(truth._setting_probs(HW.onehot(CFG))))
    per = (truth.per_combo[:, setting] * truth.factor).numpy() * rows
    slot = truth.combos.row_slot.numpy()
    return tuple(([si], float(per[slot == si].sum())) for si in range(len(truth.combos.slots)) if per[slot == si].sum() > 0)


def test_kernel_level_truth_corrects_a_doctored_op_from_one_design():
    """One measured design with its kernel time per slot group says conv5x5 costs 3x the prior:
    the rank and the gradient sign are right after that single design (end to end alone, the same
    design leaves the sign wrong in some layer)."""
    truth = model()
    rng = np.random.default_rng(0)
    g = {k: ("conv5x5" if k.startswith("op_") and k != "op_L1" else v) for k, v in SPACE.random_genotype(rng).items()}
    g["op_L1"] = "conv3x3"
    e2e_only, with_parts = model({"conv5x5": 1 / 3}), model({"conv5x5": 1 / 3})
    lat = truth.evaluate(g, CFG)["latency_s"]
    e2e_only.update([Measurement(g, CFG, lat)])
    with_parts.update([Measurement(g, CFG, lat, slot_parts(truth, g))])
    assert with_parts.correction_state()["kernel_parts"] > 0
    assert all(x > 0 for x in conv5_gradients(with_parts))
    assert min(conv5_gradients(e2e_only)) < min(conv5_gradients(with_parts))
