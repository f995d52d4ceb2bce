"""Where the searches of an exploration run: one small interface, two engines.

:class:`LocalExecutor` runs each job in a fresh worker process on this machine (spawned, so thread
settings apply and a crash takes only its job); :class:`RayExecutor` hands the same jobs to a Ray
cluster (an existing engine: a head on loopback for one machine, or a cluster's address). Both
schedule by cores: a job asks for ``cpus`` and runs only where that many are free, so a job that
times code on its machine's CPU can ask for all of them and run alone.

``run(fn, items)`` yields ``(index, ok, value_or_error_text)`` as jobs finish, in any order;
``fn(*args)`` must be a module-level function (it is pickled to the workers).
"""

from __future__ import annotations

import os
from collections import deque
from typing import Callable, Iterator

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "make_executor"]


class Executor:
    """What an exploration needs from an engine."""

    def cores(self) -> int:
        """Cores of the largest machine a job can land on (a job asking for more gets this many)."""
        raise NotImplementedError

    def slots(self) -> int:
        """Cores in all (how many one-core jobs run at once)."""
        return self.cores()

    def run(self, fn: Callable, items: list[tuple[tuple, int]]) -> Iterator[tuple[int, bool, object]]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LocalExecutor(Executor):
    """Jobs in worker processes on this machine, as many at once as their cores fit in ``workers``
    (default: the machine's cores). Each worker process runs one job and exits."""

    name = "local"

    def __init__(self, workers: int | None = None):
        self.workers = max(1, workers or os.cpu_count() or 1)

    def cores(self) -> int:
        return self.workers

    def run(self, fn, items):
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        pending = deque(range(len(items)))
        alone = set()  # jobs in flight when a worker died: run again, each alone, to find the one that dies
        while pending:
            # a pool breaks when one of its processes dies (killed, out of memory) and fails every job in
            # flight; those go back in the queue and run alone: a job that breaks a pool alone has died
            with ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                     max_tasks_per_child=1) as ex:
                running, free, broken = {}, self.workers, False
                while (pending and not broken) or running:
                    while pending and not broken:
                        i = pending[0]
                        c = self.workers if i in alone else min(items[i][1], self.workers)
                        if c > free or (running and any(j in alone for j, _ in running.values())):
                            break
                        pending.popleft()
                        try:
                            running[ex.submit(fn, *items[i][0])] = (i, c)
                        except BrokenProcessPool:
                            pending.appendleft(i)
                            broken = True
                            break
                        free -= c
                    if not running:
                        break
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for f in done:
                        i, c = running.pop(f)
                        free += c
                        try:
                            value = f.result()
                        except BrokenProcessPool:
                            broken = True
                            if i in alone:
                                yield i, False, "the worker process died (killed or out of memory)"
                            else:
                                alone.add(i)
                                pending.appendleft(i)
                            continue
                        except Exception as e:  # the job's own errors come back as values; this is transport
                            yield i, False, f"{type(e).__name__}: {e}"
                            continue
                        yield i, True, value


class RayExecutor(Executor):
    """Jobs as Ray tasks with ``num_cpus`` = the job's cores.

    ``address``: ``"local"`` starts a head on loopback (127.0.0.1) in this process and stops it on
    :meth:`close`; ``"auto"`` or ``HOST:PORT`` (``ray://HOST:PORT`` for Ray Client) joins a running
    cluster, whose nodes need this package installed and the data sets at the same paths.
    """

    name = "ray"

    def __init__(self, address: str = "local", num_cpus: int | None = None):
        try:
            import ray
        except ImportError:
            from ..errors import ConfigError

            raise ConfigError("--ray needs the ray package (pip install ray)") from None
        self.ray = ray
        self._owned = address == "local"
        kw = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            if self._owned:
                ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), _node_ip_address="127.0.0.1", **kw)
            else:
                ray.init(address=address, **kw)
        except (ConnectionError, ValueError, RuntimeError) as e:
            from ..errors import ConfigError

            raise ConfigError(f"--ray {address}: cannot join the cluster ({type(e).__name__}: {e})") from None

    def cores(self) -> int:
        per_node = [int(n["Resources"].get("CPU", 0)) for n in self.ray.nodes() if n.get("Alive")]
        return max(1, max(per_node, default=1))

    def slots(self) -> int:
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def run(self, fn, items):
        ray = self.ray
        remote = ray.remote(max_retries=0)(fn)
        cap = self.cores()
        refs = {remote.options(num_cpus=min(c, cap)).remote(*args): i for i, (args, c) in enumerate(items)}
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for r in done:
                i = refs.pop(r)
                try:
                    yield i, True, ray.get(r)
                except Exception as e:  # a task that died (node lost, worker killed)
                    yield i, False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"

    def close(self) -> None:
        if self.ray.is_initialized():
            self.ray.shutdown()


def make_executor(ray: str | None = None, workers: int | None = None) -> Executor:
    """The local pool, or Ray when ``ray`` names an address (see :class:`RayExecutor`)."""
    if ray:
        return RayExecutor(ray, num_cpus=workers)
    return LocalExecutor(workers)
