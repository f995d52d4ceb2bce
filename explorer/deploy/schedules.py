"""Schedule databases: MetaSchedule JSON databases on disk, in one place.

A database is a folder with ``database_workload.json`` and ``database_tuning_record.json`` (JSON
lines). Where they come from: the package ships built-in databases (``explorer/resources/
schedules/<target>/``, read only); ``explorer tune`` writes the user's (``<home>/schedules/
<target>/``, see :mod:`explorer.paths`, or ``--db``). Applying the defaults uses both, the user's
first; a record is used where it was measured fastest.

Here: :func:`resolve` (which databases a build uses), :func:`open_database`, :func:`open_writable`
(tuning; repairs a torn last line), :func:`subset` (only a model's kernels, merged from several
databases), :func:`merge` (another database's records into one), :func:`database_id` (identity of
the contents) and :func:`check_target` (records tuned for another kind of target are refused).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..errors import ExplorerError, ModelError

__all__ = ["WORKLOADS", "RECORDS", "is_database", "default_databases", "user_database", "resolve", "open_database",
           "open_writable", "subset", "merge", "database_id", "check_target"]

WORKLOADS, RECORDS = "database_workload.json", "database_tuning_record.json"


def is_database(d: str | os.PathLike | None) -> bool:
    return d is not None and (Path(d) / WORKLOADS).is_file()


def user_database(target: str, db: str | os.PathLike | None = None) -> Path:
    """Where tuning writes: ``db`` if given, else the user's database for ``target``."""
    from ..paths import user_schedules

    return Path(db) if db else user_schedules(target)


def default_databases(target: str) -> list[Path]:
    """The databases a build for ``target`` uses by default: the user's, then the shipped one.

    ``$EXPLORER_SCHEDULES`` replaces them: folders separated by ``os.pathsep`` (a team's database,
    say), or ``none`` for untuned builds.
    """
    from ..paths import shipped_schedules, user_schedules

    env = os.environ.get("EXPLORER_SCHEDULES")
    if env is not None:
        return [] if env.strip().lower() in ("", "none") else resolve(env.split(os.pathsep), target)
    return [d for d in (user_schedules(target), shipped_schedules(target)) if is_database(d)]


def resolve(spec: str | os.PathLike | list | None, target: str) -> list[Path]:
    """``None``: the defaults; ``"none"``: no database (untuned on purpose); a folder or a list of them."""
    if spec is None:
        return default_databases(target)
    if isinstance(spec, str) and spec.lower() == "none":
        return []
    out = []
    for d in spec if isinstance(spec, (list, tuple)) else [spec]:
        d = Path(d)
        if not (is_database(d) and (d / RECORDS).is_file()):
            raise ModelError(f"{d}: not a schedule database (needs {WORKLOADS} and {RECORDS})")
        out.append(d)
    return out


def open_database(wl: Path, rec: Path, shown: Path, allow_missing: bool = False):
    """MetaSchedule's JSONDatabase over two files; an unreadable one is one error naming ``shown``."""
    from tvm.s_tir import meta_schedule as ms

    try:
        return ms.database.JSONDatabase(str(wl), str(rec), allow_missing=allow_missing, module_equality="structural")
    except Exception as e:
        msg = (str(e).strip().splitlines() or [type(e).__name__])[-1]
        raise ModelError(f"{shown}: not a readable schedule database ({msg[:200]})") from None


def _repair(f: Path) -> None:
    """Drop a torn last line (a run killed while appending); every complete line is kept."""
    if not f.is_file():
        return
    data = f.read_bytes()
    if data and not data.endswith(b"\n"):
        f.write_bytes(data[: data.rfind(b"\n") + 1])


def open_writable(path: Path):
    """A database to tune into (created if missing; a torn last line from a killed run dropped)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ExplorerError(f"--db {path}: not a folder")
    path.mkdir(parents=True, exist_ok=True)
    for name in (WORKLOADS, RECORDS):
        _repair(path / name)
    return open_database(path / WORKLOADS, path / RECORDS, path, allow_missing=True)


def subset(wanted: set[str], databases: list[Path], out: Path) -> tuple[Path, Path]:
    """The entries of ``databases`` for the kernels whose structural hashes are ``wanted``, merged
    into one database written to ``out``.

    A database for a whole search space holds hundreds of kernels (tens of MB, ~7 s to load); a
    model needs a dozen. Workload lines start with MetaSchedule's structural hash, so the model's
    kernels are found without deserialising the others.
    """
    wl_lines, rec_lines = [], []
    for d in databases:
        remap = {}
        for i, line in enumerate(x for x in (d / WORKLOADS).read_text().splitlines() if x.strip()):
            h = line[2 : line.find('"', 2)] if line.startswith('["') else None
            if h in wanted:
                remap[i] = len(wl_lines)
                wl_lines.append(line)
        for line in (d / RECORDS).read_text().splitlines():
            head, sep, rest = line.partition(",")
            try:
                idx = int(head.strip().lstrip("["))
            except ValueError:
                continue
            if sep and idx in remap:
                rec_lines.append(f"[{remap[idx]},{rest}")
    (out / "w.json").write_text("".join(x + "\n" for x in wl_lines))
    (out / "r.json").write_text("".join(x + "\n" for x in rec_lines))
    return out / "w.json", out / "r.json"


def check_target(records: Path, target, shown) -> None:
    """Refuse records tuned for another kind of target (a CUDA schedule for an LLVM build)."""
    kind = target.kind.name
    for line in records.read_text().splitlines():
        try:
            t = json.loads(line)[1][2]
        except (ValueError, IndexError, TypeError):
            continue
        if isinstance(t, dict) and t.get("kind") not in (None, kind):
            raise ModelError(f"{shown}: holds schedules for {t.get('kind')!r} targets; this build is for {kind!r}")


def database_id(databases: str | os.PathLike | list | None) -> str | None:
    """Identity of the contents of a database (hash of its two files) or of several, or None."""
    if databases is None or (isinstance(databases, (list, tuple)) and not databases):
        return None
    if isinstance(databases, (list, tuple)) and len(databases) > 1:
        return hashlib.sha256("+".join(database_id(d) for d in databases).encode()).hexdigest()[:16]
    d = Path(databases[0] if isinstance(databases, (list, tuple)) else databases)
    h = hashlib.sha256()
    for name in (WORKLOADS, RECORDS):
        f = d / name
        h.update(f.read_bytes() if f.is_file() else b"")
    return h.hexdigest()[:16]


def merge(src: Path, dst: Path) -> tuple[int, int]:
    """Add ``src``'s records to ``dst``; the same kernel (structural hash) becomes one workload with
    the records of both. Returns (records added, records skipped: structurally equal kernels whose
    blocks are named otherwise, so the trace does not replay on ``dst``'s copy)."""
    from tvm import s_tir
    from tvm.s_tir import meta_schedule as ms

    def replays(trace, mod) -> bool:
        try:
            trace.apply_to_schedule(s_tir.Schedule(mod), remove_postproc=False)
            return True
        except Exception:
            return False

    s_db, d_db = open_writable(src), open_writable(dst)
    n = skipped = 0
    for r in s_db.get_all_tuning_records():
        wl = d_db.commit_workload(r.workload.mod)
        if not wl.mod.same_as(r.workload.mod) and not replays(r.trace, wl.mod):
            skipped += 1
            continue
        d_db.commit_tuning_record(ms.database.TuningRecord(r.trace, wl, r.run_secs, r.target, r.args_info))
        n += 1
    return n, skipped
