"""A background measurement worker for the search: one worker process at a time, never waited on.

Lifecycle: :meth:`submit` queues a candidate; :meth:`poll` (called once per search step) starts the
next job when none runs and returns the jobs that finished, without blocking; :meth:`close` kills
what is left. Results go to the store (failures too) and are reused for the same design and knobs.
"""

from __future__ import annotations

import json
import time

from .base import Job
from .store import MeasureRecord, Store

__all__ = ["Job", "BackgroundMeasurer"]  # Job re-exported from .base


class BackgroundMeasurer:
    """A :class:`~explorer.measure.base.Measurer` for TVM targets: end-to-end latency of derived
    designs on this machine. A job's knobs are the configuration's DEVICE, THREADS and BATCH.
    ``close`` also closes the store if ``owns_store``."""

    def __init__(self, store: Store, toolchain: dict, repeat: int = 15, target: dict | None = None,
                 device_type: str = "cpu", databases: list | None = None, timeout_s: float = 900.0,
                 owns_store: bool = False):
        self.store, self.toolchain, self.repeat, self.owns_store = store, toolchain, repeat, owns_store
        self.target, self.device_type, self.timeout_s = target, device_type, timeout_s
        self.databases = [str(d) for d in databases] if databases is not None else None
        self.queue: list[Job] = []
        self.running = None  # (job, WorkerPool, future)
        self.seen: set[tuple[str, str]] = set()

    def submit(self, job: Job) -> bool:
        """Queue ``job`` unless the same design and knobs were already submitted; True if queued."""
        if not job.knobs and "config" in job.info:
            c = job.info["config"].as_dict()
            job.knobs = {k.lower(): c[k] for k in ("DEVICE", "THREADS", "BATCH") if k in c}
        sig = (job.key, json.dumps(job.knobs, sort_keys=True))
        if sig in self.seen:
            return False
        self.seen.add(sig)
        job.submitted = time.monotonic()
        cached = self.store.query(key=job.key, kind="e2e", target=job.knobs["device"], knobs=job.knobs,
                                  toolchain=self.toolchain, ok=True)
        if cached:
            job.latency_s = cached[-1].latency_ms / 1e3
            job.info["cached"] = True
        self.queue.append(job)
        return True

    def _start(self, job: Job) -> None:
        from ..workers import WorkerPool
        from .e2e import measure

        if self.target is None:
            from ..deploy.tvm_build import host_target, target_json

            self.target = target_json(host_target())
        req = {"design": job.design, "threads": job.knobs["threads"], "batch": job.knobs.get("batch", 1),
               "target": self.target, "device_type": self.device_type, "repeat": self.repeat,
               "database": self.databases}
        pool = WorkerPool({"TVM_NUM_THREADS": job.knobs["threads"], "PYTHONWARNINGS": "ignore"}, timeout_s=self.timeout_s)
        self.running = (job, pool, pool.submit(measure, req))

    def _finish(self, job: Job, res: dict | None, error: str | None) -> None:
        if res is not None:
            job.latency_s = res["median_ms"] / 1e3
            self.store.add(MeasureRecord(job.key, "e2e", job.knobs["device"], job.knobs, self.toolchain,
                                         latency_ms=res["median_ms"], tuned=bool(res.get("tuned")),
                                         payload={**res, "design": job.design}))
        else:
            job.error = error
            self.store.add(MeasureRecord(job.key, "e2e", job.knobs["device"], job.knobs, self.toolchain, ok=False,
                                         error=job.error, payload={"design": job.design}))
        job.finished = time.monotonic()

    def poll(self) -> list[Job]:
        """Finished jobs since the last call; starts the next queued job. Never blocks."""
        from ..workers import WorkerError

        done = []
        if self.running is not None:
            job, pool, fut = self.running
            if fut.done():  # the pool's timeout ends a hung measurement: its result is an error
                try:
                    self._finish(job, pool.result(fut), None)
                except WorkerError as e:
                    self._finish(job, None, str(e))
                pool.close()
                done.append(job)
                self.running = None
        while self.queue and self.running is None:
            job = self.queue.pop(0)
            if job.latency_s is not None:  # cached
                job.finished = time.monotonic()
                done.append(job)
                continue
            self._start(job)
        return done

    def drain(self, timeout_s: float) -> list[Job]:
        """At the end of a search: drop queued jobs, wait up to ``timeout_s`` for the running one."""
        self.queue.clear()
        done, t0 = [], time.monotonic()
        while self.running is not None and time.monotonic() - t0 < timeout_s:
            done += self.poll()
            if self.running is not None:
                time.sleep(0.05)
        return done

    def close(self) -> None:
        if self.running is not None:
            self.running[1].close()
            self.running = None
        self.queue.clear()
        if self.owns_store:
            self.store.close()
