"""What the search's source of truth looks like: a job per derived design, and the Measurer interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from abc import ABC, abstractmethod

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


class Measurer(ABC):
    """The loop's source of truth, given by a target's backend (:meth:`TargetBackend.measurer`).

    Lifecycle: :meth:`submit` a job (False if the same design was submitted before); :meth:`poll` once
    per search step returns the jobs finished since the last call and never blocks; at the end of a
    search :meth:`drain` drops what is queued and waits up to ``timeout_s`` for what runs; :meth:`close`
    stops everything and releases what the measurer holds (processes, store connections). A failed
    measurement is a finished job with ``error`` set, never an exception. :meth:`verify` measures one
    design at once, blocking, on the truth the deployment will see (the end of a search checks its
    kept design's limits with it).

    Capabilities are declared, not probed: :attr:`refits_model`, :attr:`tunes`; the loop sets
    :attr:`refit` from ``search.refine``. Every method the loop calls is here.
    """

    #: True when the measurer refits the cost model itself (its finished jobs carry
    #: ``info["predicted_s"]``, the model's figure before the refit); False: the loop learns from them
    refits_model: bool = False
    #: True when :meth:`tune` can tune a design's kernels during the search (into :attr:`tune_db`)
    tunes: bool = False
    #: whether a refitting measurer refits (the loop sets it from ``search.refine``)
    refit: bool = True
    #: where :meth:`tune` writes its schedules (None: this measurer does not tune now)
    tune_db: str | None = None
    #: seconds spent tuning so far
    tuned_s: float = 0.0

    @abstractmethod
    def submit(self, job: Job) -> bool: ...

    @abstractmethod
    def poll(self) -> list[Job]: ...

    @abstractmethod
    def drain(self, timeout_s: float) -> list[Job]: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def verify(self, job: Job) -> Job: ...

    def idle(self) -> bool:
        """Nothing queued or running: a job submitted now would start at once."""
        return True

    def tune(self, design_json: dict, knobs: dict, seconds: float) -> dict | None:
        """Tune the design's kernels for up to ``seconds`` (see :attr:`tunes`); the tuner's summary,
        or None when nothing was tuned."""
        return None

    def state_dict(self) -> dict:
        """What the measurer has learned, as plain data (for a search checkpoint)."""
        return {"tuned_s": float(self.tuned_s)}

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict`."""
        self.tuned_s = float(state.get("tuned_s", 0.0))
