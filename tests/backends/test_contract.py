"""One contract, every registered backend and the measurer it gives the loop: the capabilities are
declared class attributes of the right types, and every method the loop calls is there and behaves.

A backend registered without a target here fails ``test_every_registered_backend_is_covered``.
"""

import importlib

import pytest

from explorer.backends import BACKENDS, TargetBackend, load_target
from explorer.backends.target import table_target
from explorer.cost import create_cost_model
from explorer.measure.base import Job, Measurer
from explorer.space import create_space
from tests.conftest import make_table_target

SPACE = ("chain", (1, 12, 12), {"stem_channels": 8, "stages": [[8, 2, 2], [16, 1, 1]]})
RESOURCES = {"latency_s", "energy_j", "area_mm2"}
#: a target of each registered backend ("table": fitted in the test's folder)
TARGETS = {"vta": "vta", "tvm-cpu": "cpu", "tvm-gpu": "cuda", "latency-table": "table"}


def _register():
    for m in ("accelerator", "table", "tvm_cpu", "tvm_gpu"):
        importlib.import_module(f"explorer.backends.{m}")


def test_every_registered_backend_is_covered():
    _register()
    assert set(BACKENDS.names()) == set(TARGETS), "add a target for every registered backend"


@pytest.fixture(params=sorted(TARGETS), ids=str)
def backend(request, tmp_path):
    _register()
    name = TARGETS[request.param]
    if name == "table":
        path, _ = make_table_target(tmp_path, SPACE[2])
        target = table_target(path)
    else:
        target = load_target(name)
    assert target.backend_name == request.param
    return target.backend()


def test_backend_declares_its_capabilities(backend):
    cls = type(backend)
    assert isinstance(backend, TargetBackend)
    assert isinstance(cls.resources, tuple) and cls.resources and set(cls.resources) <= RESOURCES, cls.resources
    for flag in ("times_on_host", "reads_calibration", "tunes_on_deploy"):
        assert isinstance(getattr(backend, flag), bool), flag  # (a property where it depends on the target)
    assert isinstance(backend.required_knobs, tuple)
    assert backend.cc is None or (isinstance(backend.cc, str) and backend.cc)
    hw = backend.target.hardware_space()
    backend.check(hw)  # its own target's knobs are what it needs
    assert set(backend.required_knobs) <= {k.name for k in hw.knobs}


def _measurer(backend):
    """The backend's measurer; the VTA refiner refits a real VTA cost model, the others take none."""
    cm = None
    if backend.target.backend_name == "vta":
        name, shape, opts = SPACE
        space = create_space(name, shape, 10, **opts)
        cm = create_cost_model("vta", space.cost_slots(), space.choices(), backend.target.hardware_space())
    return backend.measurer(cm)


def test_measurer_has_every_method_the_loop_calls(backend):
    m = _measurer(backend)
    if m is None:  # a backend without a source of truth in the loop (its model is the truth)
        assert type(backend).measurer is TargetBackend.measurer
        return
    try:
        assert isinstance(m, Measurer)
        assert isinstance(m.refits_model, bool) and isinstance(m.tunes, bool) and isinstance(m.refit, bool)
        assert m.tune_db is None or isinstance(m.tune_db, str)
        assert m.idle() is True  # nothing submitted yet
        assert m.poll() == [] and m.drain(0.0) == []
        state = m.state_dict()
        m.load_state_dict(state)
        assert m.state_dict() == state  # plain data that round-trips (a search checkpoint holds it)
    finally:
        m.close()


def test_vta_refiner_measures_and_verifies():
    """The one measurer that answers in-process: a submitted design comes back timed, once."""
    from explorer.space.design import DesignPoint

    backend = load_target("vta").backend()
    m = _measurer(backend)
    name, shape, opts = SPACE
    space = create_space(name, shape, 10, **opts)
    hw = backend.target.hardware_space()
    g, c = space.random_genotype(__import__("numpy").random.default_rng(0)), hw.derive()
    d = DesignPoint.make(space, g, "vta", c)
    job = Job(0, d.key(), d.as_json(), info={"genotype": g, "config": c})
    assert m.submit(job) is True and m.submit(job) is False  # the same design twice: measured once
    done = m.poll()
    assert len(done) == 1 and (done[0].latency_s or 0) > 0 and done[0].error is None
    assert "predicted_s" in done[0].info  # a refitting measurer says what the model said before
    v = m.verify(Job(1, d.key(), d.as_json(), info={"genotype": g, "config": c}))
    assert v.latency_s == pytest.approx(done[0].latency_s, rel=0.05)
    m.close()
