"""Property-based tests of the loaders users feed files to: run configs, target TOMLs, latency CSVs,
data files and ONNX models.

The property of every loader: whatever the input (generated, mutated, truncated, random bytes,
random TOML structures, random CSV rows), it returns a valid object or raises the project's own
error (an :class:`~explorer.errors.ExplorerError`) with a one-line message; never a KeyError,
TypeError, ValueError, UnicodeDecodeError, RecursionError, OverflowError or anything else. Where a
format is written as well as read, the round trip gives back what was written.

Bounded for CI: the ``explorer-ci`` profile (few examples, derandomized so every run draws the same
inputs, no example database written into the repository). Inputs that once broke a loader are kept
as fixed examples at the end.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import os
import tempfile
import tomllib
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from onnx import TensorProto, helper

from explorer.backends.target import Target, load_target
from explorer.config import LIMIT_KEYS, RetrainConfig, RunConfig, SearchConfig, config_from_dict, load_config
from explorer.cost.base import RESOURCES
from explorer.cost.learned import read_table
from explorer.data import DataSplits, load_dataset, load_npz
from explorer.deploy.tvm_build import MAX_INPUT_ELEMENTS, OnnxModel, load_onnx
from explorer.errors import ExplorerError
from explorer.paths import shipped_targets_dir
from explorer.space import create_space
from explorer.space.design import DesignPoint
from explorer.space.hardware import HWConfig, Knob

if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):  # its cache of the code's constants: not in the repository
    set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "explorer-hypothesis")
settings.register_profile("explorer-ci", max_examples=50, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CI = settings.get_profile("explorer-ci")  # applied per test: loading it would change every other file's settings


def outcome(fn, *args, **kw):
    """``fn``'s result, or the ExplorerError it raised (checked to be one non-empty line); any other
    exception propagates and fails the property."""
    try:
        return fn(*args, **kw)
    except ExplorerError as e:
        msg = str(e)
        assert msg.strip() and "\n" not in msg and "Traceback" not in msg, repr(msg)
        return e


_SCRATCH: list[str] = []


@pytest.fixture(autouse=True, scope="module")
def _scratch():
    """One folder for every example's files (hypothesis runs examples outside function fixtures), removed after."""
    with tempfile.TemporaryDirectory(prefix="explorer-prop-") as d:
        _SCRATCH.append(d)
        yield
        _SCRATCH.pop()


def _tmp(name: str, data: bytes | str) -> Path:
    d = Path(tempfile.mkdtemp(dir=_SCRATCH[-1] if _SCRATCH else None))
    p = d / name
    p.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    return p


# -- mutations of bytes ---------------------------------------------------------------------------------


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """``data`` truncated, with bytes flipped, inserted or deleted, or a slice repeated."""
    b = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "repeat"]))
        i = draw(st.integers(0, max(len(b) - 1, 0)))
        if kind == "truncate":
            del b[i:]
        elif kind == "flip" and b:
            b[i] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            b[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del b[i : i + draw(st.integers(1, 8))]
        elif kind == "repeat":
            b[i:i] = b[i : i + draw(st.integers(1, 16))]
    return bytes(b)


# -- TOML: random structures and a small writer -----------------------------------------------------------

_scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.datetimes(), st.dates(), st.times(),  # TOML has dates and times, JSON (config.json) does not
)


def _values(leaf=_scalars):
    return st.recursive(leaf, lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=8), c, max_size=4)),
                        max_leaves=12)


