"""Plots of a search history, and the self-contained HTML report of runs and explorations, for people.

``write_report`` reads each folder given (a run folder written by ``explorer search``, or an
exploration folder written by ``explorer explore``) into a :class:`RunData` or
:class:`ExplorationData`, then :mod:`explorer.report_html` renders them into one HTML file whose
images are embedded, so that the file can be mailed or archived alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError, DataError
from .fsutil import atomic_path

__all__ = ["plot_history", "NothingToPlot", "write_report", "load_run", "load_exploration", "RunData", "ExplorationData"]


class NothingToPlot(ValueError):
    """The history holds no search steps (a random-search run samples designs instead)."""


def plot_history(history_path: str | Path, out_png: str | Path, limits_si: dict | None = None) -> Path:
    """Losses, expected resources against their limits, and choice entropies over the steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [json.loads(line) for line in Path(history_path).read_text().splitlines() if line.strip()]
    recs = [r for r in recs if "step" in r and "event" not in r and "expected" in r]
    limits_si = limits_si or {}
    if not recs:
        raise NothingToPlot("no search steps in the history to plot (a random-search run has samples, not steps)")
    fig, axes = plt.subplots(2, 4, figsize=(18, 7))
    steps = list(range(len(recs)))
    for key, ax in zip(("L1", "L2", "L"), [axes[0, 0]] * 3):
        ys = [r.get(key) if r.get(key) is not None else float("nan") for r in recs]
        ax.plot(steps, ys, label=key, lw=0.8)
    axes[0, 0].set_title("losses (L1 hardware step, L2 network step, L = L1 + L2)")
    axes[0, 0].legend()
    from .cost.base import UNITS as units
    for ax, k in zip((axes[0, 1], axes[0, 2], axes[1, 0]), units):
        if k not in recs[0]["expected"]:
            ax.axis("off")
            ax.text(0.5, 0.5, f"{k.rsplit('_', 1)[0]}: not priced by this target", ha="center", va="center",
                    transform=ax.transAxes)
            continue
        u, f = units[k]
        ax.plot(steps, [r["expected"][k] * f for r in recs], lw=0.8, label="expected")
        der = [(i, r["derived"]["figures"][k] * f) for i, r in enumerate(recs) if "derived" in r]
        if der:
            ax.plot(*zip(*der), "o", ms=3, label="derived design")
        if k in limits_si:
            ax.axhline(limits_si[k] * f, color="r", ls="--", label="limit")
        ax.set_title(f"{k.rsplit('_', 1)[0]} ({u})")
        ax.legend(fontsize=7)
    axes[1, 1].plot(steps, [r["entropy_ops"] for r in recs], label="network choices")
    axes[1, 1].plot(steps, [r["entropy_knobs"] for r in recs], label="hardware knobs")
    axes[1, 1].set_title("mean entropy (nats)")
    axes[1, 1].legend(fontsize=7)
    acc = [(i, r["derived"]["val_accuracy"]) for i, r in enumerate(recs) if "derived" in r]
    if acc:
        axes[1, 2].plot(*zip(*acc), "o-", ms=3)
    axes[1, 2].set_title("derived design: one-shot val accuracy")
    meas = [(r["step"], m) for r in recs for m in r.get("measured", []) if "measured_s" in m]
    ax = axes[1, 3]
    if meas:
        ax.plot([s for s, _ in meas], [abs(m["rel_error"]) * 100 for _, m in meas], "o-", ms=3)
        ax.set_ylabel("|predicted - measured| / measured (%)")
        ax.set_title("cost model vs background measurements")
        inset = axes[0, 3]
        inset.plot([m["measured_s"] * 1e3 for _, m in meas], [m["predicted_s"] * 1e3 for _, m in meas], "o", ms=3)
        lo = min(min(m["measured_s"], m["predicted_s"]) for _, m in meas) * 1e3
        hi = max(max(m["measured_s"], m["predicted_s"]) for _, m in meas) * 1e3
        inset.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        inset.set_xlabel("measured latency (ms)")
        inset.set_ylabel("predicted before refit (ms)")
        inset.set_title("predicted vs measured")
    else:
        for a in (axes[0, 3], axes[1, 3]):
            a.axis("off")
        ax.text(0.5, 0.5, "no measurements\n(analytical target)", ha="center", va="center", transform=ax.transAxes)
    for ax in list(axes[0, :3]) + list(axes[1, :3]) + [axes[1, 3]]:
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return Path(out_png)


