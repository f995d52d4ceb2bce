"""Faults, injected for real (fast tier): writers killed mid-write, two writers on one store, a
compiler that fails, a build worker killed mid-build. Nothing recorded is lost; the store passes
SQLite's ``PRAGMA integrity_check``. (Device faults over RPC: tests/measure/test_device_faults.py;
a search killed and resumed: tests/search/test_resume.py.)"""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import psutil
import pytest

from explorer.measure.store import MeasureRecord, Store
from tests.conftest import run_cli as cli

_WRITER = """
import sys, time
from explorer.measure.store import MeasureRecord, Store
path, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with Store(path) as st:
    for i in range(n):
        st.add(MeasureRecord(f"{who}-{i}", "measure", "cpu", {"i": i}, {"tvm": "x"}, latency_ms=float(i),
                             payload={"pad": "x" * 2000}))
        if i % 50 == 0:
            st.add_run(f"/runs/{who}-{i}", {"i": i}, {"target": "vta", "space": "chain", "dataset": "digits", "seed": i})
        print(i, flush=True)
"""


def _integrity(path) -> str:
    with sqlite3.connect(path) as c:
        return c.execute("PRAGMA integrity_check").fetchone()[0]


def _writer(path, who, n):
    return subprocess.Popen([sys.executable, "-c", _WRITER, str(path), who, str(n)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_two_writers_on_one_store_never_corrupt_it(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as st:  # something recorded before: must be there after
        st.add(MeasureRecord("before", "measure", "cpu", latency_ms=1.0))
    procs = [_writer(path, w, 300) for w in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
    assert _integrity(path) == "ok"
    with Store(path) as st:
        keys = {r.key for r in st.query(kind="measure")}
        runs = st.runs()
    assert keys == {"before"} | {f"{w}-{i}" for w in "ab" for i in range(300)}
    assert len(runs) == 12


def test_a_writer_killed_mid_write_loses_nothing_it_committed(tmp_path):
    path = tmp_path / "s.sqlite"
    rng = random.Random(7)
    p = _writer(path, "k", 100000)
    other = _writer(path, "o", 200)  # a second writer, working all along
    done = -1
    target = rng.randint(50, 400)  # a seeded random moment
    while done < target:
        line = p.stdout.readline()
        assert line, f"the writer ended early: {p.communicate()[1][-2000:]}"
        done = int(line)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    _, err = other.communicate(timeout=120)
    assert other.returncode == 0, err[-2000:]
    assert _integrity(path) == "ok"
    with Store(path) as st:  # every record the killed writer had committed (and said so) is there
        mine = {r.key for r in st.query(kind="measure") if r.key.startswith("k-")}
        theirs = {r.key for r in st.query(kind="measure") if r.key.startswith("o-")}
        st.add(MeasureRecord("after", "measure", "cpu", latency_ms=1.0))  # and the store takes more
    assert {f"k-{i}" for i in range(done + 1)} <= mine
    assert theirs == {f"o-{i}" for i in range(200)}


def test_a_failing_compiler_is_one_line_and_a_failed_build_on_record(tmp_path):
    from tests.measure.test_rpc import _tiny_onnx

    cc = tmp_path / "broken-g++"
    cc.write_text("#!/bin/sh\necho 'broken-g++: fatal error: cannot execute as: No such file' >&2\nexit 1\n")
    cc.chmod(0o755)
    base = (__import__("pathlib").Path(__file__).parents[1] / "targets/cpu.toml").read_text()
    toml = tmp_path / "board.toml"
    toml.write_text(base + f'\n[options]\ncc = "{cc}"\n')
    store, model = tmp_path / "s.sqlite", _tiny_onnx(tmp_path / "m.onnx")
    with Store(store) as st:
        st.add(MeasureRecord("before", "measure", "cpu", latency_ms=1.0))
    r = cli("compile", str(model), "--target", str(toml), "--store", str(store), "--out", str(tmp_path / "m.so"))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "broken-g++" in r.stderr, r.stderr
    assert not (tmp_path / "m.so").exists() and not list(tmp_path.glob("*.tmp.so"))
    assert _integrity(store) == "ok"
    with Store(store) as st:
        builds = st.query(kind="build")
        assert st.query(key="before")
    assert len(builds) == 1 and not builds[0].ok and "broken-g++" in builds[0].error


@pytest.mark.slow  # two TVM builds of a derived design (~20 s): the slow tier
def test_a_killed_build_worker_is_a_failed_record_and_the_next_job_runs(tmp_path):
    from explorer.deploy.tvm_build import toolchain_versions
    from explorer.measure.background import BackgroundMeasurer
    from explorer.measure.base import Job
    import numpy as np

    from explorer.space import create_space
    from explorer.space.design import DesignPoint
    from explorer.space.hardware import HWConfig

    space = create_space("chain", (1, 8, 8), 10, stem_channels=8, stages=[[8, 1, 2], [16, 1, 1]])
    hw = HWConfig((("DEVICE", "cpu"), ("THREADS", 1), ("BATCH", 1)))
    designs = [DesignPoint.make(space, space.random_genotype(np.random.default_rng(s)), "cpu", hw) for s in (1, 2)]
    store = tmp_path / "s.sqlite"
    with Store(store) as st:
        m = BackgroundMeasurer(st, toolchain_versions(), repeat=3, number=3)
        try:
            jobs = [Job(i, d.key(), d.as_json(), {"device": "cpu", "threads": 1, "batch": 1}) for i, d in enumerate(designs)]
            me = psutil.Process()

            def workers():
                return {c.pid for c in me.children(recursive=True) if "popen_worker" in " ".join(c.cmdline())}

            m._timer(jobs[0]).run(int, 0)  # the timer process first (the build reuses it): not the victim
            timer = workers()
            m.submit(jobs[0])
            m.poll()  # starts the first build
            deadline = time.monotonic() + 60
            kids = set()
            while not kids and time.monotonic() < deadline:  # the build's worker, once it runs
                kids = workers() - timer
                time.sleep(0.05)
            assert kids, "no build worker appeared"
            time.sleep(random.Random(3).uniform(0.5, 2.0))  # somewhere in the build
            for k in kids:
                try:
                    os.kill(k, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            m.submit(jobs[1])
            done = []
            deadline = time.monotonic() + 300
            while len(done) < 2 and time.monotonic() < deadline:
                done += m.poll()
                time.sleep(0.05)
        finally:
            m.close()
        recs = {r.key: r for r in st.query(kind="e2e")}
    assert len(done) == 2, done
    assert jobs[0].error and "died" in jobs[0].error, jobs[0].error
    assert jobs[1].latency_s and jobs[1].latency_s > 0
    assert not recs[jobs[0].key].ok and recs[jobs[1].key].ok
    assert _integrity(store) == "ok"
