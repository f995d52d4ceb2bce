"""`explorer tune` with real MetaSchedule, TVM builds, a real JSON database and (slow) a real RPC tracker."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from explorer.deploy.export import build_module, export_onnx
from explorer.deploy.tune import TaskState, _pick, _room, _targets
from explorer.space import create_space
from explorer.space.design import DesignPoint
from explorer.backends import load_target

from tests.conftest import _live_children, proc_state, run_cli as cli


def _records(db):
    f = db / "database_tuning_record.json"
    return sum(1 for ln in f.read_text().splitlines() if ln.strip()) if f.is_file() else 0


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """A two-layer chain-space network: a handful of small kernels, quick to tune."""
    d = tmp_path_factory.mktemp("tune")
    space = create_space("chain", (1, 8, 8), 4, stem_channels=4, stages=[[8, 1, 2]], ops=["conv3x3"], activations=["relu"])
    hw = load_target("vta").hardware_space()
    dp = DesignPoint.make(space, space.random_genotype(np.random.default_rng(0)), "vta",
                          hw.config_from_indices({k.name: 0 for k in hw.knobs}))
    torch.manual_seed(0)
    export_onnx(build_module(dp, None), dp.input_shape, d / "tiny.onnx")
    return d / "tiny.onnx"


def _tune(model, db, trials, *extra):
    return cli("tune", str(model), "--trials", str(trials), "--db", str(db), "--num-cores", "1", "--per-iter", "4",
               "--no-progress", *extra)


@pytest.mark.slow  # TVM tuning or builds: the slow tier
def test_tune_resumes_and_compile_applies_it(tiny_onnx, tmp_path):
    db = tmp_path / "db"
    r = _tune(tiny_onnx, db, 16, "--report", str(tmp_path / "r.json"))  # 4 kernels, batches of 4
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["trials_this_run"] == _records(db) == rep["trials_total"] >= 8
    assert all(t["trials"] >= 4 for t in rep["tasks"])  # every kernel measured before any gets more
    assert "best us" in r.stdout and "trials this run" in r.stdout
    # the same command again: every kernel has its share already, nothing is re-tuned
    again = _tune(tiny_onnx, db, 16, "--report", str(tmp_path / "r2.json"))
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "r2.json").read_text())["trials_this_run"] == 0 and _records(db) == rep["trials_total"]
    # a larger budget extends the same database
    more = _tune(tiny_onnx, db, 32, "--report", str(tmp_path / "r3.json"))
    assert more.returncode == 0, more.stderr
    r3 = json.loads((tmp_path / "r3.json").read_text())
    assert r3["trials_this_run"] > 0 and _records(db) == r3["trials_total"] == rep["trials_total"] + r3["trials_this_run"]
    # compile applies it to every kernel: the card and the store say tuned
    c = cli("compile", str(tiny_onnx), "--schedules", str(db), "--num-cores", "1", "--out", str(tmp_path / "t.so"),
            "--store", str(tmp_path / "s.sqlite"))
    assert c.returncode == 0, c.stderr
    card = json.loads((tmp_path / "t.so.json").read_text())
    assert card["tuned"] and card["scheduled_kernels"] == len(card["workloads"]) and card["schedule_database_id"]
    m = cli("measure", str(tmp_path / "t.so"), "--num-cores", "1", "--repeat", "3", "--store", str(tmp_path / "s.sqlite"))
    assert m.returncode == 0 and "threads, tuned)" in m.stdout, m.stdout + m.stderr
    from explorer.measure.store import Store

    with Store(tmp_path / "s.sqlite") as st:
        assert [r.tuned for r in st.query(kind="measure")] == [True]
    plain = cli("compile", str(tiny_onnx), "--schedules", "none", "--out", str(tmp_path / "u.so"), "--store", str(tmp_path / "s.sqlite"))
    assert plain.returncode == 0 and not json.loads((tmp_path / "u.so.json").read_text())["tuned"]


@pytest.mark.slow  # TVM tuning or builds: the slow tier
def test_killed_tune_loses_at_most_the_batch_in_flight(tiny_onnx, tmp_path):
    db = tmp_path / "db"
    p = subprocess.Popen([sys.executable, "-m", "explorer.cli", "tune", str(tiny_onnx), "--trials", "40", "--db", str(db),
                          "--num-cores", "1", "--per-iter", "4", "--no-progress"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while _records(db) < 8 and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert p.poll() is None, "finished before it could be killed"
    workers = [pid for pid, _ in _live_children(p.pid)]  # its builder and runner processes
    assert workers
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    # they go with it (explorer.workers.pool.exit_with_parent), not left behind as orphans
    deadline = time.monotonic() + 15
    while (alive := [w for w in workers if proc_state(w)[0] not in ("Z", "gone")]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive, f"workers of the killed tune still running: {alive}"
    with open(db / "database_tuning_record.json", "a") as f:  # a torn line, as if killed mid-write
        f.write('[0, [[["GetSBlock"')
    before = _records(db) - 1
    r = _tune(tiny_onnx, db, 40, "--report", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    # every record written before the kill counts: the restart runs only what is left of the budget
    assert rep["trials_total"] == _records(db) == before + rep["trials_this_run"]
    assert 40 - 4 <= rep["trials_total"] <= 40 + 4 * len(rep["tasks"])


def test_budget_goes_by_latency_share():
    def task(name, best_us, trials, weight=1):
        return TaskState(name, weight, None, trials=trials, best_s=None if best_us is None else best_us * 1e-6)

    def spend(ts, budget):  # the tuner's loop: batches of 8, the last one cut to what is left
        while (left := budget - sum(t.trials for t in ts)) > 0 and (t := _pick(ts, budget, 8)) is not None:
            t.trials += min(8, left)

    # an unmeasured kernel comes first, whatever the others' shares
    ts = [task("big", 100, 8), task("new", None, 0)]
    assert _pick(ts, 64, 8).name == "new"
    # then trials follow latency: 3/4 of the budget to a kernel with 3/4 of the time
    ts = [task("a", 30, 8), task("b", 10, 8)]
    tg = _targets(ts, 80, 8)
    assert tg[id(ts[0])] == pytest.approx(60) and tg[id(ts[1])] == pytest.approx(20)
    spend(ts, 80)
    assert abs(ts[0].trials - 60) <= 4 and abs(ts[1].trials - 20) <= 4  # within half a batch of its part
    # a kernel with a tiny share still keeps its first batch; the rest is shared out by latency
    tg = _targets([task("big", 1000, 8), task("tiny", 0.01, 8)], 80, 8)
    assert sorted(tg.values()) == pytest.approx([8, 72])
    # calls per inference count: a kernel run 3 times weighs 3 times its latency
    ts = [task("x", 10, 8, weight=3), task("y", 10, 8)]
    assert _pick(ts, 80, 8).name == "x"
    # kernels tuned before (for another model) are not tuned again: nothing to do
    assert _pick([task("a", 30, 60), task("b", 10, 20)], 80, 8) is None
    # ... but the one new kernel of a second model is, up to its own part
    ts = [task("a", 30, 60), task("b", 10, 20), task("c", None, 0)]
    assert _pick(ts, 80, 8).name == "c"
    # a kernel whose search ran out of candidates keeps what it spent; its part goes to the others
    ts = [task("small", 10, 6), task("big", 10, 40)]
    ts[0].exhausted = True
    assert _targets(ts, 80, 8)[id(ts[1])] == pytest.approx(74)
    assert _pick(ts, 80, 8).name == "big"
    spend(ts, 80)
    assert ts[0].trials == 6 and abs(ts[1].trials - 74) <= 4  # the budget is spent, not left unused
    # the budget is the model's total: records from before (a resumed run, deploy's layout probes)
    # leave less room for this run, and this run's own trials bound it too
    ts = [task("a", 30, 4), task("b", None, 0)]
    assert _room(ts, 30, 0) == 26
    ts[1].trials = 24
    assert _room(ts, 30, 24) == 2 and _room(ts, 30, 30) == 0


def _tune_here(capsys, model, db, trials, *extra) -> tuple[int, str]:
    """``explorer tune`` in this process (its arguments as :func:`_tune`'s): exit code and stderr.
    Bad input is checked in-process (no interpreter and TVM import per case); a fresh process is
    tests/test_cli.py's and the slow tier's."""
    from explorer.cli import main

    code = main(["tune", str(model), "--trials", str(trials), "--db", str(db), "--num-cores", "1", "--per-iter", "4",
                 "--no-progress", *extra])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("args, msg", [
    (["--rpc", "localhost"], "expected HOST:PORT"),
    (["--rpc", "localhost:9190"], "--rpc needs --key"),
    (["--key", "k"], "--key needs --rpc"),
    (["--target", "vta"], "does not tune schedules"),
    (["--rpc", "127.0.0.1:1", "--key", "k"], "cannot reach a TVM RPC tracker"),
])
def test_bad_tune_arguments(tiny_onnx, tmp_path, args, msg, capsys):
    code, err = _tune_here(capsys, tiny_onnx, tmp_path / "db", 4, *args)
    assert code == 2 and msg in err and "Traceback" not in err, err


def test_bad_database_and_model(tiny_onnx, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, err = _tune_here(capsys, tiny_onnx, tmp_path / "file", 4)
    assert code == 2 and "not a folder" in err and "Traceback" not in err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "database_workload.json").write_text("this is not json\n")
    code, err = _tune_here(capsys, tiny_onnx, bad, 4)
    assert code == 2 and "not a readable schedule database" in err and "Traceback" not in err, err
    assert (bad / "database_workload.json").read_text() == "this is not json\n"  # left as it was
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07garbage")
    code, err = _tune_here(capsys, tmp_path / "m.onnx", tmp_path / "db", 4)
    assert code == 2 and "not a valid ONNX file" in err


def _reachable(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _wait(cond, timeout=120):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting for the RPC tracker/server"
        time.sleep(0.5)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_tune_over_rpc_tracker_on_loopback(tiny_onnx, tmp_path):
    """TVM's own RPC tracker and server on loopback; candidates are run on the server."""
    port = _free_port()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    tracker = subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(port),
                                "--port-end", str(port + 1)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    server = None
    try:
        _wait(lambda: _reachable(port))
        # a tracker without the key's server: one clear line, nothing recorded
        r = _tune(tiny_onnx, tmp_path / "db", 8, "--rpc", f"127.0.0.1:{port}", "--key", "loopback-cpu")
        assert r.returncode == 2 and "no RPC server of that key" in r.stderr and "Traceback" not in r.stderr, r.stderr
        sp = _free_port()
        server = subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_server", "--tracker", f"127.0.0.1:{port}",
                                   "--key", "loopback-cpu", "--host", "127.0.0.1", "--port", str(sp),
                                   "--port-end", str(sp + 50)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        from explorer.workers.rpc import tracker_keys

        _wait(lambda: "loopback-cpu" in tracker_keys("127.0.0.1", port))
        r = _tune(tiny_onnx, tmp_path / "db", 16, "--rpc", f"127.0.0.1:{port}", "--key", "loopback-cpu",
                  "--report", str(tmp_path / "r.json"))
        assert r.returncode == 0, r.stderr
        rep = json.loads((tmp_path / "r.json").read_text())
        assert rep["trials_this_run"] == 16 and all(t["best_us"] for t in rep["tasks"])  # every kernel ran there
    finally:
        for p in (server, tracker):
            if p is not None:
                p.kill()
                p.wait()


@pytest.mark.slow  # TVM tuning or builds: the slow tier
def test_kernel_shared_under_other_block_names(tmp_path):
    """Two networks whose global-pool kernels are structurally equal but name their blocks
    otherwise (lv7_red / lv11_red): tuning the second counts the first's records of that kernel as
    its own, without making the database unreadable, and both compile fully tuned. (Whether the
    shared kernel also gets trials in the second run depends on its measured share of the latency:
    noise decides it at this budget, so it is not asserted.)"""
    hw = load_target("vta").hardware_space()
    paths = []
    for i, stages in enumerate(([[8, 1, 2]], [[8, 1, 2], [8, 1, 1]])):
        space = create_space("chain", (1, 8, 8), 4, stem_channels=4, stages=stages, ops=["conv3x3"],
                             activations=["relu"], widths=["1.0"])
        dp = DesignPoint.make(space, space.random_genotype(np.random.default_rng(0)), "vta",
                              hw.config_from_indices({k.name: 0 for k in hw.knobs}))
        torch.manual_seed(0)
        paths.append(export_onnx(build_module(dp, None), dp.input_shape, tmp_path / f"n{i}.onnx").path)
    db = tmp_path / "db"
    assert _tune(paths[0], db, 16, "--report", str(tmp_path / "r0.json")).returncode == 0
    r = _tune(paths[1], db, 96, "--report", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    shared = [t for t in json.loads((tmp_path / "r.json").read_text())["tasks"] if t["name"] == "mean"]
    first = [t for t in json.loads((tmp_path / "r0.json").read_text())["tasks"] if t["name"] == "mean"]
    assert shared and first and shared[0]["trials"] >= first[0]["trials"] > 0  # the first run's trials count
    for i, p in enumerate(paths):
        c = cli("compile", str(p), "--schedules", str(db), "--num-cores", "1", "--out", str(tmp_path / f"n{i}.so"),
                "--store", str(tmp_path / "s.sqlite"))
        assert c.returncode == 0, c.stderr
        assert json.loads((tmp_path / f"n{i}.so.json").read_text())["tuned"]


def _retarget(src, dst, mcpu):
    """A copy of database ``src`` whose records say they were tuned on another CPU."""
    dst.mkdir()
    (dst / "database_workload.json").write_text((src / "database_workload.json").read_text())
    lines = []
    for ln in (src / "database_tuning_record.json").read_text().splitlines():
        r = json.loads(ln)
        r[1][2]["mcpu"] = mcpu
        lines.append(json.dumps(r))
    (dst / "database_tuning_record.json").write_text("\n".join(lines) + "\n")
    return dst


@pytest.mark.slow  # TVM tuning or builds: the slow tier
def test_another_cpus_schedules_seed_tuning_and_are_not_applied(tiny_onnx, tmp_path, monkeypatch):
    here = tmp_path / "here"
    assert _tune(tiny_onnx, here, 16).returncode == 0
    other = _retarget(here, tmp_path / "other", "znver5")
    # a build with only the other CPU's records: nothing is applied, the card says why
    c = cli("compile", str(tiny_onnx), "--schedules", str(other), "--num-cores", "1", "--out", str(tmp_path / "o.so"))
    assert c.returncode == 0, c.stderr
    card = json.loads((tmp_path / "o.so.json").read_text())
    assert card["scheduled_kernels"] == 0 and not card["tuned"] and card["warm_start_only_kernels"] == 4
    assert card["other_schedule_keys"] == [card["schedule_key"].replace(card["target"]["mcpu"], "znver5")]
    # tuning with it as the default database: each kernel first measures the other CPU's best here
    monkeypatch.setenv("EXPLORER_SCHEDULES", str(other))
    r = _tune(tiny_onnx, tmp_path / "mine", 16, "--report", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["warm_start_trials"] == rep["trials_this_run"] == 16  # 4 kernels x its 4 records
    keys = {json.loads(ln)[1][2]["mcpu"] for ln in (tmp_path / "mine" / "database_tuning_record.json").read_text().splitlines()}
    assert keys == {card["target"]["mcpu"]}  # measured here, recorded for this CPU
    # records of this very CPU in a default database count as trials: nothing left to tune
    monkeypatch.setenv("EXPLORER_SCHEDULES", str(here))
    r2 = _tune(tiny_onnx, tmp_path / "copy", 16, "--report", str(tmp_path / "r2.json"))
    assert r2.returncode == 0, r2.stderr
    rep2 = json.loads((tmp_path / "r2.json").read_text())
    assert rep2["trials_this_run"] == 0 and rep2["trials_total"] == 16 == _records(tmp_path / "copy")
    c2 = cli("compile", str(tiny_onnx), "--schedules", str(tmp_path / "copy"), "--num-cores", "1", "--out", str(tmp_path / "c.so"))
    assert c2.returncode == 0 and json.loads((tmp_path / "c.so.json").read_text())["tuned"], c2.stderr


def test_unmeasured_kernels_get_small_first_batches():
    """Every kernel is measured after a few trials (FIRST_BATCH) before any gets a full batch; a
    kernel whose first candidates all failed is tried again, up to a batch."""
    from explorer.deploy.tune import FIRST_BATCH, _unmeasured

    assert FIRST_BATCH < 16
    assert _unmeasured(TaskState("new", 1, None, trials=0), 16)
    assert _unmeasured(TaskState("failed", 1, None, trials=FIRST_BATCH), 16)  # its first batch all failed
    assert not _unmeasured(TaskState("gave up", 1, None, trials=16), 16)
    assert not _unmeasured(TaskState("known", 1, None, trials=FIRST_BATCH, best_s=1e-5), 16)
    ts = [TaskState("big", 1, None, trials=FIRST_BATCH, best_s=1e-3), TaskState("retry", 1, None, trials=FIRST_BATCH)]
    assert _pick(ts, 256, 16).name == "retry"


def test_candidates_are_timed_with_every_core():
    """The tuner's timing child runs TVM with the target's cores (TVM alone starts half the logical
    CPUs on x86: one thread on a 2-core machine, while the schedules and onnxruntime use two)."""
    import os
    import subprocess
    import sys

    cores = os.cpu_count() or 1  # (TVM caps the pool at the cores there are)
    code = ("import os; os.environ.pop('TVM_NUM_THREADS', None); os.environ.pop('OMP_NUM_THREADS', None)\n"
            f"from explorer.deploy.tune import _runner_child; _runner_child({cores})\n"
            "import tvm; print(tvm.runtime.num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.split()[-1] == str(cores), out.stderr


def test_deploy_times_these_thread_counts():
    from explorer.backends.tvm_deploy import thread_counts

    assert thread_counts(1) == [1] and thread_counts(2) == [1, 2]
    assert thread_counts(6) == [1, 2, 4, 6] and thread_counts(8) == [1, 2, 4, 8]
