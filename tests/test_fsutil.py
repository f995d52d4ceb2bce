"""Atomic writes: the new file whole, or the old one untouched and no temporary file left."""

import json
import os

import pytest

from explorer import fsutil
from explorer.fsutil import atomic_open, atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text


def test_writes_replace_the_file_whole(tmp_path):
    p = tmp_path / "a.json"
    atomic_write_text(p, "old")
    atomic_write_json(p, {"x": 1, "y": [2]}, indent=1)
    assert p.read_text() == '{\n "x": 1,\n "y": [\n  2\n ]\n}\n'
    atomic_write_json(p, {"when": tmp_path}, default=str)
    assert json.loads(p.read_text()) == {"when": str(tmp_path)}
    atomic_write_bytes(p, b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01" and os.listdir(tmp_path) == ["a.json"]


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, exc):
    p = tmp_path / "state.json"
    p.write_text("old")
    with pytest.raises(exc):
        with atomic_open(p, "w") as f:
            f.write("half of the new")
            raise exc
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["state.json"]


def test_atomic_path_keeps_an_extension_and_replaces_a_stray(tmp_path):
    p = tmp_path / "model.so"
    (tmp_path / "model.so.tmp.so").write_text("left by a killed process")
    with atomic_path(p, suffix=".tmp.so") as tmp:
        assert tmp.name == "model.so.tmp.so" and not p.exists()
        tmp.write_text("library")
    assert p.read_text() == "library" and os.listdir(tmp_path) == ["model.so"]


def test_fsync_syncs_the_file_then_its_folder(tmp_path, monkeypatch):
    p = tmp_path / "ck.pt"
    synced = []
    monkeypatch.setattr(fsutil, "_fsync", lambda path, flags: synced.append((path, p.read_bytes())))
    atomic_write_bytes(p, b"x")
    assert synced == []
    atomic_write_bytes(p, b"y", fsync=True)
    # the temporary file before the rename (the target still holds the old bytes), then the folder
    assert synced == [(tmp_path / "ck.pt.tmp", b"x"), (tmp_path, b"y")] and p.read_bytes() == b"y"


def test_a_folder_that_cannot_be_synced_is_no_error(tmp_path, monkeypatch):
    real = fsutil._fsync

    def no_folder_sync(path, flags):
        if path == tmp_path:
            raise OSError("EINVAL")
        real(path, flags)

    monkeypatch.setattr(fsutil, "_fsync", no_folder_sync)
    atomic_write_text(tmp_path / "s.json", "{}", fsync=True)
    assert (tmp_path / "s.json").read_text() == "{}"


def test_atomic_open_refuses_a_mode_that_does_not_write_a_new_file(tmp_path):
    with pytest.raises(ValueError, match="'a'"):
        with atomic_open(tmp_path / "x", "a"):
            pass
