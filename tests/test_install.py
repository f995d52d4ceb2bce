"""Installed as a package (not editable), used from another folder: shipped data is found inside the
package, and nothing a run writes lands in the installed files."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``pip install --no-deps --target`` of a copy of the source (the build writes beside the source)."""
    base = tmp_path_factory.mktemp("install")
    src = base / "src"
    anywhere = shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__", ".pytest_cache")

    def ignore(folder, names):  # runs/ and bench-out/ are outputs at the top; explorer/runs/ is a package
        return anywhere(folder, names) | ({"runs", "bench-out"} & set(names) if Path(folder) == REPO else set())

    shutil.copytree(REPO, src, ignore=ignore)
    target = base / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--target", str(target), str(src)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    # the top-level targets/ and schedules/, mapped into the package
    shipped = {str(p.relative_to(target / "explorer" / "resources")) for p in (target / "explorer" / "resources").rglob("*.*")
               if "__pycache__" not in p.parts}
    want = {f"targets/{p.name}" for p in (REPO / "targets").glob("*.toml")} | {
        str(p.relative_to(REPO)) for p in (REPO / "schedules").glob("*/*.json")}
    assert shipped == want and "targets/vta.toml" in want and "schedules/cpu/database_workload.json" in want, shipped
    return target


def test_every_package_is_listed_for_the_wheel():
    """pyproject.toml lists the packages by name (the data packages are mapped from the top level): a
    new sub-package of explorer/ that is not listed would be missing from an installed copy."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "explorer").rglob("__init__.py")}
    assert listed - found == {"explorer.resources.targets", "explorer.resources.schedules"}
    assert found <= listed, f"not listed in pyproject.toml: {sorted(found - listed)}"


def test_a_checkout_reads_the_top_level_data():
    """From the source tree (and an editable install) the shipped data is the repository's own."""
    from explorer.paths import shipped_schedules, shipped_targets_dir

    assert shipped_targets_dir() == REPO / "targets" and (REPO / "targets" / "vta.toml").is_file()
    assert shipped_schedules("cpu") == REPO / "schedules" / "cpu"


def _elsewhere(installed, tmp_path):
    """A folder outside the checkout, an environment that finds only the installed copy, and its CLI."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPLORER_")}
    env.update(PYTHONPATH=str(installed), PYTHONWARNINGS="ignore")

    def cli(*args):
        return subprocess.run([sys.executable, str(installed / "bin" / "explorer"), *args], capture_output=True,
                              text=True, env=env, cwd=work, timeout=600)

    return work, env, cli


@pytest.mark.slow  # a pip install and a search: the slow tier
def test_installed_package_lists_targets_and_searches_from_another_folder(installed, tmp_path):
    before = _tree(installed)
    work, env, cli = _elsewhere(installed, tmp_path)

    probe = subprocess.run([sys.executable, "-c", "import explorer; print(explorer.__file__)"], capture_output=True,
                           text=True, env=env, cwd=work)
    assert probe.stdout.strip().startswith(str(installed)), probe.stdout  # the installed copy, not the checkout
    code = "from explorer.paths import shipped_schedules as s, shipped_targets_dir as t; print(t()); print(s('cpu'))"
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=work)
    assert probe.stdout.split() == [str(installed / "explorer" / "resources" / "targets"),
                                    str(installed / "explorer" / "resources" / "schedules" / "cpu")], probe
    r = cli("list")
    assert r.returncode == 0, r.stderr
    import json

    assert json.loads(r.stdout)["targets"] == ["cpu", "cuda", "vta"]
    r = cli("search", "--dataset", "digits", "--steps", "20", "--epochs", "0", "--out", "run", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert (work / "run" / "summary.json").is_file() and (work / "run" / "hw_config.json").is_file()
    assert _tree(installed) == before, "a run wrote into the installed package"


@pytest.mark.slow  # a search with retraining, then tuning: the slow tier
def test_installed_package_deploys_tuned_from_another_folder(installed, tmp_path):
    """deploy tunes on this machine into the user's database under the working folder, never into
    the installed package."""
    import json

    before = _tree(installed)
    work, env, cli = _elsewhere(installed, tmp_path)

    r = cli("search", "--dataset", "digits", "--steps", "20", "--epochs", "1", "--out", "run", "--no-progress")
    assert r.returncode == 0, r.stderr
    r = cli("deploy", "run", "--target", "cpu", "--out", "dep", "--trials", "16", "--layout", "NCHW",
            "--no-progress")
    assert r.returncode == 0, r.stderr
    card = json.loads((work / "dep" / "card.json").read_text())
    tn = card["tuning"]
    # the budget counts the model's total: records the shipped database holds for this very CPU
    # are copied in first and count as trials, and a kernel less than half a batch below its part
    # is left as it is (tune._pick), so this run's share may be a few short of 16
    assert tn["status"] == "tuned here" and 0 < tn["trials_this_run"] <= tn["trials_total"] <= 16, json.dumps(tn)
    assert Path(card["tuning"]["database"]) == Path("runs") / "schedules" / "cpu"
    assert (work / "runs" / "schedules" / "cpu" / "explorer-db.json").is_file() and card["build"]["scheduled_kernels"] > 0
    assert _tree(installed) == before, "a deploy wrote into the installed package"


@pytest.mark.slow  # worker processes, a report: the slow tier
def test_installed_package_explores_and_reports_from_another_folder(installed, tmp_path):
    """explore's worker processes import the installed copy; the exploration, its report and the
    store go under the working folder, never into the package."""
    import json

    before = _tree(installed)
    work, env, cli = _elsewhere(installed, tmp_path)
    r = cli("explore", "--targets", "vta", "--dataset", "digits", "--steps", "12", "--epochs", "0",
            "--latency-ms", "0.05", "--seeds", "2", "--out", "ex", "--no-progress")
    assert r.returncode == 0, r.stderr
    s = json.loads((work / "ex" / "exploration.json").read_text())
    assert [x["status"] for x in s["runs"]] == ["done", "done"] and s["fronts"]["latency_ms"]["all"]
    r = cli("report", "ex")
    assert r.returncode == 0 and (work / "ex" / "report.html").stat().st_size > 50_000, r.stderr
    r = cli("runs", "list", "--json")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 2, r.stderr
    assert (work / "runs" / "store.sqlite").is_file()
    assert _tree(installed) == before, "an exploration wrote into the installed package"
