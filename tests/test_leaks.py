"""The session's leak check (conftest.pytest_sessionfinish) sees a running child and stops seeing it
once it is gone."""

import os
import subprocess
import sys

import pytest

from tests.conftest import _live_children


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_a_running_child_is_seen_and_a_finished_one_is_not():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert p.pid in [pid for pid, _ in _live_children(os.getpid())]
    finally:
        p.kill()
        p.wait()
    assert p.pid not in [pid for pid, _ in _live_children(os.getpid())]
