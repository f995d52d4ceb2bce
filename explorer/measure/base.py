"""What the search's source of truth looks like: a job per derived design, and the Measurer protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["Job", "Measurer"]


@dataclass
class Job:
    """One derived design to measure (or simulate).

    ``info`` carries what the caller wants back (``genotype`` and ``config`` at least; a refiner that
    refits the cost model itself sets ``predicted_s``). The measurer fills ``knobs`` (what the
    measurement depends on besides the design), then ``latency_s`` or ``error``.
    """

    step: int
    key: str
    design: dict
    knobs: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    latency_s: float | None = None
    error: str | None = None
    submitted: float = 0.0
    finished: float = 0.0


@runtime_checkable
class Measurer(Protocol):
    """The loop's source of truth, given by a target's backend.

    Lifecycle: :meth:`submit` a job (False if the same design was submitted before); :meth:`poll` once
    per search step returns the jobs finished since the last call and never blocks; at the end of a
    search :meth:`drain` drops what is queued and waits up to ``timeout_s`` for what runs; :meth:`close`
    stops everything and releases what the measurer holds (processes, store connections). A failed
    measurement is a finished job with ``error`` set, never an exception.

    Optional: ``verify(job) -> job`` measures one design at once, blocking, on the truth the
    deployment will see (the end of a search checks its kept design's limits with it).
    """

    def submit(self, job: Job) -> bool: ...

    def poll(self) -> list[Job]: ...

    def drain(self, timeout_s: float) -> list[Job]: ...

    def close(self) -> None: ...
