"""The typed run summary: what a search writes reads back into a RunSummary and out again as the same
file; older summaries (without the newer keys) read; keys it does not know survive a round trip."""

import json
import math

import pytest

from explorer.api import run_search
from explorer.errors import DataError
from explorer.runs import RunSummary, Verdict, load_run
from explorer.runs.store import _row
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A short co-search with a limit and one retraining epoch: every key but ``plot_error``."""
    out = tmp_path_factory.mktemp("summary") / "run"
    returned = run_search(tiny_config(steps=10, epochs=1, limits={"latency_ms": 50}), out, progress=False)
    return out, returned


def test_round_trip_of_a_written_summary(run):
    out, returned = run
    text = (out / "summary.json").read_text()
    d = json.loads(text)
    s = RunSummary.from_json(d)
    assert s.extra == {} and s.finish_key == "simulated" and isinstance(s.verdict, Verdict)
    assert s.as_json() == d and list(s.as_json()) == list(d)  # same keys, same order
    assert json.dumps(s.as_json(), indent=2) + "\n" == text  # the file itself, byte for byte
    # what run_search returns is the file plus the folder
    assert returned == {**d, "run_dir": str(out)}
    assert RunSummary.from_json(returned).run_dir == str(out)
    # typed fields as documented
    assert s.method == "cosearch" and s.steps == 10 and s.limits == {"latency_ms": 50}
    assert s.limits_met is True and 0 < s.figures["latency_ms"] <= 50 and isinstance(s.search_s, float)
    assert s.test_accuracy == s.retrain["test_accuracy"] and s.retrain["epochs"] == 1
    assert s.effective_verdict == s.verdict
    # what fixes the arithmetic, so what a seed reproduces: this process's PyTorch, kernels and threads
    import torch

    assert s.numerics["torch"] == torch.__version__ and s.numerics["threads"] >= 1
    assert s.numerics["kernels"] == torch.backends.cpu.get_cpu_capability() and s.numerics["cpu"]


def test_run_folder_gives_the_typed_summary(run):
    out, _ = run
    r = load_run(out)
    assert isinstance(r.summary, dict) and r.typed == RunSummary.from_json(r.summary)
    assert r.typed.as_json() == r.summary


def test_an_older_summary_reads(run):
    """A summary from before stop_detail, selection, near_chance, the measurement and the verdict."""
    out, _ = run
    new = json.loads((out / "summary.json").read_text())
    old = {k: new[k] for k in ("method", "design_key", "genotype", "hardware", "figures", "limits", "limits_met",
                               "repaired_moves", "one_shot_val_accuracy", "best_step", "steps", "stop_reason", "search_s")}
    s = RunSummary.from_json(old)
    assert s.stop_detail is None and s.selection is None and s.near_chance is None and s.measured is None
    assert s.limits_met_measured is None and s.verdict is None and s.retrain is None and s.test_accuracy is None
    assert s.effective_verdict == Verdict(new["limits_met"], "model", new["limits_met"])
    assert s.as_json() == old and list(s.as_json()) == list(old)  # nothing added on the way back
    # the oldest: hardly anything
    bare = RunSummary.from_json({"genotype": "g", "figures": {"latency_ms": 1.0}})
    assert bare.method == "cosearch" and bare.limits == {} and math.isnan(bare.one_shot_val_accuracy)
    # the store's listing reads it
    row = _row({"id": 1, "method": "cosearch", "target": "targets/vta.toml", "seed": 0, "limits": {"latency_ms": 50},
                "summary": old, "run_dir": "/x"})
    assert " met " in row and "-" in row


def test_unknown_keys_survive(run):
    out, _ = run
    d = json.loads((out / "summary.json").read_text())
    d["from_a_newer_version"] = {"a": [1, 2]}
    d["finished"] = {"by": "another backend"}  # not this run's finish key: kept as read
    s = RunSummary.from_json(d, finish_key="simulated")
    assert s.extra == {"from_a_newer_version": {"a": [1, 2]}, "finished": {"by": "another backend"}}
    assert s.as_json() == d
    assert RunSummary.from_json(json.loads(json.dumps(s.as_json()))).as_json() == d


def test_a_summary_of_the_wrong_shape_is_a_data_error(run):
    with pytest.raises(DataError, match="JSON object"):
        RunSummary.from_json([1, 2])
    with pytest.raises(DataError, match="'figures': expected a JSON object"):
        RunSummary.from_json({"figures": [1.0]})
    out, _ = run
    r = load_run(out)
    bad = type(r)(r.path, {**r.summary, "hardware": "vta"}, r.history)
    with pytest.raises(DataError, match="summary.json: summary 'hardware'"):
        bad.typed
