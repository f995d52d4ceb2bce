"""The runs recorded in the store: what ``explorer runs list|show|rm`` reads and edits.

A run is recorded when its folder is complete (see :func:`explorer.api.run_search`), keyed by its
absolute folder, with its config and summary; explorations tag their runs with their folder.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from ..errors import ConfigError
from ..units import by_name
from .summary import RunSummary

__all__ = ["register_run", "runs_command", "find_run"]


def _store(path=None):
    from ..measure.store import Store, default_store_path

    p = Path(path) if path else default_store_path()
    return Store(p)


def register_run(run_dir, summary: RunSummary | dict, config: dict, exploration=None, store=None) -> None:
    """Record a finished run folder in the store (never fails the run: a store that cannot be written
    is reported on stderr). ``summary``: the run's, typed or as ``summary.json`` holds it; the store
    keeps its JSON."""
    import sqlite3

    data = summary.as_json() if isinstance(summary, RunSummary) else summary
    try:
        with _store(store) as st:
            st.add_run(str(Path(run_dir).resolve()), data, config,
                       None if exploration is None else str(Path(exploration).resolve()))
    except (sqlite3.Error, OSError) as e:
        print(f"explorer: warning: run {run_dir} not recorded in the store ({type(e).__name__}: {e})", file=sys.stderr)


def find_run(st, ref: str) -> dict:
    """A recorded run by its id (``runs list``) or folder."""
    rows = st.runs()
    if ref.isdigit():
        hit = [r for r in rows if r["id"] == int(ref)]
    else:
        want = str(Path(ref).resolve())
        hit = [r for r in rows if r["run_dir"] == want]
    if not hit:
        raise ConfigError(f"no run {ref!r} in the store {st.path} (see `explorer runs list`)")
    return hit[0]


def _row(r: dict) -> str:
    s = RunSummary.from_json(r["summary"])
    acc = s.test_accuracy
    lim = ",".join(f"{k}={v:g}" for k, v in sorted(r["limits"].items())) or "-"
    met = {True: "met", False: "NOT met", None: "-"}[s.limits_met if r["limits"] else None]
    lat = s.figures.get(by_name("latency_s").figure_key)
    return (f"{r['id']:>4}  {r['method']:<10} {Path(r['target']).stem[:12]:<12} {r['seed']:>4}  {lim[:24]:<24} {met:<7} "
            f"{'-' if acc is None else f'{acc * 100:.2f}%':>7}  {'-' if lat is None else f'{lat:.4g}':>9}  {r['run_dir']}")


def runs_command(a) -> int:
    import sqlite3

    try:
        return _runs_command(a)
    except sqlite3.DatabaseError as e:
        from ..measure.store import default_store_path

        raise ConfigError(f"{a.store or default_store_path()}: not a readable store ({e})") from None


def _runs_command(a) -> int:
    with _store(a.store) as st:
        if a.runs_cmd == "list":
            rows = st.runs(target=a.target, exploration=None if a.exploration is None else str(Path(a.exploration).resolve()))
            if a.json:
                for r in rows:
                    print(json.dumps(r))
                return 0
            if not rows:
                print(f"no runs recorded in {st.path}")
                return 0
            print(f"{'id':>4}  {'method':<10} {'target':<12} {'seed':>4}  {'limits':<24} {'limits':<7} {'acc':>7}  "
                  f"{'lat ms':>9}  folder")
            for r in rows:
                print(_row(r))
            return 0
        if a.runs_cmd == "show":
            r = find_run(st, a.run)
            r = {**r, "folder_exists": Path(r["run_dir"]).is_dir()}
            print(json.dumps(r, indent=2))
            return 0
        found = [find_run(st, ref) for ref in a.runs]  # all resolved before anything is removed
        for r in found:
            st.remove_run(r["run_dir"])
            d = Path(r["run_dir"])
            if not a.keep_files and d.is_dir() and (d / "summary.json").is_file():
                shutil.rmtree(d)
            print(f"removed {r['run_dir']}" + (" (folder kept)" if a.keep_files or not d.is_dir() else ""))
        return 0
