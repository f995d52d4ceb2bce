"""Bad input, as a user gives it: one line ``explorer: error: ...``, exit code 2, no traceback, and every
run folder, store and schedule database left byte for byte as it was.

One table of (name, argv builder, message fragment), run in-process through ``explorer.cli.main`` (a
fresh process is checked in tests/test_cli.py). Each builder writes its bad file into the case's
``tmp_path`` and returns the arguments.
"""

import hashlib
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from explorer.cli import main

# -- small inputs -------------------------------------------------------------------------------------


def _onnx(path, op="Relu", domain="", opset=17, dims=(1, 3, 8, 8), extra_opsets=()):
    """A one-node ONNX model (made with onnx.helper: no torch, milliseconds)."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, list(dims))
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, list(dims))
    g = helper.make_graph([helper.make_node(op, ["input"], ["output"], domain=domain)], "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset), *extra_opsets])
    m.ir_version = 8
    Path(path).write_bytes(m.SerializeToString())
    return str(path)


def _write(path, text):
    Path(path).write_text(text)
    return str(path)


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def _search(t, *args):
    return ["search", "--dataset", "digits", "--steps", "2", *args, "--out", str(t / "out"), "--no-progress"]


def _explore(t, *args):
    return ["explore", "--targets", "vta", "--dataset", "digits", "--steps", "2", *args, "--out", str(t / "out"),
            "--no-progress"]


def _config(t, text):
    return _search(t, "--config", _write(t / "c.toml", text))


def _target(t, text):
    return _search(t, "--target", _write(t / "mine.toml", text))


def _fit(t, csv):
    return ["costmodel", "fit", "--space", "chain", "--records", _write(t / "r.csv", csv), "--out", str(t / "out.json")]


def _schedules(t, workloads, records):
    d = t / "db"
    d.mkdir()
    _write(d / "database_workload.json", workloads)
    _write(d / "database_tuning_record.json", records)
    # a scratch store: `compile` records a failed build in its store, the bad database's included
    return ["compile", _onnx(t / "m.onnx"), "--schedules", str(d), "--out", str(t / "m.so"), "--store", str(t / "s.sqlite")]


def _not_sqlite(t):
    return _write(t / "store.sqlite", "this is a text file, not an SQLite database\n" * 4)


def _library(t):
    """A library path with a card beside it (``measure`` reads the card before it opens the store)."""
    lib = t / "m.so"
    lib.write_bytes(b"\x7fELF")
    _write(t / "m.so.json", json.dumps({"inputs": {"input": {"shape": [1, 3, 8, 8], "dtype": "float32"}},
                                        "model": str(t / "m.onnx"), "model_sha256": "0" * 64}))
    return str(lib)


def _hw(t, d):
    return ["compile", _onnx(t / "m.onnx"), "--target", "vta", "--hw", _write(t / "hw.json", json.dumps(d)),
            "--out", str(t / "out.json")]


_GOOD_TARGET = 'backend = "vta"\n[knobs.LOG_BATCH]\nvalues = [0]\n'
_CPU_TARGET = (Path(__file__).parents[1] / "targets/cpu.toml").read_text() + "\n"


def _rpc_target(t, rpc):
    return _target(t, _CPU_TARGET + "[options.rpc]\n" + rpc + "\n")


def _free_port():
    from explorer.workers.rpc import free_port

    return free_port(start=9560)

CASES = [
    # configs (tests/test_cli.py covers malformed TOML, unknown keys, wrong types of steps/relax/stages)
    ("config-warmup-negative", lambda t: _config(t, "[search]\nwarmup_steps = -5"), "warmup_steps"),
    ("config-budget-nan", lambda t: _config(t, "[search]\nbudget_min = nan"), "budget_min"),
    ("config-limit-nan", lambda t: _config(t, "[limits]\nlatency_ms = nan"), "latency_ms"),
    ("config-limit-string", lambda t: _config(t, "[limits]\nenergy_mj = 'low'"), "energy_mj"),
    ("config-objective-unknown", lambda t: _config(t, "[objective]\nwatts = 1.0"), "watts"),
    ("config-section-not-table", lambda t: _config(t, "search = 3"), "search"),
    ("config-space-unknown-option", lambda t: _config(t, "[space_options]\nwidth = 3"), "width"),
    ("config-seed-float", lambda t: _config(t, "seed = 1.5"), "seed"),
    ("config-not-utf8", lambda t: _search(t, "--config", str(_bytes(t / "c.toml", b"\xff\xfe\x00[search]"))), "c.toml"),
    ("config-objective-nan", lambda t: _config(t, "[objective]\nlatency_s = nan"), "latency_s"),
    # target TOMLs
    ("target-malformed", lambda t: _target(t, "backend = \n"), "not a readable target TOML"),
    ("target-unknown-backend", lambda t: _target(t, 'backend = "tpu-v9"\n'), "tpu-v9"),
    ("target-no-backend", lambda t: _target(t, 'name = "mine"\n'), "needs backend"),
    ("target-knob-no-values", lambda t: _target(t, 'backend = "vta"\n[knobs.LOG_BATCH]\ndefault = 0\n'), "malformed target"),
    ("target-missing-file", lambda t: _search(t, "--target", str(t / "nope.toml")), "nope.toml"),
    ("target-unknown-key", lambda t: _target(t, "colour = 'red'\n" + _GOOD_TARGET), "unknown key"),
    # a device over RPC, in a target TOML (the CPU target's knobs, then [options])
    ("target-rpc-tracker-not-host-port", lambda t: _rpc_target(t, 'tracker = "board"\nkey = "k"'), "expected HOST:PORT"),
    ("target-rpc-no-key", lambda t: _rpc_target(t, 'tracker = "127.0.0.1:9190"'), "needs tracker"),
    ("target-rpc-key-with-colon", lambda t: _rpc_target(t, 'tracker = "127.0.0.1:9190"\nkey = "a:b"'), "device key"),
    ("target-rpc-workers-zero", lambda t: _rpc_target(t, 'tracker = "127.0.0.1:9190"\nkey = "k"\nworkers = 0'),
     "workers = 0"),
    ("target-rpc-timeout-string", lambda t: _rpc_target(t, 'tracker = "127.0.0.1:9190"\nkey = "k"\ntimeout_s = "long"'),
     "timeout_s"),
    ("target-rpc-unknown-key", lambda t: _rpc_target(t, 'tracker = "127.0.0.1:9190"\nkey = "k"\nretries = 3'), "retries"),
    ("target-rpc-no-tracker-there", lambda t: _rpc_target(t, f'tracker = "127.0.0.1:{_free_port()}"\nkey = "k"'),
     "cannot reach a TVM RPC tracker"),
    ("target-cc-not-a-string", lambda t: _target(t, _CPU_TARGET + "[options]\ncc = 5\n"), "options.cc"),
    ("target-tvm-target-garbage", lambda t: _target(t, _CPU_TARGET + '[options]\ntvm_target = "notakind -x"\n'),
     "not a TVM target"),
    # hardware configs for compile --target vta --hw
    ("hw-not-json", lambda t: ["compile", _onnx(t / "m.onnx"), "--target", "vta", "--hw", _write(t / "hw.json", "{oops"),
                               "--out", str(t / "out.json")], "not a readable hardware config JSON"),
    ("hw-not-object", lambda t: _hw(t, [1, 2]), "must be a JSON object"),
    ("hw-buffer-too-big", lambda t: _hw(t, {"LOG_INP_BUFF_SIZE": 40}), "LOG_INP_BUFF_SIZE"),
    ("hw-unknown-knob", lambda t: _hw(t, {"LOG_FOO": 3}), "LOG_FOO"),
    ("hw-knob-string", lambda t: _hw(t, {"LOG_BATCH": "zero"}), "LOG_BATCH"),
    # ONNX files
    ("onnx-missing", lambda t: ["compile", str(t / "none.onnx")], "no such ONNX file"),
    ("onnx-not-onnx", lambda t: ["compile", _write(t / "m.onnx", "hello, I am a text file")], "not a valid ONNX file"),
    ("onnx-truncated", lambda t: ["compile", str(_truncate(_onnx(t / "m.onnx")))], "not a valid ONNX file"),
    ("onnx-unknown-op", lambda t: ["compile", _onnx(t / "m.onnx", op="FrobnicateAll")], "FrobnicateAll"),
    ("onnx-unknown-domain", lambda t: ["compile", _onnx(t / "m.onnx", op="Relu", domain="com.acme")], "com.acme"),
    ("onnx-opset-too-new", lambda t: ["compile", _onnx(t / "m.onnx", opset=99)], "99"),
    ("onnx-dynamic-dims", lambda t: ["compile", _onnx(t / "m.onnx", dims=("N", 3, 8, 8))], "dynamic shape"),
    ("onnx-huge-dims", lambda t: ["compile", _onnx(t / "m.onnx", dims=(1, 3, 100000, 100000))], "too large"),
    ("onnx-huge-shape-flag", lambda t: ["compile", _onnx(t / "m.onnx", dims=("N", 3, 8, 8)), "--shape",
                                        "input=100000000x3x8x8"], "too large"),
    # CLI arguments that reach a parser of ours
    ("shape-syntax", lambda t: ["compile", _onnx(t / "m.onnx"), "--shape", "input=1xthreex8x8"], "--shape"),
    ("shape-wrong-name", lambda t: ["compile", _onnx(t / "m.onnx"), "--shape", "image=1x3x8x8"], "not inputs of the model"),
    ("shape-mismatch", lambda t: ["compile", _onnx(t / "m.onnx"), "--shape", "input=1x3x9x9"], "does not match"),
    # data files
    ("npz-wrong-keys", lambda t: _search(t, "--dataset", _npz(t / "d.npz", a=np.zeros((10, 8, 8)))), "d.npz"),
    ("npz-label-count", lambda t: _search(t, "--dataset", _npz(t / "d.npz", x=np.zeros((10, 1, 8, 8), np.float32),
                                                             y=np.zeros(7, np.int64))), "y must be [N]"),
    ("npz-float-labels", lambda t: _search(t, "--dataset", _npz(t / "d.npz", x=np.zeros((10, 1, 8, 8), np.float32),
                                                              y=np.full(10, 0.5))), "labels must be integers"),
    ("npz-not-npz", lambda t: _search(t, "--dataset", _write(t / "d.npz", "not a zip")), "d.npz"),
    ("npz-2d-x", lambda t: _search(t, "--dataset", _npz(t / "d.npz", x=np.zeros((10, 64), np.float32),
                                                      y=np.zeros(10, np.int64))), "x must be"),
    ("npz-nan-x", lambda t: _search(t, "--dataset", _npz(t / "d.npz", x=np.full((10, 1, 8, 8), np.nan, np.float32),
                                                       y=np.arange(10) % 2)), "NaN"),
    ("npz-one-class", lambda t: _search(t, "--dataset", _npz(t / "d.npz", x=np.zeros((10, 1, 8, 8), np.float32),
                                                           y=np.zeros(10, np.int64))), "two classes"),
    ("image-folder-empty", lambda t: _search(t, "--dataset", str(_mkdir(t / "images"))), "images"),
    # latency CSVs for costmodel fit
    ("csv-missing-column", lambda t: _fit(t, "design_json,ms\n" + _design() + ",1\n"), "latency_ms"),
    ("csv-non-numeric", lambda t: _fit(t, "design_json,latency_ms\n" + _design() + ",fast\n"), "fast"),
    ("csv-negative", lambda t: _fit(t, "design_json,latency_ms\n" + _design() + ",-1\n"), "-1"),
    ("csv-empty", lambda t: _fit(t, "") + ["--input-shape", "1x8x8"], "no records"),
    ("csv-header-only", lambda t: _fit(t, "design_json,latency_ms\n") + ["--input-shape", "1x8x8"], "no records"),
    ("latency-model-garbage", lambda t: _search(t, "--latency-table", _write(t / "lat.json", "{]")), "lat.json"),
    # calibration files for search --calibration
    ("calibration-not-json", lambda t: _search(t, "--calibration", _write(t / "cal.json", "{oops")), "cal.json"),
    ("calibration-wrong-fields", lambda t: _search(t, "--calibration", _write(t / "cal.json", '{"weights": "x"}')), "cal.json"),
    ("calibration-missing", lambda t: _search(t, "--calibration", str(t / "none.json")), "none.json"),
    ("calibration-for-cpu", lambda t: _search(t, "--target", "cpu", "--calibration", _write(t / "cal.json", "{}")),
     "does not read a calibration file"),
    # corrupt schedule databases
    ("schedules-garbage", lambda t: _schedules(t, "garbage garbage\n", ""), "database_workload.json"),
    ("schedules-truncated", lambda t: _schedules(t, '["123", "mod"]\n', '[0, [[["GetSBlock"'), "database_tuning_record.json"),
    ("schedules-missing-file", lambda t: ["compile", _onnx(t / "m.onnx"), "--schedules", str(_mkdir(t / "empty")),
                                          "--store", str(t / "s.sqlite")], "not a schedule database"),
    # stores that are not SQLite
    ("store-measure", lambda t: ["measure", _library(t), "--store", _not_sqlite(t)], "not an SQLite database"),
    ("store-compile", lambda t: ["compile", _onnx(t / "m.onnx"), "--store", _not_sqlite(t)], "not an SQLite database"),
    ("store-runs-list", lambda t: ["runs", "list", "--store", _not_sqlite(t)], "not an SQLite database"),
    ("store-is-folder", lambda t: ["runs", "list", "--store", str(_mkdir(t / "st"))], "is a folder"),
    # limits no design can meet
    ("limits-energy", lambda t: _search(t, "--energy-mj", "1e-12"), "impossible limits"),
    ("limits-config-latency", lambda t: _config(t, "[limits]\nlatency_ms = 1e-9"), "impossible limits"),
    # runs and exports of things that are not there
    ("runs-show-unknown", lambda t: ["runs", "show", "12345"], "12345"),
    ("export-no-run", lambda t: ["export", str(t / "nothing"), "--out", str(t / "m.onnx")], "nothing"),
    ("deploy-no-run", lambda t: ["deploy", str(t / "nothing"), "--out", str(t / "out")], "no such run folder"),
    ("measure-no-card", lambda t: ["measure", str(_bytes(t / "m.so", b"\x7fELF"))], "no card"),
    ("costmodel-eval-no-model", lambda t: ["costmodel", "eval", str(t / "none.json"), "--records",
                                           _write(t / "r.csv", "")], "not a latency model file"),
    ("calibrate-unknown-space", lambda t: ["calibrate", "--space", "resnet", "--out", str(t / "out")], "unknown search space"),
    # explorations
    ("explore-bad-seeds", lambda t: _explore(t, "--seeds", "abc"), "--seeds"),
    ("explore-unknown-method", lambda t: _explore(t, "--methods", "annealing"), "annealing"),
    ("explore-unknown-target", lambda t: _explore(t, "--targets", "vta,nope"), "unknown target 'nope'"),
    ("report-no-run", lambda t: ["report", str(t / "nothing"), "--out", str(t / "r.html")], "nothing"),
    # command-line arguments argparse refuses: one line too
    ("args-negative-trials", lambda w: ["tune", "model.onnx", "--trials", "-3"], "--trials: must be > 0"),
    ("args-unknown-command", lambda w: ["serach"], "invalid choice: 'serach'"),
    ("args-missing-required", lambda w: ["deploy", "x"], "the following arguments are required: --out"),
    ("args-not-a-number", lambda w: ["search", "--latency-ms", "fast"], "not a number: 'fast'"),
    ("args-unknown-layout", lambda w: ["compile", "m.onnx", "--layout", "NCHW4c"], "invalid choice: 'NCHW4c'"),
]


def _bytes(path, data):
    Path(path).write_bytes(data)
    return path


def _mkdir(path):
    Path(path).mkdir()
    return path


def _truncate(path):
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])
    return path


def _design():
    """One CSV field: a design of the digits chain space as JSON (what `costmodel fit` reads)."""
    from explorer.data import load_dataset
    from explorer.space import create_space
    from explorer.space.design import DesignPoint
    from explorer.space.hardware import HWConfig

    d = load_dataset("digits")
    space = create_space("chain", d.input_shape, d.num_classes)
    dp = DesignPoint.make(space, space.random_genotype(np.random.default_rng(0)), "phone", HWConfig((("THREADS", 1),)))
    return '"' + json.dumps(dp.as_json()).replace('"', '""') + '"'


# -- what must stay as it was ---------------------------------------------------------------------------


@pytest.fixture
def kept(tmp_path, monkeypatch):
    """A run folder, a store and a schedule database in the user's folder (where commands look by
    default); returns a function giving the sha256 of every file under it."""
    from explorer.measure.store import MeasureRecord, Store

    home = tmp_path / "home"
    run = home / "chain-vta-kept"
    run.mkdir(parents=True)
    _write(run / "summary.json", '{"genotype": "kept"}\n')
    _write(run / "design.json", '{"kept": true}\n')
    with Store(home / "store.sqlite") as st:
        st.add(MeasureRecord("k", "measure", "cpu", latency_ms=1.0))
        st.add_run(str(run), {"method": "cosearch"}, {"target": "vta", "space": "chain", "dataset": "digits"})
    db = home / "schedules" / "cpu"
    db.mkdir(parents=True)
    _write(db / "database_workload.json", '["123", "mod"]\n')
    _write(db / "database_tuning_record.json", '[0, [[], [1e-05], {"kind": "llvm"}, []]]\n')
    monkeypatch.setenv("EXPLORER_HOME", str(home))
    monkeypatch.setenv("EXPLORER_STORE", str(home / "store.sqlite"))

    def snapshot():
        return {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(home.rglob("*")) if p.is_file()}

    return snapshot


@pytest.mark.parametrize("name, argv, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, capsys, kept, name, argv, fragment):
    work = tmp_path / "case"
    work.mkdir()
    args = argv(work)
    before = kept()
    given = {p: p.read_bytes() for p in work.rglob("*") if p.is_file()}
    try:
        rc = main(args)
    except SystemExit as e:  # an argument argparse refuses: the same one line, exit code 2
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("explorer: error: ") and err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err and fragment in err, err
    assert kept() == before
    assert {p: p.read_bytes() for p in given} == given  # the bad file itself is left as it was
    assert not (work / "out").exists()
    with sqlite3.connect(tmp_path / "home" / "store.sqlite") as c:
        assert c.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 1
