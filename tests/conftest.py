import os
import subprocess
import sys

import pytest
import torch

from explorer.config import RetrainConfig, RunConfig, SearchConfig


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)  # the tests' networks are tiny: one thread is as fast, and on a shared machine far faster


@pytest.fixture(autouse=True, scope="session")
def _private_home(tmp_path_factory):
    """Tests (and the CLI processes they start) write to a private folder, never to runs/, and see no
    schedule database but the ones they make: what the shipped database holds changes no result."""
    home = tmp_path_factory.mktemp("home")
    os.environ["EXPLORER_HOME"] = str(home)
    os.environ["EXPLORER_STORE"] = str(home / "store.sqlite")
    os.environ["EXPLORER_SCHEDULES"] = "none"


def tiny_config(**kw) -> RunConfig:
    """A run on the 8x8 digits with a small chain space: seconds, not minutes."""
    search = SearchConfig(steps=kw.pop("steps", 40), budget_min=kw.pop("budget_min", 2.0), batch_size=32,
                          warmup_steps=8, eval_every=10, stages=kw.pop("stages", [[0.5, 3]]),
                          relax=kw.pop("relax", "softmax"), tau_start=kw.pop("tau_start", 1.0),
                          tau_end=kw.pop("tau_end", 1.0), alpha_lr=kw.pop("alpha_lr", 3e-3),
                          theta_lr=kw.pop("theta_lr", 3e-3), select_proxy_steps=kw.pop("select_proxy_steps", 20))
    cfg = RunConfig(dataset="digits", space=kw.pop("space", "chain"), target="vta", seed=kw.pop("seed", 0),
                    space_options=kw.pop("space_options", {"stem_channels": 8, "stages": [[8, 2, 2], [16, 1, 1]]}),
                    limits=kw.pop("limits", {}), search=search,
                    objective=kw.pop("objective", {"latency_s": 0.01, "energy_j": 0.01, "area_mm2": 0.01}), retrain=RetrainConfig(epochs=kw.pop("epochs", 0)))
    assert not kw, kw
    return cfg


def run_cli(*args, timeout=600):
    """``explorer`` in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "explorer.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={"OMP_NUM_THREADS": "1", **os.environ, "PYTHONWARNINGS": "ignore"})


def make_table_target(folder, space_options: dict | None = None, name: str = "phone", n: int = 60):
    """A device known only by its latency table (latency grows with the MACs), fitted with `explorer
    costmodel fit` into ``folder/<name>.json``: a target for the digits chain space whose figures are
    exact and repeatable. Returns (model path, the table's latencies in ms)."""
    import json

    import numpy as np

    from explorer.cli import main
    from explorer.data import load_dataset
    from explorer.space import create_space
    from explorer.space.design import DesignPoint
    from explorer.space.hardware import HWConfig

    d = load_dataset("digits")
    space = create_space("chain", d.input_shape, d.num_classes, **(space_options or {}))
    rng = np.random.default_rng(0)
    rows, lat = [], []
    for _ in range(n):
        g = space.random_genotype(rng)
        ms = 0.05 + 2e-6 * sum(w.macs for w in space.workloads(g)) * (1 + 0.03 * rng.standard_normal())
        dp = DesignPoint.make(space, g, name, HWConfig((("THREADS", 1),)))
        rows.append(f'"{json.dumps(dp.as_json()).replace(chr(34), chr(34) * 2)}",{ms:.6f}')
        lat.append(ms)
    table = os.path.join(folder, f"{name}.csv")
    with open(table, "w") as f:
        f.write("design_json,latency_ms\n" + "\n".join(rows) + "\n")
    out = os.path.join(folder, f"{name}.json")
    assert main(["costmodel", "fit", "--space", "chain", "--records", table, "--out", out]) == 0
    return out, lat


def start_rpc_up(devices: int = 2, threads: int | None = None, start_port: int = 9290, sigint_ignored: bool = False):
    """``explorer rpc up --devices N`` as a user starts it, waited on until ready. Returns (process,
    "HOST:PORT" of the tracker, device key, PIDs); ``process.err_path`` holds its stderr (a file, not a
    pipe: a pipe nobody reads can block the process that writes to it). ``sigint_ignored``: started
    with SIGINT ignored, as a script's background job is."""
    import signal
    import tempfile
    import time

    from explorer.workers.rpc import free_port

    port = free_port(start=start_port)
    err = tempfile.NamedTemporaryFile(prefix="rpc-up-", suffix=".err", delete=False)
    p = subprocess.Popen([sys.executable, "-m", "explorer.cli", "rpc", "up", "--devices", str(devices), "--port", str(port),
                          *(["--threads", str(threads)] if threads else [])],
                         stdout=subprocess.PIPE, stderr=err, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
                         preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None)
    err.close()
    p.err_path = err.name
    info = {}
    deadline = time.monotonic() + 90
    while "ready" not in info and time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        name, _, value = line.strip().partition(" ")
        info[name.rstrip(":")] = value
    if "ready" not in info:
        stop_rpc_up(p)
        raise AssertionError(f"rpc up did not get ready: {info}, exit {p.poll()}, stderr {open(p.err_path).read()[-2000:]}")
    return p, info["tracker"], info["key"], [int(x) for x in info["pids"].split()]


def stop_rpc_up(p, timeout: float = 30.0) -> None:
    import signal

    if p.poll() is None:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    os.unlink(p.err_path) if os.path.exists(p.err_path) else None


def proc_state(pid: int) -> tuple[str, int]:
    """(state letter, parent pid) of a process from /proc ("gone", 0 when it is not there)."""
    try:
        state, ppid = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[:2]
        return state, int(ppid)
    except (OSError, ValueError, IndexError):
        return "gone", 0


def _live_children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the running (not zombie) child processes of ``pid``, from /proc."""
    from pathlib import Path

    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            state, ppid = proc_state(int(d.name))
            if ppid == pid and state not in ("Z", "gone"):
                out.append((int(d.name), (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return out


def pytest_sessionfinish(session, exitstatus):
    """The suite leaves no process behind (RPC servers, worker pools, CLI runs): any child of this
    process still running a few seconds after the last test fails the session, named."""
    import time

    if session.config.option.collectonly or not os.path.isdir("/proc") or hasattr(session.config, "workerinput"):
        return
    # multiprocessing's own helpers (the resource tracker, the fork server) live as long as this
    # interpreter by design and end with it
    own = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")

    def live():
        return [(p, c) for p, c in _live_children(os.getpid()) if not any(o in c for o in own)]

    deadline = time.monotonic() + 10.0
    while (left := live()) and time.monotonic() < deadline:
        time.sleep(0.2)
    if left:
        sys.stderr.write("\nthe test session leaked processes:\n" + "".join(f"  {p}: {c}\n" for p, c in left))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
