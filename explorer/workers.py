"""Work in child processes: one pool abstraction for workload timing, background measurement and builds.

Children are *spawned* (a fresh interpreter), so environment settings that a runtime reads once at
start-up, such as ``TVM_NUM_THREADS``, really apply, and a crash or a hang in TVM never takes the
caller with it. A call that runs past its timeout kills the child; an exception raised in the child
comes back as :class:`WorkerError` with the child's message and traceback text.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import traceback

__all__ = ["WorkerPool", "WorkerError", "WorkerTimeout"]


class WorkerError(RuntimeError):
    """The function failed in the child; ``str()`` is ``Type: message``, ``.child_traceback`` the rest."""

    def __init__(self, message: str, child_traceback: str = ""):
        super().__init__(message)
        self.child_traceback = child_traceback


class WorkerTimeout(WorkerError):
    """The call ran past its timeout; the child was killed."""


def _apply_env(env: dict) -> None:
    os.environ.update(env)


def _call(fn, args, kwargs):
    try:
        return True, fn(*args, **kwargs)
    except BaseException as e:  # carried back as text: not every exception pickles
        return False, (f"{type(e).__name__}: {e}", traceback.format_exc())


def _unwrap(res):
    ok, value = res
    if not ok:
        raise WorkerError(*value)
    return value


class WorkerPool:
    """Spawned worker processes with an environment, per-call timeouts and errors carried back.

    Lifecycle: create, :meth:`submit` (a future, for callers that poll) or :meth:`run` (blocking,
    with a timeout), then :meth:`close`, which kills children still running. Also a context manager.

    Args:
        env: variables set in each child before it runs anything (e.g. ``TVM_NUM_THREADS``).
        workers: child processes.
    """

    def __init__(self, env: dict | None = None, workers: int = 1):
        self._pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                            initializer=_apply_env, initargs=({k: str(v) for k, v in (env or {}).items()},))

    def submit(self, fn, *args, **kwargs) -> cf.Future:
        """Start ``fn(*args, **kwargs)`` in a child; ``result(future)`` gives its value or raises."""
        return self._pool.submit(_call, fn, args, kwargs)

    @staticmethod
    def result(future: cf.Future, timeout_s: float | None = None):
        """The value of a submitted call, or :class:`WorkerError`; ``cf.TimeoutError`` if not done."""
        try:
            return _unwrap(future.result(timeout_s))
        except cf.process.BrokenProcessPool as e:
            raise WorkerError(f"worker process died ({e})") from None

    def run(self, fn, *args, timeout_s: float | None = None, **kwargs):
        """``fn(*args, **kwargs)`` in a child, waited on; past ``timeout_s`` the child is killed."""
        fut = self.submit(fn, *args, **kwargs)
        try:
            return self.result(fut, timeout_s)
        except cf.TimeoutError:
            self.close()
            raise WorkerTimeout(f"no result after {timeout_s:.0f} s; the worker was killed") from None

    def close(self) -> None:
        """Stop the pool; children still running are killed."""
        procs = list((self._pool._processes or {}).values())  # the executor has no public kill
        for p in procs:
            if p.is_alive():
                p.kill()
        self._pool.shutdown(wait=True, cancel_futures=True)
        for p in procs:
            p.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
