"""``explorer tune``: MetaSchedule tuning of a model's kernels into a schedule database on disk.

The loop is ours; the parts are MetaSchedule's (task extraction, design spaces, evolutionary search,
XGBoost cost model, local or RPC builder/runner, JSON database):

* **Budget by share of latency.** Every task first gets one small batch (:data:`FIRST_BATCH`
  candidates: its latency is unknown before, and an untuned kernel is the slowest);
  after that the next batch goes to the task with the largest ``share / (trials + 1)``, where
  ``share`` is the task's ``weight x best latency`` over the model's total, so trials follow where
  the time goes instead of being poured into the first task.
* **Resumable.** Each batch's records are appended to the JSON database before the next batch
  starts. ``--trials N`` is the model's total: trials already in the database for its workloads
  count, so a killed run started again goes on where it stopped and loses only the batch that was
  in flight. A workload shared with a model tuned before is not tuned again once it has its share.
* **Same workload, once.** Workloads are identified by MetaSchedule's structural hash, so the same
  kernel from two networks (or from the search space's standalone workloads) is one entry.
* **Tuned here, for this target.** Only records of this target's key (:func:`explorer.deploy.schedules.
  target_key`: kind, architecture, ``mcpu``, cores) count as trials and bests. Records tuned for
  another target (``warm_start``: the shipped database, one from another CPU) are a warm start: a
  kernel without records of its own first measures the other target's best schedules here, and the
  evolutionary search goes on from what was measured.
* **Budget in trials and in time** (``max_seconds``): whichever is spent first; a run stopped by its
  time budget is resumed like a killed one.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ExplorerError
from ..workers.rpc import parse_endpoint, tracker_keys
from .schedules import note_tuning, open_writable, replay, subset, target_key
from .tvm_build import _lower_for_schedules, as_target

__all__ = ["TaskState", "TuneResult", "tune_module", "tune_onnx", "extract", "parse_rpc", "auto_trials"]

#: a budget left to the tuner (``trials=None``): this many trials per kernel, at most AUTO_MAX_TRIALS
AUTO_TRIALS_PER_KERNEL, AUTO_MAX_TRIALS = 64, 1536
#: candidates measured for a kernel never measured before: every kernel gets a schedule (untuned
#: kernels run 10-30x slower than tuned ones) after a few trials each, before the budget goes by
#: share of latency (MobileNetV2, 32 kernels: 128 trials instead of 512 before each has one)
FIRST_BATCH = 4
MAX_CONTEXTS = 64  # search states kept alive at once (a rebuilt one is seeded from the database)
FAILED_S = 1e10  # run time recorded for a candidate that failed to build or run (MetaSchedule's convention)


@dataclass
class TaskState:
    name: str
    weight: int
    mod: object  # IRModule of the kernel
    trials: int = 0  # records in the database for this workload (this run's and earlier ones)
    new_trials: int = 0  # trials run by this call
    warm: list = field(default_factory=list)  # other targets' best records of this kernel, to measure here first
    warm_trials: int = 0  # of new_trials: those warm-start records
    best_s: float | None = None
    exhausted: bool = False
    ctx: object = None
    last_used: int = 0

    def cost_s(self) -> float | None:
        return None if self.best_s is None else self.weight * self.best_s


@dataclass
class TuneResult:
    database: str
    target: str
    budget: int
    tasks: list[TaskState] = field(default_factory=list)
    new_trials: int = 0
    elapsed_s: float = 0.0
    key: str = ""
    budget_s: float | None = None
    stopped_by: str = "trials"  # "trials", "time", "exhausted" (no kernel wants more), "none" (nothing to tune)

    def estimated_ms(self) -> float | None:
        costs = [t.cost_s() for t in self.tasks]
        return None if any(c is None for c in costs) else 1e3 * sum(costs)

    def as_json(self) -> dict:
        total = sum(t.cost_s() or 0.0 for t in self.tasks) or 1.0
        return {
            "database": self.database, "target": self.target, "key": self.key, "budget_trials": self.budget,
            "budget_s": self.budget_s, "stopped_by": self.stopped_by,
            "trials_total": sum(t.trials for t in self.tasks), "trials_this_run": self.new_trials,
            "warm_start_trials": sum(t.warm_trials for t in self.tasks),
            "elapsed_s": round(self.elapsed_s, 2), "estimated_kernel_ms": self.estimated_ms(),
            "tasks": [{"name": t.name, "weight": t.weight, "trials": t.trials, "trials_this_run": t.new_trials,
                       "best_us": None if t.best_s is None else round(t.best_s * 1e6, 3),
                       "share": round((t.cost_s() or 0.0) / total, 4)} for t in self.tasks],
        }


def parse_rpc(spec: str | None, key: str | None):
    """``HOST:PORT`` of a TVM RPC tracker and the device key -> (host, port, key), or None."""
    if not spec:
        if key:
            raise ExplorerError("--key needs --rpc HOST:PORT (the RPC tracker)")
        return None
    host, port = parse_endpoint(spec, "--rpc")
    if not key:
        raise ExplorerError("--rpc needs --key (the device key the RPC servers registered with)")
    return host, port, key


def extract(mods, target) -> list[TaskState]:
    """The tunable kernels of one Relax module or several (already-scheduled ones left out).

    A kernel's weight is its calls per inference, summed over the modules; the same kernel from
    several modules (structurally equal) is one task.
    """
    from tvm.s_tir import meta_schedule as ms

    seen = ms.database.MemoryDatabase(module_equality="structural")
    out, index = [], {}
    for mod in mods if isinstance(mods, (list, tuple)) else [mods]:
        for t in ms.relax_integration.extract_tasks(_lower_for_schedules(mod), target):
            f = t.dispatched[0]
            if f.attrs is not None and f.attrs.get("tirx.is_scheduled", False):
                continue
            wl = seen.commit_workload(f)
            key = next((k for k, w in index.items() if w.same_as(wl)), None)
            if key is not None:
                out[key].weight += int(t.weight)
                continue
            index[len(out)] = wl
            out.append(TaskState(t.task_name, int(t.weight), f))
    return out


def _host_intrinsics_only() -> None:
    """Register only the host CPU's tensor intrinsics before MetaSchedule asks for all of them.

    ``TuneContext`` imports ``tvm.s_tir.tensor_intrin``, which builds every target's intrinsics
    (CUDA alone takes 14 s of a 21 s import on a 2-core machine). A CPU tuning session needs the
    host's only; the package is entered in ``sys.modules`` without running its ``__init__``.
    """
    import importlib
    import importlib.util
    import platform
    import sys

    name = "tvm.s_tir.tensor_intrin"
    if name in sys.modules:
        return
    import tvm.s_tir

    spec = importlib.util.find_spec(name)
    pkg = importlib.util.module_from_spec(spec)
    sys.modules[name] = pkg
    tvm.s_tir.tensor_intrin = pkg
    machine = platform.machine().lower()
    subs = ["x86"] if machine in ("x86_64", "amd64", "i686") else ["arm_cpu"] if machine.startswith(("arm", "aarch")) \
        else ["riscv_cpu"] if machine.startswith("riscv") else ["x86", "arm_cpu", "riscv_cpu"]
    for sub in subs:
        importlib.import_module(f"{name}.{sub}")


def _f(x) -> float:
    return float(getattr(x, "value", x))


def _secs(r) -> float | None:
    secs = sum(_f(x) for x in r.run_secs) / len(r.run_secs) if r.run_secs else None
    return secs if secs is not None and secs < FAILED_S / 10 else None


def _scan(db, tasks, key: str) -> None:
    """Each task's trials (records of this target's key for its workload, failed candidates too:
    they were trials) and best time, from the database."""
    wls = {id(t): db.commit_workload(t.mod) for t in tasks if db.has_workload(t.mod)}
    by_id = {id(t): t for t in tasks}
    for t in tasks:
        t.trials, t.best_s = 0, None
    if not wls:
        return
    keys: dict = {}
    for r in db.get_all_tuning_records():
        k = next((k for k, wl in wls.items() if r.workload.same_as(wl)), None)
        if k is None:
            continue
        tk = keys.get(str(r.target))
        if tk is None:
            tk = keys[str(r.target)] = target_key(r.target)
        if tk != key:
            continue
        t = by_id[k]
        t.trials += 1
        s = _secs(r)
        if s is not None and (t.best_s is None or s < t.best_s):
            t.best_s = s


def _warm_start(tasks, databases, key: str, k: int, db, db_path: Path) -> int:
    """Seed kernels without records of their own in the tuning database ``db`` from ``databases``
    (the shipped one, a team's): records tuned for this very key are copied into ``db`` (they count
    as trials; their traces must replay on the kernel); for the rest, the ``k`` fastest records of
    other targets become the kernel's first batch (replayed here and measured, :func:`_replay`).
    Returns the records copied."""
    import tempfile

    import tvm_ffi
    from tvm.s_tir import meta_schedule as ms

    from .schedules import open_database

    cold = {str(tvm_ffi.structural_hash(t.mod)): t for t in tasks if t.trials == 0}
    databases = [Path(d) for d in databases or [] if Path(d).resolve() != Path(db_path).resolve()]
    if not cold or not databases:
        return 0
    copied = 0
    with tempfile.TemporaryDirectory() as tmp:
        wl, rec, _ = subset(set(cold), databases, Path(tmp))
        src = open_database(wl, rec, Path(tmp))
        other: dict = {}
        for r in src.get_all_tuning_records():
            t = cold.get(str(tvm_ffi.structural_hash(r.workload.mod)))
            if t is None or _secs(r) is None:
                continue
            if target_key(r.target) != key:
                other.setdefault(id(t), []).append(r)
                continue
            if replay(r.trace, t.mod) is None:
                continue
            db.commit_tuning_record(ms.database.TuningRecord(r.trace, db.commit_workload(t.mod), r.run_secs, r.target,
                                                             r.args_info))
            copied += 1
        for t in cold.values():
            if id(t) in other:
                t.warm = sorted(other[id(t)], key=_secs)[:k]
    return copied


def _replay(t: TaskState) -> list:
    """Measure candidates from a task's warm-start records (traces that do not replay are dropped)."""
    from tvm.s_tir import meta_schedule as ms

    out = []
    for r in t.warm:
        sch = replay(r.trace, t.mod)
        if sch is not None:
            out.append(ms.MeasureCandidate(sch, r.args_info))
    t.warm = []
    return out


