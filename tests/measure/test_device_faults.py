"""Measurement on devices over TVM RPC, and what happens when a device dies or hangs.

A real tracker and two servers on loopback, started by ``explorer rpc up`` as a user starts them;
faults are real too: a server's process group is SIGKILLed, or SIGSTOPped so that it hangs.
"""

import os
import random
import signal
import sqlite3
import time
from pathlib import Path

import psutil
import pytest

from explorer.measure.devices import DeviceError, DevicePool
from explorer.workers.rpc import free_port
from tests.conftest import start_rpc_up, stop_rpc_up
from tests.measure.test_rpc import _tiny_onnx


def _rpc_up(devices: int, threads: int = 1):
    p, tracker, key, pids = start_rpc_up(devices, threads, start_port=9400)
    host, _, port = tracker.rpartition(":")
    return p, (host, int(port), key), pids


@pytest.fixture
def two_servers():
    p, rpc, pids = _rpc_up(2)
    try:
        yield rpc, pids
    finally:
        stop_rpc_up(p)


def server_pid(pids: list[int], server: str) -> int:
    """The PID of the RPC server listening on ``server`` ("host:port")."""
    port = int(server.rpartition(":")[2])
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns):
            return pid
    raise AssertionError(f"no process of {pids} listens on {server}")


@pytest.fixture(scope="module")
def tiny_lib(tmp_path_factory):
    from explorer.deploy.tvm_build import build, host_target, load_onnx

    d = tmp_path_factory.mktemp("lib")
    m = load_onnx(_tiny_onnx(d / "mlp.onnx"))
    build(m, host_target(1), d / "mlp.so", database="none")
    return str(d / "mlp.so"), {k: [list(s), t] for k, (s, t) in m.inputs.items()}


def _job(lib, number=2000):
    """~0.3 s of timing on a server: long enough to be killed in the middle of."""
    return {"lib": lib[0], "calls": [{"fn": "main", "inputs": lib[1]}], "repeat": 100, "number": number, "threads": 1}


@pytest.mark.slow  # a tracker and two servers: the slow tier
def test_a_killed_server_loses_no_job_and_the_rest_run_on_the_other(two_servers, tiny_lib):
    rpc, pids = two_servers
    rng = random.Random(13)
    kill_after = rng.randint(1, 4)  # a seeded random moment: after this many jobs finished
    with DevicePool(rpc, workers=2, timeout_s=60, wait_s=30, attempts=3) as pool:
        futs = [pool.submit(_job(tiny_lib)) for _ in range(12)]
        finished = []
        while len(finished) < kill_after:
            finished = [f for f in futs if f.done()]
            time.sleep(0.02)
        victim = finished[0].result()["server"]
        vpid = server_pid(pids, victim)
        deadline = time.monotonic() + 60
        while not psutil.Process(vpid).children() and time.monotonic() < deadline:
            time.sleep(0.005)  # a server forks a process per session: wait until one is in flight
        os.killpg(os.getpgid(vpid), signal.SIGKILL)  # the server and its session, mid-job
        res = [f.result(timeout=300) for f in futs]
    assert all(r["results"][0]["median_ms"] > 0 for r in res)  # every job has its figure
    retried = [r for r in res if r["attempts"]]
    assert retried, "the killed server had a job in flight: it must have been retried"
    assert all(a["server"] == victim for r in retried for a in r["attempts"]), [r["attempts"] for r in retried]
    assert all(r["server"] != victim for r in retried)  # each retry ran on the other server
    later = res[kill_after + 2:]  # jobs queued after the kill: on the survivor only
    assert later and {r["server"] for r in later} == {next(r["server"] for r in res if r["server"] != victim)}
    print(f"\nkilled {victim} after {kill_after} jobs; {len(retried)} jobs retried; stats {pool.stats}")


