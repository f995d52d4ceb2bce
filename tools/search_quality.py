"""Search quality, measured honestly: co-search vs sequential (network, then hardware) vs random
search at an equal wall-clock budget, over several seeds and limits, as `explorer explore` runs.

By default (``--progress steps``) co-search and sequential search run the setting's planned steps
(the step budget binds, so a seed fixes the search on any machine, however loaded), and random
search then gets the co-search runs' mean wall-clock (selection included) as its budget. With
``--progress time`` every method gets the setting's minutes and time ends every search (the
earlier mode: there the number of steps, and so the result of a seed, moves with the load). For every (method, seed) the designs found under the different latency limits form an
accuracy/latency front; its hypervolume (share of the box accuracy in [chance, 1] x latency in
[0, largest limit] that the front dominates, higher is better) is reported as mean and spread over
the seeds, with per-limit accuracy, latency and limits met.

Usage: python tools/search_quality.py [--setting digits|mnist5k-short|both] [--seeds 3]
           [--progress steps|time] [--steps N] [--budget-min 0.5] [--limits MS ...] [--retrain-seeds 3]
           [--search KEY=VALUE ...] [--out bench-out/quality]
           [--ray local]
Prints Markdown tables (paste into BENCHMARKS.md with the command, machine and date).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from explorer.explore import explore
from explorer.explore.pareto import front, hypervolume, point_of
from explorer.measure.local import cpu_model

METHODS = ("cosearch", "sequential", "random")
# (dataset, search minutes (time mode), search steps (steps mode), retraining epochs, latency limits in ms, note)
SETTINGS = {
    "digits": ("digits", 0.5, 150, 10, (0.014, 0.017, 0.025), "1,797 8x8 images (1,077 train): few samples"),
    "mnist5k-short": ("mnist5k", 1.0, 100, 3, (0.08, 0.11, 0.16), "mnist5k, 3 epochs of retraining instead of 20"),
}
SAFETY_MIN = 30.0  # the clock's safety net in steps mode: the planned steps end a search long before


def tables(state: dict, limits: tuple, name: str) -> str:
    ref = max(limits)
    done = [r for r in state["runs"] if r["status"] == "done"]
    seeds = sorted({r["seed"] for r in state["runs"]})
    lines = [f"\n### {name}: hypervolume of the accuracy/latency front over {len(limits)} limits "
             f"(box: accuracy {0.1:g}..1, latency 0..{ref:g} ms)\n",
             "| method | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | stdev | search s (mean) |",
             "|---|" + "---|" * (len(seeds) + 3)]
    for m in METHODS:
        hvs, secs = [], []
        for s in seeds:
            rs = [r for r in done if r["method"] == m and r["seed"] == s]
            pts = [point_of(r["summary"]) for r in rs]
            hvs.append(hypervolume([(p["accuracy"], p["latency_ms"]) for p in pts], ref, 0.1) if pts else float("nan"))
            secs += [r["summary"]["search_s"] for r in rs]
        ok = [h for h in hvs if h == h]
        mean = statistics.mean(ok) if ok else float("nan")
        sd = statistics.stdev(ok) if len(ok) > 1 else float("nan")
        lines.append(f"| {m} | " + " | ".join(f"{h:.4f}" for h in hvs) + f" | **{mean:.4f}** | {sd:.4f} | "
                     f"{statistics.mean(secs) if secs else float('nan'):.0f} |")
    lines += ["", f"Per limit, mean over {len(seeds)} seeds (test accuracy %, latency ms, limits met on the model):", "",
              "| method | " + " | ".join(f"{lim:g} ms: acc / lat / met" for lim in limits) + " |",
              "|---|" + "---|" * len(limits)]
    for m in METHODS:
        cells = []
        for lim in limits:
            rs = [r for r in done if r["method"] == m and abs(r["limits"].get("latency_ms", -1) - lim) < 1e-12]
            if not rs:
                cells.append("-")
                continue
            pts = [point_of(r["summary"]) for r in rs]
            acc = statistics.mean(p["accuracy"] for p in pts) * 100
            lat = statistics.mean(p["latency_ms"] for p in pts)
            met = sum(bool(r["summary"].get("limits_met")) for r in rs)
            cells.append(f"{acc:.2f} / {lat:.4f} / {met}/{len(rs)}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    failed = [r for r in state["runs"] if r["status"] != "done"]
    if failed:
        lines.append(f"\nNot finished: " + "; ".join(f"{r['id']} ({r.get('error')})" for r in failed))
    # the fronts themselves, for the reader
    lines.append("\nFront of every method, all seeds pooled (accuracy %, latency ms):\n")
    for m in METHODS:
        rs = {r["id"]: point_of(r["summary"]) for r in done if r["method"] == m}
        f = front([(i, p["accuracy"], p["latency_ms"]) for i, p in rs.items()])
        lines.append(f"- {m}: " + ", ".join(f"{rs[i]['accuracy'] * 100:.2f}/{rs[i]['latency_ms']:.4f}" for i in f))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setting", default="both", choices=[*SETTINGS, "both"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--progress", default="steps", choices=["steps", "time"],
                    help="steps: co-search and sequential run the planned steps, random search gets their wall-clock; "
                         "time: every method gets the same minutes")
    ap.add_argument("--steps", type=int, default=None, help="planned search steps (steps mode; default: the setting's)")
    ap.add_argument("--budget-min", type=float, default=None, help="search minutes (time mode; default: the setting's)")
    ap.add_argument("--limits", type=float, nargs="+", default=None, help="latency limits in ms (default: the setting's)")
    ap.add_argument("--retrain-seeds", type=int, default=3,
                    help="retrain every kept design this many times and count the mean (3 epochs on mnist5k "
                         "moved one design between 79.3 and 95.7%%)")
    ap.add_argument("--search", nargs="+", default=[], metavar="KEY=VALUE",
                    help="[search] settings for every method's runs, TOML values (e.g. select_proxy_seeds=1)")
    ap.add_argument("--out", default="bench-out/quality")
    ap.add_argument("--ray", default=None)
    ap.add_argument("--workers", type=int, default=None)
    a = ap.parse_args(argv)
    mode = ("the planned steps bind co-search and sequential; random search gets co-search's mean wall-clock"
            if a.progress == "steps" else "an equal wall-clock search budget (progress by time)")
    print(f"machine: {cpu_model()}, {__import__('os').cpu_count()} cores; target vta; chain space; "
          f"{a.seeds} seeds; methods {', '.join(METHODS)}; {mode}")
    for name in (SETTINGS if a.setting == "both" else [a.setting]):
        dataset, minutes, steps, epochs, limits, note = SETTINGS[name]
        limits = tuple(a.limits or limits)
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)

        def run(methods, minutes, steps, progress, folder):
            cfg = out / f"{folder}.toml"
            extra = "".join(f"{kv}\n" for kv in a.search)
            cfg.write_text(f'dataset = "{dataset}"\n[search]\nbudget_min = {minutes}\nsteps = {steps}\n'
                           f'progress = "{progress}"\n{extra}[retrain]\nepochs = {epochs}\nseeds = {a.retrain_seeds}\n')
            return explore(["vta"], {"latency_ms": list(limits)}, list(range(a.seeds)), methods, out / folder,
                           config_path=str(cfg), ray=a.ray, workers=a.workers)

        if a.progress == "time":
            minutes = a.budget_min or minutes
            # equal wall-clock budget for every method: time ends every search, never the step count
            state = run(list(METHODS), minutes, 100000, "time", name)
            budget = f"{minutes:g} min search"
        else:
            steps = a.steps or steps
            state = run(["cosearch", "sequential"], SAFETY_MIN, steps, "steps", f"{name}-steps")
            secs = [r["summary"]["search_s"] for r in state["runs"] if r["status"] == "done" and r["method"] == "cosearch"]
            if not secs:
                raise SystemExit(f"{name}: no co-search run finished; see {out / (name + '-steps')}")
            minutes = round(statistics.mean(secs) / 60, 3)
            rnd = run(["random"], minutes, 100000, "time", f"{name}-random-{minutes:g}min")
            state = {**state, "runs": state["runs"] + rnd["runs"]}
            budget = f"{steps} search steps; random search {minutes * 60:.0f} s"
        print(tables(state, limits, f"{name} ({note}; {budget}, {epochs} epochs retraining, mean of {a.retrain_seeds} seeds)"), flush=True)
        (out / f"{name}.md").write_text(tables(state, limits, name) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
