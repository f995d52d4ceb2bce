"""Measurement on remote devices: several workers drain one queue of timing jobs over TVM RPC.

A timing job is a library built here (for the device's TVM target, cross-compiled where the target
names a toolchain) and the functions to time in it. :class:`DevicePool` runs ``workers`` threads; each
takes the next job, asks the TVM RPC tracker for a free server of the device key, uploads the library
and times it with TVM's time evaluator, all in a child process of its own
(:class:`explorer.workers.pool.WorkerPool`), so that a device that hangs costs one killed child, not the
caller. A job that fails on a device (the server died, the session broke, the device did not answer
within ``timeout_s``, or no server was free within ``wait_s``) goes back to the queue and is taken
again, by whichever worker is free, on whichever server the tracker gives; a dead or hung server does
not register with the tracker again, so the retry lands on another. Each result says on which server
it ran and what went wrong before (``attempts``); after ``attempts`` failures the job fails with all
of them. Nothing waits without a bound: a job takes at most ``attempts x (wait_s + timeout_s)``.

Why a child per worker and not a thread calling TVM: a session to a dead device can block inside
TVM's socket code, out of reach of Python; a child is killed at its deadline.
"""

from __future__ import annotations

import os
import queue
import shutil
import struct
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path

from ..errors import ConfigError, ExplorerError, ModelError
from ..workers.rpc import parse_endpoint, tracker_keys
from .local import random_inputs, summarize

__all__ = ["DevicePool", "DeviceError", "request_server", "request_session", "time_remote", "parse_rpc_option", "check_rpc",
           "measure_tvm_rpc"]


class DeviceError(ModelError):
    """A timing job failed on every device it was tried on; ``attempts`` says where and why."""

    def __init__(self, message: str, attempts: list[dict]):
        super().__init__(message)
        self.attempts = attempts


def parse_rpc_option(spec, where: str = "target") -> tuple[str, int, str] | None:
    """A target's ``[options.rpc]`` table (``tracker = "HOST:PORT"``, ``key = "..."``) -> (host, port, key)."""
    if spec is None:
        return None
    if not isinstance(spec, dict) or not isinstance(spec.get("tracker"), str) or not isinstance(spec.get("key"), str):
        raise ConfigError(f"{where}: [options.rpc] needs tracker = \"HOST:PORT\" and key = \"DEVICE-KEY\"")
    host, port = parse_endpoint(spec["tracker"], f"{where}: [options.rpc] tracker")
    if not spec["key"] or ":" in spec["key"] or " " in spec["key"]:
        raise ConfigError(f"{where}: [options.rpc] key {spec['key']!r}: a device key is a word without ':' or spaces")
    return host, port, spec["key"]


def check_rpc(rpc: tuple[str, int, str], timeout_s: float = 10.0) -> None:
    """Raise :class:`~explorer.errors.ConfigError` unless the tracker answers and has a free server of the key."""
    host, port, key = rpc
    try:
        keys = tracker_keys(host, port, timeout_s=timeout_s)
    except ExplorerError as e:
        raise ConfigError(str(e)) from None
    if keys.get(key, 0) < 1:
        why = "all busy" if key in keys else f"keys there: {', '.join(sorted(keys)) or 'none'}"
        raise ConfigError(f"--key {key!r}: no free RPC server of that key at the tracker {host}:{port} ({why})")


def measure_tvm_rpc(lib: str | os.PathLike, inputs: dict, rpc: tuple[str, int, str], repeat: int = 30, number: int = 10,
                    seed: int = 0, device: str = "cpu", timeout_s: float = 10.0) -> dict:
    """:func:`~explorer.measure.local.measure_tvm` on a server of a TVM RPC tracker: ``rpc`` is (host,
    port, key) as :func:`explorer.deploy.tune.parse_rpc` gives it. The library is uploaded and timed
    there with TVM's time evaluator (:func:`time_remote`, here in this process). An unreachable
    tracker, or a key without a free server, raises :class:`~explorer.errors.ConfigError` within
    about ``timeout_s``."""
    host, port, key = rpc
    lib = Path(lib)
    if not lib.is_file():
        raise ModelError(f"{lib}: no such library")
    check_rpc(rpc, timeout_s)
    req = {"lib": str(lib), "rpc": [host, port, key], "device_type": device, "repeat": repeat, "number": number,
           "seed": seed, "wait_s": timeout_s, "calls": [{"fn": "main", "inputs": {k: [list(s), d] for k, (s, d) in inputs.items()}}]}
    try:
        got = time_remote(req)
    except ModelError as e:  # no server free in time, or the tracker went away
        raise ConfigError(f"--rpc {host}:{port} --key {key}: no RPC session ({e})") from None
    except Exception as e:  # noqa: BLE001 - a failure on the server is one line to the user
        raise ModelError(f"{lib.name} on the RPC server ({key} at {host}:{port}): {type(e).__name__}: "
                         f"{str(e).strip().splitlines()[-1] if str(e).strip() else ''}") from None
    out = got["results"][0]
    out.update({"runner": "tvm-rpc", "repeat": repeat, "number": number, "rpc_key": key, "rpc_tracker": f"{host}:{port}",
                "server": got["server"]})
    return out


