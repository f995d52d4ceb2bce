"""Command line: ``explorer search|explore|report|runs|export|compile|tune|deploy|measure|list|...``.

Errors in the user's input print one line, ``explorer: error: ...``, and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import ExplorerError
from .units import LIMIT_KEYS, RESOURCES_TABLE

__all__ = ["main"]


def _positive(kind, allow_zero: bool = False):
    def parse(s):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
        if v < 0 or (v == 0 and not allow_zero) or v != v:
            raise argparse.ArgumentTypeError(f"must be {'>=' if allow_zero else '>'} 0, got {s}")
        return v

    return parse


def _nonneg(kind):
    return _positive(kind, allow_zero=True)


def _layout_args(p, auto: bool = False):
    """--layout and --prepack, the same for compile, tune and deploy (a database tuned with one setting
    holds other workloads than the other's)."""
    p.add_argument("--layout", default="auto" if auto else "NCHW", choices=["NCHW", "NHWC", "NCHWc"] + (["auto"] if auto else []),
                   help="data layout of the convolutions, the same when tuning and building: NCHW (as in ONNX), "
                        "NHWC, or blocked NCHWc (NCHW8c)" + ("; auto (the default): compare NCHW, NHWC with prepacking and NCHWc "
                                                            "on this machine with part of the tuning budget, keep the "
                                                            "fastest (stated on the card)" if auto else ""))
    p.add_argument("--prepack", action=argparse.BooleanOptionalAction, default=False,
                   help="lay constant weights out for the tuned kernels once at build time (tune with the same "
                        "setting you build with)")


class _Parser(argparse.ArgumentParser):
    """Argument errors as every other input error: one line, ``explorer: error: ...``, exit code 2
    (``explorer CMD --help`` still shows the usage)."""

    def error(self, message):
        cmd = self.prog.split(" ", 1)[1] + ": " if " " in self.prog else ""
        print(f"explorer: error: {cmd}{message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="explorer", description="Co-search a neural network and its hardware.")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    s = sub.add_parser("search", help="run the alternating network + hardware co-search")
    s.add_argument("--config", help="TOML config (see README); flags below override it")
    s.add_argument("--target", help="deployment target: a name (explorer list) or a target TOML, default vta")
    s.add_argument("--space", help="network search space: chain or nb201")
    s.add_argument("--dataset", help="mnist5k, digits, a .npz file (x, y) or an image folder")
    for r in RESOURCES_TABLE:
        s.add_argument(r.flag, type=_positive(float), dest=r.limit_key,
                       help=f"{r.display} limit" + (f" per {r.per}" if r.per else ""))
    s.add_argument("--budget-min", type=_positive(float), dest="budget_min", help="search wall-clock budget")
    s.add_argument("--steps", type=_positive(int), help="maximum search steps")
    s.add_argument("--epochs", type=int, help="retraining epochs of the derived network (0 skips)")
    s.add_argument("--seed", type=int)
    s.add_argument("--calibration", help="vta: cost-model calibration from `explorer calibrate`")
    s.add_argument("--latency-table", dest="latency_table", metavar="MODEL.json",
                   help="search for a device known by its latency table: the model `explorer costmodel fit` wrote "
                        "(the same as --target MODEL.json)")
    s.add_argument("--method", default="cosearch", choices=["cosearch", "sequential", "random"],
                   help="co-search, or a baseline in the same harness")
    s.add_argument("--out", help="run folder (default runs/<space>-<target>-<time>)")
    s.add_argument("--force", action="store_true", help="replace an existing run folder once the new run succeeds")
    s.add_argument("--resume", metavar="RUN", help="continue a killed or interrupted search from its last checkpoint "
                   "(the run folder given to --out; its config is used, other flags must be left out)")
    s.add_argument("--no-progress", action="store_true")
    sub.add_parser("list", help="list registered data sets, spaces, targets and ops")

    x = sub.add_parser("explore", help="search every target x limits x seed (x method) in parallel; Pareto fronts")
    x.add_argument("--targets", required=True, help="comma-separated targets (names or target TOML / latency-model files)")
    x.add_argument("--config", help="TOML config for the search settings (see README); the flags below override it")
    for i, r in enumerate(RESOURCES_TABLE):
        x.add_argument(r.flag, dest=r.limit_key,
                       help=f"comma-separated {r.display} limits" + (" (one search per value)" if i == 0 else ""))
    x.add_argument("--seeds", default="1", help="N (seeds 0..N-1) or a comma-separated list, e.g. 3,7")
    x.add_argument("--methods", default="cosearch", help="comma-separated: cosearch, sequential, random")
    x.add_argument("--space", help="network search space: chain or nb201")
    x.add_argument("--dataset", help="mnist5k, digits, a .npz file (x, y) or an image folder")
    x.add_argument("--steps", type=_positive(int), help="maximum search steps of every search")
    x.add_argument("--budget-min", type=_positive(float), dest="budget_min", help="wall-clock budget of every search")
    x.add_argument("--epochs", type=int, help="retraining epochs of every derived network")
    x.add_argument("--workers", type=_positive(int), help="searches at once (default: from the cores; a target that "
                   "times code on this machine's CPU runs alone)")
    x.add_argument("--ray", metavar="ADDRESS", help="run the searches on a Ray cluster: 'auto', 'local' (a head on "
                   "loopback, started here) or HOST:PORT of a running head")
    x.add_argument("--out", required=True, help="exploration folder (resumed where it exists)")
    x.add_argument("--no-progress", action="store_true")

    r = sub.add_parser("report", help="a self-contained HTML report of runs and explorations (images embedded)")
    r.add_argument("paths", nargs="+", metavar="RUN_OR_EXPLORATION")
    r.add_argument("--out", help="report file (default: report.html in the folder given, or here for several)")

    rn = sub.add_parser("runs", help="the runs recorded in the store: list, show, rm")
    rns = rn.add_subparsers(dest="runs_cmd", required=True)
    rl = rns.add_parser("list", help="one line per run")
    rl.add_argument("--target")
    rl.add_argument("--exploration", help="only the runs of this exploration folder")
    rl.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    rsh = rns.add_parser("show", help="a run's summary")
    rsh.add_argument("run", metavar="RUN", help="run folder or its id in `runs list`")
    rrm = rns.add_parser("rm", help="forget runs in the store and delete their folders")
    rrm.add_argument("runs", nargs="+", metavar="RUN")
    rrm.add_argument("--keep-files", action="store_true", help="forget the record only; leave the folder")
    for q in (rl, rsh, rrm):
        q.add_argument("--store", help="store (default $EXPLORER_STORE, else $EXPLORER_HOME/store.sqlite)")

    e = sub.add_parser("export", help="export a run's (or design's) network with its trained weights to ONNX")
    e.add_argument("design", metavar="RUN_OR_DESIGN", help="run folder, or design.json (weights.pt beside it)")
    e.add_argument("--out", required=True, help="output .onnx file")
    e.add_argument("--opset", type=int, default=17)

    c = sub.add_parser("compile", help="compile an ONNX model with TVM for a target")
    c.add_argument("model", metavar="MODEL.onnx")
    c.add_argument("--target", default="cpu", help="a target (explorer list): cpu, cuda, or vta (the VTA-style accelerator)")
    c.add_argument("--hw", help="vta: hardware config JSON (vta_config.json names; default: VTA's 1x16x16 int8)")
    c.add_argument("--calib", type=int, default=0, metavar="N",  # 0: timing only
                   help="vta: calibrate on N inputs, run int8 on the simulator and check it against onnxruntime's QDQ model")
    c.add_argument("--data", default=None, help="vta: data set for --calib and the check (default: random inputs)")
    c.add_argument("--check", type=_positive(int), default=200, metavar="M", help="vta: inputs of the test split checked (with --calib)")
    c.add_argument("--shape", action="append", metavar="NAME=1x1x28x28", help="static shape of an input")
    c.add_argument("--out", help="library path (default MODEL.<target>.so)")
    c.add_argument("--num-cores", type=_positive(int), dest="num_cores", help="threads (default: all cores)")
    c.add_argument("--arch", help="CUDA arch, e.g. sm_80")
    c.add_argument("--schedules", help="MetaSchedule database folder to apply (default: the user's and the shipped ones for the target; 'none': untuned)")
    _layout_args(c)
    c.add_argument("--store", help="measurement store (default $EXPLORER_STORE, else $EXPLORER_HOME/store.sqlite; EXPLORER_HOME defaults to runs)")

    m = sub.add_parser("measure", help="measure a model's latency with TVM (and onnxruntime side by side)")
    m.add_argument("model", metavar="MODEL.onnx|LIB.so")
    m.add_argument("--target", default="cpu", help="cpu, cuda, or a target TOML (one naming [options.rpc] is timed on its RPC servers)")
    m.add_argument("--shape", action="append", metavar="NAME=1x1x28x28")
    m.add_argument("--repeat", type=_positive(int), default=30)
    m.add_argument("--number", type=_positive(int), default=10, help="runs per repeat")
    m.add_argument("--num-cores", type=_positive(int), dest="num_cores")
    m.add_argument("--vs", choices=["onnxruntime"], help="also time onnxruntime on the same input and threads")
    m.add_argument("--schedules", help="for an .onnx: schedule database (default: the user's and the shipped ones; 'none': untuned)")
    m.add_argument("--store", help="measurement store (default $EXPLORER_STORE, else $EXPLORER_HOME/store.sqlite; EXPLORER_HOME defaults to runs)")
    m.add_argument("--rpc", metavar="HOST:PORT", help="TVM RPC tracker (explorer rpc up); built here, run on one of its servers")
    m.add_argument("--key", help="device key of the RPC servers (with --rpc)")

    rp = sub.add_parser("rpc", help="TVM's RPC tracker and servers on this machine, for measure --rpc and tune --rpc")
    rps = rp.add_subparsers(dest="rpc_cmd", required=True)
    ru = rps.add_parser("up", help="start a tracker and N servers; Ctrl-C (or SIGTERM) stops them all")
    ru.add_argument("--devices", type=_positive(int), default=1, metavar="N", help="servers to start")
    ru.add_argument("--key", default="explorer-cpu", help="device key the servers register with")
    ru.add_argument("--port", type=_positive(int), help="tracker port (default 9190, else the next free one)")
    ru.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback: no other machine can reach them)")
    ru.add_argument("--timeout", type=_positive(float), default=60.0, help="seconds to wait for the servers")
    ru.add_argument("--threads", type=_positive(int), metavar="T",
                    help="threads per server (TVM_NUM_THREADS; default all cores). Servers sharing this machine: give each its share")

    t = sub.add_parser("tune", help="autotune a model's kernels with MetaSchedule into a schedule database")
    t.add_argument("model", metavar="MODEL.onnx|RUN", help="ONNX model, or a run folder (its design is exported)")
    t.add_argument("--target", default="cpu", help="cpu (this machine, or the RPC servers' CPU with --rpc)")
    t.add_argument("--trials", type=_positive(int), default=512,
                   help="total trials for this model's kernels, counting those already in the database")
    t.add_argument("--minutes", type=_positive(float), help="stop after this many minutes (after the batch in flight)")
    t.add_argument("--db", help="schedule database folder (default $EXPLORER_HOME/schedules/<target>/, used by compile, deploy and search)")
    t.add_argument("--rpc", metavar="HOST:PORT", help="TVM RPC tracker; candidates are run on its servers")
    t.add_argument("--key", help="device key of the RPC servers (with --rpc)")
    t.add_argument("--num-cores", type=_positive(int), dest="num_cores", help="threads of the target (default: all cores)")
    t.add_argument("--per-iter", type=_positive(int), default=16, dest="per_iter",
                   help="candidates measured per batch (a killed run loses at most one batch)")
    t.add_argument("--shape", action="append", metavar="NAME=1x1x28x28")
    _layout_args(t)
    t.add_argument("--report", help="write the per-kernel breakdown as JSON here")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-progress", action="store_true")

    dp = sub.add_parser("deploy", help="a run's design as a folder: ONNX, TVM library, hardware config, example, card")
    dp.add_argument("run", metavar="RUN")
    dp.add_argument("--target", default="cpu", help="a TVM target: cpu or cuda")
    dp.add_argument("--out", required=True)
    dp.add_argument("--schedules", help="schedule database to tune into and apply (default: the user's, plus the shipped "
                    "one's records for this CPU; 'none': untuned, no tuning)")
    dp.add_argument("--trials", type=_nonneg(int), default=None,
                    help="tuning budget in trials for the design's kernels, counting those already in the database "
                         "(default: 64 per kernel, at most 1536; 0: no tuning)")
    dp.add_argument("--tune-minutes", type=_positive(float), dest="tune_minutes", default=None,
                    help="tuning budget in minutes, whichever budget is spent first (default 12)")
    _layout_args(dp, auto=True)
    dp.add_argument("--no-progress", action="store_true")

    cal = sub.add_parser("calibrate", help="fit the VTA cost model to the simulator on sampled (layer, config) pairs")
    cal.add_argument("--target", default="vta")
    cal.add_argument("--space", default="chain")
    cal.add_argument("--dataset", default="mnist5k", help="sets the input shape of the space's layers")
    cal.add_argument("--samples", type=_positive(int), default=400)
    cal.add_argument("--seed", type=int, default=0)
    cal.add_argument("--out", default=None, help="default $EXPLORER_HOME/<target>_calibration.json")

    cm = sub.add_parser("costmodel", help="fit or evaluate a learned latency model from measured records")
    cms = cm.add_subparsers(dest="cm_cmd", required=True)
    f = cms.add_parser("fit", help="fit on records (genotype,latency_ms or design_json,latency_ms)")
    f.add_argument("--space", required=True, help="chain or nb201")
    f.add_argument("--records", required=True, help="CSV of measured latencies")
    f.add_argument("--out", required=True, help="model file (JSON)")
    f.add_argument("--input-shape", dest="input_shape", default=None, help="CxHxW (nb201 default 3x32x32)")
    f.add_argument("--classes", type=_positive(int), default=10)
    f.add_argument("--option", action="append", metavar="KEY=JSON", help="space option, e.g. cells_per_stage=5")
    f.add_argument("--holdout", type=float, default=0.2, help="share of records held out for the report")
    f.add_argument("--model", choices=["additive", "features"], default="additive",
                   help="additive (slot, option) costs fitted in log space with shrinkage (default), or the "
                        "non-negative fit of aggregate workload features")
    f.add_argument("--seed", type=int, default=0)
    ev = cms.add_parser("eval", help="evaluate a fitted model on records")
    ev.add_argument("model")
    ev.add_argument("--records", required=True)
    return p


def cmd_costmodel(a) -> int:
    import numpy as np

    from .cost.additive import AdditiveLatencyModel
    from .cost.learned import (LatencyModel, evaluate_predictions, load_latency_model, predict_table, read_records,
                               read_table)
    from .errors import ConfigError
    from .space import create_space

    def show(title, m):
        print(f"{title}: n={m['n']}  kendall_tau={m['kendall_tau']:.3f}  spearman_rho={m['spearman_rho']:.3f}  "
              f"within_10pct={m['within_10pct'] * 100:.1f}%  mean_abs_rel_err={m['mean_abs_rel_err'] * 100:.1f}%")

    if a.cm_cmd == "eval":
        model, space = load_latency_model(a.model)
        G, y, _ = read_table(a.records, space)
        show("eval", evaluate_predictions(predict_table(model, space, G), y))
        return 0
    options = {}
    for o in a.option or []:
        k, sep, v = o.partition("=")
        if not sep:
            raise ConfigError(f"--option {o!r}: expected KEY=VALUE")
        try:
            options[k] = json.loads(v)
        except json.JSONDecodeError:
            options[k] = v
    if a.space == "nb201":
        shape_s = a.input_shape or "3x32x32"
        options = {"channels": 16, "cells_per_stage": 5, **options}  # the benchmark's skeleton
    else:
        shape_s = a.input_shape
        if shape_s is None:  # take shape and options from the first design in the file
            import csv

            from .errors import DataError
            from .space.design import DesignPoint

            try:
                with open(a.records, newline="") as fh:
                    first = next(csv.DictReader(fh), None)
                if not first or "design_json" not in first:
                    raise ConfigError("--space chain needs design_json records (or --input-shape and --option)")
                if not isinstance(first["design_json"], str):  # a row shorter than the header
                    raise DataError(f"{a.records}: the first record has no design_json value")
                d = DesignPoint.from_json(json.loads(first["design_json"]))
            # ValueError: json's int() on over 4300 digits; RecursionError: nesting too deep
            except (OSError, UnicodeDecodeError, csv.Error, ValueError, RecursionError) as e:
                why = str(e).splitlines()[0][:200] if str(e) else ""
                raise DataError(f"{a.records}: cannot read the first record ({type(e).__name__}: {why})") from None
            shape_s = "x".join(map(str, d.input_shape))
            options = {**json.loads(d.space_options), **options}
            a.classes = d.num_classes
    try:
        shape = tuple(int(v) for v in shape_s.split("x"))
    except ValueError:
        raise ConfigError(f"--input-shape {shape_s!r}: expected CxHxW") from None
    space = create_space(a.space, shape, a.classes, **options)
    if not 0 <= a.holdout < 1:
        raise ConfigError("--holdout must be in [0, 1)")
    G, y, _ = read_table(a.records, space)
    idx = np.random.default_rng(a.seed).permutation(len(y))
    n_test = int(round(a.holdout * len(y)))
    test, train = idx[:n_test], idx[n_test:]
    if a.model == "features":
        X, _, _ = read_records(a.records, space)
        model = LatencyModel(a.space, space.options(), shape, a.classes).fit(X[train], y[train])
    else:
        model = AdditiveLatencyModel.for_space(space).fit([G[i] for i in train], y[train], seed=a.seed)
    show("train", evaluate_predictions(predict_table(model, space, [G[i] for i in train]), y[train]))
    if n_test >= 2:
        show("held-out", evaluate_predictions(predict_table(model, space, [G[i] for i in test]), y[test]))
    model.save(a.out)
    extra = "" if a.model == "features" else f"; ops that cost: {model.liveness}, shrinkage {model.lam}"
    print(f"wrote {a.out} ({a.model} model fitted on {len(train)} records{extra})")
    return 0


def cmd_tune(a) -> int:
    import tempfile

    from .backends import load_target
    from .deploy.tune import parse_rpc
    from .deploy.tvm_build import import_relax, load_onnx, parse_shapes

    backend = load_target(a.target).backend()
    rpc = parse_rpc(a.rpc, a.key)
    path = Path(a.model)
    with tempfile.TemporaryDirectory() as tmp:
        if path.is_dir():
            from .deploy.export import build_module, export_onnx, load_design

            design, weights = load_design(path)
            path = export_onnx(build_module(design, weights), design.input_shape, Path(tmp) / "model.onnx").path
        m = load_onnx(path, parse_shapes(a.shape))
        mod = import_relax(m, a.layout, a.prepack)
    kw = dict(trials=a.trials, db=a.db, num_cores=a.num_cores, per_iter=a.per_iter, rpc=rpc,
              progress=not a.no_progress, seed=a.seed, label=f"tune {Path(a.model).name}",
              max_seconds=None if a.minutes is None else 60 * a.minutes,
              input_shapes=[list(v[0]) for v in m.inputs.values()])
    try:
        r = backend.tune(mod, **kw)
    except KeyboardInterrupt:
        print("explorer: interrupted; every finished batch is in the database, run the same command to go on",
              file=sys.stderr)
        return 130
    rep = r.as_json()
    print(f"{'kernel':<52} {'calls':>5} {'trials':>6} {'best us':>10} {'share':>6}")
    for k in sorted(rep["tasks"], key=lambda k: -k["share"]):
        best = f"{k['best_us']:.2f}" if k["best_us"] is not None else "-"
        print(f"{k['name'][:52]:<52} {k['weight']:>5} {k['trials']:>6} {best:>10} {k['share'] * 100:>5.1f}%")
    est = r.estimated_ms()
    print(f"{rep['trials_this_run']} trials this run, {rep['trials_total']} in the database for these kernels "
          f"(budget {a.trials}), {r.elapsed_s:.0f} s; sum of best kernel times "
          + (f"{est:.4f} ms" if est is not None else "unknown (some kernels untried)") + f"; database {r.database}")
    if a.report:
        Path(a.report).write_text(json.dumps(rep, indent=2) + "\n")
    return 0


def cmd_deploy(a) -> int:
    from .backends import load_target

    from .backends.tvm_deploy import DEPLOY_MINUTES

    try:
        c = load_target(a.target).backend().deploy(a.run, a.out, schedules=a.schedules, trials=a.trials,
                                                   minutes=a.tune_minutes or DEPLOY_MINUTES, progress=not a.no_progress,
                                                   layout=a.layout, prepack=a.prepack)
    except KeyboardInterrupt:
        print("explorer: interrupted; every finished tuning batch is in the schedule database, run the same command "
              "to go on", file=sys.stderr)
        return 130
    lat, b = c["latency_ms"], c["build"]
    lc = c.get("layout_choice") or {}
    if lc.get("probes"):
        print("layout, compared on this machine: " + ", ".join(
            f"{r['layout']}{'+prepack' if r['prepack'] else ''} {r['tvm_ms']:.4f} ms ({r['trials']} trials)"
            for r in lc["probes"]) + f"; kept {lc['layout']}{' with prepacking' if lc['prepack'] else ''}")
    tn = c.get("tuning") or {}
    if tn.get("status") == "tuned here":
        print(f"tuning on this machine ({tn['key']}): {tn['trials_this_run']} trials in {tn['tuning_s']:.0f} s "
              f"({tn['trials_total']} in the database for these kernels; budget {tn['budget_trials']} trials or "
              f"{tn['budget_minutes']:g} min, stopped by {tn['stopped_by']})")
    elif tn:
        print(f"tuning: {tn['status']}")
    tuned = "tuned" if b["tuned"] else f"{b['scheduled_kernels']} of {c['kernels']} kernels tuned"
    print(f"deployed {c['design_key']} for {c['target']} to {a.out}/ (model.so, model.onnx, hw_config.json, "
          f"run_example.py, card.json); library {tuned}")
    th = c.get("threads") or {}
    on = (lambda rt: f" ({th[rt]} thread{'s' if th[rt] != 1 else ''})" if rt in th and "tvm_ms" in th else "")  # noqa: E731
    print(f"latency: TVM {lat['tvm_median']:.4f} ms{on('tvm')}, onnxruntime {lat['onnxruntime_median']:.4f} ms{on('onnxruntime')} "
          f"(ratio {lat['tvm_over_onnxruntime']:.2f}); " + (
              f"test accuracy of the library {c['accuracy']['test_accuracy'] * 100:.2f}% on {c['accuracy']['dataset']}"
              if c["accuracy"] else "no data set recorded in the run"))
    return 0


def cmd_calibrate(a) -> int:
    from .backends import load_target
    from .data import load_dataset
    from .space import create_space

    backend = load_target(a.target).backend()
    data = load_dataset(a.dataset)
    space = create_space(a.space, data.input_shape, data.num_classes)
    from tqdm import tqdm

    bar = tqdm(total=a.samples, desc="simulate (layer, config)", unit="pair")
    res = backend.calibrate(space, a.samples, seed=a.seed, progress=lambda d, n: (bar.update(d - bar.n), None)[1])
    bar.close()
    if a.out is None:
        from .paths import home

        a.out = str(home() / f"{backend.name}_calibration.json")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    for name in ("prior", "calibrated"):
        m = res["held_out"][name]
        print(f"{name:10s} held-out n={m['n']}: within +-10% {m['within_10pct'] * 100:.1f}%, "
              f"mean abs rel err {m['mean_abs_rel_err'] * 100:.1f}%, kendall tau {m['kendall_tau']:.3f}")
    print(f"wrote {a.out} ({res['pairs']} simulated pairs in {res['seconds']} s); "
          f"use it with: explorer search --target {a.target} --calibration {a.out}")
    return 0


def cmd_search(a) -> int:
    import time

    from .api import resume_search, run_search
    from .config import load_config

    if a.resume:
        given = [f"--{k.replace('_', '-')}" for k in ("config", "target", "space", "dataset", *LIMIT_KEYS, "budget_min",
                 "steps", "epochs", "seed", "calibration", "latency_table", "out")
                 if getattr(a, k) is not None] + (["--force"] if a.force else [])
        if given:
            from .errors import ConfigError

            raise ConfigError(f"--resume continues the run as it was configured; leave out {', '.join(given)}")
        _print_summary(resume_search(a.resume, progress=not a.no_progress))
        return 0

    overrides = {k: getattr(a, k) for k in ("target", "space", "dataset", *LIMIT_KEYS, "budget_min", "steps", "epochs",
                                             "seed", "calibration")}
    if a.latency_table:
        if a.target:
            from .errors import ConfigError

            raise ConfigError("--latency-table names the target; give it or --target, not both")
        overrides["target"] = a.latency_table
    cfg = load_config(a.config, overrides)
    from .paths import home

    out = a.out or str(home() / f"{cfg.space}-{Path(cfg.target).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    _print_summary(run_search(cfg, out, method=a.method, force=a.force, progress=not a.no_progress))
    return 0


def _print_summary(summary: dict) -> None:
    from .runs.summary import RunSummary

    s = RunSummary.from_json(summary)
    print(f"design      {s.genotype}")
    print("hardware    " + " ".join(f"{k}={v}" for k, v in s.hardware.items()))
    shown = [f"{r.display} {s.figures[r.figure_key]:.4g} {r.unit}" for r in RESOURCES_TABLE if r.figure_key in s.figures]
    v = s.effective_verdict
    yes = {True: "met", False: "NOT met"}
    verdict = f"   limits {yes[v.limits_met]} " + ("(measured on the target; the cost model: " + yes[v.model] + ")"
                                                  if v.on == "measurement" else "(on the cost model; not measured)")
    print("figures     " + "   ".join(shown) + ("" if not s.limits else verdict))
    if s.test_accuracy is not None:
        print(f"accuracy    {s.test_accuracy * 100:.2f}% on the test split after retraining "
              f"({s.retrain['epochs']} epochs)")
    print(f"results in  {s.run_dir}/  (summary.json, design.json, hw_config.json, history.jsonl, search.png)")


def cmd_explore(a) -> int:
    from .explore.grid import explore_from_args

    return explore_from_args(a)


def cmd_report(a) -> int:
    from .report.write import write_report

    out = write_report(a.paths, a.out)
    print(f"wrote {out}")
    return 0


def cmd_runs(a) -> int:
    from .runs.store import runs_command

    return runs_command(a)


def cmd_list(a) -> int:
    from .data import DATASETS
    from .space import SPACES
    from .space.ops import OPS
    from .backends import backend_names, target_names

    print(json.dumps({"datasets": DATASETS.names(), "spaces": SPACES.names(), "targets": target_names(),
                      "backends": backend_names(), "ops": OPS.names()}, indent=2))
    return 0


def cmd_export(a) -> int:
    from .deploy.export import build_module, export_onnx, load_design

    design, weights = load_design(a.design)
    if weights is None:
        print(f"explorer: warning: no weights.pt beside {a.design}; exporting untrained weights", file=sys.stderr)
    r = export_onnx(build_module(design, weights), design.input_shape, a.out, opset=a.opset)
    print(f"wrote {r.path} (opset {r.opset}, input {r.input_name} {'x'.join(map(str, r.input_shape))})")
    print(f"max abs difference onnxruntime vs PyTorch: {r.max_abs_diff:.3g}")
    if r.max_abs_diff > 1e-4:
        print("explorer: error: onnxruntime disagrees with PyTorch by more than 1e-4", file=sys.stderr)
        return 1
    return 0


def cmd_compile(a) -> int:
    from .backends import load_target
    from .deploy.tvm_build import parse_shapes

    _, lines = load_target(a.target).backend().compile(
        a.model, out=a.out, shapes=parse_shapes(a.shape), num_cores=a.num_cores, arch=a.arch, schedules=a.schedules,
        store=a.store, hw=a.hw, calib=a.calib, data=a.data, check=a.check, layout=a.layout, prepack=a.prepack)
    print("\n".join(lines))
    return 0


def cmd_measure(a) -> int:
    from .backends import load_target
    from .deploy.tune import parse_rpc
    from .deploy.tvm_build import parse_shapes

    rpc = parse_rpc(a.rpc, a.key)
    if rpc is not None and a.vs:
        from .errors import ConfigError

        raise ConfigError("--vs onnxruntime times this machine; measure without --rpc to compare")
    lines = load_target(a.target).backend().measure(
        a.model, shapes=parse_shapes(a.shape), repeat=a.repeat, number=a.number, num_cores=a.num_cores, vs=a.vs,
        schedules=a.schedules, store=a.store, **({"rpc": rpc} if rpc else {}))
    print("\n".join(lines))
    return 0


def cmd_rpc(a) -> int:
    from .workers.rpc import up

    return up(a.devices, key=a.key, port=a.port, host=a.host, timeout_s=a.timeout, threads=a.threads)


def main(argv=None) -> int:
    import warnings

    # a warning meant for the user (a near-chance design, say) as one line, not a source location
    warnings.formatwarning = lambda msg, cat, *a, **k: f"explorer: warning: {msg}\n"
    a = _parser().parse_args(argv)
    if a.cmd in ("compile", "measure", "tune", "deploy"):
        # TVM on every core, as the target and onnxruntime (the search's measurements set it in
        # their own processes)
        from .measure.local import every_core

        every_core()
    try:
        return {"search": cmd_search, "list": cmd_list, "export": cmd_export, "compile": cmd_compile,
                "measure": cmd_measure, "costmodel": cmd_costmodel, "tune": cmd_tune,
                "calibrate": cmd_calibrate, "deploy": cmd_deploy, "explore": cmd_explore, "report": cmd_report,
                "runs": cmd_runs, "rpc": cmd_rpc}[a.cmd](a)
    except ExplorerError as e:
        print(f"explorer: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("explorer: interrupted; earlier results are untouched", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
