"""``explorer rpc up`` (TVM's tracker and servers) and ``explorer measure --rpc``, on loopback."""

import signal
import subprocess
import time

import numpy as np
import onnx
import psutil
import pytest
from onnx import TensorProto, helper, numpy_helper

from explorer.cli import main
from explorer.errors import ConfigError
from explorer.workers.rpc import free_port, parse_endpoint
from tests.conftest import run_cli as cli, start_rpc_up, stop_rpc_up


def _tiny_onnx(path):
    """A 1x16 -> 32 -> 10 MLP: builds in a couple of seconds, runs in microseconds."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((16, 32)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((32, 10)).astype(np.float32), "w2")
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 16])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 10])
    nodes = [helper.make_node("MatMul", ["input", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["out"])]
    g = helper.make_graph(nodes, "mlp", [x], [y], initializer=[w1, w2])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture(scope="module")
def rpc_up():
    """``explorer rpc up --devices 2`` as a user starts it, here as a script's background job (SIGINT
    inherited as ignored: Ctrl-C must stop it all the same); yields (process, tracker, key, PIDs)."""
    p, tracker, key, pids = start_rpc_up(2, sigint_ignored=True)
    try:
        yield p, tracker, key, pids
    finally:
        stop_rpc_up(p)


@pytest.mark.slow  # a tracker and two servers (~12 s to start): the slow tier
def test_measure_local_and_rpc(rpc_up, tmp_path, capsys):
    _, tracker, key, _ = rpc_up
    model, store = _tiny_onnx(tmp_path / "mlp.onnx"), tmp_path / "s.sqlite"
    args = ["measure", str(model), "--repeat", "10", "--number", "20", "--store", str(store)]
    t = time.monotonic()  # in-process: one TVM import for both (the servers are other processes anyway)
    assert main(args) == 0
    assert main([*args, "--rpc", tracker, "--key", key]) == 0
    out = capsys.readouterr().out
    assert f"ran on an RPC server of key {key} (tracker {tracker})" in out and out.count("tvm          median") == 2
    with capsys.disabled():
        print(f"\nlocal + rpc measure: {time.monotonic() - t:.1f} s")
    from explorer.measure.store import Store

    with Store(store) as st:
        recs = st.query(kind="measure", target="cpu", ok=True)
    by_where = {r.knobs.get("rpc_key"): r for r in recs}
    assert set(by_where) == {None, key}, [r.knobs for r in recs]
    lo, re_ = by_where[None].latency_ms, by_where[key].latency_ms
    with capsys.disabled():
        print(f"median local {lo:.4f} ms, rpc {re_:.4f} ms")
    # Same machine, same library: only noise separates them. For a model of microseconds on 2 shared
    # cores, scheduling noise and the servers' own threads move a median by tens of percent, so
    # 0.5x-2x is the honest bound here (not a tight one).
    assert 0.5 < re_ / lo < 2.0, (lo, re_)


def test_rpc_to_nothing_is_one_line(tmp_path):
    port = free_port(start=9350)
    t = time.monotonic()
    r = cli("measure", str(_tiny_onnx(tmp_path / "mlp.onnx")), "--rpc", f"127.0.0.1:{port}", "--key", "k",
            "--store", str(tmp_path / "s.sqlite"), timeout=60)
    took = time.monotonic() - t
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "cannot reach a TVM RPC tracker" in r.stderr, r.stderr
    assert took < 20, took  # a build (~2 s) and the TVM import, then no wait on the network


@pytest.mark.slow  # a tracker and two servers (~12 s to start): the slow tier
def test_rpc_key_without_servers_is_one_line(rpc_up, tmp_path, capsys):
    _, tracker, _, _ = rpc_up
    assert main(["measure", str(_tiny_onnx(tmp_path / "mlp.onnx")), "--rpc", tracker, "--key", "nosuch",
                 "--store", str(tmp_path / "s.sqlite")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "no free RPC server of that key" in err and "explorer-cpu" in err, err


@pytest.mark.slow  # a tracker and two servers (~12 s to start): the slow tier
def test_measure_on_a_target_that_names_its_tracker(rpc_up, tmp_path, capsys):
    """No --rpc: the target TOML's [options.rpc] sends the timing to the device, built for its
    tvm_target and linked with its cc."""
    from pathlib import Path

    from explorer.measure.store import Store

    _, tracker, key, _ = rpc_up
    base = (Path(__file__).parents[2] / "targets/cpu.toml").read_text()
    toml = tmp_path / "board.toml"
    # built for a named triple and linked by a named (cross) compiler: the path a board of another
    # architecture takes (here the triple and compiler are this machine's, so its servers can run it)
    toml.write_text(base.replace('name = "cpu"', 'name = "board"') +
                    '\n[options]\ntvm_target = "llvm -mtriple=x86_64-linux-gnu"\ncc = "x86_64-linux-gnu-g++"\n'
                    f'[options.rpc]\ntracker = "{tracker}"\nkey = "{key}"\n')
    store = tmp_path / "s.sqlite"
    assert main(["measure", str(_tiny_onnx(tmp_path / "mlp.onnx")), "--target", str(toml), "--repeat", "5",
                 "--store", str(store)]) == 0
    assert f"ran on an RPC server of key {key} (tracker {tracker})" in capsys.readouterr().out
    with Store(store) as st:
        recs = st.query(kind="measure", ok=True)
    assert len(recs) == 1 and recs[0].target == "board" and recs[0].knobs["rpc_key"] == key


@pytest.mark.slow  # a tracker and two servers (~12 s to start): the slow tier
def test_sigint_stops_tracker_and_servers(rpc_up):
    """Last in this module: it stops the module's cluster."""
    p, _, _, pids = rpc_up
    assert len(pids) >= 3  # tracker and two servers (and their forked workers)
    assert all(psutil.pid_exists(x) for x in pids)
    p.send_signal(signal.SIGINT)
    try:
        code = p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"rpc up still running 30 s after SIGINT; its stdout so far and stderr: "
                    f"{open(p.err_path).read()[-3000:]}")
    assert code == 0, open(p.err_path).read()[-3000:]
    gone, alive = psutil.wait_procs([psutil.Process(x) for x in pids if psutil.pid_exists(x)], timeout=5)
    assert not [a for a in alive if a.status() != psutil.STATUS_ZOMBIE], alive


