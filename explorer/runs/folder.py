"""A run folder, as ``explorer search`` writes it (see :func:`explorer.api.run_search`) and as the
report reads it: ``summary.json``, ``history.jsonl`` and the optional ``config.json``, ``design.json``
and ``hw_config.json``, read into a :class:`RunData`; a missing or corrupt file is a DataError that
names it. ``RunData.summary`` is the file's dict, as the report reads it; ``RunData.typed`` is the
same as a :class:`~explorer.runs.summary.RunSummary` (why both: see :mod:`explorer.runs.summary`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ..errors import ConfigError, DataError
from .summary import RunSummary

__all__ = ["RunData", "load_run", "read_json", "read_history", "is_run_dir"]


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

    @cached_property
    def typed(self) -> RunSummary:
        """:attr:`summary` as a :class:`RunSummary` (a DataError names the file if it does not fit)."""
        try:
            return RunSummary.from_json(self.summary)
        except DataError as e:
            raise DataError(f"{self.path / 'summary.json'}: {e}") from None


def read_json(path: Path, what: str) -> dict:
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


def read_history(path: Path) -> list:
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


def is_run_dir(path: Path) -> bool:
    return any((path / f).exists() for f in ("summary.json", "history.jsonl", "design.json"))


def load_run(path: str | Path) -> RunData:
    """Read a run folder; a missing or corrupt ``summary.json`` or ``history.jsonl`` is a DataError."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path}: no such run folder")
    if not (path / "summary.json").exists() and (path / "history.jsonl").exists():
        raise DataError(f"{path}: no summary.json; the run did not finish (its history alone is not reported)")
    summary = read_json(path / "summary.json", "the run's results")
    history = read_history(path / "history.jsonl")
    opt, notes = {}, []
    for name, what in (("config", "the run's settings"), ("design", "the final design"), ("hw_config", "the hardware")):
        f = path / f"{name}.json"
        try:
            opt[name] = read_json(f, what)
        except DataError as e:  # the summary holds the essentials; the report says what is missing
            opt[name] = None
            notes.append(str(e))
    return RunData(path, summary, history, notes=tuple(notes), **opt)
