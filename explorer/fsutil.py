"""Atomic file writes (the whole new file or the old one, never half of one), and reading a TOML file.

Every writer puts its bytes in a temporary file beside the target (same folder, so same file system)
and renames it over the target with :func:`os.replace`. A writer that fails removes its temporary
file; a process killed outright leaves it behind, and the next write to the same target replaces it.
``fsync=True`` also flushes the file and then the folder's entry to disk, for files that must
survive a power cut (checkpoints, run summaries), at the price of a disk round trip.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .errors import ConfigError

__all__ = ["atomic_path", "atomic_open", "atomic_write_text", "atomic_write_bytes", "atomic_write_json", "read_toml"]


@contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = ".tmp", fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path (``path`` + ``suffix``) for a writer that wants a file name (an ONNX
    exporter, a linker); on a normal exit it is renamed over ``path``, on an error it is removed.

    ``suffix`` keeps an extension a writer looks at (``".tmp.so"`` for a shared library)."""
    path = Path(path)
    tmp = path.with_name(path.name + suffix)
    try:
        yield tmp
        if fsync:
            _fsync(tmp, os.O_RDWR)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        try:  # the rename itself
            _fsync(path.parent, os.O_RDONLY)
        except OSError:  # a file system that cannot sync a folder
            pass


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", *, fsync: bool = False,
                encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file for writing (``mode`` ``"w"`` or ``"wb"``); see :func:`atomic_path`."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes a new file: mode 'w' or 'wb', not {mode!r}")
    if mode == "w" and encoding is None:
        encoding = "utf-8"
    with atomic_path(path, fsync=fsync) as tmp, open(tmp, mode, encoding=encoding) as f:
        yield f


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = False) -> None:
    with atomic_open(path, "wb", fsync=fsync) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, *, fsync: bool = False, encoding: str = "utf-8") -> None:
    with atomic_open(path, "w", fsync=fsync, encoding=encoding) as f:
        f.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2, default=None,
                      fsync: bool = False) -> None:
    """``obj`` as JSON (``indent``, ``default`` as for :func:`json.dumps`) and a final newline."""
    atomic_write_text(path, json.dumps(obj, indent=indent, default=default) + "\n", fsync=fsync)


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_toml(path: Path, what: str, missing: str | None = None) -> dict:
    """The table of the TOML file ``path``. Every way reading or parsing it fails is one
    :class:`~explorer.errors.ConfigError`, ``"{path}: {what} (reason)"``; with ``missing``, a file that
    does not exist is ``"{path}: {missing}"`` instead."""
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        if missing is not None and isinstance(e, FileNotFoundError):
            raise ConfigError(f"{path}: {missing}") from None
        reason = str(e)
    except ValueError as e:  # tomllib lets int()'s own errors through (an integer of over 4300 digits)
        reason = str(e).splitlines()[0]
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        reason = "arrays or tables nested too deeply"
    raise ConfigError(f"{path}: {what} ({reason})") from None
