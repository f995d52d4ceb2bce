"""The public entry points: build the pieces of a run from a config, search, and write a run folder."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import RunConfig, config_from_dict
from .backends import TargetBackend, load_target
from .backends.target import Target
from .cost import CostModel
from .data import DataSplits, load_dataset
from .errors import ConfigError
from .fsutil import atomic_open, atomic_write_json
from .units import by_name, user_figures
from .space import create_space
from .space.base import SearchSpace
from .space.hardware import HardwareSpace
from .space.quant import QuantState
from .search.constraints import Constraints, check_feasible
from .search.cosearch import CoSearch, SearchResult, history_line
from .search.train import retrain
from .measure.local import numerics
from .runs.summary import RunSummary, Verdict

__all__ = ["Problem", "build_problem", "run_search", "resume_search", "METHODS"]

METHODS = ("cosearch", "sequential", "random")
CHECKPOINT = "checkpoint.pt"  # in <out>.partial; removed when the run is complete
CHECKPOINT_FORMAT = 1


@dataclass
class Problem:
    """Everything a search needs, built and validated from a :class:`RunConfig`."""

    cfg: RunConfig
    data: DataSplits
    space: SearchSpace
    target: Target
    hw: HardwareSpace
    cost_model: CostModel
    lower_bounds: dict
    backend: TargetBackend

    def constraints(self) -> Constraints:
        s = self.cfg.search
        objective = {k: v for k, v in self.cfg.objective.items() if k in self.cost_model.resources}
        return Constraints(self.cfg.limits_si(), objective, s.dual_lr, s.margin)


def build_problem(cfg: RunConfig, store_path=None, progress: bool = False) -> Problem:
    """Load data, space, target and cost model; reject impossible limits before any training.

    The target's backend builds the cost model (a measured target first times every workload of
    the space that its store lacks).
    """
    target = load_target(cfg.target)
    backend = target.backend()
    data = load_dataset(cfg.dataset, seed=cfg.seed)
    space = create_space(cfg.space, data.input_shape, data.num_classes, **cfg.space_options)
    hw = target.hardware_space()
    unpriced = [k for k in cfg.limits_si() if k not in backend.resources]
    if unpriced:
        raise ConfigError(f"target {target.name!r} prices {', '.join(backend.resources)}; it has no {', '.join(unpriced)} limit")
    cm = backend.cost_model(space, hw, calibration=cfg.calibration, store_path=store_path, progress=progress)
    lb = check_feasible(cm, cfg.limits_si())
    return Problem(cfg, data, space, target, hw, cm, lb, backend)


def _write_json(path: Path, obj) -> None:
    """A run folder's JSON file, written atomically and synced to disk."""
    atomic_write_json(path, obj, default=str, fsync=True)