def request_server(host: str, port: int, key: str, wait_s: float = 60.0) -> tuple[str, int, str]:
    """(host, port, match key) of a free server of ``key``, from the tracker at host:port. TVM's
    tracker protocol (as ``TrackerSession.request``), kept here so the server's address is known
    before connecting to it; waits at most ``wait_s`` for a free server."""
    import socket

    from tvm.rpc import base

    try:
        sock = socket.create_connection((host, port), timeout=min(10.0, wait_s))
    except OSError as e:
        raise ModelError(f"cannot reach the RPC tracker at {host}:{port} ({e.strerror or e})") from None
    try:
        sock.sendall(struct.pack("<i", base.RPC_TRACKER_MAGIC))
        if struct.unpack("<i", base.recvall(sock, 4))[0] != base.RPC_TRACKER_MAGIC:
            raise ModelError(f"{host}:{port} is not a TVM RPC tracker")
        base.sendjson(sock, [base.TrackerCode.REQUEST, key, "", 1])
        sock.settimeout(wait_s)
        try:
            value = base.recvjson(sock)
        except (socket.timeout, TimeoutError):
            raise ModelError(f"no free RPC server of key {key!r} at {host}:{port} within {wait_s:.0f} s") from None
        if value[0] != base.TrackerCode.SUCCESS:
            raise ModelError(f"the RPC tracker at {host}:{port} refused the request ({value!r})")
        url, sport, matchkey = value[1]
    finally:
        sock.close()
    return url, int(sport), matchkey


def request_session(host: str, port: int, key: str, wait_s: float = 60.0):
    """A session with a free server of ``key`` (see :func:`request_server`) and its ``"host:port"``."""
    from tvm.rpc import client

    url, sport, matchkey = request_server(host, port, key, wait_s)
    return client.connect(url, sport, matchkey, 0), f"{url}:{sport}"


def time_remote(req: dict) -> dict:
    """In a worker's child: time functions of a library on a server of a TVM RPC tracker.

    ``req``: ``lib`` (path here), ``rpc`` [host, port, key], ``calls`` [{"fn": name, "inputs": {name:
    [shape, dtype]}}], ``device_type``, ``repeat``, ``number``, ``wait_s``, ``note`` (a file that
    gets the server's address as soon as it is known, so a killed child still says where it was),
    ``threads`` (set on the device's thread pool). Returns ``{"server": "host:port", "results":
    [summary per call], "threads_set": bool}``."""
    import tvm
    from tvm import relax

    from tvm.rpc import client

    host, port, key = req["rpc"]
    url, sport, matchkey = request_server(host, int(port), key, float(req.get("wait_s", 60.0)))
    server = f"{url}:{sport}"
    if req.get("note"):
        Path(req["note"]).write_text(server)
    remote = client.connect(url, sport, matchkey, 0)
    lib = Path(req["lib"])
    remote.upload(str(lib))
    rt = remote.load_module(lib.name)
    dev = remote.device(req.get("device_type", "cpu"), 0)
    threads_set = False
    if req.get("threads"):  # the THREADS knob, on the device (its server's default is every core)
        try:
            remote.get_function("runtime.config_threadpool")(1, int(req["threads"]))
            threads_set = True
        except Exception:  # noqa: BLE001 - a runtime without it: the record says so
            pass
    vm = relax.VirtualMachine(rt, dev)
    out = []
    for call in req["calls"]:
        inputs = {k: (tuple(s), d) for k, (s, d) in call["inputs"].items()}
        args = [tvm.runtime.tensor(v, dev) for v in random_inputs(inputs, int(req.get("seed", 0))).values()]
        vm[call["fn"]](*args)  # warm-up
        res = vm.time_evaluator(call["fn"], dev, number=int(req.get("number", 10)), repeat=int(req.get("repeat", 15)),
                                min_repeat_ms=0)(*args)
        out.append(summarize(list(res.results)))
    return {"server": server, "results": out, "threads_set": threads_set}


