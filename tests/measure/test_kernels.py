"""Kernel-level truth on a real TVM build: every kernel timed alone, attributed to the slots."""

import numpy as np
import pytest

from explorer.deploy.tvm_build import host_target, target_json
from explorer.measure.e2e import measure
from explorer.measure.kernels import AttributionError, attribute
from explorer.space import create_space
from explorer.space.design import DesignPoint
from explorer.space.hardware import HWConfig


@pytest.fixture(scope="module")
def measured():
    space = create_space("chain", (1, 8, 8), 10, stem_channels=8, stages=[[8, 2, 2], [16, 1, 1]])
    g = space.random_genotype(np.random.default_rng(3))
    g.update({"op_L0": "dwsep3x3", "op_L1": "conv3x3", "act_L1": "hardswish"})
    cfg = HWConfig((("DEVICE", "cpu"), ("THREADS", 1), ("BATCH", 1)))
    d = DesignPoint.make(space, g, "cpu", cfg)
    r = measure({"design": d.as_json(), "threads": 1, "batch": 1, "target": target_json(host_target(1)),
                 "repeat": 5, "number": 5, "database": None, "kernels": True})
    return space, g, r


def test_kernels_are_timed_in_program_order(measured):
    _, _, r = measured
    names = [k[0] for k in r["kernels"]]
    assert names and all(k[1] > 0 for k in r["kernels"])
    assert any("conv2d" in n for n in names) and any("matmul" in n for n in names)
    # the kernels' sum is part of the end-to-end figure; the rest is the VM's own overhead
    assert 0.2 * r["median_ms"] < r["kernels_ms"] < 1.5 * r["median_ms"]


def test_kernels_are_attributed_to_consecutive_slot_groups(measured):
    space, g, r = measured
    parts = attribute(space, g, r["kernels"])
    slots = [s for group, _ in parts for s in group]
    assert slots == list(range(len(space.cost_slots())))  # every slot once, in order
    assert sum(sec for _, sec in parts) == pytest.approx(r["kernels_ms"] / 1e3, rel=1e-6)
    names = [s.name for s in space.cost_slots()]
    # an activation slot joins its operator's group
    assert any(names[grp[0]].startswith("op_") and any(names[i].startswith("act_") for i in grp) for grp, _ in parts)


def test_a_graph_that_does_not_fit_the_design_is_refused(measured):
    space, g, r = measured
    other = dict(g, op_L0="conv5x5")  # another design: the shapes of its anchors differ
    with pytest.raises(AttributionError):
        attribute(space, other, r["kernels"])