def run_search(cfg: RunConfig, out: str | Path, method: str = "cosearch", force: bool = False,
               progress: bool = True, do_retrain: bool = True, exploration: str | Path | None = None) -> dict:
    """Search, derive, retrain and write a run folder; returns the summary as ``summary.json`` holds it,
    plus ``run_dir`` (:meth:`explorer.runs.RunSummary.from_json` types it).

    The folder is built as ``<out>.partial`` and renamed to ``out`` only when complete, so an earlier
    run at ``out`` is never lost to a failed or interrupted one (``force`` replaces it on success).
    Files: ``config.json``, ``design.json``, ``hw_config.json`` (vta_config field names),
    ``history.jsonl``, ``summary.json``, ``search.png``. The finished run is recorded in the store
    (``explorer runs``), tagged with ``exploration`` when it belongs to one. While a co-search runs,
    ``<out>.partial/checkpoint.pt`` holds its last checkpoint (``search.checkpoint_every`` steps,
    ``search.checkpoint_s`` seconds): :func:`resume_search` continues a killed run from it.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file, not a run folder; choose another --out")
    if out.exists() and any(out.iterdir()) and not force:
        raise ConfigError(f"{out} already holds a run; choose another --out or pass --force to replace it")
    prob = build_problem(cfg, progress=progress)
    work = _work_dir(out)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    # what resume_search needs besides the config: how the run was started
    _write_json(work / "config.json", {**cfg.as_dict(), "method": method, "space_options_resolved": prob.space.options(),
                                        "data": prob.data.summary(), "lower_bounds": user_figures(prob.lower_bounds),
                                        "out": str(out.resolve()), "force": force, "do_retrain": do_retrain,
                                        "exploration": None if exploration is None else str(Path(exploration).resolve())})
    try:
        return _search_into(prob, method, out, work, progress, do_retrain, exploration)
    except BaseException:
        if method != "cosearch":  # only a co-search checkpoints: another method's partial folder resumes nothing
            shutil.rmtree(work, ignore_errors=True)
        raise


def _work_dir(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def _search_into(prob: Problem, method: str, out: Path, work: Path, progress: bool, do_retrain: bool,
                 exploration, resume: dict | None = None) -> dict:
    """The search (from its start, or from ``resume``: a checkpoint and the history written before
    it) and everything after it: the files of the run folder in ``work``, renamed to ``out``."""
    cfg = prob.cfg
    loop = resume["search"]["loop"] if resume else {"step": 0, "elapsed_s": 0.0}
    bar = _Progress(cfg, prob, enabled=progress, method=method, initial=loop["step"])
    t0 = time.monotonic() - loop["elapsed_s"]
    n_records = len(resume["history"]) if resume else 0
    with open(work / "history.jsonl", "ab" if resume else "wb") as hist_f:

        def on_step(rec):
            nonlocal n_records
            hist_f.write((history_line(rec) + "\n").encode())
            hist_f.flush()
            n_records += 1
            bar.update(rec)

        def on_checkpoint(state):
            os.fsync(hist_f.fileno())  # the history the checkpoint points into is on disk first
            _save_checkpoint(work / CHECKPOINT, {"format": CHECKPOINT_FORMAT, "method": method, "config": _normal(cfg.as_dict()),
                                                 "history_bytes": hist_f.tell(), "history_records": n_records,
                                                 "search": state})

        try:
            result = _run_method(prob, method, on_step, on_checkpoint, resume, on_select=bar.selecting)
        finally:
            bar.close()
    search_s = time.monotonic() - t0
    d = result.design
    _write_json(work / "design.json", {**d.as_json(), "genotype_str": prob.space.format_genotype(result.genotype), "key": d.key()})
    _write_json(work / "hw_config.json", prob.backend.hw_config_json(result.hw_config))
    summary = RunSummary(
        method=method,
        design_key=d.key(),
        genotype=prob.space.format_genotype(result.genotype),
        hardware=result.hw_config.as_dict(),
        figures=user_figures(result.figures),
        limits=dict(cfg.limits),
        limits_met=result.feasible,  # on the cost model; the verdict below says what the truth said
        repaired_moves=result.repaired,
        one_shot_val_accuracy=result.one_shot_val_accuracy,
        proxy_val_accuracy=result.proxy_val_accuracy,
        best_step=result.best_step,
        steps=result.steps,
        stop_reason=result.stop_reason,
        stop_detail=result.stop_detail,
        search_s=round(search_s, 1),
        numerics=numerics(),
        selection=result.selection,
    )
    acc, kind = result.one_shot_val_accuracy, "one-shot"
    proxy = summary.proxy_val_accuracy
    if proxy is not None and not proxy <= acc:  # trained from scratch: the stronger evidence that it learns
        acc, kind = proxy, "briefly trained"
    if acc == acc:
        from .search.select import near_chance

        summary.near_chance = near_chance(acc, prob.data.num_classes)
        if summary.near_chance:
            warnings.warn(f"the kept design is near chance: {kind} validation accuracy {acc:.3f} with "
                          f"{prob.data.num_classes} classes; the search found no network that learns within the limits")
    if result.measured is not None:  # the kept design on the target's truth, beside the model's figures
        m = result.measured
        summary.limits_met_measured = m.get("limits_met_measured")
        summary.measured = {k: (user_figures(v) if k in ("figures", "predicted") else v) for k, v in m.items()
                            if k != "limits_met_measured"}
    measured_ok = summary.limits_met_measured
    summary.verdict = Verdict(result.feasible if measured_ok is None else measured_ok,
                              "model" if measured_ok is None else "measurement", result.feasible)
    if do_retrain and cfg.retrain.epochs > 0:
        rt0 = time.monotonic()
        net, summary.retrain = _retrain_seeds(prob, result, progress)
        summary.retrain["seconds"] = round(time.monotonic() - rt0, 1)
        summary.test_accuracy = summary.retrain["test_accuracy"]
        torch.save(net.state_dict(), work / "weights.pt")
        finished = prob.backend.finish(prob.space, result, prob.cost_model, work)
        if finished:
            summary.finish_key, summary.finished = prob.backend.finish_key, finished
    from .runs.plot import NothingToPlot, plot_history

    try:
        plot_history(work / "history.jsonl", work / "search.png", cfg.limits_si())
    except NothingToPlot:  # a random search: its samples are drawn by `explorer report`
        pass
    except Exception as e:  # a plot must never cost the results
        summary.plot_error = f"{type(e).__name__}: {e}"
    _write_json(work / "summary.json", summary.as_json())
    for f in (CHECKPOINT, CHECKPOINT + ".tmp"):  # the finished folder needs no way back into the search
        (work / f).unlink(missing_ok=True)
    if out.exists():
        shutil.rmtree(out)
    os.replace(work, out)
    summary.run_dir = str(out)
    from .runs.store import register_run

    register_run(out, summary, {**cfg.as_dict(), "method": method}, exploration=exploration)
    return summary.as_json()


def _retrain_seeds(prob: Problem, result, progress: bool):
    """Retrain the kept design ``cfg.retrain.seeds`` times from scratch (seeds ``cfg.seed``, +1, ...):
    (the first seed's network, its record). With several seeds the record's ``test_accuracy`` is
    their mean, ``test_accuracies`` each one's (the first is the kept weights')."""
    cfg, bits = prob.cfg, result.hw_config.bits()
    n = cfg.retrain.seeds
    rbar = _EpochBar(cfg.retrain.epochs * n, progress)
    kept, recs = None, []
    for k in range(n):
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed + k)
            net = prob.space.build_network(result.genotype, QuantState.fixed(*bits))
        recs.append(retrain(net, prob.data, cfg.retrain, cfg.seed + k, progress=rbar.update))
        if k == 0:
            kept = net
    rbar.close()
    rec = dict(recs[0])
    if n > 1:
        accs = [r["test_accuracy"] for r in recs]
        rec.update(seeds=n, test_accuracies=accs, test_accuracy=sum(accs) / n,
                   test_accuracy_sd=statistics.stdev(accs))
    return kept, rec


def _run_method(prob: Problem, method: str, on_step, on_checkpoint=None, resume: dict | None = None,
                on_select=None) -> SearchResult:
    cfg = prob.cfg
    con = prob.constraints()
    # every method's kept design is checked on the target's truth the same way (and repaired if it breaks a limit there)
    measurer = prob.backend.measurer(prob.cost_model, calibration=cfg.calibration, timing=cfg.search.measure_timing)
    try:
        if method == "cosearch":
            search = CoSearch(prob.space, prob.hw, prob.cost_model, prob.data, cfg.search, con, prob.target.name,
                              cfg.seed, on_step=on_step, measurer=measurer, on_checkpoint=on_checkpoint,
                              on_select=on_select)
            if resume is None:
                return search.run()
            return search.run(resume=resume["search"], history=resume["history"])
        from .search.baselines import random_search, sequential_search

        if method == "sequential":
            return sequential_search(prob.space, prob.hw, prob.cost_model, prob.data, cfg, con, prob.target.name, on_step,
                                     measurer=measurer)
        return random_search(prob.space, prob.hw, prob.cost_model, prob.data, cfg, con, prob.target.name,
                             on_sample=on_step, measurer=measurer)
    finally:
        if measurer is not None:
            measurer.close()


class _Progress:
    """A tqdm bar over search steps (or wall-clock budget, whichever ends first)."""

    def __init__(self, cfg: RunConfig, prob: Problem, enabled: bool, method: str, initial: int = 0):
        self.enabled = enabled
        self.select_bar = None
        if not enabled:
            return
        from tqdm import tqdm

        self.bar = tqdm(total=cfg.search.steps, initial=initial, desc=f"{method} {cfg.space}/{cfg.target}", unit="step",
                        dynamic_ncols=True)

    def selecting(self, scored: int) -> None:
        """Selection's count of candidates scored, on a bar of its own (its total is not known ahead)."""
        if not self.enabled:
            return
        if self.select_bar is None:
            from tqdm import tqdm

            self.bar.close()  # the steps are done
            self.select_bar = tqdm(desc="select (one-shot scores)", unit="design", dynamic_ncols=True)
        self.select_bar.update(scored - self.select_bar.n)

    def update(self, rec):
        if not self.enabled or "event" in rec:
            return
        self.bar.update(1)
        post = {}
        if rec.get("L") is not None and rec.get("L") == rec.get("L"):
            post["L"] = f"{rec['L']:.3f}"
        exp = rec.get("expected") or rec.get("figures") or {}
        for name, short, digits in (("latency_s", "lat", 3), ("area_mm2", "area", 2)):
            if name in exp:
                r = by_name(name)
                post[short] = f"{r.to_user(exp[name]):.{digits}f}{r.unit}"
        if "derived" in rec:
            post["val"] = f"{rec['derived']['val_accuracy']:.3f}"
        self.bar.set_postfix(post, refresh=False)

    def close(self):
        if self.enabled:
            self.bar.close()
            if self.select_bar is not None:
                self.select_bar.close()


