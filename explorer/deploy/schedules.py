"""Schedule databases: MetaSchedule JSON databases on disk, in one place.

A database is a folder with ``database_workload.json`` and ``database_tuning_record.json`` (JSON
lines). Where they come from: the package ships built-in databases (``schedules/<target>/`` at the
top of the repository, package data in a wheel; read only); ``explorer tune`` writes the user's
(``<home>/schedules/<target>/``, see :mod:`explorer.paths`, or ``--db``). Applying the defaults uses
both, the user's first; a record is used where it was measured fastest.

**Keyed by what a schedule was tuned for.** Every record carries the TVM target it was measured on;
:func:`target_key` reduces it to what decides which schedule is fastest (``llvm/x86_64/rocketlake/2c``:
kind, architecture, ``mcpu``, cores; ``cuda/sm_80``), and the input shape is part of every kernel's
structural hash. A build applies only records of its own key: a kernel is called tuned only when it
was tuned for this target. Records of another key (a database tuned on another CPU, the shipped one
on any machine but the one that built it) are a warm start for tuning (:mod:`explorer.deploy.tune`
measures them here first), never applied as they are: TVM would apply a schedule tuned for one
``mcpu`` on another without complaint.

Here: :func:`resolve` (which databases a build uses), :func:`open_database`, :func:`open_writable`
(tuning; repairs a torn last line), :func:`subset` (only a model's kernels, merged from several
databases, only one key's records), :func:`merge` (another database's records into one),
:func:`database_id` (identity of the contents), :func:`check_target` (records tuned for another kind
of target are refused) and :func:`manifest` / :func:`note_tuning` (what a database was tuned for: per
key, the input shapes, models and trials).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..errors import ExplorerError, ModelError
from ..fsutil import atomic_write_json

__all__ = ["WORKLOADS", "RECORDS", "MANIFEST", "is_database", "default_databases", "user_database", "resolve",
           "check_lines", "open_database", "open_writable", "subset", "merge", "database_id", "check_target", "target_key",
           "record_key", "manifest", "note_tuning", "tuning_database", "replay"]

WORKLOADS, RECORDS = "database_workload.json", "database_tuning_record.json"
MANIFEST = "explorer-db.json"


def target_key(target) -> str:
    """What a schedule is tuned for, from a TVM Target or its JSON dict: ``llvm/x86_64/rocketlake/2c``
    (kind, architecture of the triple, ``mcpu``, ``num-cores``: the parallel split a schedule bakes
    in) or ``cuda/sm_80``."""
    if not isinstance(target, dict):
        text = str(target)
        target = json.loads(text) if text.startswith("{") else {"kind": text.split()[0]}
    kind = str(target.get("kind", "?"))
    if kind == "llvm":
        arch = str(target.get("mtriple") or "").split("-")[0] or "host"
        return f"llvm/{arch}/{target.get('mcpu') or 'generic'}/{target.get('num-cores', '?')}c"
    return f"{kind}/{target.get('arch') or '?'}"


def record_key(line: str) -> str | None:
    """The :func:`target_key` of one line of a records file (``[workload, [trace, secs, target, args]]``)."""
    try:
        t = json.loads(line)[1][2]
    except (ValueError, IndexError, TypeError):
        return None
    return target_key(t) if isinstance(t, dict) else None


def is_database(d: str | os.PathLike | None) -> bool:
    return d is not None and (Path(d) / WORKLOADS).is_file()


def user_database(target: str, db: str | os.PathLike | None = None) -> Path:
    """Where tuning writes: ``db`` if given, else the user's database for ``target``."""
    from ..paths import user_schedules

    return Path(db) if db else user_schedules(target)


def tuning_database(target: str, spec: str | os.PathLike | None = None) -> Path | None:
    """Where tuning on this machine writes, or None when builds are untuned on purpose (``spec`` or
    ``$EXPLORER_SCHEDULES`` is ``none``): ``spec`` if it is a folder, else the user's database."""
    if spec is None:
        spec = os.environ.get("EXPLORER_SCHEDULES")
        if spec is not None and spec.strip().lower() in ("", "none"):
            return None
        return user_database(target)
    if isinstance(spec, str) and spec.strip().lower() in ("", "none"):
        return None
    return Path(spec)


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
        check_lines(d)
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


def _lines(f: Path) -> list[str]:
    try:
        return f.read_text().splitlines()
    except (UnicodeDecodeError, OSError) as e:
        raise ModelError(f"{f}: not a readable schedule database file ({type(e).__name__})") from None


def _json_line(line: str, first: type) -> bool:
    """Whether a non-empty line of a database file is a JSON list whose first item is a ``first``
    (well-formed lines pass on their shape alone; a database for a whole space is tens of MB)."""
    line = line.rstrip()
    if line.startswith("[") and line.endswith("]") and (line.startswith('["') if first is str else
                                                         line[1:line.find(",") if "," in line else -1].strip().isdigit()):
        return True
    try:
        v = json.loads(line)
    except ValueError:
        return False
    return not isinstance(v, (list, dict)) or (isinstance(v, list) and bool(v) and isinstance(v[0], first))


def check_lines(d: Path) -> None:
    """Refuse a database folder whose files hold a line that is not JSON (garbage, or torn by a killed
    run) before a build spends time on the model; :func:`subset` checks the same while it reads."""
    for i, line in enumerate(_lines(d / WORKLOADS)):
        if line.strip() and not _json_line(line, str):
            _corrupt(d / WORKLOADS, i, _WL_FORM)
    for i, line in enumerate(_lines(d / RECORDS)):
        if line.strip() and not _json_line(line, int):
            _corrupt(d / RECORDS, i, _REC_FORM)


_WL_FORM, _REC_FORM = 'a workload line is ["<hash>", ...]', "a record line is [<workload index>, [...]]"


