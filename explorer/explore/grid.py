"""``explorer explore``: one search per target x limits x seed (x method), in parallel, with Pareto
fronts of accuracy against latency, energy and area, per target and across targets.

The exploration folder holds ``exploration.json`` (the grid, the base config, every run's status and
summary, the fronts and their hypervolumes), ``pareto.png`` and ``runs/<id>/`` (ordinary run
folders). It is rewritten atomically after every finished search, so a killed exploration loses only
the searches in flight; the same command again skips finished runs and resumes those that left a
checkpoint. Runs are recorded in the store tagged with the exploration (``explorer runs list
--exploration DIR``).
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, ExplorerError
from ..fsutil import atomic_write_json
from ..units import LIMIT_KEYS, by_limit_key

__all__ = ["Job", "make_grid", "explore", "explore_from_args", "compute_fronts"]

_SEARCH_KEYS = ("space", "dataset", "steps", "budget_min", "epochs")


@dataclass(frozen=True)
class Job:
    """One search of the grid."""

    target: str
    limits: tuple  # ((name, value), ...) sorted
    seed: int
    method: str

    @property
    def id(self) -> str:
        lim = "-".join(f"{k}={v:g}" for k, v in self.limits) or "nolimit"
        return f"{Path(self.target).stem}-{lim}-s{self.seed}-{self.method}"

    def as_json(self) -> dict:
        return {"id": self.id, "target": self.target, "limits": dict(self.limits), "seed": self.seed,
                "method": self.method}


def _floats(flag: str, text: str | None) -> list[float]:
    if text is None:
        return []
    out = []
    for part in str(text).split(","):
        try:
            v = float(part)
        except ValueError:
            raise ConfigError(f"--{flag.replace('_', '-')}: {part!r} is not a number") from None
        if not v > 0 or v == float("inf"):
            raise ConfigError(f"--{flag.replace('_', '-')}: limits must be positive numbers, got {part!r}")
        out.append(v)
    if len(set(out)) != len(out):
        raise ConfigError(f"--{flag.replace('_', '-')}: a value is given twice")
    return out


def parse_seeds(text: str) -> list[int]:
    """``N`` -> 0..N-1; ``a,b,c`` -> those seeds."""
    try:
        if "," not in text:
            n = int(text)
            if n < 1:
                raise ValueError
            return list(range(n))
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds: expected N >= 1 or a comma-separated list of integers, got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise ConfigError("--seeds: a seed is given twice")
    return seeds


def make_grid(targets: list[str], limit_values: dict[str, list[float]], seeds: list[int], methods: list[str],
              base_limits: dict | None = None) -> tuple[list[Job], list[str]]:
    """Every target x limit combination x seed x method. Limits a target does not price (area on a
    CPU) are left out for that target; notes say so. ``base_limits`` (the config's ``[limits]``)
    apply when no limit flag is given."""
    from ..api import METHODS
    from ..backends import load_target
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ConfigError(f"--methods: unknown {', '.join(bad) or '(none given)'}; valid: {', '.join(METHODS)}")
    if not targets:
        raise ConfigError("--targets: give at least one target")
    kinds = [k for k in LIMIT_KEYS if limit_values.get(k)]
    combos = ([dict(zip(kinds, vals)) for vals in itertools.product(*(limit_values[k] for k in kinds))]
              if kinds else [dict(base_limits or {})])
    jobs, notes = [], []
    for t in targets:
        backend = load_target(t).backend()  # a bad target name or file fails here, before any search
        priced = set(backend.resources)
        seen = []
        for combo in combos:
            kept = {k: v for k, v in combo.items() if by_limit_key(k).name in priced}
            dropped = sorted(set(combo) - set(kept))
            if dropped:
                notes.append(f"{t}: prices {', '.join(sorted(priced))}; its searches leave out {', '.join(dropped)}")
            key = tuple(sorted(kept.items()))
            if key not in seen:
                seen.append(key)
        for key, s, m in itertools.product(seen, seeds, methods):
            jobs.append(Job(t, key, s, m))
    return jobs, sorted(set(notes))


def _job_cores(target: str, cores: int) -> int:
    """A target that times code on this machine's CPU gets the whole machine (timings beside other
    searches would measure the contention); the others one core each."""
    from ..backends import load_target

    return cores if getattr(load_target(target).backend(), "times_on_host", False) else 1


def run_job(spec: dict) -> dict:
    """One search in a worker process (local pool or Ray task). Never raises for the job's own
    failures: returns ``{"ok": False, "error": ..., "user_error": bool}``."""
    import shutil
    import tarfile
    import tempfile
    import traceback

    os.environ.update(spec["env"])
    try:
        import torch

        torch.set_num_threads(spec["threads"])
        from ..api import resume_search, run_search
        from ..config import load_config, validate

        expl = Path(spec["exploration"])
        shared = (expl / "exploration.json").is_file()  # False on a cluster node that does not see the folder
        run_dir = Path(spec["run_dir"]) if shared else Path(tempfile.mkdtemp(prefix="explorer-run-")) / "run"
        resumed = False
        partial = run_dir.with_name(run_dir.name + ".partial")
        if shared and (partial / "checkpoint.pt").is_file():
            try:
                summary = resume_search(run_dir, progress=False)
                resumed = True
            except ConfigError:
                summary = None
        if not resumed:
            with tempfile.TemporaryDirectory() as tmp:
                cfg_path = Path(tmp) / "config.toml"
                cfg_path.write_text(spec["config_toml"])
                cfg = load_config(cfg_path, spec["overrides"])
            cfg.limits = dict(spec["limits"])
            cfg = validate(cfg)
            summary = run_search(cfg, run_dir, method=spec["method"], force=True, progress=False,
                                 exploration=expl if shared else None)
        out = {"ok": True, "summary": summary, "resumed": resumed, "host": os.uname().nodename}
        if not shared:  # ship the folder back to the driver
            import io

            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w:gz") as tf:
                tf.add(run_dir, arcname="run")
            out["tarball"] = buf.getvalue()
            shutil.rmtree(run_dir.parent, ignore_errors=True)
        return out
    except ExplorerError as e:
        return {"ok": False, "error": str(e), "user_error": True}
    except Exception as e:
        return {"ok": False, "error": f"{type(e).__name__}: {e}", "user_error": False,
                "traceback": traceback.format_exc()}


def compute_fronts(runs: list[dict], ref: dict | None = None) -> tuple[dict, dict]:
    """Fronts ``{objective: {target|'all': [ids by increasing cost]}}`` and hypervolumes
    ``{target|'all': {objective: hv}}`` of the finished runs. The hypervolume box: accuracy from
    chance level (``ref['acc']``, default 0.1) to 1, cost from 0 to ``ref[objective]`` (default 1.1x
    the largest cost among the runs, so that the costliest design counts too), so figures compare only
    within one exploration or with the same ``ref``."""
    from .pareto import OBJECTIVES, front, hypervolume, point_of

    pts = {r["id"]: (r["target"], point_of(r["summary"])) for r in runs if r.get("status") == "done" and r.get("summary")}
    fronts, hvs = {}, {}
    ref = dict(ref or {})
    acc_ref = ref.get("acc", 0.1)
    for obj in OBJECTIVES:
        have = {i: (t, p) for i, (t, p) in pts.items() if p.get(obj) is not None and p.get("accuracy") is not None}
        if not have:
            continue
        cost_ref = ref.get(obj) or max(p[obj] for _, p in have.values()) * 1.1
        groups = {"all": list(have)}
        for i, (t, _) in have.items():
            groups.setdefault(Path(t).stem, []).append(i)
        fronts[obj] = {}
        for g, ids in groups.items():
            fronts[obj][g] = front([(i, have[i][1]["accuracy"], have[i][1][obj]) for i in ids])
            hvs.setdefault(g, {})[obj] = round(hypervolume([(have[i][1]["accuracy"], have[i][1][obj]) for i in ids],
                                                          cost_ref, acc_ref), 6)
    return fronts, hvs


def plot_fronts(runs: list[dict], fronts: dict, out_png: Path) -> Path | None:
    """Accuracy against each cost; one colour per target, its front as a line, front designs labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .pareto import point_of

    objs = list(fronts)
    if not objs:
        return None
    by_id = {r["id"]: r for r in runs if r.get("status") == "done" and r.get("summary")}
    fig, axes = plt.subplots(1, len(objs), figsize=(6 * len(objs), 4.5), squeeze=False)
    targets = sorted({Path(r["target"]).stem for r in by_id.values()})
    colours = dict(zip(targets, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4))
    for ax, obj in zip(axes[0], objs):
        for t in targets:
            ids = [i for i, r in by_id.items() if Path(r["target"]).stem == t and point_of(r["summary"]).get(obj) is not None]
            if not ids:
                continue
            p = [point_of(by_id[i]["summary"]) for i in ids]
            ax.scatter([q[obj] for q in p], [q["accuracy"] * 100 for q in p], color=colours[t], alpha=0.45, s=22,
                       label=f"{t} runs")
            fr = [point_of(by_id[i]["summary"]) for i in fronts[obj].get(t, [])]
            ax.step([q[obj] for q in fr], [q["accuracy"] * 100 for q in fr], where="post", color=colours[t], lw=1.2)
            ax.scatter([q[obj] for q in fr], [q["accuracy"] * 100 for q in fr], color=colours[t], s=46,
                       edgecolor="k", zorder=3, label=f"{t} front")
        for i in fronts[obj].get("all", []):
            q = point_of(by_id[i]["summary"])
            ax.annotate(i, (q[obj], q["accuracy"] * 100), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(obj.replace("_", " (") + ")")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"accuracy vs {obj.split('_')[0]} (labels: front across targets)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return out_png


def explore(targets: list[str], limit_values: dict, seeds: list[int], methods: list[str], out: str | Path,
            config_path: str | None = None, overrides: dict | None = None, ray: str | None = None,
            workers: int | None = None, progress: bool = True, log=print) -> dict:
    """Run the grid (see :func:`make_grid`) and write the exploration folder; returns its
    ``exploration.json`` contents. Finished runs already in ``out`` are kept, unfinished ones
    resumed or run again; ``out`` must have been made with the same search settings."""
    from ..config import load_config
    from .executors import make_executor
    from ..paths import home, store_path

    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    config_toml = ""
    if config_path is not None:
        try:
            config_toml = Path(config_path).read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{config_path}: cannot read the config ({e})") from None
    base = load_config(config_path, overrides)  # validates before anything starts
    jobs, notes = make_grid(targets, limit_values, seeds, methods, base_limits=base.limits)
    out = Path(out).resolve()
    base_json = {k: v for k, v in base.as_dict().items() if k not in ("target", "limits", "seed")}
    state_path = out / "exploration.json"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; --out must be an exploration folder")
    old = {}
    if state_path.is_file():
        try:
            old = json.loads(state_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"{state_path}: unreadable ({e}); choose another --out") from None
        if old.get("config") != base_json:
            raise ConfigError(f"{out} holds an exploration with other search settings; choose another --out")
    elif out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty and holds no exploration; choose another --out")
    (out / "runs").mkdir(parents=True, exist_ok=True)
    runs = {r["id"]: r for r in old.get("runs", [])}
    for j in jobs:
        r = runs.get(j.id)
        if r is None or r.get("status") != "done" or not (out / r["run_dir"] / "summary.json").is_file():
            runs[j.id] = {**j.as_json(), "run_dir": f"runs/{j.id}", "status": "pending", "error": None, "summary": None}
    state = {"version": 1, "created": old.get("created", time.strftime("%Y-%m-%dT%H:%M:%S")),
             "grid": {"targets": list(dict.fromkeys(list(old.get("grid", {}).get("targets", [])) + targets)),
                      "limits": [dict(x) for x in dict.fromkeys(tuple(sorted(j.limits)) for j in runs_as_jobs(runs))],
                      "seeds": sorted({r["seed"] for r in runs.values()}),
                      "methods": sorted({r["method"] for r in runs.values()})},
             "config": base_json, "config_toml": config_toml, "notes": notes, "runs": list(runs.values())}
    atomic_write_json(state_path, state, default=str, fsync=True)
    for n in notes:
        log(f"note: {n}")
    todo = [j for j in jobs if runs[j.id]["status"] != "done"]
    env = {"EXPLORER_HOME": str(home().resolve()), "EXPLORER_STORE": str(store_path().resolve()),
           "EXPLORER_SCHEDULES": os.environ.get("EXPLORER_SCHEDULES", "")}
    env = {k: v for k, v in env.items() if v}
    t0 = time.monotonic()
    with make_executor(ray, workers) as ex:
        cores = ex.cores()
        items = []
        for j in todo:
            c = _job_cores(j.target, cores)
            spec = {"env": env, "threads": c, "exploration": str(out), "run_dir": str(out / "runs" / j.id),
                    "config_toml": config_toml, "overrides": {**overrides, "target": j.target, "seed": j.seed},
                    "limits": dict(j.limits), "method": j.method}
            items.append(((spec,), c))
        log(f"exploring {len(jobs)} searches ({len(jobs) - len(todo)} already done) on {ex.name}: "
            f"{ex.slots()} cores, one per search, a search that times code on the CPU alone -> {out}")
        bar = None
        if progress and todo:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc="explore", unit="search", dynamic_ncols=True)
        for i, ok, value in ex.run(run_job, items):
            j = todo[i]
            r = runs[j.id]
            if ok and value.get("ok"):
                if "tarball" in value:
                    _unpack(value["tarball"], out / r["run_dir"], out)
                r.update(status="done", error=None, summary=_portable(value["summary"], out),
                         resumed=value.get("resumed", False), host=value.get("host"))
            else:
                err = value if not ok else value.get("error")
                r.update(status="failed", error=err, user_error=bool(ok and value.get("user_error")))
            state["runs"] = list(runs.values())
            state["fronts"], state["hypervolume"] = compute_fronts(state["runs"])
            atomic_write_json(state_path, state, default=str, fsync=True)
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{j.id}: {r['status']}", refresh=False)
            if r["status"] == "failed":
                log(f"failed: {j.id}: {r['error']}")
        if bar is not None:
            bar.close()
    state["runs"] = list(runs.values())
    state["fronts"], state["hypervolume"] = compute_fronts(state["runs"])
    state["wall_s"] = round(time.monotonic() - t0, 1)
    try:
        png = plot_fronts(state["runs"], state["fronts"], out / "pareto.png")
        state["pareto_png"] = png.name if png else None
    except Exception as e:  # a plot never costs the results
        state["plot_error"] = f"{type(e).__name__}: {e}"
    atomic_write_json(state_path, state, default=str, fsync=True)
    return state