class _EpochBar:
    def __init__(self, epochs: int, enabled: bool):
        self.bar = None
        if enabled and epochs:
            from tqdm import tqdm

            self.bar = tqdm(total=epochs, desc="retrain", unit="epoch", dynamic_ncols=True)

    def update(self, ep, total, loss):
        if self.bar:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def close(self):
        if self.bar:
            self.bar.close()


def resume_search(run: str | Path, progress: bool = True) -> dict:
    """Continue a killed or interrupted search from its last checkpoint; returns the summary, as
    :func:`run_search` does (and finishes the run the same way: derive, repair, verify, retrain, write,
    rename, record in the store, with the exploration tag it had).

    ``run`` is the folder given to ``--out``, or ``<run>.partial`` where the unfinished run lives. The
    config, method and options (``force``, ``exploration``) are the ones ``config.json`` recorded.
    History lines written after the checkpoint are dropped and the search continues from it: with
    ``search.progress = "steps"`` (the default) and a stop by steps, the run ends with the same design,
    hardware and figures as an uninterrupted one with the same seed on the same machine. The elapsed
    time is restored too (``time_s`` and time budgets continue), so a run stopped by its time budget,
    or with ``progress = "time"``, is continued but not reproduced exactly.

    Only the co-search writes checkpoints. A ``sequential`` or ``random`` run is started again from
    the beginning (its config, its folder), with a one-line notice on stderr.

    Raises:
        ConfigError: no such run, a run already finished, no checkpoint yet, or a checkpoint that is
            corrupt, truncated or does not belong to the run's config; nothing in the folder is changed.
    """
    run = Path(run)
    out = run.with_name(run.name[: -len(".partial")]) if run.name.endswith(".partial") else run
    work = _work_dir(out)
    if not work.is_dir():
        if (out / "summary.json").is_file():
            raise ConfigError(f"{out} is a finished run (it has summary.json); there is nothing to resume")
        if out.exists():
            raise ConfigError(f"{out} holds no unfinished search ({work.name} does not exist); nothing to resume")
        raise ConfigError(f"--resume {run}: no such run folder")
    try:
        meta = json.loads((work / "config.json").read_text())
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{work / 'config.json'}: cannot read the run's config ({type(e).__name__}: {e})") from None
    method = meta.get("method")
    if method not in METHODS:
        raise ConfigError(f"{work / 'config.json'}: unknown method {method!r}; valid: {', '.join(METHODS)}")
    cfg = config_from_dict(meta)
    force, do_retrain, exploration = bool(meta.get("force")), bool(meta.get("do_retrain", True)), meta.get("exploration")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not force)):
        raise ConfigError(f"{out} now holds something else; move it away to finish the run in {work}")
    if method != "cosearch":
        print(f"explorer: note: a {method} run keeps no checkpoints; --resume starts {out} again from the beginning",
              file=sys.stderr)
        return run_search(cfg, out, method=method, force=force, progress=progress, do_retrain=do_retrain,
                          exploration=exploration)
    ckpt = _load_checkpoint(work / CHECKPOINT)
    if ckpt["config"] != _normal(cfg.as_dict()) or ckpt["method"] != method:
        raise ConfigError(f"{work / CHECKPOINT} belongs to another config than {work / 'config.json'}; start the search again")
    hist = work / "history.jsonl"
    try:
        kept = hist.read_bytes()[: ckpt["history_bytes"]]
    except OSError as e:
        raise ConfigError(f"{hist}: cannot read the history ({e})") from None
    lines = kept.splitlines()
    if len(kept) < ckpt["history_bytes"] or len(lines) != ckpt["history_records"]:
        raise ConfigError(f"{hist} does not hold the {ckpt['history_records']} records its checkpoint counts; "
                          "start the search again")
    prob = build_problem(cfg, progress=progress)
    with open(hist, "r+b") as f:  # lines after the checkpoint are written again by the resumed steps
        f.truncate(ckpt["history_bytes"])
    history = [json.loads(line) for line in lines]
    return _search_into(prob, method, out, work, progress, do_retrain, exploration,
                        resume={"search": ckpt["search"], "history": history})


