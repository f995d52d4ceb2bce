"""Work in child processes: one pool for workload timing, background measurement and tuning builds.

Built on TVM's :class:`tvm.support.popen_pool.PopenPoolExecutor` (the pool MetaSchedule's own builders
use): each child is a fresh interpreter started with ``Popen``, so settings a runtime reads once,
such as ``TVM_NUM_THREADS``, really apply; a call that runs past the pool's timeout kills its child
(and the child's children) and the next call starts a new one; a crash or a hang in TVM never takes
the caller with it. An exception raised in a child comes back as :class:`WorkerError` with the
child's message and traceback text (carried as text: not every exception pickles).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import traceback

__all__ = ["WorkerPool", "WorkerError", "WorkerTimeout", "exit_with_parent"]


class WorkerError(RuntimeError):
    """The call failed in the child; ``str()`` is ``Type: message``, ``.child_traceback`` the rest."""

    def __init__(self, message: str, child_traceback: str = ""):
        super().__init__(message)
        self.child_traceback = child_traceback


class WorkerTimeout(WorkerError):
    """The call ran past the pool's timeout; its child was killed."""


def exit_with_parent(interval_s: float = 1.0) -> None:
    """In a child: exit as soon as its parent is gone. A parent killed outright (SIGKILL, the OOM
    killer) cannot close its pool, and a TVM worker whose pipe closes may still be held up by its
    own threads: without this it lives on as an orphan. Checks the parent's pid every
    ``interval_s`` in a daemon thread (POSIX: an orphan is re-parented)."""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _init(env: dict, initializer, initargs) -> None:
    exit_with_parent()
    os.environ.update(env)
    if initializer is not None:
        initializer(*initargs)


def _call(fn, args, kwargs):
    try:
        return True, fn(*args, **kwargs)
    except BaseException as e:
        return False, (f"{type(e).__name__}: {e}", traceback.format_exc())


class WorkerPool:
    """Child processes with an environment, a timeout per call and errors carried back.

    Lifecycle: create; :meth:`submit` (a future, for callers that poll it), :meth:`run` (waits) or
    :meth:`map` (a batch, one outcome per item, failures included); then :meth:`close`, which kills
    the children, finished or not. Also a context manager.

    Args:
        env: variables set in each child before it runs anything (e.g. ``TVM_NUM_THREADS``).
        workers: child processes.
        timeout_s: seconds one call may take (None: no limit).
        initializer: run once in each child after ``env`` is set (e.g. registering TVM intrinsics).
        quiet: drop the children's output (TVM's warnings), as a background worker should.
    """

    def __init__(self, env: dict | None = None, workers: int = 1, timeout_s: float | None = None,
                 initializer=None, initargs: tuple = (), quiet: bool = True):
        from tvm.support.popen_pool import PopenPoolExecutor

        sink = subprocess.DEVNULL if quiet else None
        self.timeout_s = timeout_s
        self._pool = PopenPoolExecutor(max_workers=max(1, workers), timeout=timeout_s, initializer=_init,
                                       initargs=({k: str(v) for k, v in (env or {}).items()}, initializer, initargs),
                                       stdout=sink, stderr=sink)

    def submit(self, fn, *args, **kwargs):
        """Start ``fn(*args, **kwargs)`` in a child; :meth:`result` gives its value or raises."""
        return self._pool.submit(_call, fn, args, kwargs)

    def result(self, future):
        """The value of a submitted call; :class:`WorkerTimeout` or :class:`WorkerError` otherwise."""
        try:
            ok, value = future.result()
        except TimeoutError:
            raise WorkerTimeout(f"no result after {self.timeout_s:.0f} s; the worker was killed") from None
        except ChildProcessError as e:
            raise WorkerError(f"the worker process died ({e})") from None
        if not ok:
            raise WorkerError(*value)
        return value

    def run(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` in a child, waited on."""
        return self.result(self.submit(fn, *args, **kwargs))

    def map(self, fn, items) -> list[tuple[bool, object]]:
        """``fn(*item)`` for every item, in parallel: ``(True, value)`` or ``(False, WorkerError)`` each."""
        futs = [self.submit(fn, *item) for item in items]
        out = []
        for f in futs:
            try:
                out.append((True, self.result(f)))
            except WorkerError as e:
                out.append((False, e))
        return out

    def close(self) -> None:
        """Kill the children and stop the pool (a call in flight ends as an error)."""
        self._pool.shutdown(wait=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