def _toml_str(s: str) -> str:
    out = json.dumps(s, ensure_ascii=False)  # TOML basic strings share JSON's escapes ...
    return out.replace("\x7f", "\\u007f")  # ... but refuse a raw DEL


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_str(k)} = {_toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    raise TypeError(type(v))


def to_toml(d: dict) -> str:
    """A TOML document (every value inline) that tomllib reads back as ``d``; None values left out."""
    return "".join(f"{_toml_str(k)} = {_toml_value(v)}\n" for k, v in d.items() if v is not None)


@CI
@given(_values())
def test_toml_writer_round_trips(v):
    """The writer the other properties rely on."""
    text = to_toml({"k": v})
    got = tomllib.loads(text)["k"]
    assert json.dumps(got, sort_keys=True, default=str) == json.dumps(v, sort_keys=True, default=str)


# -- run configs ---------------------------------------------------------------------------------------


_SEARCH_KEYS = [f for f in SearchConfig.__dataclass_fields__]
_RETRAIN_KEYS = [f for f in RetrainConfig.__dataclass_fields__]
_TOP_KEYS = [f for f in RunConfig.__dataclass_fields__]


@st.composite
def config_like(draw) -> dict:
    """A config-shaped table: mostly real keys, values of any type, some real and some not."""
    def section(keys):
        return draw(st.dictionaries(st.one_of(st.sampled_from(keys), st.text(max_size=6)), _values(), max_size=5))

    d = {}
    for k in draw(st.lists(st.sampled_from(_TOP_KEYS + ["bogus"]), max_size=6, unique=True)):
        if k == "search":
            d[k] = section(_SEARCH_KEYS) if draw(st.booleans()) else draw(_values())
        elif k == "retrain":
            d[k] = section(_RETRAIN_KEYS) if draw(st.booleans()) else draw(_values())
        elif k == "limits":
            d[k] = draw(st.dictionaries(st.sampled_from([*LIMIT_KEYS, "x"]), _scalars, max_size=3))
        elif k == "objective":
            d[k] = draw(st.dictionaries(st.sampled_from([*RESOURCES, "x"]), _scalars, max_size=3))
        elif k == "target":  # calibration makes validate load the target; keep it to real names or garbage
            d[k] = draw(st.one_of(st.sampled_from(["vta", "cpu", "nope"]), _scalars))
        else:
            d[k] = draw(_values())
    return d


_pos = st.floats(1e-6, 1e6, allow_nan=False)
_nonneg = st.floats(0, 1e6, allow_nan=False)


@st.composite
def valid_config(draw) -> RunConfig:
    """A RunConfig that validate accepts (no calibration: that reads a target)."""
    s = SearchConfig(
        steps=draw(st.integers(1, 10**6)), budget_min=draw(_pos), batch_size=draw(st.integers(2, 4096)),
        warmup_steps=draw(st.integers(0, 1000)), relax=draw(st.sampled_from(["softmax", "gumbel"])),
        tau_start=draw(_pos), tau_end=draw(_pos), w_lr=draw(_pos), w_momentum=draw(_nonneg),
        w_weight_decay=draw(_nonneg), alpha_lr=draw(_pos), theta_lr=draw(_pos), dual_lr=draw(_nonneg),
        margin=draw(st.floats(0, 0.99)), threshold=draw(st.floats(-10, 10)),
        patience=draw(st.integers(0, 100)), eval_every=draw(st.integers(1, 100)),
        measure_every=draw(st.integers(1, 100)), measure_drain_s=draw(_nonneg), refine=draw(st.booleans()),
        measure_timing=draw(st.sampled_from(["between-steps", "concurrent"])), tune_minutes=draw(_nonneg),
        stages=draw(st.lists(st.tuples(st.floats(0.01, 0.99), st.integers(1, 8)).map(list), max_size=3)),
        progress=draw(st.sampled_from(["steps", "time"])), checkpoint_every=draw(st.integers(0, 100)),
        checkpoint_s=draw(_nonneg))
    r = RetrainConfig(epochs=draw(st.integers(0, 100)), batch_size=draw(st.integers(2, 1024)), lr=draw(_pos),
                      weight_decay=draw(_nonneg), augment=draw(st.booleans()))
    opts = draw(st.dictionaries(st.text(min_size=1, max_size=8), _values(st.one_of(
        st.booleans(), st.integers(-(2**62), 2**62), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))),
        max_size=3))
    return RunConfig(
        dataset=draw(st.sampled_from(["digits", "mnist5k", "my data.npz"])), space=draw(st.sampled_from(["chain", "nb201"])),
        target="vta", seed=draw(st.integers(0, 2**63 - 1)), space_options=opts,
        limits=draw(st.dictionaries(st.sampled_from(list(LIMIT_KEYS)), _pos, max_size=3)),
        objective=draw(st.dictionaries(st.sampled_from(list(RESOURCES)), _nonneg, min_size=len(RESOURCES),
                                       max_size=len(RESOURCES))),
        search=s, retrain=r)