def runs_as_jobs(runs: dict) -> list[Job]:
    return [Job(r["target"], tuple(sorted(r["limits"].items())), r["seed"], r["method"]) for r in runs.values()]


def _portable(summary: dict, out: Path) -> dict:
    s = dict(summary)
    if "run_dir" in s:
        try:
            s["run_dir"] = str(Path(s["run_dir"]).resolve().relative_to(out))
        except ValueError:
            pass
    return s


def _unpack(blob: bytes, dest: Path, out: Path) -> None:
    """A run folder shipped back from a node that does not see the exploration folder."""
    import io
    import shutil
    import tarfile

    from ..runs.store import register_run

    tmp = dest.with_name(dest.name + ".incoming")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tf:
        tf.extractall(tmp, filter="data")
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp / "run", dest)
    shutil.rmtree(tmp, ignore_errors=True)
    summary = json.loads((dest / "summary.json").read_text())
    config = json.loads((dest / "config.json").read_text())
    register_run(dest, summary, config, exploration=out)


def print_fronts(state: dict, log=print) -> None:
    from .pareto import point_of

    by_id = {r["id"]: r for r in state["runs"]}
    varied = {}  # per target, the hardware knobs that differ between its finished runs (the rest is fixed)
    for r in state["runs"]:
        if r.get("summary"):
            for k, v in (r["summary"].get("hardware") or {}).items():
                varied.setdefault(Path(r["target"]).stem, {}).setdefault(k, set()).add(json.dumps(v))
    for obj, groups in state.get("fronts", {}).items():
        for g, ids in groups.items():
            hv = state.get("hypervolume", {}).get(g, {}).get(obj)
            log(f"front: accuracy vs {obj}, {'across targets' if g == 'all' else g}"
                + (f" (hypervolume {hv:.4f})" if hv is not None else ""))
            for i in ids:
                r = by_id[i]
                p = point_of(r["summary"])
                vt = varied.get(Path(r["target"]).stem, {})
                hw = " ".join(f"{k}={v}" for k, v in (r["summary"].get("hardware") or {}).items() if len(vt.get(k, ())) > 1)
                log(f"  {p['accuracy'] * 100:6.2f}%  {p[obj]:10.4g}  {i}  {r['summary'].get('genotype', '')}  {hw}")


def explore_from_args(a) -> int:
    targets = [t.strip() for t in a.targets.split(",") if t.strip()]
    limits = {k: _floats(k, getattr(a, k)) for k in LIMIT_KEYS}
    seeds = parse_seeds(a.seeds)
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    overrides = {k: getattr(a, k) for k in _SEARCH_KEYS}
    state = explore(targets, limits, seeds, methods, a.out, config_path=a.config, overrides=overrides, ray=a.ray,
                    workers=a.workers, progress=not a.no_progress)
    print_fronts(state)
    done = [r for r in state["runs"] if r["status"] == "done"]
    failed = [r for r in state["runs"] if r["status"] == "failed"]
    print(f"{len(done)} of {len(state['runs'])} searches done in {state.get('wall_s', 0):.0f} s; "
          f"results in {Path(a.out)}/ (exploration.json, pareto.png, runs/); `explorer report {a.out}` for the report")
    if failed:
        user = all(r.get("user_error") for r in failed)
        print(f"explorer: error: {len(failed)} search(es) failed, e.g. {failed[0]['id']}: {failed[0]['error']}"
              + ("" if user else " (see exploration.json)"), file=sys.stderr)
        return 2 if user else 1
    return 0