@pytest.mark.slow  # a tracker and two servers: the slow tier
def test_a_hung_server_times_out_and_its_job_runs_on_the_other(two_servers, tiny_lib):
    rpc, pids = two_servers
    with DevicePool(rpc, workers=1, timeout_s=8, wait_s=10, attempts=3) as pool:
        first = pool.submit(_job(tiny_lib, number=20)).result(timeout=120)
        hung = server_pid(pids, first["server"])
        stopped = [hung, *(c.pid for c in psutil.Process(hung).children(recursive=True))]
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        try:
            t = time.monotonic()
            got = [pool.submit(_job(tiny_lib, number=20)).result(timeout=120) for _ in range(3)]
            took = time.monotonic() - t
        finally:
            for pid in stopped:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
    assert all(g["server"] != first["server"] for g in got), [g["server"] for g in got]
    # the tracker still lists a stopped server as free: at most one job went to it, and came back
    # after its timeout, retried on the other
    tries = [a for g in got for a in g["attempts"]]
    assert len(tries) <= 1 and all(a["server"] == first["server"] and "no answer" in a["error"] for a in tries), tries
    assert took < 60, took


def test_no_device_is_a_bounded_failure_with_every_try_on_record(tiny_lib):
    """A tracker that is not there: each try fails at once, the job fails after its tries, no wait."""
    port = free_port(start=9470)
    t = time.monotonic()
    with DevicePool(("127.0.0.1", port, "nokey"), workers=2, timeout_s=5, wait_s=2, attempts=3) as pool:
        fut = pool.submit(_job(tiny_lib, number=1))
        with pytest.raises(DeviceError) as e:
            fut.result(timeout=120)
    assert len(e.value.attempts) == 3 and all("cannot reach the RPC tracker" in a["error"] for a in e.value.attempts)
    assert time.monotonic() - t < 60


@pytest.mark.slow  # workload timing and a search on two loopback devices: the slow tier
def test_search_on_an_rpc_target_survives_a_dead_server(tmp_path):
    """A search whose target TOML names a tracker: workloads and end-to-end measurements run on the
    devices; one server is killed mid-search; the search finishes, records are all there (with the
    device key and their server), and the store is intact."""
    from explorer.api import build_problem
    from explorer.measure.store import Store
    from explorer.search.cosearch import CoSearch
    from tests.conftest import tiny_config

    p, rpc, pids = _rpc_up(2)
    try:
        base = (Path(__file__).parents[2] / "targets/cpu.toml").read_text()
        toml = tmp_path / "board.toml"
        toml.write_text(base.replace('name = "cpu"', 'name = "board"') +
                        f'\n[options.rpc]\ntracker = "{rpc[0]}:{rpc[1]}"\nkey = "{rpc[2]}"\ntimeout_s = 60\nwait_s = 20\n')
        cfg = tiny_config(steps=60, space_options={"stem_channels": 8, "stages": [[8, 1, 2], [16, 1, 1]]})
        cfg.target, cfg.objective = str(toml), {"latency_s": 0.05}
        cfg.search.measure_every = 4
        store = tmp_path / "s.sqlite"
        prob = build_problem(cfg, store_path=store)
        m = prob.backend.measurer(prob.cost_model)
        m.store.close()
        m.store = Store(store)
        killed = {}
        poll = m.poll

        def poll_and_kill():  # the fault: once the first measurement is back, kill the server it ran on
            done = poll()
            for j in done:
                if "server" in j.info and not killed:
                    killed["server"] = j.info["server"]
                    os.killpg(os.getpgid(server_pid(pids, j.info["server"])), signal.SIGKILL)
            return done

        m.poll = poll_and_kill
        try:
            r = CoSearch(prob.space, prob.hw, prob.cost_model, prob.data, cfg.search, prob.constraints(), "board", 0,
                         measurer=m).run()
        finally:
            m.close()
    finally:
        stop_rpc_up(p)
    assert killed, "no measurement came back before the search ended"
    with Store(store) as st:
        e2e = st.query(kind="e2e")
        wl = st.query(kind="workload")
    assert wl and all(x.knobs["rpc_key"] == rpc[2] and x.ok for x in wl)
    assert e2e and all(x.knobs["rpc_key"] == rpc[2] for x in e2e)
    got = [x for h in r.history for x in h.get("measured", []) if "measured_s" in x and not x["cached"]]
    assert len([x for x in e2e if x.ok]) >= len(got) >= 1  # every figure the search learned from is recorded
    after = [x for x in e2e if x.ok and x.payload["server"] != killed["server"]]
    assert after, "nothing ran on the surviving server"  # the final check of the kept design at least
    assert r.measured is not None and r.measured["figures"]["latency_s"] > 0  # the kept design, measured there
    with sqlite3.connect(store) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