def check_tracker(host: str, port: int, key: str) -> None:
    keys = tracker_keys(host, port)
    if key not in keys:
        raise ExplorerError(f"--key {key!r}: no RPC server of that key is registered with the tracker at {host}:{port}"
                            f" (keys there: {', '.join(sorted(keys)) or 'none'})")


def _runner_child(threads: int) -> None:
    """In the child that times candidates: TVM's thread pool with the target's cores. Left to itself,
    TVM on x86 starts half the logical CPUs (it assumes two hyper-threads per core), so on a 2-core
    machine without them every candidate was timed on one thread while its schedule (and
    onnxruntime, beside it) used two."""
    from ..workers.pool import exit_with_parent

    os.environ["TVM_NUM_THREADS"] = str(int(threads))
    exit_with_parent()


def _runner(rpc, num_cores: int = 1):
    from tvm.s_tir import meta_schedule as ms

    if rpc is None:
        import functools

        runner = ms.runner.LocalRunner(evaluator_config=ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=40,
                                                                                  enable_cpu_cache_flush=False),
                                       initializer=functools.partial(_runner_child, num_cores))
    else:
        host, port, key = rpc
        check_tracker(host, port, key)
        runner = ms.runner.RPCRunner(
            rpc_config=ms.runner.RPCConfig(tracker_host=host, tracker_port=port, tracker_key=key, session_timeout_sec=120),
            evaluator_config=ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=40, enable_cpu_cache_flush=False),
            max_workers=1)
    return runner


