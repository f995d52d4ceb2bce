"""explorer.workers.pool: spawned children with their environment, timeouts that kill, errors carried back."""

import os
import time

import pytest

from explorer.workers.pool import WorkerError, WorkerPool, WorkerTimeout


def _env(name):
    return os.environ.get(name), os.getpid()


def _sleep(s):
    time.sleep(s)
    return s


def _fail():
    raise ValueError("bad workload")


def test_environment_applies_in_the_child():
    with WorkerPool({"TVM_NUM_THREADS": 3}, timeout_s=60) as pool:
        value, pid = pool.run(_env, "TVM_NUM_THREADS")
    assert value == "3" and pid != os.getpid()


def test_an_exception_comes_back_with_its_message():
    with WorkerPool(timeout_s=60) as pool:
        with pytest.raises(WorkerError, match="ValueError: bad workload") as e:
            pool.run(_fail)
        assert "_fail" in e.value.child_traceback
        assert [ok for ok, _ in pool.map(_sleep, [(0.01,), (0.02,)])] == [True, True]  # the pool goes on


@pytest.mark.slow  # waits out a timeout: the slow tier
def test_a_call_past_its_timeout_is_killed_and_the_pool_goes_on():
    with WorkerPool(timeout_s=2) as pool:
        _, pid = pool.run(_env, "HOME")
        t = time.monotonic()
        with pytest.raises(WorkerTimeout):
            pool.run(_sleep, 60)
        assert time.monotonic() - t < 20
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # the hung child is gone
        assert pool.run(_sleep, 0.1) == 0.1  # a new child takes the next call


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
@pytest.mark.slow  # two interpreters importing TVM (5-10 s): the slow tier, which CI runs
def test_a_worker_exits_with_its_killed_parent():
    """A parent killed outright cannot close its pool; its worker (held up here by a thread of its
    own) still exits, instead of running on as an orphan."""
    import signal
    import subprocess
    import sys

    parent = subprocess.Popen([sys.executable, "-c", "from tests._pool_jobs import pool_then_wait; pool_then_wait()"],
                              stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
    finally:
        parent.kill()
        parent.wait()
    assert parent.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{worker}") and time.monotonic() < deadline:
        time.sleep(0.1)
    if os.path.exists(f"/proc/{worker}"):
        os.kill(worker, signal.SIGKILL)
        pytest.fail(f"worker {worker} outlived its killed parent")
