"""``explorer report``: the HTML report of runs and explorations, rendered in headless Chromium.

The browser checks are what a reader would see: every image decoded, nothing logged at warning
level or above, no request leaving the file. A page with a corrupt image must fail the same check.
"""

import json
import re
import shutil
import time
from pathlib import Path

import pytest
import torch

from explorer.api import run_search
from explorer.errors import ConfigError, DataError, InfeasibleLimitsError
from explorer.explore.grid import compute_fronts
from explorer.report.write import write_report

from ..chromium import CDPError, Chromium, ensure_chromium
from ..conftest import tiny_config

# A second accelerator target, as a user would add one: VTA's backend, a smaller design space.
EDGE_TOML = """name = "vta-edge"
description = "a small VTA for the report test: one buffer size, two block sizes, two clocks"
backend = "vta"
[knobs.LOG_BATCH]
values = [0]
default = 0
[knobs.LOG_BLOCK_IN]
values = [3, 4]
default = 4
[knobs.LOG_BLOCK_OUT]
values = [3, 4]
default = 4
[knobs.LOG_INP_BUFF_SIZE]
values = [15]
default = 15
[knobs.LOG_WGT_BUFF_SIZE]
values = [17]
default = 17
[knobs.LOG_ACC_BUFF_SIZE]
values = [16]
default = 16
[knobs.LOG_UOP_BUFF_SIZE]
values = [15]
default = 15
[knobs.LOG_INP_WIDTH]
values = [3, 2]
default = 3
[knobs.LOG_WGT_WIDTH]
values = [3, 2]
default = 3
[knobs.HW_FREQ_MHZ]
values = [100, 200]
default = 100
[knobs.DRAM_BW_GBPS]
values = [2.0]
default = 2.0
[fixed]
TARGET = "sim"
HW_VER = "0.0.2"
LOG_ACC_WIDTH = 5
"""


# -- building runs and explorations ---------------------------------------------------------------

def _run(out: Path, target="vta", limits=None, seed=0, method="cosearch", steps=30, epochs=1, exploration=None) -> dict:
    # a random search runs for its time budget: a short one
    cfg = tiny_config(steps=steps, seed=seed, epochs=epochs, limits=dict(limits or {}),
                      budget_min=0.15 if method == "random" else 2.0)
    cfg.target = target
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # these nets are tiny: on a busy 2-core machine one thread is several times faster
    try:
        return run_search(cfg, out, method=method, progress=False, exploration=exploration)
    finally:
        torch.set_num_threads(threads)


def _exploration_doc(root: Path, runs: list, grid: dict) -> Path:
    """exploration.json, its fronts and hypervolumes computed as ``explorer explore`` computes them."""
    fronts, hypervolume = compute_fronts(runs)
    doc = {"version": 1, "grid": grid, "config": {"dataset": "digits", "space": "chain"}, "runs": runs,
           "fronts": fronts, "hypervolume": hypervolume}
    (root / "exploration.json").write_text(json.dumps(doc, indent=1))
    return root


def make_exploration(root: Path, specs: list) -> Path:
    """An exploration folder as ``explorer explore`` writes it, from real runs: ``specs`` are
    (target, limits, seed, method); a spec whose search raises is recorded as failed with its error."""
    root.mkdir(parents=True)
    runs = []
    for target, limits, seed, method in specs:
        rid = f"{target}-" + "-".join(f"{k}={v:g}" for k, v in limits.items()) + f"-s{seed}-{method}"
        rec = {"id": rid, "target": target, "limits": limits, "seed": seed, "method": method,
               "run_dir": f"runs/{rid}", "status": "done", "error": None, "summary": None}
        try:
            rec["summary"] = _run(root / rec["run_dir"], target, limits, seed, method, exploration=root)
        except InfeasibleLimitsError as e:
            rec.update(status="failed", error=f"{type(e).__name__}: {e}")
        runs.append(rec)
    grid = {"targets": sorted({s[0] for s in specs}), "limits": [dict(s[1]) for s in specs][:2],
            "seeds": sorted({s[2] for s in specs}), "methods": sorted({s[3] for s in specs})}
    return _exploration_doc(root, runs, grid)