def auto_trials(kernels: int) -> int:
    """The trial budget for a model of ``kernels`` tunable kernels when none is given."""
    return min(AUTO_MAX_TRIALS, AUTO_TRIALS_PER_KERNEL * kernels)


def tune_module(mod, target, db_dir: str | os.PathLike, trials: int | None = 256, num_cores: int | None = None,
                per_iter: int = 16, rpc=None, progress: bool = True, seed: int = 0, label: str = "tune",
                max_seconds: float | None = None, warm_start=None, input_shapes=None) -> TuneResult:
    """Tune the kernels of a Relax module for the TVM ``target`` (a CPU target: a Target or its JSON
    dict) into the database at ``db_dir`` (created, or extended).

    ``trials`` is the total for this module's kernels, counting the database's earlier records of
    this target's key (``None``: :func:`auto_trials`); ``max_seconds`` stops it sooner (after the batch in flight). ``warm_start``:
    databases whose records for other targets seed kernels that have none of their own.
    ``input_shapes`` go into the database's manifest with the key.
    """
    from tvm.s_tir import meta_schedule as ms

    _host_intrinsics_only()
    num_cores = int(num_cores or os.cpu_count() or 1)
    target = as_target(target, num_cores)
    db_path = Path(db_dir)
    db = open_writable(db_path)
    tasks = extract(mod, target)
    key = target_key(target)
    trials = auto_trials(len(tasks)) if trials is None else int(trials)
    res = TuneResult(str(db_path), str(target), trials, tasks, key=key, budget_s=max_seconds)
    if not tasks:
        res.stopped_by = "none"
        return res
    t_start = time.monotonic()
    deadline = None if max_seconds is None else t_start + max_seconds
    for t in tasks:
        if db.has_workload(t.mod):
            # tune the database's copy: structurally equal kernels may name their blocks otherwise
            # (lv12_red vs lv34_red), and a trace only replays on the names it was recorded with
            t.mod = db.commit_workload(t.mod).mod
    _scan(db, tasks, key)
    if _warm_start(tasks, warm_start, key, per_iter, db, db_path):
        _scan(db, tasks, key)
        for t in tasks:
            t.warm = t.warm if t.trials == 0 else []
    remaining = _left(tasks, trials, per_iter)
    bar = None
    if progress and remaining:
        from tqdm import tqdm

        bar = tqdm(total=remaining, desc=f"{label} {len(tasks)} kernels", unit="trial", dynamic_ncols=True)
    runner = _runner(rpc, num_cores)
    builder = _Builder(num_cores)
    cost_model = ms.cost_model.XGBModel(num_tuning_cores=num_cores, tree_method="auto")
    res.stopped_by = "trials"
    try:
        while (room := _room(tasks, trials, res.new_trials)) > 0:
            if deadline is not None and time.monotonic() >= deadline:
                res.stopped_by = "time"
                break
            t = _pick(tasks, trials, per_iter)
            if t is None:  # every kernel has its part of the budget, or no search has candidates left
                res.stopped_by = "exhausted" if all(x.exhausted for x in tasks) else "trials"
                break
            if t.warm:
                cands = _replay(t)[:room]
                if cands:
                    t.last_used = res.new_trials
                    _run_batch(t, cands, target, builder, runner, db, None, res, bar, tasks, trials, per_iter)
                    t.warm_trials += len(cands)
                    continue
            if t.ctx is None:
                _evict(tasks, keep=MAX_CONTEXTS - 1)
                t.ctx = ms.TuneContext(mod=t.mod, target=target, space_generator="post-order-apply",
                                       search_strategy=_strategy(per_iter),
                                       task_name=t.name, num_threads=num_cores, rand_state=seed + tasks.index(t)).clone()
                # the database's best records for this kernel seed the evolutionary search (resume)
                t.ctx.pre_tuning(max_trials=1 << 20, num_trials_per_iter=per_iter,
                                 design_spaces=t.ctx.generate_design_space(), database=db, cost_model=cost_model)
            t.last_used = res.new_trials
            cands = t.ctx.generate_measure_candidates()
            if not cands:
                t.exhausted = True
                continue
            first = _unmeasured(t, per_iter)  # no latency yet: a small batch
            cands = list(cands)[: min(room, FIRST_BATCH if first else len(cands))]
            _run_batch(t, cands, target, builder, runner, db, cost_model, res, bar, tasks, trials, per_iter)
    finally:
        builder.close()
        if bar is not None:
            bar.close()
        for t in tasks:
            if t.ctx is not None:
                t.ctx.post_tuning()
                t.ctx = None
        res.elapsed_s = time.monotonic() - t_start
        if res.new_trials:
            note_tuning(db_path, key, input_shapes or [], label.removeprefix("tune ").strip(), res.new_trials)
    return res