def _normal(d: dict) -> dict:
    """A config dict as config.json holds it (tuples as lists), for comparing a checkpoint with it."""
    return json.loads(json.dumps(d, default=str))


def _save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically: a temporary file in the same folder, flushed to disk, then renamed over
    ``path``; a write killed halfway leaves the previous checkpoint (and a stray ``.tmp``) behind."""
    with atomic_open(path, "wb", fsync=True) as f:
        torch.save(state, f)


def _load_checkpoint(path: Path) -> dict:
    """A checkpoint, read without unpickling anything but tensors and plain data."""
    if not path.is_file():
        raise ConfigError(f"{path.parent} has no checkpoint yet (the search stopped before its first one); "
                          "start it again with explorer search")
    try:
        with warnings.catch_warnings():  # torch warns about what it then refuses; the error says enough
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, overwritten, or not a checkpoint at all: torch raises many kinds
        raise ConfigError(f"{path}: corrupt or truncated checkpoint ({type(e).__name__}); start the search again") from None
    keys = {"format", "method", "config", "history_bytes", "history_records", "search"}
    if (not isinstance(ckpt, dict) or not keys <= set(ckpt) or ckpt["format"] != CHECKPOINT_FORMAT
            or not isinstance(ckpt["search"], dict) or not isinstance(ckpt["search"].get("loop"), dict)):
        raise ConfigError(f"{path}: not a checkpoint this version of explorer can resume")
    return ckpt
