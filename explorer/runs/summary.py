"""A run's ``summary.json``, typed: :class:`RunSummary`.

:func:`explorer.api.run_search` builds a :class:`RunSummary` and writes :meth:`RunSummary.as_json`;
:meth:`RunSummary.from_json` reads the file back, today's and older ones alike. The JSON is the
format (the store, ``exploration.json`` and the report hold it as written), so the two are exact
inverses: ``as_json`` writes the keys in the order the file has always had them, omits the optional
ones that a run did not produce, and keeps the keys it does not know (``extra``: a newer writer's, a
hand edit) after its own, so that a round trip loses nothing.

Why :attr:`explorer.runs.RunData.summary` stays the dict and the typed summary is
:attr:`~explorer.runs.RunData.typed` beside it: the report and the exploration readers take
summaries from three places (run folders, ``exploration.json`` and the store's ``runs`` rows, all
plain JSON), index them in dozens of places with ``.get`` and their own fallbacks, and hand them to
:func:`explorer.explore.pareto.point_of`, which reads all three. Making ``RunData.summary`` the
dataclass would split those readers in two kinds without making any of them shorter; the readers of
one run's summary (the CLI's printout, the store's registration) use the typed one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..errors import DataError

__all__ = ["RunSummary", "Verdict", "FINISH_KEYS"]

#: the keys the built-in backends write their ``finish`` results under (``TargetBackend.finish_key``);
#: a summary read back without being told its backend's key looks for these
FINISH_KEYS = ("simulated", "finished")


@dataclass(frozen=True)
class Verdict:
    """Whether the kept design meets the limits, on the best evidence the run had."""

    limits_met: bool  #: the verdict: the measured one where the design was measured, else the cost model's
    on: str  #: what it rests on: "measurement" or "model"
    model: bool  #: the cost model's verdict (the summary's ``limits_met``)

    def as_json(self) -> dict:
        return {"limits_met": self.limits_met, "on": self.on, "model": self.model}

    @classmethod
    def from_json(cls, d: dict) -> "Verdict":
        return cls(d.get("limits_met"), d.get("on", "model"), d.get("model", d.get("limits_met")))


@dataclass
class RunSummary:
    """What a finished search found, as ``summary.json`` holds it. Figures are in user units (the
    :mod:`explorer.units` figure keys: ``latency_ms``, ``energy_mJ``, ``area_mm2`` ...).

    Fields that are None were not produced by the run (or not written by the version that ran it)
    and are left out of :meth:`as_json`; ``limits_met_measured`` is the one exception: it is written
    whenever ``measured`` is, None meaning the measurement failed.
    """

    method: str = "cosearch"  #: the search method: "cosearch", "sequential" or "random"
    design_key: str | None = None  #: the kept design's key (:meth:`DesignPoint.key`, design.json's ``key``)
    genotype: str | None = None  #: the kept network, as the space formats a genotype
    hardware: dict = field(default_factory=dict)  #: the kept hardware configuration: knob name -> value
    figures: dict = field(default_factory=dict)  #: the cost model's figures of the kept design: figure key -> value (user units)
    limits: dict = field(default_factory=dict)  #: the run's limits as configured: limit name -> value (user units)
    limits_met: bool | None = None  #: the kept design within every limit on the cost model
    repaired_moves: list = field(default_factory=list)  #: the moves that repaired the kept design onto the limits, in order
    one_shot_val_accuracy: float = float("nan")  #: validation accuracy (0..1) of the kept design in the supernet (a random search: after its proxy training); NaN when unknown
    proxy_val_accuracy: float | None = None  #: validation accuracy (0..1) of the kept design after the selection's brief training from scratch; None where it had none
    best_step: int | None = None  #: the step (or sample) the kept design was derived at
    steps: int | None = None  #: steps (or samples) the search ran
    stop_reason: str | None = None  #: why the search stopped: "steps", "threshold", "patience" or "budget"
    stop_detail: str | None = None  #: the same in words
    search_s: float | None = None  #: wall-clock time of the search, s (0.1 s resolution)
    numerics: dict | None = None  #: what fixes the search's arithmetic (:func:`explorer.measure.local.numerics`): a seed reproduces the design where these agree
    selection: dict | None = None  #: how the kept design was chosen among candidates (``search.selection = "accuracy"``)
    near_chance: bool | None = None  #: the one-shot accuracy is near chance (absent when that accuracy is NaN)
    limits_met_measured: bool | None = None  #: the kept design within every limit on the target's measurement
    measured: dict | None = None  #: the kept design measured on the target: ``figures``/``predicted`` (user units), ``rel_error``, ``rounds``, ...
    verdict: Verdict | None = None  #: whether the limits are met, on the best evidence (see :attr:`effective_verdict`)
    retrain: dict | None = None  #: the retraining: ``epochs``, ``train_loss``, ``test_accuracy`` (0..1), ``params``, ``seconds`` (s)
    test_accuracy: float | None = None  #: test-split accuracy (0..1) of the retrained network
    finish_key: str | None = None  #: the key the backend's after-retraining results are written under (``TargetBackend.finish_key``)
    finished: dict | None = None  #: those results (a simulator's cycles, say), under ``finish_key``
    plot_error: str | None = None  #: why ``search.png`` could not be drawn
    run_dir: str | None = None  #: the finished run folder; in what ``run_search`` returns and the store records, not in the file
    extra: dict = field(default_factory=dict)  #: keys this version does not know, kept as read

    # the keys as_json writes, in the file's order; "finished" stands for the entry under finish_key
    _ORDER = ("method", "design_key", "genotype", "hardware", "figures", "limits", "limits_met", "repaired_moves",
              "one_shot_val_accuracy", "proxy_val_accuracy", "best_step", "steps", "stop_reason", "stop_detail", "search_s", "numerics", "selection",
              "near_chance", "limits_met_measured", "measured", "verdict", "retrain", "test_accuracy", "finished",
              "plot_error", "run_dir")

    @property
    def effective_verdict(self) -> Verdict:
        """:attr:`verdict`, or for a summary written before it existed the cost model's."""
        return self.verdict or Verdict(self.limits_met, "model", self.limits_met)

    def as_json(self) -> dict:
        """The summary as ``summary.json`` holds it (plus ``run_dir`` once set)."""
        out = {}
        for k in self._ORDER:
            v = getattr(self, k)
            if k == "finished":
                if v is not None and self.finish_key:
                    out[self.finish_key] = v
                continue
            if k == "limits_met_measured":
                if v is not None or self.measured is not None:
                    out[k] = v
                continue
            if v is None:
                continue
            out[k] = v.as_json() if isinstance(v, Verdict) else v
        for k, v in self.extra.items():
            out.setdefault(k, v)
        return out

    @classmethod
    def from_json(cls, d: dict, finish_key: str | None = None) -> "RunSummary":
        """A summary as read from ``summary.json`` (any version). ``finish_key``: the backend's key
        for its ``finish`` results, when known; else the first of :data:`FINISH_KEYS` present.

        Raises:
            DataError: ``d`` is not a JSON object, or a known key holds the wrong kind of value.
        """
        if not isinstance(d, dict):
            raise DataError(f"a run summary is a JSON object, not {type(d).__name__}")
        known = {f.name for f in fields(cls)} - {"finish_key", "finished", "extra"}
        if finish_key is None:
            finish_key = next((k for k in FINISH_KEYS if k in d), None)
        kw, extra = {}, {}
        for k, v in d.items():
            if k == finish_key:
                kw["finish_key"], kw["finished"] = k, v
            elif k in known:
                kw[k] = v
            else:
                extra[k] = v
        for k in ("hardware", "figures", "limits", "numerics", "selection", "measured", "retrain", "verdict", "finished"):
            if k in kw and kw[k] is not None and not isinstance(kw[k], dict):
                raise DataError(f"summary {finish_key if k == 'finished' else k!r}: expected a JSON object, "
                                f"got {type(kw[k]).__name__}")
        if "repaired_moves" in kw and not isinstance(kw["repaired_moves"], list):
            raise DataError(f"summary 'repaired_moves': expected a list, got {type(kw['repaired_moves']).__name__}")
        for k in ("hardware", "figures", "limits", "repaired_moves"):  # null in a hand-written file: empty
            if k in kw and kw[k] is None:
                del kw[k]
        if kw.get("one_shot_val_accuracy") is None:
            kw.pop("one_shot_val_accuracy", None)
        if kw.get("verdict") is not None:
            kw["verdict"] = Verdict.from_json(kw["verdict"])
        return cls(**kw, extra=extra)