def _run_batch(t: TaskState, cands, target, builder, runner, db, cost_model, res: TuneResult, bar, tasks, trials,
               per_iter) -> None:
    """Build and run one batch of a task's candidates; record every result in the database (a failed
    candidate as :data:`FAILED_S`), feed the search (and the cost model, when given), count."""
    from tvm.s_tir import meta_schedule as ms

    secs, run_errors = _measure(cands, target, builder, runner)
    if all(x is None for x in secs) and len(run_errors) == len(cands):
        # nothing ran at all (an RPC tracker without servers, a device gone): not the
        # schedules' fault, so nothing is recorded
        raise ExplorerError(f"no candidate of {t.name} could be run: {run_errors[0][-300:]}")
    wl = db.commit_workload(t.mod)
    results = []
    for c, s in zip(cands, secs):
        run_secs = [s if s is not None else FAILED_S]
        db.commit_tuning_record(ms.database.TuningRecord(c.sch.trace, wl, run_secs, target, c.args_info))
        results.append(ms.runner.RunnerResult(run_secs=run_secs, error_msg=None if s is not None else "failed"))
        if s is not None and (t.best_s is None or s < t.best_s):
            t.best_s = s
    if cost_model is not None and t.ctx is not None:
        cost_model.update(t.ctx, cands, results)
        t.ctx.notify_runner_results(cands, results)
    n = len(cands)
    t.trials += n
    t.new_trials += n
    res.new_trials += n
    if bar is not None:
        bar.total = bar.n + n + _left(tasks, trials, per_iter)
        est = res.estimated_ms()
        bar.set_postfix_str(f"est. {est:.3f} ms" if est is not None else f"{sum(x.best_s is None for x in tasks)} untried")
        bar.update(n)