def _valid_run_config(cfg) -> None:
    """What the rest of explorer relies on once a config is loaded."""
    assert isinstance(cfg, RunConfig)
    assert isinstance(cfg.seed, int) and 0 <= cfg.seed < 2**63
    assert all(math.isfinite(v) and v > 0 for v in cfg.limits.values())
    assert all(math.isfinite(v) and v >= 0 for v in cfg.objective.values())
    for sec in (cfg.search, cfg.retrain):
        for k, v in vars(sec).items():
            assert not (isinstance(v, float) and not math.isfinite(v)), (k, v)
    # a run writes its config to config.json and resume_search reads it back
    again = config_from_dict(json.loads(json.dumps(cfg.as_dict(), allow_nan=False)))
    assert again == cfg


@CI
@given(config_like())
def test_load_config_random_structures(d):
    got = outcome(load_config, _tmp("c.toml", to_toml(d)))
    if not isinstance(got, ExplorerError):
        _valid_run_config(got)


@CI
@given(config_like())
def test_config_from_dict_random_structures(d):
    got = outcome(config_from_dict, d)
    if not isinstance(got, ExplorerError):
        _valid_run_config(got)


@CI
@given(st.data())
def test_load_config_mutated_files(data):
    base = to_toml({k: v for k, v in data.draw(valid_config()).as_dict().items()})
    raw = data.draw(st.one_of(mutated(base.encode()), st.binary(max_size=200),
                              st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
                              st.integers(1, 3000).map(lambda n: b"a = " + b"[" * n + b"]" * n),
                              st.integers(1, 3000).map(lambda n: b"a = " + b"{b = " * n + b"1" + b"}" * n),
                              st.integers(4000, 6000).map(lambda n: b"seed = " + b"7" * n)))
    got = outcome(load_config, _tmp("c.toml", raw))
    if not isinstance(got, ExplorerError):
        _valid_run_config(got)


@CI
@given(valid_config())
def test_config_round_trips(cfg):
    """A valid config written to TOML reads back equal; so does its config.json form."""
    assert load_config(_tmp("c.toml", to_toml(cfg.as_dict()))) == cfg
    assert config_from_dict(json.loads(json.dumps(cfg.as_dict()))) == cfg


# -- target TOMLs --------------------------------------------------------------------------------------


_SHIPPED = {p.name: p.read_bytes() for p in sorted(shipped_targets_dir().glob("*.toml"))}
_TARGET_KEYS = ["name", "backend", "description", "knobs", "fixed", "power", "options"]


@st.composite
def target_like(draw) -> dict:
    d = {}
    for k in draw(st.lists(st.sampled_from(_TARGET_KEYS + ["bogus"]), max_size=7, unique=True)):
        if k == "backend":
            d[k] = draw(st.one_of(st.sampled_from(["vta", "tvm-cpu", "table", "nope", "os:system"]), _scalars))
        elif k == "knobs" and draw(st.booleans()):
            d[k] = draw(st.dictionaries(st.text(min_size=1, max_size=6), st.one_of(
                st.fixed_dictionaries({"values": st.lists(st.integers(0, 9), max_size=4)},
                                      optional={"default": st.integers(0, 9)}), _values()), max_size=3))
        elif k in ("name", "description"):  # strings: what the loader does with other types is pinned below
            d[k] = draw(st.text(max_size=12))
        elif k == "power":  # finite numbers: nan and inf are pinned below
            d[k] = draw(st.dictionaries(st.text(max_size=6), st.one_of(st.floats(-1e6, 1e6), st.text(max_size=4)), max_size=3))
        else:
            d[k] = draw(_values())
    return d


def _valid_target(t) -> None:
    assert isinstance(t, Target)
    assert isinstance(t.name, str) and isinstance(t.backend_name, str) and isinstance(t.description, str)
    assert all(isinstance(k, Knob) and k.default in k.values for k in t.knobs)
    assert all(math.isfinite(v) for _, v in t.power)
    assert isinstance(t.options, dict)