@dataclass(frozen=True)
class RunData:
    """A run folder as read for the report. ``history`` holds every record of ``history.jsonl``
    (steps, samples and events); the optional files that were missing are named in ``notes``."""

    path: Path
    summary: dict
    history: list
    config: dict | None = None
    design: dict | None = None
    hw_config: dict | None = None
    notes: tuple = ()
    kind = "run"


@dataclass(frozen=True)
class ExplorationData:
    """An exploration folder: ``exploration.json`` and, per run id, its :class:`RunData` or the
    reason it could not be read (a failed or pending run has no folder to read)."""

    path: Path
    doc: dict
    runs: dict = field(default_factory=dict)  # run id -> RunData | str
    kind = "exploration"


def _read_json(path: Path, what: str) -> dict:
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path.parent}: no {path.name} ({what})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _read_history(path: Path) -> list:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DataError(f"{path.parent}: no history.jsonl (the search's record of its steps)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot be read ({e})") from None
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}, line {i}: not valid JSON ({e.msg})") from None
        if not isinstance(rec, dict):
            raise DataError(f"{path}, line {i}: expected a JSON object per line")
        out.append(rec)
    return out


def _is_run_dir(path: Path) -> bool:
    return any((path / f).exists() for f in ("summary.json", "history.jsonl", "design.json"))


def load_run(path: str | Path) -> RunData:
    """Read a run folder; a missing or corrupt ``summary.json`` or ``history.jsonl`` is a DataError."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path}: no such run folder")
    if not (path / "summary.json").exists() and (path / "history.jsonl").exists():
        raise DataError(f"{path}: no summary.json; the run did not finish (its history alone is not reported)")
    summary = _read_json(path / "summary.json", "the run's results")
    history = _read_history(path / "history.jsonl")
    opt, notes = {}, []
    for name, what in (("config", "the run's settings"), ("design", "the final design"), ("hw_config", "the hardware")):
        f = path / f"{name}.json"
        try:
            opt[name] = _read_json(f, what)
        except DataError as e:  # the summary holds the essentials; the report says what is missing
            opt[name] = None
            notes.append(str(e))
    return RunData(path, summary, history, notes=tuple(notes), **opt)


def load_exploration(path: str | Path) -> ExplorationData:
    """Read an exploration folder and the folder of every run it lists that has one; a run folder
    that cannot be read is kept as the reason (the report notes it) rather than failing the report."""
    path = Path(path)
    doc = _read_json(path / "exploration.json", "the exploration's grid and runs")
    runs = doc.get("runs")
    if not isinstance(runs, list) or not all(isinstance(r, dict) and "id" in r for r in runs):
        raise DataError(f"{path / 'exploration.json'}: 'runs' must be a list of objects with an 'id'")
    out = {}
    for r in runs:
        rd = r.get("run_dir")
        if r.get("status") != "done" or not rd:
            continue
        try:
            out[r["id"]] = load_run(path / rd)
        except (ConfigError, DataError) as e:
            out[r["id"]] = str(e)
    return ExplorationData(path, doc, out)


def load_input(path: str | Path) -> RunData | ExplorationData:
    """A run folder or an exploration folder (or its ``summary.json``/``exploration.json``)."""
    p = Path(path)
    if p.is_file() and p.name in ("exploration.json", "summary.json"):
        p = p.parent
    if not p.exists():
        raise ConfigError(f"{path}: no such file or folder")
    if p.is_dir() and (p / "exploration.json").exists():
        return load_exploration(p)
    if p.is_dir() and _is_run_dir(p):
        return load_run(p)
    raise ConfigError(f"{path} is neither a run folder (summary.json, history.jsonl; written by `explorer search`) "
                      f"nor an exploration folder (exploration.json; written by `explorer explore`)")


def write_report(paths: list[str], out: str | None = None) -> Path:
    """Write one self-contained HTML report with a section per path; returns the file written.

    ``out`` defaults to ``report.html`` in the folder when exactly one folder is given, else to
    ``report.html`` in the working folder. The file is written whole or not at all.
    """
    from .report_html import render

    if not paths:
        raise ConfigError("report: give at least one run or exploration folder")
    items = [load_input(p) for p in paths]
    if out is None:
        out_p = items[0].path / "report.html" if len(items) == 1 else Path("report.html")
    else:
        out_p = Path(out)
        if out_p.is_dir():
            raise ConfigError(f"--out {out} is a folder; give a file name")
    out_p.parent.mkdir(parents=True, exist_ok=True)
    html = render(items)
    with atomic_path(out_p, suffix=f".{os.getpid()}.tmp") as tmp:  # two reports into one file: each its own
        tmp.write_text(html, encoding="utf-8")
    return out_p