def copied_exploration(root: Path, run: Path) -> Path:
    """A small exploration in seconds: copies of one real run whose figures are spread out, a second
    target, a failed and a pending run."""
    root.mkdir(parents=True)
    base = json.loads((run / "summary.json").read_text())
    runs = []
    for i, (target, scale, acc) in enumerate([("vta", 1.0, 0.6), ("vta", 1.6, 0.8), ("vta", 0.7, 0.5),
                                              ("vta-edge", 0.9, 0.7), ("vta-edge", 1.3, 0.65)]):
        rid = f"{target}-latency_ms=0.05-s{i}-cosearch"
        shutil.copytree(run, root / "runs" / rid)
        s = dict(base, test_accuracy=acc, figures={k: v * scale for k, v in base["figures"].items()})
        s.pop("measured", None)
        (root / "runs" / rid / "summary.json").write_text(json.dumps(s))
        runs.append({"id": rid, "target": target, "limits": {"latency_ms": 0.05}, "seed": i, "method": "cosearch",
                     "run_dir": f"runs/{rid}", "status": "done", "error": None, "summary": s})
    runs.append({"id": "vta-latency_ms=1e-06-s0-cosearch", "target": "vta", "limits": {"latency_ms": 1e-6}, "seed": 0,
                 "method": "cosearch", "run_dir": "runs/vta-latency_ms=1e-06-s0-cosearch", "status": "failed",
                 "error": "InfeasibleLimitsError: latency_ms=1e-06 is below the cheapest design (0.0093 ms)",
                 "summary": None})
    runs.append({"id": "vta-edge-latency_ms=0.05-s9-cosearch", "target": "vta-edge", "limits": {"latency_ms": 0.05},
                 "seed": 9, "method": "cosearch", "run_dir": "runs/vta-edge-latency_ms=0.05-s9-cosearch",
                 "status": "pending", "error": None, "summary": None})
    grid = {"targets": ["vta", "vta-edge"], "limits": [{"latency_ms": 0.05}, {"latency_ms": 1e-6}],
            "seeds": [0, 1, 2, 3, 4, 9], "methods": ["cosearch"]}
    return _exploration_doc(root, runs, grid)


@pytest.fixture(scope="session")
def edge_target():
    import os

    d = Path(os.environ["EXPLORER_HOME"]) / "targets"
    d.mkdir(parents=True, exist_ok=True)
    (d / "vta-edge.toml").write_text(EDGE_TOML)
    return "vta-edge"


@pytest.fixture(scope="session")
def one_run(tmp_path_factory):
    """A real co-search run on VTA with a latency limit, measured by the simulator during the search
    (not retrained: retraining and the simulation of the final design take longer than the search)."""
    out = tmp_path_factory.mktemp("report") / "run"
    _run(out, limits={"latency_ms": 0.05}, epochs=0)
    return out


@pytest.fixture(scope="session")
def chromium():
    try:
        binary = ensure_chromium()
    except CDPError as e:
        pytest.skip(f"no Chromium to render the report in: {e}")
    with Chromium(binary) as browser:
        yield browser


# -- what the page must show ----------------------------------------------------------------------

def _check_page(page) -> None:
    assert page.problems() == []
    assert page.images(), "the report has no images"
    dangling = page.evaluate("""Array.from(document.querySelectorAll('a[href^="#"]'))
        .map(a => a.getAttribute('href').slice(1)).filter(id => !document.getElementById(id))""")
    assert dangling == []
    outside = page.evaluate("""Array.from(document.querySelectorAll('[src],[href]'))
        .map(e => e.getAttribute('src') || e.getAttribute('href'))
        .filter(u => !u.startsWith('data:') && !u.startsWith('#'))""")
    assert outside == []