@CI
@given(target_like())
def test_load_target_random_structures(d):
    got = outcome(load_target, _tmp("t.toml", to_toml(d)))
    if not isinstance(got, ExplorerError):
        _valid_target(got)


@CI
@given(st.data())
def test_load_target_mutated_files(data):
    base = data.draw(st.sampled_from(sorted(_SHIPPED)))
    raw = data.draw(st.one_of(mutated(_SHIPPED[base]), st.binary(max_size=200)))
    got = outcome(load_target, _tmp(base, raw))
    if not isinstance(got, ExplorerError):
        _valid_target(got)


@pytest.mark.parametrize("name", sorted(_SHIPPED))
def test_shipped_targets_load(name):
    _valid_target(load_target(_tmp(name, _SHIPPED[name])))


# -- latency CSVs (explorer costmodel fit) ----------------------------------------------------------------


_NB201 = create_space("nb201", (3, 32, 32), 10, channels=16, cells_per_stage=5)
_CHAIN = create_space("chain", (1, 8, 8), 10, stem_channels=8, stages=[[8, 2, 2], [16, 1, 1]])


def _design_json(seed: int) -> str:
    g = _CHAIN.random_genotype(np.random.default_rng(seed))
    return json.dumps(DesignPoint.make(_CHAIN, g, "phone", HWConfig((("THREADS", 1),))).as_json())


def _cell(kind: str):
    if kind == "genotype":
        good = st.integers(0, 2**32).map(lambda s: _NB201.format_genotype(_NB201.random_genotype(np.random.default_rng(s))))
    elif kind == "design_json":
        good = st.integers(0, 2**32).map(_design_json)
        good = st.one_of(good, good.flatmap(lambda j: mutated(j.encode()).map(lambda b: b.decode("utf-8", "replace"))),
                         st.integers(1, 2000).map(lambda n: "[" * n + "]" * n),
                         _values().map(lambda v: json.dumps(v, default=str)))
    else:
        good = st.one_of(st.floats(1e-3, 1e3).map(repr), st.sampled_from(["0", "-1", "nan", "inf", "1e400", ""]))
    return st.one_of(good, st.text(max_size=10))


@st.composite
def csv_table(draw) -> tuple[str, str]:
    key = draw(st.sampled_from(["genotype", "design_json"]))
    header = draw(st.permutations([key, "latency_ms", *draw(st.lists(st.text(max_size=5), max_size=2))]))
    header = header[: draw(st.integers(len(header) - 1, len(header)))]  # sometimes a column short
    rows = []
    for _ in range(draw(st.integers(0, 5))):
        row = [draw(_cell(h)) for h in header]
        n = draw(st.sampled_from([len(row), len(row), len(row), max(len(row) - 1, 0), len(row) + 1]))
        rows.append((row + [draw(st.text(max_size=4)) for _ in range(n - len(row))])[:n])
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return key, buf.getvalue()


def _valid_table(got, space) -> None:
    G, y, ids = got
    assert len(G) == len(y) == len(ids) >= 1
    assert np.all(np.isfinite(y)) and np.all(y > 0)
    for g in G:
        space.validate_genotype(g)


@CI
@given(csv_table())
def test_read_table_random_rows(table):
    key, text = table
    space = _NB201 if key == "genotype" else _CHAIN
    got = outcome(read_table, _tmp("t.csv", text), space)
    if not isinstance(got, ExplorerError):
        _valid_table(got, space)


@CI
@given(st.data())
def test_read_table_mutated_files(data):
    key, text = data.draw(csv_table())
    raw = data.draw(st.one_of(mutated(text.encode()), st.binary(max_size=300)))
    space = _NB201 if key == "genotype" else _CHAIN
    got = outcome(read_table, _tmp("t.csv", raw), space)
    if not isinstance(got, ExplorerError):
        _valid_table(got, space)