class DevicePool:
    """Timing jobs on the servers of one TVM RPC device key, ``workers`` at a time.

    Lifecycle: create, :meth:`submit` jobs (a ``concurrent.futures.Future`` each: its result is
    ``{"server", "results", "attempts", "wall_s"}``, or :class:`DeviceError`), :meth:`close`. Also a
    context manager.

    Args:
        rpc: (host, port, key) of the tracker and the device key.
        workers: jobs timed at once (None: the servers of the key that are free now, at least 1).
        timeout_s: seconds one attempt may take once it has a server (upload, load, timing).
        wait_s: seconds an attempt waits for a free server.
        attempts: tries per job before it fails.
        env: environment of the workers' children.
    """

    def __init__(self, rpc: tuple[str, int, str], workers: int | None = None, timeout_s: float = 120.0,
                 wait_s: float = 60.0, attempts: int = 3, env: dict | None = None):
        self.rpc = (str(rpc[0]), int(rpc[1]), str(rpc[2]))
        if workers is None:
            try:
                workers = tracker_keys(self.rpc[0], self.rpc[1]).get(self.rpc[2], 0)
            except Exception:  # noqa: BLE001 - unreachable now: the jobs will say so
                workers = 1
        self.workers = max(1, int(workers))
        self.timeout_s, self.wait_s, self.attempts = float(timeout_s), float(wait_s), max(1, int(attempts))
        self.env = {"PYTHONWARNINGS": "ignore", **(env or {})}
        self._q: queue.Queue = queue.Queue()
        self._tmp = Path(tempfile.mkdtemp(prefix="explorer-devices-"))
        self._closed = False
        self._pools: list = [None] * self.workers
        self._lock = threading.Lock()
        self.stats = {"done": 0, "failed": 0, "retried": 0}
        self._threads = [threading.Thread(target=self._work, args=(i,), daemon=True, name=f"device-worker-{i}")
                         for i in range(self.workers)]
        for t in self._threads:
            t.start()

    def submit(self, req: dict) -> Future:
        """Queue a timing job (``lib``, ``calls``, ``device_type``, ``repeat``, ``number``; see :func:`time_remote`)."""
        if self._closed:
            raise RuntimeError("DevicePool is closed")
        fut: Future = Future()
        fut.set_running_or_notify_cancel()
        self._q.put((req, fut, [], time.monotonic()))
        return fut

    def _pool(self, i: int):
        from ..workers.pool import WorkerPool

        if self._pools[i] is None:
            self._pools[i] = WorkerPool(self.env, timeout_s=self.wait_s + self.timeout_s)
        return self._pools[i]

    def _drop(self, i: int) -> None:
        pool, self._pools[i] = self._pools[i], None
        if pool is not None:
            pool.close()

    def _work(self, i: int) -> None:
        from ..workers.pool import WorkerError, WorkerTimeout

        while True:
            item = self._q.get()
            if item is None:
                return
            req, fut, attempts, t0 = item
            if self._closed:
                fut.set_exception(DeviceError("the device pool was closed", attempts))
                continue
            note = self._tmp / f"w{i}-{time.monotonic_ns()}"
            t1 = time.monotonic()
            try:
                res = self._pool(i).run(time_remote, {"wait_s": self.wait_s, **req, "rpc": list(self.rpc),
                                                      "note": str(note)})
            except WorkerError as e:
                if self._closed:
                    fut.set_exception(DeviceError("the device pool was closed", attempts))
                    continue
                if isinstance(e, WorkerTimeout):  # its child was killed; the next call starts another
                    why = f"no answer within {self.timeout_s + self.wait_s:.0f} s (worker killed)"
                else:  # an error raised in the child (its session is gone with the call): the child serves on
                    why = str(e).strip().splitlines()[-1][:300] if str(e).strip() else type(e).__name__
                server = note.read_text() if note.is_file() else None
                attempts.append({"server": server, "error": why, "s": round(time.monotonic() - t1, 2)})
                note.unlink(missing_ok=True)
                if len(attempts) < self.attempts:
                    with self._lock:
                        self.stats["retried"] += 1
                    self._q.put((req, fut, attempts, t0))  # to whichever worker, and server, is free next
                else:
                    with self._lock:
                        self.stats["failed"] += 1
                    where = ", ".join(f"{a['server'] or 'no server'}: {a['error']}" for a in attempts)
                    fut.set_exception(DeviceError(f"failed on {len(attempts)} tries ({where})", attempts))
                continue
            note.unlink(missing_ok=True)
            with self._lock:
                self.stats["done"] += 1
            fut.set_result({**res, "attempts": attempts, "wall_s": round(time.monotonic() - t0, 3)})

    def map(self, reqs: list[dict]) -> list:
        """Time every job; a result dict or the :class:`DeviceError` for each, in order."""
        futs = [self.submit(r) for r in reqs]
        out = []
        for f in futs:
            try:
                out.append(f.result())
            except DeviceError as e:
                out.append(e)
        return out

    def close(self) -> None:
        """Stop the workers; jobs still queued or running fail with :class:`DeviceError`."""
        if self._closed:
            return
        self._closed = True
        pending = []
        while True:
            try:
                pending.append(self._q.get_nowait())
            except queue.Empty:
                break
        for item in pending:
            if item is not None:
                item[1].set_exception(DeviceError("the device pool was closed", item[2]))
        for i in range(self.workers):
            self._q.put(None)
            self._drop(i)  # ends a call in flight
        for t in self._threads:
            t.join(timeout=5)
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> "DevicePool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
