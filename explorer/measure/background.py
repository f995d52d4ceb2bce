"""A background measurement worker for the search: builds in a worker process, times between steps.

Lifecycle: :meth:`submit` queues a candidate; :meth:`poll` (called once per search step) starts the
next build when none runs and returns the jobs that finished; :meth:`close` kills what is left.
Results go to the store (failures too) and are reused for the same design and knobs.

Why the timing waits for the search: the measuring child used to run beside the training search on
the same cores, and TVM's thread pool then waits on threads the OS has given to the trainer; in-loop
figures came back 100-1000x the latency the same library has alone. Building (compiling, seconds)
still runs in the background; timing (tens of milliseconds) runs in a separate, idle timer process
while the search's own thread waits in :meth:`poll` (``timing="between-steps"``, the default). The
old behaviour is ``timing="concurrent"`` (the timer runs whenever its build is done), kept to measure
the difference. Each record states the tuning state of the code it timed and the timing's spread.

Tuning in the search (:meth:`tune`): the search hands over a leading candidate and a time slice;
its kernels are tuned (MetaSchedule, this target's key) into the user's schedule database while the
search waits, for the same reason as the timing: on shared cores a tuner's measurements beside the
training are wrong. Later builds apply what was tuned, so the truth the cost model learns from is
the tuned code that deployment runs; the store's records are keyed by the database's contents.

A device reached over TVM RPC (``devices``, a :class:`~explorer.measure.devices.DevicePool`): builds
run here as before, the timing runs on the device's servers, several at once, while the search goes
on (the device's cores are not the search's); a device that dies or hangs costs a retry on another,
and a job that fails everywhere is a failed record, never a wait without end. Records carry
``where`` (the device key) in their knobs, and say on which server they ran and what failed before.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from .base import Job, Measurer
from .store import MeasureRecord, Store

__all__ = ["Job", "BackgroundMeasurer", "TIMING_MODES"]  # Job re-exported from .base

TIMING_MODES = ("between-steps", "concurrent")


class BackgroundMeasurer(Measurer):
    """A :class:`~explorer.measure.base.Measurer` for TVM targets: end-to-end latency of derived
    designs on this machine. A job's knobs are the configuration's DEVICE, THREADS and BATCH.
    ``close`` also closes the store if ``owns_store``."""

    tunes = True  # into tune_db, when one is given

    def __init__(self, store: Store, toolchain: dict, repeat: int = 15, target: dict | None = None,
                 device_type: str = "cpu", databases: list | None = None, timeout_s: float = 900.0,
                 owns_store: bool = False, timing: str = "between-steps", number: int = 10,
                 tune_db: str | None = None, devices=None, where: dict | None = None, cc: str | None = None):
        if timing not in TIMING_MODES:
            raise ValueError(f"timing must be one of {TIMING_MODES}")
        self.store, self.toolchain, self.repeat, self.owns_store = store, toolchain, repeat, owns_store
        self.target, self.device_type, self.timeout_s, self.timing, self.number = target, device_type, timeout_s, timing, number
        self.databases = [str(d) for d in databases] if databases is not None else None
        self.tune_db = str(tune_db) if tune_db else None  # where :meth:`tune` writes (None: no tuning)
        self.tuned_s = 0.0  # time spent tuning so far
        self.devices, self.where, self.cc = devices, dict(where or {}), cc
        self.remote: list = []  # (job, built, future) timing on the devices
        self.queue: list[Job] = []
        self.building = None  # (job, WorkerPool, future)
        self.timing_job = None  # (job, built, future) in "concurrent" mode
        self.timers: dict[int, object] = {}  # threads -> a persistent timer WorkerPool
        self.seen: set[tuple[str, str]] = set()
        self.tmp = Path(tempfile.mkdtemp(prefix="explorer-measure-"))

    def idle(self) -> bool:
        """Nothing queued, building or timing: a new job would start at the next poll."""
        return not self.queue and self.building is None and self.timing_job is None and not self.remote

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
        cached = self.store.query(key=job.key, kind="e2e", target=job.knobs["device"], knobs={**job.knobs, **self.where},
                                  toolchain=self.toolchain, ok=True)
        if cached:
            job.latency_s = cached[-1].latency_ms / 1e3
            job.info["cached"] = True
            job.info["tuning"] = cached[-1].payload.get("tuning", "tuned" if cached[-1].tuned else "untuned")
        self.queue.append(job)
        return True

    # -- the two halves ------------------------------------------------------------------------------
    def _request(self, job: Job) -> dict:
        if self.target is None:
            from ..deploy.tvm_build import host_target, target_json

            self.target = target_json(host_target())
        return {"design": job.design, "threads": job.knobs["threads"], "batch": job.knobs.get("batch", 1),
                "target": self.target, "device_type": self.device_type, "repeat": self.repeat, "number": self.number,
                "database": self.databases, "kernels": True, "out_dir": str(self.tmp / f"{job.key[:16]}-{job.step}"),
                "cc": self.cc}

    def _env(self, job: Job) -> dict:
        return {"TVM_NUM_THREADS": job.knobs["threads"], "PYTHONWARNINGS": "ignore"}

    def _start_build(self, job: Job) -> None:
        from ..workers.pool import WorkerPool
        from .e2e import build_design

        pool = WorkerPool(self._env(job), timeout_s=self.timeout_s)
        self.building = (job, pool, pool.submit(build_design, self._request(job)))
        if self.devices is None:
            self._timer(job)  # its process starts (imports TVM) while the build runs, not while the search waits

    def _timer(self, job: Job):
        from ..workers.pool import WorkerPool

        from .e2e import warm_up

        t = int(job.knobs["threads"])
        if t not in self.timers:  # started once, then idle between timings (no spinning threads)
            self.timers[t] = WorkerPool(self._env(job), timeout_s=min(self.timeout_s, 300.0))
            self.timers[t].submit(warm_up)
        return self.timers[t]

    def _time_now(self, job: Job, built: dict) -> None:
        """Time a built library, blocking (the search waits, so nothing else runs on its cores)."""
        from ..workers.pool import WorkerError
        from .e2e import time_library

        pool = self._timer(job)
        t0 = time.monotonic()
        try:
            res = pool.result(pool.submit(time_library, {**self._request(job), **built}))
        except WorkerError as e:
            self._drop_timer(job)
            self._finish(job, None, str(e))
            return
        job.info["timing_wait_s"] = round(time.monotonic() - t0, 3)
        self._finish(job, {**res, **{k: v for k, v in built.items() if k not in ("lib", "inputs")}}, None)

    def _drop_timer(self, job: Job) -> None:
        pool = self.timers.pop(int(job.knobs["threads"]), None)
        if pool is not None:
            pool.close()

    def _time_remote(self, job: Job, built: dict) -> None:
        """Queue a built library on the devices; :meth:`_collect_remote` takes the result."""
        req = {"lib": built["lib"], "calls": [{"fn": "main", "inputs": built["inputs"]}], "device_type": self.device_type,
               "repeat": self.repeat, "number": self.number, "threads": job.knobs["threads"]}
        self.remote.append((job, built, self.devices.submit(req)))

    def _collect_remote(self, done: list, wait_for: Job | None = None) -> None:
        """Take the finished device timings (and wait for ``wait_for``'s)."""
        from .devices import DeviceError

        keep = []
        for job, built, fut in self.remote:
            if not (job is wait_for or fut.done()):
                keep.append((job, built, fut))
                continue
            meta = {k: v for k, v in built.items() if k not in ("lib", "inputs")}
            try:
                g = fut.result()
            except DeviceError as e:
                self._finish(job, None, str(e), {"attempts": e.attempts, **self.where})
            else:
                job.info["server"] = g["server"]
                if g["attempts"]:
                    job.info["retried"] = len(g["attempts"])
                self._finish(job, {**g["results"][0], **meta, "runner": "tvm-rpc", "server": g["server"],
                                   "attempts": g["attempts"], "threads_set": g.get("threads_set"), **self.where}, None)
            done.append(job)
        self.remote = keep

    def _finish(self, job: Job, res: dict | None, error: str | None, extra: dict | None = None) -> None:
        if res is not None:
            job.latency_s = res["median_ms"] / 1e3
            job.info["tuning"] = res.get("tuning")
            job.info["spread"] = round(res["p90_ms"] / max(res["p10_ms"], 1e-12), 3)
            if res.get("kernels"):
                job.info["kernels"] = res["kernels"]
                job.info["kernels_ms"] = res["kernels_ms"]
            self.store.add(MeasureRecord(job.key, "e2e", job.knobs["device"], {**job.knobs, **self.where}, self.toolchain,
                                         latency_ms=res["median_ms"], tuned=bool(res.get("tuned")),
                                         payload={**res, "design": job.design, "timing": self.timing}))
        else:
            job.error = error
            self.store.add(MeasureRecord(job.key, "e2e", job.knobs["device"], {**job.knobs, **self.where}, self.toolchain,
                                         ok=False, error=job.error, payload={"design": job.design, **(extra or {})}))
        job.finished = time.monotonic()
        shutil.rmtree(self.tmp / f"{job.key[:16]}-{job.step}", ignore_errors=True)

    def _collect_build(self, done: list, block: bool = False) -> None:
        from ..workers.pool import WorkerError

        job, pool, fut = self.building
        if not (block or fut.done()):
            return
        try:
            built = pool.result(fut)
        except WorkerError as e:  # the pool's timeout ends a hung build: its result is an error
            built, err = None, str(e)
        pool.close()
        self.building = None
        if built is None:
            self._finish(job, None, err)
            done.append(job)
        elif self.devices is not None:
            self._time_remote(job, built)
            if block:
                self._collect_remote(done, wait_for=job)
        elif self.timing == "between-steps" or block:
            self._time_now(job, built)
            done.append(job)
        else:
            from .e2e import time_library

            pool = self._timer(job)
            self.timing_job = (job, built, pool.submit(time_library, {**self._request(job), **built}))

    def _collect_timing(self, done: list) -> None:
        from ..workers.pool import WorkerError

        job, built, fut = self.timing_job
        if not fut.done():
            return
        self.timing_job = None
        try:
            res = self._timer(job).result(fut)
            self._finish(job, {**res, **{k: v for k, v in built.items() if k not in ("lib", "inputs")}}, None)
        except WorkerError as e:
            self._drop_timer(job)
            self._finish(job, None, str(e))
        done.append(job)

    def poll(self) -> list[Job]:
        """Finished jobs since the last call; starts the next queued build. Blocks only to time a
        built library (tens of milliseconds), in the default ``between-steps`` mode."""
        done = []
        if self.remote:
            self._collect_remote(done)
        if self.timing_job is not None:
            self._collect_timing(done)
        if self.building is not None:
            self._collect_build(done)
        while self.queue and self.building is None and self.timing_job is None:
            job = self.queue.pop(0)
            if job.latency_s is not None:  # cached
                job.finished = time.monotonic()
                done.append(job)
                continue
            self._start_build(job)
        return done

    def drain(self, timeout_s: float) -> list[Job]:
        """At the end of a search: drop queued jobs, wait up to ``timeout_s`` for the running one."""
        self.queue.clear()
        done, t0 = [], time.monotonic()
        busy = lambda: self.building is not None or self.timing_job is not None or self.remote  # noqa: E731
        while busy() and time.monotonic() - t0 < timeout_s:
            done += self.poll()
            if busy():
                time.sleep(0.05)
        return done

    def verify(self, job: Job) -> Job:
        """Measure one design now, blocking (the end of a search: nothing else runs)."""
        if not self.submit(job):  # submitted before: measured or in flight; use what the store has
            self.seen.discard((job.key, json.dumps(job.knobs, sort_keys=True)))
            self.submit(job)
        self.queue.remove(job)
        if job.latency_s is None:
            if self.building is not None:  # a build in flight is not needed any more
                self.building[1].close()
                self.building = None
            self._start_build(job)
            self._collect_build([], block=True)
        return job

    def tune(self, design_json: dict, knobs: dict, seconds: float) -> dict | None:
        """Tune one design's kernels for ``seconds`` (blocking; the search waits), into
        :attr:`tune_db`; later builds apply it. The tuner's summary, or None without a database."""
        from ..deploy.schedules import database_id
        from ..workers.pool import WorkerError, WorkerPool
        from .e2e import tune_design

        if not self.tune_db or seconds <= 0:
            return None
        if self.building is not None:  # a build in flight waits for the new schedules: rebuilt later
            job = self.building[0]
            self.building[1].close()
            self.building = None
            self.seen.discard((job.key, json.dumps(job.knobs, sort_keys=True)))
        if self.target is None:
            from ..deploy.tvm_build import host_target, target_json

            self.target = target_json(host_target())
        warm = [d for d in (self.databases or []) if Path(d).resolve() != Path(self.tune_db).resolve()]
        req = {"design": design_json, "threads": knobs["threads"], "batch": knobs.get("batch", 1), "target": self.target,
               "db": self.tune_db, "warm_start": warm, "deadline": time.time() + seconds,
               "out_dir": str(self.tmp / "tune")}
        t0 = time.monotonic()
        try:
            with WorkerPool({"TVM_NUM_THREADS": knobs["threads"], "PYTHONWARNINGS": "ignore"},
                            timeout_s=seconds + 600.0) as pool:
                out = pool.run(tune_design, req)
        except WorkerError as e:
            out = {"error": (str(e).strip().splitlines() or ["tuning failed"])[-1][:300]}
        out["wall_s"] = round(time.monotonic() - t0, 2)
        self.tuned_s += out["wall_s"]
        if self.tune_db not in (self.databases or []) and (Path(self.tune_db) / "database_workload.json").is_file():
            self.databases = [self.tune_db, *(self.databases or [])]
        if self.databases:  # new schedules: records of the old code are not this code's truth
            self.toolchain = {**self.toolchain, "schedules": database_id(self.databases)}
        self.seen.clear()
        return out

    def close(self) -> None:
        if self.building is not None:
            self.building[1].close()
            self.building = None
        for pool in self.timers.values():
            pool.close()
        self.timers.clear()
        if self.devices is not None:
            self.devices.close()
        self.remote = []
        self.timing_job = None
        self.queue.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.owns_store:
            self.store.close()
