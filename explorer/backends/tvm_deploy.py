"""``explorer deploy`` for TVM targets: a run's design as a deployable folder.

The folder holds the ONNX model (trained weights), the TVM library built for the target (with the
target's schedule database when there is one), the hardware configuration, a short usage example
that loads the library and runs one input, and a card with the measured latency and the library's
own accuracy on the run's test split.

**Tuned where it is deployed.** Before the build, the design's kernels are tuned on this machine
(MetaSchedule, :func:`explorer.deploy.tune.tune_module`) into the user's schedule database within a
budget: ``trials`` (default :func:`~explorer.deploy.tune.auto_trials`, counting records already
there, so a second deploy of the same design tunes nothing and a killed one resumes) and
``minutes`` (default :data:`DEPLOY_MINUTES`), whichever is spent first. Schedules tuned for another
CPU (the shipped database on any machine but the one it was built on) seed that tuning and are not
applied as they are. ``trials=0`` or ``schedules="none"`` skips it. The card states the budget and
what was spent.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError

__all__ = ["deploy", "DEPLOY_MINUTES", "DEFAULT_LAYOUT", "DEFAULT_PREPACK", "AUTO_CANDIDATES", "time_threads",
           "thread_counts"]

#: the default time budget of deploy's tuning, minutes (the trial budget is the tuner's default)
DEPLOY_MINUTES = 12.0

#: the default convolution layout and weight prepacking of deploy: compared on the user's machine
#: (``auto``, see :func:`_choose_layout`). Measured on the demo's design (BENCHMARKS.md, 2026-12-06,
#: AMD EPYC Zen 4): NHWC with prepacking 0.30 ms, NCHW 0.34 ms, NCHWc 0.37 ms after tuning; on
#: MobileNetV2 NHWC with prepacking won too, on the demo-size random network NCHWc: which setting wins
#: depends on the network and the CPU, so deploy measures it where it runs.
DEFAULT_LAYOUT, DEFAULT_PREPACK = "auto", False

#: ``layout="auto"``: the (layout, prepack) settings deploy compares on this machine, and the share of
#: the tuning budget (trials and minutes) the comparison takes, split evenly over them; the rest of
#: the budget goes on tuning the winner (its comparison trials count: the tuner resumes)
AUTO_CANDIDATES = (("NCHW", False), ("NHWC", True), ("NCHWc", False))
AUTO_PROBE_SHARE = 0.4

EXAMPLE = '''"""Run the deployed model on one input: python run_example.py [input.npy]"""
import os
import sys

# the thread count the library ran fastest with on the machine it was deployed on (card.json: threads)
os.environ.setdefault("TVM_NUM_THREADS", "{threads}")

import numpy as np
import tvm
from tvm import relax

here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
vm = relax.VirtualMachine(tvm.runtime.load_module(f"{here}/model.so"), tvm.cpu())
shape = {shape}
x = np.load(sys.argv[1]).astype("float32").reshape(shape) if len(sys.argv) > 1 else np.zeros(shape, "float32")
logits = vm["main"](tvm.runtime.tensor(x)).numpy()
print("class", int(logits.argmax()), "logits", np.round(logits, 3).tolist())
'''


def deploy(backend, run_dir: str | os.PathLike, out: str | os.PathLike, repeat: int = 30,
           schedules: str | os.PathLike | None = None, trials: int | None = None, minutes: float | None = DEPLOY_MINUTES,
           progress: bool = True, layout: str = DEFAULT_LAYOUT, prepack: bool = DEFAULT_PREPACK) -> dict:
    """Export, tune (``trials``/``minutes``, see above), build (with the target's schedule databases,
    or ``schedules``), measure and test a run's design on a TVM ``backend``'s device; write the
    folder ``out``. ``layout="auto"`` (the default) compares :data:`AUTO_CANDIDATES` here on a CPU
    and keeps the fastest (NCHW on other devices); a fixed layout is built as asked."""
    import tvm
    from tvm import relax

    from ..data import load_dataset
    from ..deploy.export import build_module, export_onnx, load_design
    from ..deploy.tvm_build import build, load_onnx
    from ..measure.local import measure_onnxruntime, measure_tvm

    if layout == "auto" and prepack:
        raise ConfigError("--prepack goes with a fixed --layout (NCHW, NHWC or NCHWc); --layout auto decides it")
    run_dir, out = Path(run_dir), Path(out)
    design, weights = load_design(run_dir)
    if weights is None:
        raise ConfigError(f"{run_dir}: no weights.pt; deploy needs a retrained run (epochs > 0)")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty; choose another --out")
    work = out.with_name(out.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    exp = export_onnx(build_module(design, weights), design.input_shape, work / "model.onnx")
    m = load_onnx(work / "model.onnx")
    t_start = time.monotonic()
    choice = None
    if layout == "auto" and backend.device_type != "cpu":
        layout, choice = "NCHW", {"layout": "NCHW", "prepack": False,
                                  "why": f"--layout auto compares layouts on CPUs; NCHW on {backend.device_type}"}
    if layout == "auto":
        layout, prepack, choice = _choose_layout(backend, m, schedules, trials, minutes, progress, work, repeat)
        minutes = None if minutes is None else max(0.0, minutes - choice["seconds"] / 60.0)
    tuning = _tune(backend, m, schedules, trials, minutes, progress, layout, prepack)
    dbs = backend.databases(schedules)
    if tuning.get("database") and Path(tuning["database"]) not in dbs:
        dbs = [Path(tuning["database"]), *dbs]  # what was just tuned is applied, whatever the defaults
    card = build(m, backend.tvm_target(), work / "model.so", database=dbs, target_name=backend.name, layout=layout,
                 cc=backend.cc, prepack=prepack)
    cores = card["target"].get("num-cores", os.cpu_count()) if isinstance(card["target"], dict) else os.cpu_count()
    cores = int(cores or 1)
    if backend.device_type == "cpu":
        lat, ort, threads = time_threads(work / "model.so", work / "model.onnx", m.inputs, cores, repeat)
    else:
        lat = measure_tvm(work / "model.so", m.inputs, repeat=repeat, number=10, device=backend.device_type)
        ort = measure_onnxruntime(work / "model.onnx", m.inputs, cores, repeat=repeat)
        threads = {"tvm": cores, "onnxruntime": cores, "why": f"not compared on {backend.device_type}"}
    accuracy = None
    cfg_path = run_dir / "config.json"
    if cfg_path.is_file():
        dataset = json.loads(cfg_path.read_text()).get("dataset")
        seed = json.loads(cfg_path.read_text()).get("seed", 0)
        d = load_dataset(dataset, seed=seed)
        dev = tvm.device(backend.device_type)
        vm = relax.VirtualMachine(tvm.runtime.load_module(str(work / "model.so")), dev)
        hits = 0
        for i in range(len(d.y_test)):
            logits = vm["main"](tvm.runtime.tensor(np.ascontiguousarray(d.x_test[i : i + 1]), dev)).numpy()
            hits += int(logits.argmax() == d.y_test[i])
        accuracy = {"dataset": dataset, "test_accuracy": hits / len(d.y_test), "n": int(len(d.y_test))}
    shutil.copy(run_dir / "hw_config.json", work / "hw_config.json") if (run_dir / "hw_config.json").is_file() else None
    shutil.copy(run_dir / "design.json", work / "design.json")
    (work / "run_example.py").write_text(EXAMPLE.replace("{shape}", repr(tuple(m.inputs["input"][0])))
                                         .replace("{threads}", str(threads["tvm"])))
    deployed = {
        "design_key": design.key(),
        "target": backend.name,
        "library": "model.so",
        "onnx": "model.onnx",
        "export_max_abs_diff": exp.max_abs_diff,
        "build": {k: card[k] for k in ("target", "layout", "prepack", "toolchain", "schedule_database", "schedule_database_id", "scheduled_kernels",
                                        "tuned", "build_s")},
        "layout_choice": choice or {"layout": layout, "prepack": bool(prepack),
                                    "why": "as asked (layout/prepack given to deploy)"},
        "kernels": len(card["workloads"]),
        "tuning": tuning,
        "deploy_s": round(time.monotonic() - t_start, 1),
        "latency_ms": {"tvm_median": lat["median_ms"], "tvm_p10": lat["p10_ms"], "tvm_p90": lat["p90_ms"],
                       "onnxruntime_median": ort["median_ms"], "tvm_over_onnxruntime": lat["median_ms"] / ort["median_ms"]},
        "threads": threads,
        "accuracy": accuracy,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    (work / "card.json").write_text(json.dumps(deployed, indent=2) + "\n")
    os.replace(work, out)
    return deployed


def _tune(backend, m, schedules, trials, minutes, progress, layout, prepack=False, label="deploy: tune") -> dict:
    """Tune the model's kernels on this machine within the budget; the card's ``tuning`` entry."""
    from ..deploy.tune import auto_trials

    from ..deploy.schedules import tuning_database

    none = tuning_database(backend.name, schedules) is None
    if trials == 0 or none or not backend.tunes_on_deploy:
        why = "skipped (--trials 0)" if trials == 0 else \
            "skipped (untuned on purpose: --schedules none or EXPLORER_SCHEDULES=none)" if none else \
            f"not available for {backend.name}"
        return {"status": why, "budget_trials": trials, "budget_minutes": minutes}
    from ..deploy.tvm_build import import_relax

    res = backend.tune(import_relax(m, layout, prepack), trials=trials, db=schedules, progress=progress, label=label,
                       max_seconds=None if minutes is None else 60.0 * minutes,
                       input_shapes=[list(v[0]) for v in m.inputs.values()])
    rep = res.as_json()
    return {"status": "tuned here", "key": rep["key"], "database": rep["database"],
            "budget_trials": rep["budget_trials"], "budget_minutes": minutes,
            "default_budget": trials is None, "auto_trials": auto_trials(len(rep["tasks"])),
            "stopped_by": rep["stopped_by"], "trials_this_run": rep["trials_this_run"],
            "trials_total": rep["trials_total"], "warm_start_trials": rep["warm_start_trials"],
            "tuning_s": rep["elapsed_s"], "estimated_kernel_ms": rep["estimated_kernel_ms"]}


def thread_counts(cores: int) -> list[int]:
    """The thread counts deploy times a CPU library with: 1, the powers of two below ``cores``, and
    ``cores``."""
    out, k = {1, max(1, int(cores))}, 2
    while k < cores:
        out.add(k)
        k *= 2
    return sorted(out)


#: rounds of timing per (runtime, thread count), interleaved; the card gives the median of the rounds
THREAD_ROUNDS = 3


def time_threads(lib, onnx_path, inputs: dict, cores: int, repeat: int, rounds: int = THREAD_ROUNDS,
                 counts: list[int] | None = None, number: int = 10):
    """Time the TVM library and onnxruntime with every :func:`thread_counts` of ``cores``, each in a
    process of its own (TVM reads ``TVM_NUM_THREADS`` once, when its thread pool starts; a fresh
    process also keeps the deploy's own threads, from tuning and PyTorch, off the timing), the
    settings interleaved over ``rounds`` rounds. Each runtime is reported at its fastest count: on a
    small network the cost of waking and joining threads for every kernel can exceed what a second
    core gives (the demo's design on 2 cores of an AMD EPYC Zen 3: ~0.10 ms on 1 thread, ~0.12 ms on
    2), and a user of either runtime would pick its best. ``counts`` replaces the thread counts
    (e.g. ``[cores]`` alone). Returns (TVM's timing, onnxruntime's, the card's ``threads``: the kept
    counts, every median, and why)."""
    import statistics

    from ..errors import ModelError
    from ..measure.local import measure_onnxruntime, measure_tvm
    from ..workers.pool import WorkerError, WorkerPool

    counts = sorted(set(counts)) if counts else thread_counts(cores)
    runs: dict = {("tvm", n): [] for n in counts} | {("onnxruntime", n): [] for n in counts}
    pools = {key: WorkerPool({"TVM_NUM_THREADS": key[1], "OMP_NUM_THREADS": key[1], "PYTHONWARNINGS": "ignore"},
                             timeout_s=600) for key in runs}
    try:
        for _ in range(max(1, rounds)):
            for (rt, n), pool in pools.items():
                if rt == "tvm":
                    runs[rt, n].append(pool.run(measure_tvm, str(lib), inputs, repeat=repeat, number=number))
                else:
                    runs[rt, n].append(pool.run(measure_onnxruntime, str(onnx_path), inputs, n, repeat=repeat, number=number))
    except WorkerError as e:
        raise ModelError(f"timing the library with {counts} threads failed: {str(e).strip().splitlines()[-1]}") from None
    finally:
        for pool in pools.values():
            pool.close()
    med = {key: statistics.median(r["median_ms"] for r in rs) for key, rs in runs.items()}
    best = {rt: min(counts, key=lambda n: med[rt, n]) for rt in ("tvm", "onnxruntime")}
    pick = {rt: min(runs[rt, best[rt]], key=lambda r: abs(r["median_ms"] - med[rt, best[rt]])) for rt in best}
    threads = {"tvm": best["tvm"], "onnxruntime": best["onnxruntime"], "cores": cores, "rounds": max(1, rounds),
               "tvm_ms": {str(n): med["tvm", n] for n in counts},
               "onnxruntime_ms": {str(n): med["onnxruntime", n] for n in counts},
               "why": f"timed here with {', '.join(map(str, counts))} threads, each in a fresh process, "
                      f"{max(1, rounds)} rounds (medians); each runtime at its fastest"}
    tvm_t = dict(pick["tvm"], median_ms=med["tvm", best["tvm"]])
    ort_t = dict(pick["onnxruntime"], median_ms=med["onnxruntime", best["onnxruntime"]])
    return tvm_t, ort_t, threads


def _choose_layout(backend, m, schedules, trials, minutes, progress, work: Path, repeat: int):
    """``layout="auto"``: tune every setting of :data:`AUTO_CANDIDATES` with an even share of
    :data:`AUTO_PROBE_SHARE` of the budget, build and time each on this machine, and keep the fastest.
    Returns (layout, prepack, the card's ``layout_choice``: every setting's trials and time, and why).
    Where tuning is off (``--trials 0``, ``--schedules none``, a backend that does not tune) the
    settings are compared untuned."""
    from ..deploy.tune import auto_trials, extract
    from ..deploy.tvm_build import as_target, build, import_relax
    from ..measure.local import measure_tvm

    t0 = time.monotonic()
    n = len(AUTO_CANDIDATES)
    probes = []
    for lay, pp in AUTO_CANDIDATES:
        mod = import_relax(m, lay, pp)
        budget = auto_trials(len(extract(mod, as_target(backend.tvm_target())))) if trials is None else trials
        share_t = max(1, int(budget * AUTO_PROBE_SHARE / n)) if trials != 0 else 0
        share_m = None if minutes is None else minutes * AUTO_PROBE_SHARE / n
        tuned = _tune(backend, m, schedules, share_t, share_m, progress, lay, pp, label=f"deploy: compare {lay}")
        dbs = backend.databases(schedules)
        if tuned.get("database") and Path(tuned["database"]) not in dbs:
            dbs = [Path(tuned["database"]), *dbs]
        lib = work / f"probe-{lay}{'-prepack' if pp else ''}.so"
        build(m, backend.tvm_target(), lib, database=dbs, target_name=backend.name, layout=lay, cc=backend.cc, prepack=pp)
        ms_ = measure_tvm(lib, m.inputs, repeat=max(5, repeat // 3), number=10, device=backend.device_type)["median_ms"]
        for f in (lib, lib.with_name(lib.name + ".json")):
            f.unlink(missing_ok=True)
        probes.append({"layout": lay, "prepack": pp, "trials": tuned.get("trials_total", 0),
                       "tuning_s": tuned.get("tuning_s", 0.0), "tvm_ms": ms_})
    best = min(probes, key=lambda r: r["tvm_ms"])
    name = lambda r: r["layout"] + (" with prepacking" if r["prepack"] else "")  # noqa: E731
    how = (f"each setting tuned with {AUTO_PROBE_SHARE / n:.0%} of the budget, built and timed" if any(r["trials"] for r in probes)
           else "each setting built untuned (tuning is off) and timed")
    why = (f"measured on this machine: {how}; " + ", ".join(f"{name(r)} {r['tvm_ms']:.4f} ms ({r['trials']} trials)" for r in probes)
           + f"; kept the fastest, {name(best)}" + (", tuned with the rest of the budget" if "untuned" not in how else ""))
    return best["layout"], best["prepack"], {"layout": best["layout"], "prepack": best["prepack"], "why": why,
                                             "probes": probes, "seconds": round(time.monotonic() - t0, 1)}
