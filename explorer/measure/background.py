"""A background measurement worker for the search: one child process at a time, never waited on.

Lifecycle: :meth:`submit` queues a candidate; :meth:`poll` (called once per search step) starts the
next job when none runs and returns the jobs that finished, without blocking; :meth:`close` kills
what is left. Results go to the store (failures too) and are reused for the same design and knobs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

from .store import MeasureRecord, Store

__all__ = ["Job", "BackgroundMeasurer"]


@dataclass
class Job:
    step: int
    key: str
    design: dict
    knobs: dict
    info: dict = field(default_factory=dict)  # what the caller wants back (predictions, raw sums)
    latency_s: float | None = None
    error: str | None = None
    submitted: float = 0.0
    finished: float = 0.0


class BackgroundMeasurer:
    def __init__(self, store: Store, toolchain: dict, repeat: int = 15):
        self.store, self.toolchain, self.repeat = store, toolchain, repeat
        self.queue: list[Job] = []
        self.running: tuple[Job, subprocess.Popen] | None = None
        self.seen: set[tuple[str, str]] = set()

    def submit(self, job: Job) -> bool:
        """Queue ``job`` unless the same design and knobs were already submitted; True if queued."""
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
        env = {**os.environ, "TVM_NUM_THREADS": str(job.knobs["threads"]), "PYTHONWARNINGS": "ignore"}
        req = {"design": job.design, "threads": job.knobs["threads"], "batch": job.knobs.get("batch", 1),
               "device": job.knobs["device"], "repeat": self.repeat}
        p = subprocess.Popen([sys.executable, "-m", "explorer.measure.e2e"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        p.stdin.write(json.dumps(req))
        p.stdin.close()
        self.running = (job, p)

    def poll(self) -> list[Job]:
        """Finished jobs since the last call; starts the next queued job. Never blocks."""
        done = []
        if self.running is not None:
            job, p = self.running
            if p.poll() is not None:
                out = p.stdout.read()
                line = next((ln for ln in out.splitlines() if ln.startswith(("RESULT ", "ERROR "))), None)
                if line and line.startswith("RESULT "):
                    res = json.loads(line[7:])
                    job.latency_s = res["median_ms"] / 1e3
                    self.store.add(MeasureRecord(job.key, "e2e", job.knobs["device"], job.knobs, self.toolchain,
                                                 latency_ms=res["median_ms"], tuned=bool(res.get("tuned")),
                                                 payload={**res, "design": job.design}))
                else:
                    job.error = json.loads(line[6:]) if line else f"worker exited with code {p.returncode}"
                    self.store.add(MeasureRecord(job.key, "e2e", job.knobs["device"], job.knobs, self.toolchain, ok=False,
                                                 error=job.error, payload={"design": job.design}))
                job.finished = time.monotonic()
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
            self.running[1].kill()
            self.running[1].wait()
            self.running = None
        self.queue.clear()