#: evolutionary search population per candidate of a batch, and its genetic iterations
#: (measured on the demo network, 2 cores, 2 minutes each: batches of 8 with a population of 128
#: ran 1.38 trials/s; batches of 16 with 64, 2.97 trials/s and a lower sum of best kernel times)
POPULATION_PER_TRIAL, GENETIC_ITERS = 4, 4


def _strategy(per_iter: int):
    """MetaSchedule's evolutionary search, its population scaled to the batch: generating a batch
    costs ~population x genetic iterations cost-model predictions (feature extraction in Python,
    one core), which dominates the time of a trial at the default population of 512 (128 here for
    batches of 8); batches of 16 with a population of 64 halve it per trial."""
    from tvm.s_tir import meta_schedule as ms

    pop = max(32, POPULATION_PER_TRIAL * per_iter)
    return ms.search_strategy.EvolutionarySearch(population_size=pop, init_min_unmeasured=min(50, pop // 2),
                                                 genetic_num_iters=GENETIC_ITERS)


def _evict(tasks: list[TaskState], keep: int) -> None:
    live = sorted((t for t in tasks if t.ctx is not None), key=lambda t: t.last_used)
    for t in live[: max(0, len(live) - keep)]:
        t.ctx.post_tuning()
        t.ctx = None


def _targets(tasks: list[TaskState], trials: int, floor: int = 0) -> dict[int, float]:
    """Each kernel's part of the model's ``trials``: in proportion to its share of the latency
    (weight x best time), but at least ``floor`` (its first batch), summing to ``trials``.

    A kernel not measured yet counts with the mean share until its first batch gives it a latency.
    An exhausted kernel (its search has no new candidate) keeps what it spent; the rest of the
    budget is shared among the others, so that it still goes where the time is.
    """
    out = {id(t): float(t.trials) for t in tasks if t.exhausted}
    trials = max(0, trials - sum(t.trials for t in tasks if t.exhausted))
    tasks = [t for t in tasks if not t.exhausted]
    if not tasks:
        return out
    known = [t for t in tasks if t.best_s is not None]
    mean = (sum(t.cost_s() for t in known) / len(known)) if known else 1.0
    cost = {id(t): (t.cost_s() if t.best_s is not None else mean) for t in tasks}
    total = sum(cost.values()) or 1.0
    share = {k: v / total for k, v in cost.items()}
    if floor * len(tasks) >= trials:
        return out | {k: trials / len(tasks) for k in share}
    lo, hi = 0.0, float(trials) / max(min(share.values()), 1e-12)
    for _ in range(60):  # water-filling: sum(max(floor, x * share)) == trials
        x = (lo + hi) / 2
        lo, hi = (x, hi) if sum(max(floor, x * v) for v in share.values()) < trials else (lo, x)
    return out | {k: max(floor, lo * v) for k, v in share.items()}


def _deficit(tasks: list[TaskState], trials: int, per_iter: int) -> dict[int, float]:
    tg = _targets(tasks, trials, min(per_iter, FIRST_BATCH))  # each kernel keeps its first batch
    return {id(t): tg[id(t)] - t.trials for t in tasks}


def _unmeasured(t: TaskState, per_iter: int) -> bool:
    """No latency yet, and fewer than a batch of its own trials spent on finding one (a kernel whose
    first small batches all failed is tried again, up to a batch)."""
    return t.best_s is None and t.trials - t.warm_trials < per_iter


def _pick(tasks: list[TaskState], trials: int, per_iter: int = 8) -> TaskState | None:
    """Kernels never measured first (their latency is unknown); then the kernel furthest below its
    part of the budget, if that is at least half a batch. None when every kernel has its part
    (e.g. it was tuned before, for another model that shares it)."""
    live = [t for t in tasks if not t.exhausted]
    untried = [t for t in live if _unmeasured(t, per_iter)]
    if untried:
        return untried[0]
    d = _deficit(tasks, trials, per_iter)
    # at least half a batch below: a kernel whose records MetaSchedule files under a structurally
    # equal duplicate never sees its count rise, and would otherwise take the whole budget again
    live = [t for t in live if d[id(t)] >= per_iter / 2 and t.best_s is not None]
    return max(live, key=lambda t: d[id(t)]) if live else None


def _room(tasks: list[TaskState], trials: int, new_trials: int) -> int:
    """Trials the budget still allows: ``trials`` is the model's total, so the records its kernels
    already had (a resumed run, the probes of ``deploy --layout auto``) count against it as well as
    this run's; a kernel whose records go under a structurally equal duplicate does not see its
    count rise, so this run's own trials are a bound too."""
    return min(trials - new_trials, trials - sum(t.trials for t in tasks))


def _left(tasks: list[TaskState], trials: int, per_iter: int) -> int:
    """Trials still to spend (an estimate while some kernels are unmeasured)."""
    d = _deficit(tasks, trials, per_iter)
    return int(round(sum(max(0.0, d[id(t)]) for t in tasks if not t.exhausted)))


class _Builder:
    """Builds candidates in a pool of worker processes kept for the whole session, each build
    killed after ``timeout_s`` (a schedule that unrolls a large loop nest can keep LLVM busy for
    minutes). MetaSchedule's LocalBuilder starts a fresh pool for every batch, each worker
    importing TVM again: about 3 s per candidate on a 2-core machine, against 0.2 s here. The
    pool is renewed every ``renew`` batches (the reason LocalBuilder does not keep one).
    """

    def __init__(self, workers: int, timeout_s: float = 30.0, renew: int = 100):
        self.workers, self.timeout_s, self.renew = max(1, workers), timeout_s, renew
        self.pool, self.used = None, 0

    def build(self, cands, target) -> list[str | None]:
        from tvm.s_tir.meta_schedule.builder.local_builder import _worker_func

        from ..workers.pool import WorkerPool

        if self.pool is None or self.used >= self.renew:
            self.close()
            self.pool = WorkerPool(workers=self.workers, timeout_s=self.timeout_s, initializer=_host_intrinsics_only)
        self.used += 1
        return [value if ok else None
                for ok, value in self.pool.map(_worker_func, [(None, None, c.sch.mod, target, None) for c in cands])]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None


def _measure(cands, target, builder, runner) -> tuple[list[float | None], list[str]]:
    """Build and run one batch; seconds per candidate (mean of the runner's repeats) or None on failure."""
    from tvm.s_tir import meta_schedule as ms

    built = builder.build(cands, target)
    out: list[float | None] = [None] * len(cands)
    errors: list[str] = []
    to_run = [(i, p) for i, p in enumerate(built) if p is not None]
    dev = {"llvm": "cpu"}.get(target.kind.name, target.kind.name)  # TVM's device type of the target kind
    futures = runner.run([ms.runner.RunnerInput(p, device_type=dev, args_info=cands[i].args_info) for i, p in to_run])
    for (i, p), f in zip(to_run, futures):
        r = f.result()
        if r.error_msg is None and r.run_secs:
            out[i] = sum(_f(s) for s in r.run_secs) / len(r.run_secs)
        else:
            errors.append(str(r.error_msg).strip().splitlines()[-1] if r.error_msg else "no result")
        shutil.rmtree(os.path.dirname(p), ignore_errors=True)
    return out, errors


def tune_onnx(path, target, db_dir, layout: str = "NCHW", prepack: bool = False, **kw) -> TuneResult:
    """Tune an ONNX model's kernels in ``layout``, with or without weight prepacking (see
    :func:`explorer.deploy.tvm_build.import_relax`; build it with the same two)."""
    from .tvm_build import import_relax, load_onnx

    m = load_onnx(path)
    return tune_module(import_relax(m, layout, prepack), target, db_dir, label=f"tune {Path(path).name}", **kw)
