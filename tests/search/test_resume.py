"""Checkpoints and ``explorer search --resume``: a search killed at a random moment and resumed ends
with the design an uninterrupted run finds; bad input gets one clear message and changes nothing."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from explorer.api import _load_checkpoint, _save_checkpoint, resume_search
from explorer.cli import main
from explorer.config import config_from_dict
from explorer.errors import ConfigError
from tests.conftest import run_cli, tiny_config

# A small space and a short search: 40 steps, a checkpoint every 5, the simulator refining the model
# every 10 steps from step 10 (its points and refit weights are part of the state) and once more on
# the kept design.
CONFIG = """
[space_options]
stem_channels = 4
stages = [[8, 1, 2], [8, 1, 1]]
ops = ["conv3x3", "dwsep3x3", "skip", "maxpool"]
activations = ["relu", "hardswish"]
[search]
warmup_steps = 8
batch_size = 16
eval_every = 10
measure_every = 10
checkpoint_every = 5
stages = [[0.5, 2]]
"""
ARGS = ["--dataset", "digits", "--space", "chain", "--target", "vta", "--steps", "40", "--epochs", "0", "--no-progress"]


def _files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _history(run: Path) -> list:
    recs = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    for r in recs:
        r.pop("time_s", None)  # wall clock: the only thing a resumed run does not repeat
    return recs


def _cli(*args) -> subprocess.Popen:
    # one thread in every process: the two runs share the cores, and the same thread count in the
    # uninterrupted, killed and resumed processes keeps their arithmetic identical
    return subprocess.Popen([sys.executable, "-m", "explorer.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"})


@pytest.mark.slow  # two searches and a resume (~25 s): the slow tier; bad --resume input stays fast
def test_killed_search_resumes_to_the_same_design(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    ref = _cli("search", "--config", str(cfg), *ARGS, "--out", str(whole))
    proc = _cli("search", "--config", str(cfg), *ARGS, "--out", str(killed))
    ckpt = tmp_path / "killed.partial" / "checkpoint.pt"
    deadline = time.monotonic() + 300
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ckpt.exists(), proc.communicate()[1] if proc.poll() is not None else "no checkpoint in 300 s"
    time.sleep(random.Random(7).uniform(0.0, 1.5))  # a random moment, the same in every run of the test
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL and not killed.exists(), "the search ended before it was killed"
    # a checkpoint write killed halfway leaves its temporary file behind: resume ignores it
    (ckpt.parent / "checkpoint.pt.tmp").write_bytes(b"half a checkpoint")
    _, err = ref.communicate()
    assert ref.returncode == 0, err

    res = _cli("search", "--resume", str(killed), "--no-progress")
    out, err = res.communicate()
    assert res.returncode == 0, err
    assert "results in" in out and not ckpt.parent.exists()
    assert not {"checkpoint.pt", "checkpoint.pt.tmp"} & set(os.listdir(killed))
    for name in ("design.json", "hw_config.json"):
        assert (killed / name).read_text() == (whole / name).read_text(), name
    a, b = (json.loads((d / "summary.json").read_text()) for d in (whole, killed))
    for s in (a, b):
        s.pop("search_s")
    assert a == b  # genotype, hardware, figures, the simulator's verdict, best step, stop reason
    assert _history(killed) == _history(whole)
    import sqlite3

    with sqlite3.connect(os.environ["EXPLORER_STORE"]) as c:  # the store the killed search wrote to
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        runs = {r[0] for r in c.execute("SELECT run_dir FROM runs")}
    assert {str(whole.resolve()), str(killed.resolve())} <= runs  # both runs recorded, once each


@pytest.mark.parametrize("case, message", [
    ("missing", "no such run folder"),
    ("finished", "is a finished run"),
    ("no-checkpoint", "has no checkpoint yet"),
    ("truncated", "corrupt or truncated checkpoint"),
    ("garbage", "corrupt or truncated checkpoint"),
    ("no-config", "cannot read the run's config"),
])
def test_bad_resume_one_message_exit_2_nothing_changed(tmp_path, capsys, case, message):
    run = tmp_path / "run"
    partial = tmp_path / "run.partial"
    if case == "finished":
        run.mkdir()
        (run / "summary.json").write_text("{}\n")
        (run / "design.json").write_text("{}\n")
    elif case != "missing":
        partial.mkdir()
        if case != "no-config":
            (partial / "config.json").write_text(json.dumps({**tiny_config().as_dict(), "method": "cosearch"}))
        (partial / "history.jsonl").write_text('{"step": 1}\n')
        if case in ("truncated", "garbage", "no-config"):
            _save_checkpoint(partial / "checkpoint.pt", {"format": 1, "search": {"loop": {}}, "w": torch.zeros(1000)})
        if case == "truncated":
            data = (partial / "checkpoint.pt").read_bytes()
            (partial / "checkpoint.pt").write_bytes(data[: len(data) // 2])
        elif case == "garbage":
            (partial / "checkpoint.pt").write_bytes(b"\x80\x04not a checkpoint")
    before = {p.name: _files(p) for p in (run, partial) if p.exists()}
    assert main(["search", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("explorer: error: ") and message in err and len(err.strip().splitlines()) == 1, err
    assert {p.name: _files(p) for p in (run, partial) if p.exists()} == before


def test_bad_resume_from_a_fresh_process(tmp_path):
    """The same as the CLI user sees it: exit code 2, one line, no traceback."""
    (tmp_path / "run.partial").mkdir()
    (tmp_path / "run.partial" / "config.json").write_text(json.dumps({**tiny_config().as_dict(), "method": "cosearch"}))
    (tmp_path / "run.partial" / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    r = run_cli("search", "--resume", str(tmp_path / "run.partial"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("explorer: error: ") and "corrupt or truncated checkpoint" in r.stderr


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    """A write that fails halfway leaves the previous checkpoint whole and removes its temporary file;
    a stray one left by a process killed outright is replaced by the next write."""
    path = tmp_path / "checkpoint.pt"
    first = {"format": 1, "method": "cosearch", "config": {}, "history_bytes": 0, "history_records": 0,
             "search": {"loop": {"step": 5}}, "w": torch.arange(10.0)}
    _save_checkpoint(path, first)

    def killed_write(obj, f):
        f.write(b"PK\x03\x04 the first bytes of a zip")
        raise KeyboardInterrupt  # the process dies here

    monkeypatch.setattr(torch, "save", killed_write)
    with pytest.raises(KeyboardInterrupt):
        _save_checkpoint(path, {**first, "search": {"loop": {"step": 10}}})
    monkeypatch.undo()
    assert not (tmp_path / "checkpoint.pt.tmp").exists()
    ck = _load_checkpoint(path)
    assert ck["search"]["loop"]["step"] == 5 and torch.equal(ck["w"], first["w"])
    (tmp_path / "checkpoint.pt.tmp").write_bytes(b"PK\x03\x04 what a SIGKILL left")
    _save_checkpoint(path, {**first, "search": {"loop": {"step": 15}}})
    assert _load_checkpoint(path)["search"]["loop"]["step"] == 15 and not (tmp_path / "checkpoint.pt.tmp").exists()


def test_config_json_round_trip():
    cfg = tiny_config(limits={"latency_ms": 0.5}, objective={"latency_s": 0.02})
    cfg.calibration = None
    back = config_from_dict(json.loads(json.dumps({**cfg.as_dict(), "method": "cosearch", "out": "x"})))
    assert back.as_dict() == cfg.as_dict()  # the objective as recorded, not merged with the defaults


@pytest.mark.slow
def test_resume_of_a_random_run_starts_it_again(tmp_path, capsys):
    cfg = tiny_config(steps=1)
    partial = tmp_path / "run.partial"
    partial.mkdir()
    (partial / "config.json").write_text(json.dumps({**cfg.as_dict(), "method": "random", "force": False}))
    s = resume_search(tmp_path / "run", progress=False)
    assert s["method"] == "random" and (tmp_path / "run" / "summary.json").is_file() and not partial.exists()
    err = capsys.readouterr().err
    assert "keeps no checkpoints" in err and "again from the beginning" in err


def test_resume_of_an_unknown_method_is_refused(tmp_path):
    (tmp_path / "run.partial").mkdir()
    (tmp_path / "run.partial" / "config.json").write_text(json.dumps({**tiny_config().as_dict(), "method": "annealing"}))
    with pytest.raises(ConfigError, match="unknown method 'annealing'"):
        resume_search(tmp_path / "run")


@pytest.mark.parametrize("method, kept", [("random", False), ("sequential", False), ("cosearch", True)])
def test_a_failed_search_leaves_a_partial_folder_only_where_it_can_resume(tmp_path, monkeypatch, method, kept):
    import explorer.api as api
    from explorer.errors import ConfigError
    from tests.conftest import tiny_config

    def fail(*a, **k):
        raise ConfigError("no design met the limits")

    monkeypatch.setattr(api, "_search_into", fail)
    with pytest.raises(ConfigError):
        api.run_search(tiny_config(), tmp_path / "run", method=method, progress=False)
    assert (tmp_path / "run.partial").exists() == kept and not (tmp_path / "run").exists()
