"""TVM's own RPC tracker and servers on this machine (``explorer rpc up``).

:class:`RPCCluster` starts ``python -m tvm.exec.rpc_tracker`` and N ``python -m tvm.exec.rpc_server``
processes, each in its own session (process group), bound to loopback unless told otherwise, and
stops them with every process they forked. ``explorer measure --rpc`` and ``explorer tune --rpc``
use such a tracker.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..errors import ConfigError, ExplorerError

__all__ = ["RPCCluster", "free_port", "parse_endpoint", "tracker_keys", "DEFAULT_KEY", "DEFAULT_PORT"]

DEFAULT_KEY = "explorer-cpu"
DEFAULT_PORT = 9190


def parse_endpoint(spec: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[IPv6]:PORT`` too) -> (host, port); anything else is a :class:`ConfigError`
    whose message starts with ``what`` (the option or TOML key that gave ``spec``)."""
    host, sep, port = spec.strip().rpartition(":") if isinstance(spec, str) else ("", "", "")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if (not sep or not host or any(c.isspace() or c in "/[]" for c in host)
            or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536):
        raise ConfigError(f"{what} {spec!r}: expected HOST:PORT, a host name or address and a port from 1 to 65535 "
                          f"(e.g. 127.0.0.1:{DEFAULT_PORT})")
    return host, int(port)


def free_port(host: str = "127.0.0.1", start: int = DEFAULT_PORT, tries: int = 200) -> int:
    """The first port from ``start`` that ``host`` can bind now, else one the kernel picks."""
    for port in range(start, start + tries):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


#: runs a TVM module (argv[1:]) as ``python -m`` would; on SIGTERM (from ``stop`` or from the parent's
#: death, see :func:`_die_with_parent`) it kills its whole process group, the workers it forked included
_CHILD = ("import os, runpy, signal, sys\n"
          "signal.signal(signal.SIGTERM, lambda *_: os.killpg(0, signal.SIGKILL))\n"
          "sys.argv = sys.argv[1:]\n"
          "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n")


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies, even by SIGKILL (Linux prctl)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _child_setup(cpus: list[int] | None) -> None:
    _die_with_parent()
    if cpus:
        os.sched_setaffinity(0, cpus)


def tracker_keys(host: str, port: int, timeout_s: float = 5.0) -> dict:
    """``{key: free servers}`` registered with the TVM RPC tracker at host:port."""
    from tvm import rpc as tvm_rpc

    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as e:
        raise ExplorerError(f"--rpc {host}:{port}: cannot reach a TVM RPC tracker ({e.strerror or e})") from None
    summary = tvm_rpc.connect_tracker(host, port).summary()
    out = {k: int(v.get("free", 0)) for k, v in summary.get("queue_info", {}).items()}
    for srv in summary.get("server_info", []):  # {"key": "server:KEY", "addr": [...]}
        out.setdefault(str(srv.get("key", "")).split(":", 1)[-1], 0)
    return out


def free_servers(host: str, port: int, key: str) -> int:
    """Free servers of ``key`` that the tracker at host:port reports (0 while it is not up)."""
    try:
        return tracker_keys(host, port, timeout_s=1.0).get(key, 0)
    except (ExplorerError, OSError, RuntimeError):
        return 0


