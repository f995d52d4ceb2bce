"""SQLite store of builds and measurements (WAL; safe for several processes writing at once).

Every record is keyed by what was measured (a DesignPoint key or an ONNX model hash), the target,
the knobs and the toolchain versions. A failure is a record too, with its error text.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ConfigError

__all__ = ["MeasureRecord", "Store", "StoreError", "default_store_path"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    knobs TEXT NOT NULL,
    toolchain TEXT NOT NULL,
    ok INTEGER NOT NULL,
    latency_ms REAL,
    tuned INTEGER NOT NULL DEFAULT 0,
    payload TEXT NOT NULL,
    error TEXT,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS records_lookup ON records (key, target, knobs, toolchain);
CREATE TABLE IF NOT EXISTS runs (
    run_dir TEXT PRIMARY KEY,
    exploration TEXT,
    method TEXT NOT NULL,
    target TEXT NOT NULL,
    space TEXT NOT NULL,
    dataset TEXT NOT NULL,
    seed INTEGER NOT NULL,
    limits TEXT NOT NULL,
    summary TEXT NOT NULL,
    created REAL NOT NULL
);
"""


def default_store_path() -> Path:
    """``$EXPLORER_STORE``, else ``store.sqlite`` in the user's folder (see :mod:`explorer.paths`)."""
    from ..paths import store_path

    return store_path()


@dataclass(frozen=True)
class MeasureRecord:
    """One build or measurement. ``kind``: "build" or "measure"; ``ok`` False carries ``error``."""

    key: str
    kind: str
    target: str
    knobs: dict = field(default_factory=dict)
    toolchain: dict = field(default_factory=dict)
    ok: bool = True
    latency_ms: float | None = None
    tuned: bool = False
    payload: dict = field(default_factory=dict)
    error: str | None = None
    created: float = 0.0

    def as_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "MeasureRecord":
        return cls(**d)


def _canon(d: dict) -> str:
    return json.dumps(d, sort_keys=True, default=str)


class StoreError(ConfigError, sqlite3.DatabaseError):
    """The store file is not an SQLite database (or cannot be opened): one message, exit code 2; still
    an :class:`sqlite3.Error` for callers that only warn when the store cannot be written."""


class Store:
    """Open (and create) the store at ``path``. Use as a context manager or call :meth:`close`.

    A file that is not an SQLite database raises :class:`StoreError` and is left as it was: the
    file is read (``PRAGMA schema_version``) before anything is written to it.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if self.path.is_dir():
            raise StoreError(f"store {self.path}: is a folder, not an SQLite file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None)
        except sqlite3.Error as e:
            raise StoreError(f"store {self.path}: cannot be opened ({e})") from None
        self.conn.execute("PRAGMA busy_timeout = 60000")  # before the read: a busy store is not a corrupt one
        try:
            self.conn.execute("PRAGMA schema_version").fetchone()
        except sqlite3.DatabaseError as e:
            self.conn.close()
            raise StoreError(f"store {self.path}: not an SQLite database ({e}); give another --store or move it away") from None
        # Switching a new file to WAL takes an exclusive lock that SQLite does not wait for (no busy
        # handler): two processes opening one new store at once can get "database is locked" here.
        deadline = time.monotonic() + 60.0
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode = WAL")
                self.conn.execute("PRAGMA synchronous = NORMAL")
                self.conn.executescript(SCHEMA)
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e) or time.monotonic() > deadline:
                    self.conn.close()
                    raise StoreError(f"store {self.path}: cannot be prepared ({e})") from None
                time.sleep(0.05)

    def add(self, r: MeasureRecord) -> int:
        created = r.created or time.time()
        cur = self.conn.execute(
            "INSERT INTO records (key, kind, target, knobs, toolchain, ok, latency_ms, tuned, payload, error, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (r.key, r.kind, r.target, _canon(r.knobs), _canon(r.toolchain), int(r.ok), r.latency_ms, int(r.tuned),
             _canon(r.payload), r.error, created),
        )
        return int(cur.lastrowid)

    def query(self, key: str | None = None, target: str | None = None, kind: str | None = None,
              knobs: dict | None = None, toolchain: dict | None = None, ok: bool | None = None) -> list[MeasureRecord]:
        where, args = [], []
        for col, val in (("key", key), ("target", target), ("kind", kind)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        if knobs is not None:
            where.append("knobs = ?")
            args.append(_canon(knobs))
        if toolchain is not None:
            where.append("toolchain = ?")
            args.append(_canon(toolchain))
        if ok is not None:
            where.append("ok = ?")
            args.append(int(ok))
        sql = "SELECT key, kind, target, knobs, toolchain, ok, latency_ms, tuned, payload, error, created FROM records"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self.conn.execute(sql + " ORDER BY id", args).fetchall()
        return [
            MeasureRecord(k, kd, t, json.loads(kn), json.loads(tc), bool(o), lat, bool(tu), json.loads(p), e, c)
            for k, kd, t, kn, tc, o, lat, tu, p, e, c in rows
        ]

    # -- finished search runs (``explorer runs``) ------------------------------------------------------
    def add_run(self, run_dir: str, summary: dict, config: dict, exploration: str | None = None) -> None:
        """Record (or re-record) a finished run by its absolute folder."""
        self.conn.execute(
            "INSERT OR REPLACE INTO runs (run_dir, exploration, method, target, space, dataset, seed, limits, summary,"
            " created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_dir, exploration, summary.get("method", "cosearch"), str(config.get("target")), str(config.get("space")),
             str(config.get("dataset")), int(config.get("seed", 0)), _canon(config.get("limits") or {}),
             _canon(summary), time.time()))

    def runs(self, target: str | None = None, exploration: str | None = None) -> list[dict]:
        """Recorded runs, oldest first: dicts with ``id`` and the columns (``limits``, ``summary`` parsed)."""
        where, args = [], []
        for col, val in (("target", target), ("exploration", exploration)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        cols = ("rowid", "run_dir", "exploration", "method", "target", "space", "dataset", "seed", "limits", "summary", "created")
        rows = self.conn.execute(f"SELECT {', '.join(cols)} FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
                                 + " ORDER BY created, run_dir", args).fetchall()
        out = []
        for row in rows:
            d = dict(zip(("id",) + cols[1:], row))
            d["limits"], d["summary"] = json.loads(d["limits"]), json.loads(d["summary"])
            out.append(d)
        return out

    def remove_run(self, run_dir: str) -> bool:
        return self.conn.execute("DELETE FROM runs WHERE run_dir = ?", (run_dir,)).rowcount > 0

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM records").fetchone()[0])

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