@CI
@given(st.lists(st.tuples(st.integers(0, 2**32), st.floats(1e-3, 1e3)), min_size=1, max_size=5))
def test_read_table_round_trips(recs):
    """Rows written as ``explorer costmodel fit`` expects read back as written."""
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["design_json", "latency_ms"])
    gs = [_CHAIN.random_genotype(np.random.default_rng(s)) for s, _ in recs]
    w.writerows([_design_json(s), repr(ms)] for s, ms in recs)
    G, y, _ = read_table(_tmp("t.csv", buf.getvalue()), _CHAIN)
    assert G == gs and y.tolist() == [ms for _, ms in recs]


# -- data files (.npz) -----------------------------------------------------------------------------------


_DTYPES = ["uint8", "int8", "int64", "uint64", "float16", "float32", "float64", "bool", "complex64", "U3", "M8[s]"]


@st.composite
def arrays(draw, max_dims=5):
    shape = tuple(draw(st.lists(st.integers(0, 6), max_size=max_dims)))
    dtype = np.dtype(draw(st.sampled_from(_DTYPES)))
    n = int(np.prod(shape))
    kind = draw(st.sampled_from(["small", "wide", "special"]))
    if dtype.kind in "US":
        return np.array(draw(st.lists(st.text(max_size=3), min_size=n, max_size=n)) or [], dtype=dtype).reshape(shape)
    if dtype.kind == "M":
        return np.zeros(shape, dtype)
    vals = {"small": st.integers(0, 12), "wide": st.integers(-300, 300),
            "special": st.sampled_from([0.0, 1.0, 255.0, 1e30, -1.0, float("nan"), float("inf"), 65536.0, 2.5])}[kind]
    with np.errstate(all="ignore"):
        return np.array(draw(st.lists(vals, min_size=n, max_size=n)) or [], dtype=np.float64).astype(dtype).reshape(shape)


@st.composite
def npz_bytes(draw) -> bytes:
    buf = io.BytesIO()
    names = draw(st.lists(st.sampled_from(["x", "y", "z"]), max_size=3, unique=True))
    n = draw(st.integers(0, 12))
    out = {}
    for k in names:
        if draw(st.booleans()):  # shaped as a data set would be: [N, ...] images, [N] labels
            shape = (n,) if k == "y" else (n, *draw(st.sampled_from([(4, 4), (1, 4, 4), (3, 4, 4), (4, 4, 3), (4, 4, 5)])))
            vals = np.arange(int(np.prod(shape))) % draw(st.integers(1, 12))
            out[k] = vals.reshape(shape).astype(draw(st.sampled_from(_DTYPES[:7])))
        else:
            out[k] = draw(arrays())
    if draw(st.integers(0, 9)) == 0:  # an object array: must never be unpickled
        out["x"] = np.array([{"a": 1}, None], dtype=object)
        np.savez(buf, allow_pickle=True, **out)
    else:
        np.savez(buf, **out)
    return buf.getvalue()


def _valid_splits(d) -> None:
    assert isinstance(d, DataSplits)
    for x, y in ((d.x_train, d.y_train), (d.x_val, d.y_val), (d.x_test, d.y_test)):
        assert x.dtype == np.float32 and x.ndim == 4 and len(x) == len(y) >= 1 and min(x.shape[1:]) >= 1
        assert y.dtype == np.int64 and y.min() >= 0 and y.max() < d.num_classes
        assert np.all(np.isfinite(x))
    assert 2 <= d.num_classes <= 1 << 16


@CI
@given(npz_bytes())
def test_load_npz_random_arrays(raw):
    got = outcome(load_npz, _tmp("d.npz", raw))
    if not isinstance(got, ExplorerError):
        _valid_splits(got)


@CI
@given(st.data())
def test_load_npz_mutated_files(data):
    raw = data.draw(st.one_of(npz_bytes().flatmap(mutated), st.binary(max_size=300)))
    got = outcome(load_dataset, str(_tmp("d.npz", raw)))
    if not isinstance(got, ExplorerError):
        _valid_splits(got)