class RPCCluster:
    """A TVM RPC tracker and ``devices`` servers of one device key, as child processes.

    Lifecycle: ``start()`` (waits until the tracker reports every server free) then ``stop()``; or
    ``with RPCCluster(...) as c:``. ``stop()`` is idempotent and kills each child's process group
    and every process it forked, so no server keeps its port afterwards.

    Args:
        devices: servers to start (each runs one session at a time).
        key: device key the servers register with.
        port: tracker port; None: 9190, or the next free one.
        host: address the tracker and servers bind to (loopback by default: nothing else can reach them).
        timeout_s: how long ``start`` waits for the servers.
        threads: threads each server runs a model with (``TVM_NUM_THREADS``; None: all cores). Servers
            sharing this machine's cores: give each its share, or they time each other.
    """

    def __init__(self, devices: int = 1, key: str = DEFAULT_KEY, port: int | None = None, host: str = "127.0.0.1",
                 timeout_s: float = 60.0, threads: int | None = None):
        if devices < 1:
            raise ConfigError(f"--devices {devices}: need at least one server")
        if not key or ":" in key or " " in key:
            raise ConfigError(f"--key {key!r}: a device key is a non-empty word without ':' or spaces")
        self.devices, self.key, self.host, self.timeout_s = devices, key, host, timeout_s
        self.threads = threads  # TVM_NUM_THREADS of each server (None: TVM's default, every core)
        self.port = port
        self.procs: list[subprocess.Popen] = []
        self._logs: list[Path] = []
        self._logdir: tempfile.TemporaryDirectory | None = None

    @property
    def tracker(self) -> tuple[str, int]:
        """(host, port) to reach the tracker at."""
        return _connect_host(self.host), int(self.port)

    def pids(self) -> list[int]:
        """The tracker's and servers' PIDs and those of every process they forked."""
        import psutil

        out = []
        for p in self.procs:
            out.append(p.pid)
            try:
                out.extend(c.pid for c in psutil.Process(p.pid).children(recursive=True))
            except psutil.NoSuchProcess:
                pass
        return out

    def _spawn(self, name: str, args: list[str], env: dict | None = None, cpus: list[int] | None = None) -> subprocess.Popen:
        log = Path(self._logdir.name) / f"{name}.log"
        self._logs.append(log)
        with open(log, "wb") as f:
            p = subprocess.Popen([sys.executable, "-c", _CHILD, *args], stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                 start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                                 preexec_fn=(lambda: _child_setup(cpus)) if sys.platform == "linux" else None)
        self.procs.append(p)
        return p

    def _share(self, i: int) -> dict:
        """Server ``i``'s environment and cores. With ``threads``, each server runs that many threads,
        unpinned by TVM (``TVM_BIND_THREADS=0``: TVM pins a one-thread pool to the first core, the same
        one in every server, and servers sharing a machine would then time each other), and where the
        machine has the cores, on cores of its own."""
        if not self.threads:
            return {}
        have = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        own = have[i * self.threads:(i + 1) * self.threads] if len(have) >= self.devices * self.threads else None
        return {"env": {"TVM_NUM_THREADS": str(self.threads), "TVM_BIND_THREADS": "0"}, "cpus": own}

    def _died(self, only: str | None = None) -> str | None:
        """Why the first child that exited did (``only``: the child of that name), or None."""
        return next(iter(self.dead(only)), None)

    def dead(self, only: str | None = None) -> list[str]:
        """A line for each child (``only``: of that name) that has exited."""
        out = []
        for p, log in zip(self.procs, self._logs):
            if p.poll() is not None and only in (None, log.stem):
                tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.is_file() else []
                out.append(f"{log.stem} exited with {p.returncode}" + (f": {tail[0]}" if tail else ""))
        return out

    def start(self) -> "RPCCluster":
        if self.procs:
            return self
        if self.port is None:
            self.port = free_port(self.host)
        else:
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the tracker binds: TIME_WAIT is no conflict
                try:
                    s.bind((self.host, self.port))
                except OSError as e:
                    raise ConfigError(f"--port {self.port}: cannot bind on {self.host} ({e.strerror or e});"
                                      " leave --port out for a free one") from None
        self._logdir = tempfile.TemporaryDirectory(prefix="explorer-rpc-")
        try:
            # --port-end port+1: the tracker binds exactly this port or fails (and says so)
            self._spawn("tracker", ["tvm.exec.rpc_tracker", "--host", self.host, "--port", str(self.port),
                                    "--port-end", str(self.port + 1), "--silent"])
            chost, cport = self.tracker
            deadline = time.monotonic() + self.timeout_s
            while True:  # the servers register only with a tracker that listens
                try:
                    socket.create_connection((chost, cport), timeout=0.5).close()
                    break
                except OSError:
                    pass
                if (why := self._died()) or time.monotonic() > deadline:
                    raise ConfigError(f"the RPC tracker did not start on {self.host}:{self.port} ({why or 'timed out'})")
                time.sleep(0.1)
            for i in range(self.devices):
                # disjoint port ranges: servers started together may bind one free port twice (SO_REUSEADDR)
                # and then all but one fail to listen on it
                lo = 9090 + 40 * i
                self._spawn(f"server{i}", ["tvm.exec.rpc_server", "--host", self.host, "--port", str(lo),
                                           "--port-end", str(lo + 40),
                                           "--tracker", f"{chost}:{cport}", "--key", self.key, "--silent"],
                            **self._share(i))
            while (n := free_servers(chost, cport, self.key)) < self.devices:
                if (why := self._died()) or time.monotonic() > deadline:
                    raise ConfigError(f"{n} of {self.devices} RPC servers registered with the tracker at {chost}:{cport}"
                                      f" ({why or f'timed out after {self.timeout_s:.0f} s'})")
                time.sleep(0.2)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, grace_s: float = 3.0) -> None:
        """Stop the tracker and servers and everything they forked (TERM, then KILL after ``grace_s``)."""
        import psutil

        if not self.procs:
            return
        victims = []
        for pid in self.pids():
            try:
                victims.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)  # each child leads its own group (start_new_session)
            except (ProcessLookupError, PermissionError):
                pass
        for v in victims:  # forked workers that left the group
            try:
                v.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(victims, timeout=grace_s)
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for v in alive:
            try:
                v.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=grace_s)
        for p in self.procs:
            try:
                p.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        self.procs = []
        if self._logdir is not None:
            self._logdir.cleanup()
            self._logdir = None
        self._logs = []

    def __enter__(self) -> "RPCCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def up(devices: int, key: str = DEFAULT_KEY, port: int | None = None, host: str = "127.0.0.1",
       timeout_s: float = 60.0, out=None, threads: int | None = None) -> int:
    """``explorer rpc up``: start, print the address, key and PIDs, serve until SIGINT or SIGTERM."""
    out = out or sys.stdout

    def on_term(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_term)
    # Ctrl-C stops it even where SIGINT was inherited as ignored (a job started with `&` by a script,
    # or by a parent that ignores SIGINT): Python then installs no KeyboardInterrupt of its own
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with RPCCluster(devices, key, port, host, timeout_s, threads) as c:
            h, p = c.tracker
            print(f"tracker {h}:{p}", file=out)
            print(f"key {c.key}", file=out)
            print(f"pids {' '.join(map(str, c.pids()))}", file=out)
            print(f"ready: {devices} servers (Ctrl-C stops them)", file=out, flush=True)
            # a server that dies is a device lost (its jobs go to the others): said, and the rest serve
            # on; without the tracker nothing can be reached, so its death stops everything
            told = set()
            try:
                while not c._died("tracker"):
                    for why in c.dead():
                        if why not in told:
                            told.add(why)
                            print(f"lost {why}; {devices - len(told)} of {devices} servers left", file=out, flush=True)
                    time.sleep(0.5)
            except KeyboardInterrupt:
                print("stopping", file=out, flush=True)
                return 0
            raise ConfigError(f"the RPC tracker stopped on its own ({c._died('tracker')}); stopped the servers")
    finally:
        signal.signal(signal.SIGTERM, old)
        signal.signal(signal.SIGINT, old_int)