def _count(page, selector: str) -> int:
    return page.evaluate(f"document.querySelectorAll({json.dumps(selector)}).length")


def _design_rows(run: Path) -> int:
    """Rows of the design's choice tables: one per layer (op + act), one per stage (width)."""
    g = json.loads((run / "design.json").read_text())["genotype"]
    return len({re.sub(r"^[a-z]+_", "", k) for k in g})


@pytest.mark.slow  # a second browser render: the slow tier (the fast tier keeps the checker's test in the browser)
def test_report_of_a_run_and_an_exploration_renders_in_chromium(chromium, one_run, edge_target, tmp_path):
    ex = copied_exploration(tmp_path / "explore", one_run)
    t0 = time.monotonic()
    out = write_report([str(one_run), str(ex)], str(tmp_path / "r" / "report.html"))
    write_s = time.monotonic() - t0
    t0 = time.monotonic()
    page = chromium.open(out)
    _check_page(page)
    # one section for the run, one for the exploration with a section per finished run
    assert _count(page, "section.exploration") == 1
    assert _count(page, "section.run") == 1 + 5
    # per run: losses, resources, network and hardware probabilities, predicted vs measured
    for cls in ("plot-losses", "plot-resources", "plot-probs-network", "plot-probs-hardware", "plot-measured"):
        assert _count(page, f"img.{cls}") == 6, cls
    assert _count(page, "img.plot-entropy") == 0
    # fronts: 3 objectives x (vta, vta-edge, all targets)
    assert _count(page, "img.pareto") == 9
    assert _count(page, "img.pareto-latency_ms") == 3
    alt = page.evaluate("document.querySelector('img.pareto-latency_ms').alt")
    assert "front: #" in alt
    # the runs table: 7 rows; the failed run with its error; the pending one noted
    assert _count(page, "table.runs tbody tr") == 7
    assert _count(page, "table.runs tr.front") >= 2
    failed = page.evaluate("document.querySelector('div.failed').textContent")
    assert "InfeasibleLimitsError" in failed
    assert "pending" in page.evaluate("document.querySelector('section.exploration').textContent")
    # the final design: a row per layer and per stage, in every run section
    assert _count(page, "section.run table.design-choices tr.choice") == 6 * _design_rows(one_run)
    assert _count(page, "section.run table.hardware tbody tr") >= 6 * 5
    print(f"\nreport {out.stat().st_size / 1e6:.2f} MB written in {write_s:.1f} s, checked in Chromium in "
          f"{time.monotonic() - t0:.1f} s")


def test_checker_catches_a_broken_image_and_an_outside_request(chromium, one_run, tmp_path):
    """The check itself can fail: a corrupt data URI and an image from the network are both reported."""
    good = write_report([str(one_run)], str(tmp_path / "good.html"))
    text = good.read_text()
    bad = tmp_path / "bad.html"
    first = text.index("data:image/png;base64,") + len("data:image/png;base64,")
    bad.write_text(text[:first] + "AAAAcorrupt" + text[first + 40:])
    problems = chromium.open(bad).problems()
    assert any("image 0" in p and "did not load" in p for p in problems), problems
    outside = tmp_path / "outside.html"
    outside.write_text(text.replace("<body>", '<body><img src="http://127.0.0.1:9/x.png">', 1))
    problems = chromium.open(outside).problems()
    assert any(p.startswith("outside request: http://127.0.0.1:9/x.png") for p in problems), problems
    assert any("did not load" in p for p in problems), problems