def test_npz_object_arrays_are_never_unpickled():
    class Boom:
        def __reduce__(self):
            return (Path.touch, (Path(tempfile.gettempdir()) / "explorer-npz-pickle-ran",))

    marker = Path(tempfile.gettempdir()) / "explorer-npz-pickle-ran"
    marker.unlink(missing_ok=True)
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=True, x=np.array([Boom(), Boom()], dtype=object), y=np.array([0, 1]))
    got = outcome(load_npz, _tmp("d.npz", buf.getvalue()))
    assert isinstance(got, ExplorerError) and not marker.exists()


@CI
@given(st.integers(6, 20), st.integers(2, 5), st.sampled_from([(1, 4, 4), (3, 5, 5), (4, 4)]), st.integers(0, 3))
def test_npz_round_trips(n, classes, shape, seed):
    """Images and labels written to a .npz come back, split, as the same samples."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, *shape)).astype(np.uint8)
    y = np.arange(n) % classes
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    d = load_npz(_tmp("d.npz", buf.getvalue()), seed=seed)
    _valid_splits(d)
    xs = np.concatenate([d.x_train, d.x_val, d.x_test])
    ys = np.concatenate([d.y_train, d.y_val, d.y_test])
    want = (x.reshape(n, -1, *shape[-2:]) / 255.0).astype(np.float32)
    order = np.lexsort(xs.reshape(n, -1).T)
    worder = np.lexsort(want.reshape(n, -1).T)
    np.testing.assert_allclose(xs[order], want[worder], rtol=1e-6)
    assert sorted(ys.tolist()) == sorted(y.tolist()) and d.num_classes == classes


# -- ONNX models ------------------------------------------------------------------------------------------



_UNARY = ["Relu", "Sigmoid", "Tanh", "Abs", "Neg", "Exp", "Identity"]


@st.composite
def onnx_model(draw) -> onnx.ModelProto:
    """A small valid model: a chain of element-wise ops, an Add of a weight, maybe a Flatten."""
    dims = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)
    nodes, cur, inits = [], "input", []
    for i in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(_UNARY + ["Add"]))
        if op == "Add":
            w = np.random.default_rng(i).random(dims[-1:], dtype=np.float32)
            inits.append(onnx.numpy_helper.from_array(w, f"w{i}"))
            nodes.append(helper.make_node("Add", [cur, f"w{i}"], [f"t{i}"]))
        else:
            nodes.append(helper.make_node(op, [cur], [f"t{i}"]))
        cur = f"t{i}"
    nodes[-1].output[0] = "output"
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, dims)
    g = helper.make_graph(nodes, "g", [x], [y], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", draw(st.integers(13, 21)))])
    m.ir_version = draw(st.integers(7, 10))
    onnx.checker.check_model(m)
    return m


@st.composite
def onnx_structural(draw) -> onnx.ModelProto:
    """A valid model with one field changed: opset, dims, op type, domain, IR version, names."""
    m = draw(onnx_model())
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(["opset", "dim", "dim_param", "op", "domain", "ir", "extra_opset", "drop_input",
                                     "elem_type", "input_name"]))
        node = m.graph.node[draw(st.integers(0, len(m.graph.node) - 1))]
        dim = m.graph.input[0].type.tensor_type.shape.dim if m.graph.input else []
        if what == "opset":
            m.opset_import[0].version = draw(st.integers(-(2**40), 2**40) | st.integers(0, 30))
        elif what == "dim" and dim:
            dim[draw(st.integers(0, len(dim) - 1))].dim_value = draw(st.integers(-5, 2**40) | st.integers(0, 3))
        elif what == "dim_param" and dim:
            dim[draw(st.integers(0, len(dim) - 1))].dim_param = draw(st.text(max_size=3))
        elif what == "op":
            node.op_type = draw(st.sampled_from(["Conv", "Loop", "If", "FrobnicateAll", "Exec", ""]) | st.text(max_size=6))
        elif what == "domain":
            node.domain = draw(st.sampled_from(["com.evil", "ai.onnx", "ai.onnx.ml", "com.microsoft"]) | st.text(max_size=6))
            m.opset_import.append(helper.make_opsetid(node.domain, draw(st.integers(1, 3) | st.integers(-3, 3))))
        elif what == "ir":
            m.ir_version = draw(st.integers(-3, 2**40))
        elif what == "extra_opset":
            m.opset_import.append(helper.make_opsetid(draw(st.text(max_size=6)), draw(st.integers(-3, 30))))
        elif what == "drop_input":
            del m.graph.input[:]
        elif what == "elem_type" and m.graph.input:
            m.graph.input[0].type.tensor_type.elem_type = draw(st.integers(0, 30))
        elif what == "input_name":
            node.input[0] = draw(st.text(max_size=4))
    return m


def _valid_onnx(m) -> None:
    assert isinstance(m, OnnxModel)
    assert 1 <= m.opset <= onnx.defs.onnx_opset_version()
    for shape, dtype in m.inputs.values():
        assert all(isinstance(d, int) and d >= 1 for d in shape) and math.prod(shape) <= MAX_INPUT_ELEMENTS
        assert isinstance(dtype, str)
    assert all(n.domain in ("", "ai.onnx") for n in m.proto.graph.node)
    assert not any(t.data_location == TensorProto.EXTERNAL for t in m.proto.graph.initializer)


_shapes = st.none() | st.dictionaries(st.sampled_from(["input", "other"]),
                                      st.lists(st.integers(1, 5) | st.integers(-2, 2**31), max_size=4).map(tuple), max_size=2)


@CI
@given(onnx_model(), st.data())
def test_load_onnx_mutated_bytes(m, data):
    raw = data.draw(mutated(m.SerializeToString()))
    got = outcome(load_onnx, _tmp("m.onnx", raw), data.draw(_shapes))
    if not isinstance(got, ExplorerError):
        _valid_onnx(got)


@CI
@given(onnx_structural(), _shapes)
def test_load_onnx_structural_mutations(m, shapes):
    got = outcome(load_onnx, _tmp("m.onnx", m.SerializeToString()), shapes)
    if not isinstance(got, ExplorerError):
        _valid_onnx(got)


@CI
@given(st.binary(max_size=400))
def test_load_onnx_random_bytes(raw):
    got = outcome(load_onnx, _tmp("m.onnx", raw))
    if not isinstance(got, ExplorerError):
        _valid_onnx(got)


@CI
@given(onnx_model())
def test_load_onnx_round_trips(m):
    """A valid model loads with the inputs, outputs and opset it was written with."""
    got = load_onnx(_tmp("m.onnx", m.SerializeToString()))
    _valid_onnx(got)
    vi = m.graph.input[0]
    assert got.inputs == {"input": (tuple(d.dim_value for d in vi.type.tensor_type.shape.dim), "float32")}
    assert list(got.outputs) == ["output"] and got.opset == m.opset_import[0].version
    assert got.proto.SerializeToString() == m.SerializeToString()


# -- target TOMLs that broke load_target once -----------------------------------------------------------

@pytest.mark.parametrize("text,why", [
    pytest.param("backend = \"vta\"\nx = " + "[" * 2000 + "]" * 2000, "RecursionError from tomllib, not caught"),
    pytest.param("backend = \"vta\"\nname = " + "7" * 5000, "ValueError from tomllib (int over 4300 digits), not caught"),
    pytest.param("backend = \"vta\"\nname = 5", "a name that is not a string is accepted"),
    pytest.param("backend = \"vta\"\ndescription = [1]", "a description that is not a string is accepted"),
    pytest.param("backend = \"vta\"\n[power]\nstatic_w = nan", "a power figure of nan is accepted"),
])
def test_target_defects(text, why):
    got = outcome(load_target, _tmp("t.toml", text))
    if not isinstance(got, ExplorerError):
        _valid_target(got)


# -- inputs that broke a loader once (each was another exception, or accepted) ----------------------------


def _npz(**arrays) -> Path:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return _tmp("d.npz", buf.getvalue())


_BIG = "7" * 400  # an integer no float can hold
_FIXED = {
    # explorer/config.py load_config
    "toml-nested-arrays": (load_config, lambda: _tmp("c.toml", "seed = " + "[" * 2000 + "]" * 2000)),  # RecursionError
    "toml-nested-tables": (load_config, lambda: _tmp("c.toml", "a = " + "{b = " * 2000 + "1" + "}" * 2000)),  # RecursionError
    "toml-int-5000-digits": (load_config, lambda: _tmp("c.toml", "seed = " + "7" * 5000)),  # ValueError
    "stage-keep-inf": (load_config, lambda: _tmp("c.toml", "[search]\nstages = [[0.5, inf]]")),  # OverflowError
    "stage-keep-string": (load_config, lambda: _tmp("c.toml", "[search]\nstages = [[0.5, \"2\"]]")),  # accepted
    "float-field-huge-int": (load_config, lambda: _tmp("c.toml", f"[search]\nbudget_min = {_BIG}")),  # OverflowError
    "limit-huge-int": (load_config, lambda: _tmp("c.toml", f"[limits]\nlatency_ms = {_BIG}")),  # OverflowError
    "objective-huge-int": (load_config, lambda: _tmp("c.toml", f"[objective]\nlatency_s = {_BIG}")),  # OverflowError
    "lr-inf": (load_config, lambda: _tmp("c.toml", "[search]\nw_lr = inf")),  # accepted: training diverges
    "retrain-lr-nan": (load_config, lambda: _tmp("c.toml", "[retrain]\nlr = nan")),  # nan > 0 is False: refused already
    "seed-negative": (load_config, lambda: _tmp("c.toml", "seed = -1")),  # accepted: numpy refuses it at run time
    "space-options-date": (load_config, lambda: _tmp("c.toml", "[space_options]\nday = 2020-01-01")),  # config.json TypeError
    "space-options-nan": (config_from_dict, lambda: {"space_options": {"w": float("nan")}}),  # written as NaN
    # explorer/cost/learned.py read_table
    "csv-extra-field-no-columns": (lambda p: read_table(p, _CHAIN), lambda: _tmp("t.csv", "a\n1,2\n")),  # TypeError (sorted None)
    "csv-short-row-genotype": (lambda p: read_table(p, _NB201), lambda: _tmp("t.csv", "latency_ms,genotype\n1.0\n")),  # AttributeError
    "csv-short-row-design": (lambda p: read_table(p, _CHAIN), lambda: _tmp("t.csv", "latency_ms,design_json\n1.0\n")),  # TypeError
    "csv-design-nested": (lambda p: read_table(p, _CHAIN),
                          lambda: _tmp("t.csv", "design_json,latency_ms\n\"" + "[" * 5000 + "\",1\n")),  # RecursionError
    "csv-design-huge-int": (lambda p: read_table(p, _CHAIN),
                            lambda: _tmp("t.csv", "design_json,latency_ms\n" + "7" * 5000 + ",1\n")),  # ValueError
    # explorer/data.py load_npz
    "npz-label-1e30": (load_npz, lambda: _npz(x=np.zeros((10, 4, 4)), y=np.array([0.0, 1e30] * 5))),  # refused only as the cast wrapped negative
    "npz-label-huge-int": (load_npz, lambda: _npz(x=np.zeros((10, 4, 4)), y=np.array([0, 2**40] * 5))),  # 2**40 classes
    "npz-complex-x": (load_npz, lambda: _npz(x=np.zeros((10, 4, 4), np.complex64), y=np.arange(10) % 2)),  # imag. dropped
    "npz-empty-dim": (load_npz, lambda: _npz(x=np.zeros((10, 1, 0, 4)), y=np.arange(10) % 2)),  # a 0x4 image
}


@pytest.mark.parametrize("case", sorted(_FIXED))
def test_fixed_defects(case):
    fn, make = _FIXED[case]
    assert isinstance(outcome(fn, make()), ExplorerError)


@pytest.mark.parametrize("text", [
    pytest.param("design_json,latency_ms\n" + "7" * 5000 + ",1\n", id="design-5000-digits"),
    pytest.param("latency_ms,design_json\n1\n", id="short-first-row"),
    pytest.param("design_json,latency_ms\n\"" + "[" * 5000 + "\",1\n", id="design-nested"),
])
def test_costmodel_fit_first_record(text, capsys):
    from explorer.cli import main

    p = _tmp("t.csv", text)
    assert main(["costmodel", "fit", "--space", "chain", "--records", str(p), "--out", str(p.with_suffix(".json"))]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
