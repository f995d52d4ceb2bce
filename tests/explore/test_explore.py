"""`explorer explore`: the grid, Pareto fronts and hypervolume, the local pool and Ray giving the
same fronts, resuming an exploration, and `explorer runs` over the store."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from explorer.explore.grid import Job, compute_fronts, make_grid, parse_seeds
from explorer.errors import ConfigError
from explorer.explore.pareto import front, hypervolume, point_of

from ..conftest import make_table_target, run_cli

TINY = """
dataset = "digits"
[space_options]
stem_channels = 8
stages = [[8, 2, 2], [16, 1, 1]]
[search]
steps = 24
warmup_steps = 4
eval_every = 6
batch_size = 32
stages = [[0.5, 3]]
[retrain]
epochs = 0
"""
OPTIONS = {"stem_channels": 8, "stages": [[8, 2, 2], [16, 1, 1]]}


def test_front_and_hypervolume_by_hand():
    pts = [("a", 0.9, 3.0), ("b", 0.8, 1.0), ("c", 0.85, 3.5), ("d", 0.8, 2.0), ("e", 0.95, 5.0), ("f", 0.9, 3.0)]
    assert front(pts) == ["b", "a", "e"]  # c and d dominated, f a duplicate of a
    # box acc [0.5, 1] x cost [0, 10]: steps at cost 1 (0.8), 3 (0.9), 5 (0.95)
    hv = hypervolume([(a, c) for _, a, c in pts], ref_cost=10.0, ref_acc=0.5)
    want = ((3 - 1) * 0.3 + (5 - 3) * 0.4 + (10 - 5) * 0.45) / (0.5 * 10)
    assert hv == pytest.approx(want)
    assert hypervolume([(0.4, 1.0), (0.9, 11.0)], 10.0, 0.5) == 0.0  # below the accuracy floor, beyond the cost box
    assert hypervolume([(1.0, 0.0)], 10.0, 0.5) == pytest.approx(1.0)
    # a better design only ever raises it
    assert hypervolume([(a, c) for _, a, c in pts] + [(0.99, 0.5)], 10.0, 0.5) > hv


def test_a_run_counts_with_its_best_evidence_of_accuracy():
    """Test accuracy after retraining; else the brief training from scratch of selection (a design the
    climb brought in may have untrained weights in the supernet: a one-shot score near chance); else
    the one-shot score."""
    base = {"one_shot_val_accuracy": 0.09, "figures": {"latency_ms": 1.0}}
    assert point_of({**base, "test_accuracy": 0.97})["accuracy_kind"] == "test"
    p = point_of({**base, "proxy_val_accuracy": 0.968})
    assert (p["accuracy"], p["accuracy_kind"]) == (0.968, "briefly trained val")
    assert (point_of(base)["accuracy"], point_of(base)["accuracy_kind"]) == (0.09, "one-shot val")


def test_fronts_per_target_and_across():
    def run(i, t, acc, lat, area=None):
        fig = {"latency_ms": lat, **({"area_mm2": area} if area else {})}
        return {"id": i, "target": t, "status": "done", "summary": {"test_accuracy": acc, "figures": fig}}

    runs = [run("v1", "vta", 0.90, 0.02, 2.0), run("v2", "vta", 0.95, 0.05, 3.0), run("v3", "vta", 0.85, 0.03, 1.0),
            run("c1", "cpu", 0.97, 0.04), run("c2", "cpu", 0.80, 0.01),
            {"id": "x", "target": "cpu", "status": "failed", "summary": None}]
    # a measured latency (CPU targets) replaces the model's figure
    runs[3]["summary"]["measured"] = {"figures": {"latency_ms": 0.06}}
    fronts, hv = compute_fronts(runs)
    assert fronts["latency_ms"]["vta"] == ["v1", "v2"]
    assert fronts["latency_ms"]["cpu"] == ["c2", "c1"]
    assert fronts["latency_ms"]["all"] == ["c2", "v1", "v2", "c1"]
    assert fronts["area_mm2"] == {"all": ["v3", "v1", "v2"], "vta": ["v3", "v1", "v2"]}
    assert "energy_mJ" not in fronts
    assert hv["all"]["latency_ms"] >= max(hv["vta"]["latency_ms"], hv["cpu"]["latency_ms"])


def test_grid_drops_limits_a_target_does_not_price(tmp_path):
    table, _ = make_table_target(tmp_path, OPTIONS)
    jobs, notes = make_grid(["vta", table], {"latency_ms": [0.02, 0.05], "area_mm2": [2.0]}, [0, 1], ["cosearch"])
    vta = [j for j in jobs if j.target == "vta"]
    phone = [j for j in jobs if j.target == table]
    assert len(vta) == 4 and len(phone) == 4  # the phone prices latency only: area is left out, not a failure
    assert all(dict(j.limits).keys() == {"latency_ms"} for j in phone)
    assert any("area_mm2" in n for n in notes)
    assert len({j.id for j in jobs}) == len(jobs)
    assert Job("vta", (("latency_ms", 0.05),), 1, "random").id == "vta-latency_ms=0.05-s1-random"
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("4,9") == [4, 9]
    for bad in ("0", "x", "1,1"):
        with pytest.raises(ConfigError):
            parse_seeds(bad)
    with pytest.raises(ConfigError, match="--methods"):
        make_grid(["vta"], {}, [0], ["greedy"])


@pytest.mark.parametrize("args, message", [
    (["--targets", "nosuch"], "nosuch"),
    (["--targets", "vta", "--seeds", "0"], "--seeds"),
    (["--targets", "vta", "--latency-ms", "0.1,abc"], "not a number"),
    (["--targets", "vta", "--latency-ms", "-1"], "positive"),
    (["--targets", "vta", "--methods", "cosearch,greedy"], "--methods"),
])
def test_bad_input_one_message(tmp_path, capsys, args, message):
    from explorer.cli import main

    assert main(["explore", *args, "--dataset", "digits", "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("explorer: error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "x").exists()  # nothing written for input refused up front


def _explore(tmp_path, out, *extra, targets=None, limits="0.07,0.12"):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    return run_cli("explore", "--targets", targets, "--config", str(cfg), "--latency-ms", limits,
                   "--out", str(out), "--no-progress", *extra)


def _fronts(out):
    s = json.loads((out / "exploration.json").read_text())
    return s["fronts"], s["hypervolume"], {r["id"]: (r["status"], r["summary"]["figures"], r["summary"]["genotype"])
                                           for r in s["runs"]}


@pytest.mark.slow  # long (10-20 s on 2 cores): the slow tier, which CI runs
def test_explore_then_runs_list_show_rm(tmp_path, capsys):
    out = tmp_path / "expl"
    r = _explore(tmp_path, out, "--seeds", "2", targets="vta", limits="0.07")
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "exploration.json").read_text())
    assert len(s["runs"]) == 2 and all(x["status"] == "done" for x in s["runs"])
    assert set(s["fronts"]) == {"latency_ms", "energy_mJ", "area_mm2"}
    assert set(s["fronts"]["latency_ms"]) == {"all", "vta"}
    assert (out / "pareto.png").stat().st_size > 10_000
    assert "front: accuracy vs latency_ms, across targets" in r.stdout
    for x in s["runs"]:
        assert (out / x["run_dir"] / "summary.json").is_file()
    # the same command again: everything is done, nothing runs
    t0 = time.monotonic()
    again = _explore(tmp_path, out, "--seeds", "2", targets="vta", limits="0.07")
    assert again.returncode == 0 and "(2 already done)" in again.stdout, again.stdout
    assert time.monotonic() - t0 < 25
    # other search settings in the same folder are refused, nothing changed
    before = (out / "exploration.json").read_text()
    other = run_cli("explore", "--targets", "vta", "--dataset", "digits", "--steps", "5", "--out", str(out),
                    "--no-progress")
    assert other.returncode == 2 and "other search settings" in other.stderr
    assert (out / "exploration.json").read_text() == before
    # the store knows the runs, tagged with the exploration (in-process: the CLI's own code path)
    from explorer.cli import main

    def cli(*args):
        capsys.readouterr()
        rc = main(list(args))
        o = capsys.readouterr()
        return rc, o.out, o.err

    rc, listed, _ = cli("runs", "list", "--exploration", str(out), "--json")
    rows = [json.loads(line) for line in listed.splitlines()]
    assert rc == 0 and len(rows) == 2
    assert {os.path.basename(x["run_dir"]) for x in rows} == {x["id"] for x in s["runs"]}
    rc, table_out, _ = cli("runs", "list")
    assert rc == 0 and "cosearch" in table_out
    rc, shown, _ = cli("runs", "show", str(rows[0]["id"]))
    assert rc == 0 and json.loads(shown)["run_dir"] == rows[0]["run_dir"]
    gone = rows[1]["run_dir"]
    assert cli("runs", "rm", gone)[0] == 0 and not os.path.exists(gone)
    assert len(cli("runs", "list", "--exploration", str(out), "--json")[1].splitlines()) == 1
    rc, _, err = cli("runs", "show", "99999")
    assert rc == 2 and "no run" in err


@pytest.mark.slow  # 8 s: two failing searches in subprocesses
def test_limits_no_design_meets_fail_their_runs_with_one_message(tmp_path):
    out = tmp_path / "expl"
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    r = run_cli("explore", "--targets", "vta", "--config", str(cfg), "--latency-ms", "1e-9", "--out", str(out),
                "--no-progress")
    assert r.returncode == 2 and "failed" in r.stderr and "Traceback" not in r.stderr, r.stderr
    s = json.loads((out / "exploration.json").read_text())
    status = {x["id"]: x["status"] for x in s["runs"]}
    assert status == {"vta-latency_ms=1e-09-s0-cosearch": "failed"}
    assert "impossible limits" in s["runs"][0]["error"] and s["fronts"] == {}


@pytest.mark.slow
def test_local_pool_and_ray_give_the_same_fronts(tmp_path):
    """2 targets x 2 limits x 2 seeds on 2 cores, once on the local pool and once on Ray (a head on
    loopback): the same runs, fronts and hypervolumes."""
    pytest.importorskip("ray")
    table, _ = make_table_target(tmp_path, OPTIONS)
    local, ray = tmp_path / "local", tmp_path / "ray"
    r1 = _explore(tmp_path, local, "--seeds", "2", targets=f"vta,{table}")
    assert r1.returncode == 0, r1.stderr
    r2 = _explore(tmp_path, ray, "--seeds", "2", "--ray", "local", targets=f"vta,{table}")
    assert r2.returncode == 0, r2.stderr
    assert "on ray" in r2.stdout
    f1, f2 = _fronts(local), _fronts(ray)
    assert len(f1[2]) == 8 and f1 == f2
    assert set(f1[0]["latency_ms"]) == {"all", "vta", "phone"}
    assert set(f1[0]["area_mm2"]) == {"all", "vta"}  # only the accelerator has an area
    # the report of the exploration renders in headless Chromium: every image loads, no console error
    from explorer.report.write import write_report

    from ..chromium import CDPError, Chromium, ensure_chromium
    from ..report.test_report_html import _check_page, _count

    html = write_report([str(local)], None)
    try:
        binary = ensure_chromium()
    except CDPError as e:
        pytest.skip(f"no Chromium to render the report in: {e}")
    with Chromium(binary) as browser:
        page = browser.open(html)
        _check_page(page)
        assert _count(page, "section.run") == 8


@pytest.mark.slow
def test_killed_exploration_resumes_keeping_finished_runs(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    out = tmp_path / "expl"
    args = [sys.executable, "-m", "explorer.cli", "explore", "--targets", "vta", "--config", str(cfg),
            "--latency-ms", "0.02,0.04,0.06", "--seeds", "1", "--out", str(out), "--workers", "1", "--no-progress"]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    done = []
    while time.monotonic() < deadline and not done:
        time.sleep(0.5)
        try:
            s = json.loads((out / "exploration.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        done = [x["id"] for x in s["runs"] if x["status"] == "done"]
    os.killpg(p.pid, signal.SIGKILL)  # the driver and its worker
    p.wait()
    assert done, "no search finished before the deadline"
    kept = {x["id"]: x["summary"] for x in json.loads((out / "exploration.json").read_text())["runs"]
            if x["status"] == "done"}
    r = run_cli(*args[3:])
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "exploration.json").read_text())
    assert all(x["status"] == "done" for x in s["runs"]) and len(s["runs"]) == 3
    assert f"({len(kept)} already done)" in r.stdout
    for x in s["runs"]:
        if x["id"] in kept:
            assert x["summary"] == kept[x["id"]]  # not run again


def test_local_pool_survives_a_dead_worker_and_respects_cores():
    from explorer.explore.executors import LocalExecutor

    from .._pool_jobs import square_or_die

    with LocalExecutor(2) as ex:
        got = {i: (ok, v) for i, ok, v in ex.run(square_or_die, [((x,), 1 if x != 2 else 5) for x in range(6)])}
    assert set(got) == set(range(6))
    assert not got[3][0] and "died" in got[3][1]
    # the jobs beside the one that died run again; a job asking for more cores than exist still runs
    assert all(got[i] == (True, i * i) for i in (0, 1, 2, 4, 5))


def test_runs_on_a_file_that_is_not_a_store(tmp_path, capsys):
    from explorer.cli import main

    bad = tmp_path / "store.sqlite"
    bad.write_bytes(b"not a database\n" * 10)
    before = bad.read_bytes()
    assert main(["runs", "list", "--store", str(bad)]) == 2
    assert "not a readable store" in capsys.readouterr().err
    assert bad.read_bytes() == before


@pytest.mark.slow
def test_a_node_that_does_not_see_the_folder_ships_the_run_back(tmp_path):
    """On a cluster node without the exploration folder the run is made in a temporary folder and
    comes back as a tarball, unpacked and recorded by the driver."""
    from explorer.explore.grid import _unpack, run_job
    from explorer.measure.store import Store

    spec = {"env": {}, "threads": 1, "exploration": str(tmp_path / "elsewhere"), "run_dir": "/nonexistent/run",
            "config_toml": TINY, "overrides": {"target": "vta", "seed": 0, "steps": 12}, "limits": {},
            "method": "cosearch"}
    out = run_job(spec)
    assert out["ok"], out.get("error")
    assert not (tmp_path / "elsewhere").exists() and not os.path.exists("/nonexistent")
    expl = tmp_path / "expl"
    (expl / "runs").mkdir(parents=True)
    _unpack(out["tarball"], expl / "runs" / "r0", expl)
    assert json.loads((expl / "runs" / "r0" / "summary.json").read_text())["design_key"] == out["summary"]["design_key"]
    with Store(os.environ["EXPLORER_STORE"]) as st:
        assert [r["run_dir"] for r in st.runs(exploration=str(expl.resolve()))] == [str((expl / "runs" / "r0").resolve())]