@pytest.mark.slow
def test_report_of_a_real_exploration_renders_in_chromium(chromium, edge_target, tmp_path):
    """Real runs on two targets, limits, seeds and the three methods; one fails on an impossible limit."""
    t0 = time.monotonic()
    ex = make_exploration(tmp_path / "explore", [
        ("vta", {"latency_ms": 0.05}, 0, "cosearch"),
        ("vta", {"latency_ms": 0.03}, 1, "cosearch"),
        ("vta-edge", {"latency_ms": 0.05}, 0, "cosearch"),
        ("vta", {"latency_ms": 0.05}, 0, "sequential"),
        ("vta", {"latency_ms": 0.2}, 0, "random"),  # loose: its first sample is within the limit
        ("vta", {"latency_ms": 1e-6}, 0, "cosearch"),
    ])
    runs_s = time.monotonic() - t0
    out = write_report([str(ex)], None)
    assert out == ex / "report.html"
    page = chromium.open(out)
    _check_page(page)
    assert _count(page, "section.run") == 5
    assert _count(page, "img.plot-samples") == 1  # the random search: samples, not steps
    assert _count(page, "img.plot-losses") == 4
    assert _count(page, "img.pareto") == 3 * 3
    assert "InfeasibleLimitsError" in page.evaluate("document.querySelector('div.failed').textContent")
    print(f"\nexploration of 6 runs built in {runs_s:.0f} s")


# -- bad and partial input ------------------------------------------------------------------------

def test_bad_input_is_one_clear_error(one_run, tmp_path, capsys):
    from explorer.cli import main

    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="neither a run folder .* nor an exploration folder"):
        write_report([str(tmp_path / "empty")])
    with pytest.raises(ConfigError, match="no such file or folder"):
        write_report([str(tmp_path / "nowhere")])
    run = tmp_path / "run"
    shutil.copytree(one_run, run)
    (run / "summary.json").write_text("{ not json")
    with pytest.raises(DataError, match="summary.json: not valid JSON"):
        write_report([str(run)])
    (run / "summary.json").unlink()
    with pytest.raises(DataError, match="no summary.json; the run did not finish"):
        write_report([str(run)])
    shutil.copy(one_run / "summary.json", run / "summary.json")
    with open(run / "history.jsonl", "a") as f:
        f.write('{"step": 99, "L1": \n')
    with pytest.raises(DataError, match=r"history.jsonl, line \d+: not valid JSON"):
        write_report([str(run)])
    (run / "history.jsonl").unlink()
    with pytest.raises(DataError, match="no history.jsonl"):
        write_report([str(run)])
    ex = tmp_path / "ex"
    ex.mkdir()
    (ex / "exploration.json").write_text('{"runs": 3}')
    with pytest.raises(DataError, match="'runs' must be a list"):
        write_report([str(ex)])
    assert main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("explorer: error: ") and "\n" not in err
    assert not list(tmp_path.glob("**/*.tmp")) and not (tmp_path / "empty" / "report.html").exists()


def test_partial_data_renders_with_notes(one_run, tmp_path, monkeypatch):
    """A run with no steps in its history, an old history without probabilities, an exploration run whose
    folder is gone: each renders with a note; the default output goes where the brief says."""
    empty = tmp_path / "empty-history"
    shutil.copytree(one_run, empty)
    (empty / "history.jsonl").write_text('{"step": 1, "event": "measure-drain"}\n')
    (empty / "design.json").unlink()
    old = tmp_path / "old"
    shutil.copytree(one_run, old)
    lines = [json.loads(x) for x in (old / "history.jsonl").read_text().splitlines()]
    (old / "history.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k != "probs"}) + "\n"
                                               for r in lines))
    ex = copied_exploration(tmp_path / "ex", one_run)
    shutil.rmtree(ex / "runs" / "vta-latency_ms=0.05-s1-cosearch")
    out = write_report([str(empty)])
    assert out == empty / "report.html"
    text = out.read_text()
    assert "the history holds no search steps" in text and "no design.json" in text
    monkeypatch.chdir(tmp_path)
    out = write_report([str(old), str(ex)])
    assert out == Path("report.html")
    text = out.read_text()
    assert 'class="plot plot-entropy"' in text and "no per-option probabilities" in text
    assert "run folder not read" in text and "no such run folder" in text
    assert "http://" not in text and "https://" not in text
