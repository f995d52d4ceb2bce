"""The self-contained HTML report of runs and explorations, for people.

``write_report`` reads each folder given (a run folder written by ``explorer search``, or an
exploration folder written by ``explorer explore``) into a :class:`~explorer.runs.folder.RunData` or
:class:`ExplorationData`, then :mod:`explorer.report.page` renders them into one HTML file whose
images are embedded, so that the file can be mailed or archived alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, DataError
from ..fsutil import atomic_path
from ..runs.folder import RunData, is_run_dir, load_run, read_json

__all__ = ["write_report", "load_exploration", "load_input", "ExplorationData"]


@dataclass(frozen=True)
class ExplorationData:
    """An exploration folder: ``exploration.json`` and, per run id, its :class:`RunData` or the
    reason it could not be read (a failed or pending run has no folder to read)."""

    path: Path
    doc: dict
    runs: dict = field(default_factory=dict)  # run id -> RunData | str
    kind = "exploration"


def load_exploration(path: str | Path) -> ExplorationData:
    """Read an exploration folder and the folder of every run it lists that has one; a run folder
    that cannot be read is kept as the reason (the report notes it) rather than failing the report."""
    path = Path(path)
    doc = read_json(path / "exploration.json", "the exploration's grid and runs")
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
    if p.is_dir() and is_run_dir(p):
        return load_run(p)
    raise ConfigError(f"{path} is neither a run folder (summary.json, history.jsonl; written by `explorer search`) "
                      f"nor an exploration folder (exploration.json; written by `explorer explore`)")


def write_report(paths: list[str], out: str | None = None) -> Path:
    """Write one self-contained HTML report with a section per path; returns the file written.

    ``out`` defaults to ``report.html`` in the folder when exactly one folder is given, else to
    ``report.html`` in the working folder. The file is written whole or not at all.
    """
    from .page import render

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