def _corrupt(f: Path, i: int, what: str):
    """A line of a database file that is not a MetaSchedule JSON line: garbage, or torn by a run killed while
    writing (``explorer tune --db`` on the folder drops a torn last line)."""
    raise ModelError(f"{f}: line {i + 1} is not a MetaSchedule JSON line ({what}); the file is corrupt or truncated")


def subset(wanted: set[str], databases: list[Path], out: Path, key: str | None = None) -> tuple[Path, Path, dict]:
    """The entries of ``databases`` for the kernels whose structural hashes are ``wanted``, merged
    into one database written to ``out``; with ``key``, only records tuned for that
    :func:`target_key`. Returns the two files and ``{hash: [keys]}``: the other keys that hold
    records for a wanted kernel (all of them, whether or not ``key`` has one too).

    A database for a whole search space holds hundreds of kernels (tens of MB, ~7 s to load); a
    model needs a dozen. Workload lines start with MetaSchedule's structural hash, so the model's
    kernels are found without deserialising the others.
    """
    wl_lines, rec_lines = [], []
    others: dict[str, set] = {}
    for d in databases:
        remap, hash_of = {}, {}
        for i, line in enumerate(x for x in _lines(d / WORKLOADS) if x.strip()):
            if not _json_line(line, str):
                _corrupt(d / WORKLOADS, i, _WL_FORM)
            h = line[2 : line.find('"', 2)] if line.startswith('["') else None
            if h in wanted:
                remap[i] = len(wl_lines)
                hash_of[i] = h
                wl_lines.append(line)
        for n, line in enumerate(_lines(d / RECORDS)):
            if not line.strip():
                continue
            head, sep, rest = line.partition(",")
            try:
                idx = int(head.strip().lstrip("["))
            except ValueError:
                idx = None
            if not _json_line(line, int):
                _corrupt(d / RECORDS, n, _REC_FORM)
            if idx is None or not sep or idx not in remap:
                continue
            if key is not None:
                k = record_key(line)
                if k != key:
                    others.setdefault(hash_of[idx], set()).add(k or "?")
                    continue
            rec_lines.append(f"[{remap[idx]},{rest}")
    (out / "w.json").write_text("".join(x + "\n" for x in wl_lines))
    (out / "r.json").write_text("".join(x + "\n" for x in rec_lines))
    return out / "w.json", out / "r.json", {h: sorted(v) for h, v in others.items()}


def manifest(d: str | os.PathLike) -> dict:
    """What a database says it was tuned for: ``{key: {"input_shapes": [...], "models": [...],
    "trials": n, "updated": date}}`` (``explorer-db.json``; the shipped one's ``README.json`` is read
    as one entry). Empty when there is neither."""
    d = Path(d)
    f = d / MANIFEST
    if f.is_file():
        try:
            return json.loads(f.read_text()).get("keys", {})
        except (ValueError, AttributeError):
            return {}
    readme = d / "README.json"
    if readme.is_file():
        try:
            r = json.loads(readme.read_text())
            return {target_key(json.loads(r["target"])): {"input_shapes": [r.get("input_shape")], "models": r.get("spaces", []),
                                                           "trials": r.get("trials"), "updated": r.get("date")}}
        except (ValueError, KeyError, TypeError):
            return {}
    return {}


def note_tuning(d: str | os.PathLike, key: str, input_shapes: list, model: str, trials: int) -> None:
    """Add one tuning session to a database's manifest (written whole, then renamed)."""
    import time

    d = Path(d)
    keys = manifest(d) if (d / MANIFEST).is_file() else {}
    e = keys.setdefault(key, {"input_shapes": [], "models": [], "trials": 0, "updated": None})
    for s in input_shapes:
        if list(s) not in e["input_shapes"]:
            e["input_shapes"].append(list(s))
    if model and model not in e["models"]:
        e["models"].append(model)
    e["trials"] = int(e.get("trials") or 0) + int(trials)
    e["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
    atomic_write_json(d / MANIFEST, {"keys": keys}, indent=1)


def check_target(keys, target, shown) -> None:
    """Refuse a database whose records for a model are tuned for another kind of target (a CUDA
    schedule for an LLVM build): ``keys`` are the :func:`target_key` values found for its kernels."""
    kind = target.kind.name
    bad = sorted({k.split("/")[0] for k in keys} - {kind, "?"})
    if bad:
        raise ModelError(f"{shown}: holds schedules for {bad[0]!r} targets; this build is for {kind!r}")


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


def replay(trace, mod):
    """``trace`` applied to a fresh schedule of ``mod``, or None when it does not replay (a trace names
    the blocks of the kernel it was recorded on; a structurally equal copy may name them otherwise)."""
    from tvm import s_tir

    try:
        sch = s_tir.Schedule(mod)
        trace.apply_to_schedule(sch, remove_postproc=False)
        return sch
    except Exception:
        return None


def merge(src: Path, dst: Path) -> tuple[int, int]:
    """Add ``src``'s records to ``dst``; the same kernel (structural hash) becomes one workload with
    the records of both. Returns (records added, records skipped: structurally equal kernels whose
    blocks are named otherwise, so the trace does not replay on ``dst``'s copy)."""
    from tvm.s_tir import meta_schedule as ms

    s_db, d_db = open_writable(src), open_writable(dst)
    n = skipped = 0
    for r in s_db.get_all_tuning_records():
        wl = d_db.commit_workload(r.workload.mod)
        if not wl.mod.same_as(r.workload.mod) and replay(r.trace, wl.mod) is None:
            skipped += 1
            continue
        d_db.commit_tuning_record(ms.database.TuningRecord(r.trace, wl, r.run_secs, r.target, r.args_info))
        n += 1
    return n, skipped