@pytest.mark.parametrize("spec, want", [
    ("127.0.0.1:9190", ("127.0.0.1", 9190)),
    ("board.lan:1", ("board.lan", 1)),
    (" tracker:65535\n", ("tracker", 65535)),
    ("[::1]:9190", ("::1", 9190)),
    ("fe80::1:9190", ("fe80::1", 9190)),  # the last colon splits off the port
])
def test_endpoint_parses(spec, want):
    assert parse_endpoint(spec, "--rpc") == want


@pytest.mark.parametrize("spec", ["board", "board:", ":9190", "board:0", "board:65536", "board:-1", "board:port",
                                  "board:+90", "board:\u0669\u0660", "http://board:9190", "my board:9190",
                                  "[]:9190", "", 9190, None])
def test_a_bad_endpoint_is_one_message_naming_where_it_came_from(spec):
    with pytest.raises(ConfigError) as e:
        parse_endpoint(spec, "somewhere.toml: [options.rpc] tracker")
    assert str(e.value).startswith(f"somewhere.toml: [options.rpc] tracker {spec!r}: expected HOST:PORT")


@pytest.mark.parametrize("args", [["tune", "m.onnx", "--key", "k"], ["measure", "m.onnx", "--key", "k"]])
def test_every_command_with_rpc_uses_the_endpoint_parser(args, capsys):
    """``--rpc`` of tune and measure: the same message for the same bad address (before any model is read)."""
    assert main([*args, "--rpc", "board:99999"]) == 2
    err = capsys.readouterr().err
    assert "--rpc 'board:99999': expected HOST:PORT" in err and "65535" in err and "Traceback" not in err, err
