"""The public entry points: build the pieces of a run from a config, search, and write a run folder."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import RunConfig
from .backends import TargetBackend, load_target
from .backends.target import Target
from .cost import UNITS, CostModel
from .data import DataSplits, load_dataset
from .errors import ConfigError
from .space import create_space
from .space.base import SearchSpace
from .space.hardware import HardwareSpace
from .space.quant import QuantState
from .search.constraints import Constraints, check_feasible
from .search.cosearch import CoSearch, SearchResult, history_line
from .search.train import retrain

__all__ = ["Problem", "build_problem", "run_search", "METHODS"]

METHODS = ("cosearch", "sequential", "random")


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


def _units(figures: dict) -> dict:
    out = {}
    for k, v in figures.items():
        if k in UNITS:
            unit, f = UNITS[k]
            out[k.rsplit("_", 1)[0] + "_" + unit] = v * f
        else:
            out[k] = v
    return out


def _atomic_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def run_search(cfg: RunConfig, out: str | Path, method: str = "cosearch", force: bool = False,
               progress: bool = True, do_retrain: bool = True, exploration: str | Path | None = None) -> dict:
    """Search, derive, retrain and write a run folder; returns the summary.

    The folder is built as ``<out>.partial`` and renamed to ``out`` only when complete, so an earlier
    run at ``out`` is never lost to a failed or interrupted one (``force`` replaces it on success).
    Files: ``config.json``, ``design.json``, ``hw_config.json`` (vta_config field names),
    ``history.jsonl``, ``summary.json``, ``search.png``. The finished run is recorded in the store
    (``explorer runs``), tagged with ``exploration`` when it belongs to one.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file, not a run folder; choose another --out")
    if out.exists() and any(out.iterdir()) and not force:
        raise ConfigError(f"{out} already holds a run; choose another --out or pass --force to replace it")
    prob = build_problem(cfg, progress=progress)
    work = out.with_name(out.name + ".partial")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    _atomic_json(work / "config.json", {**cfg.as_dict(), "method": method, "space_options_resolved": prob.space.options(),
                                        "data": prob.data.summary(), "lower_bounds": _units(prob.lower_bounds)})
    bar = _Progress(cfg, prob, enabled=progress, method=method)
    t0 = time.monotonic()
    with open(work / "history.jsonl", "w") as hist_f:

        def on_step(rec):
            hist_f.write(history_line(rec) + "\n")
            hist_f.flush()
            bar.update(rec)

        try:
            result = _run_method(prob, method, on_step)
        finally:
            bar.close()
    search_s = time.monotonic() - t0
    d = result.design
    _atomic_json(work / "design.json", {**d.as_json(), "genotype_str": prob.space.format_genotype(result.genotype), "key": d.key()})
    _atomic_json(work / "hw_config.json", prob.backend.hw_config_json(result.hw_config))
    summary = {
        "method": method,
        "design_key": d.key(),
        "genotype": prob.space.format_genotype(result.genotype),
        "hardware": result.hw_config.as_dict(),
        "figures": _units(result.figures),
        "limits": dict(cfg.limits),
        "limits_met": result.feasible,
        "repaired_moves": result.repaired,
        "one_shot_val_accuracy": result.one_shot_val_accuracy,
        "best_step": result.best_step,
        "steps": result.steps,
        "stop_reason": result.stop_reason,
        "search_s": round(search_s, 1),
    }
    if result.measured is not None:  # the kept design on the target's truth, beside the model's figures
        m = result.measured
        summary["limits_met_measured"] = m.get("limits_met_measured")
        summary["measured"] = {k: (_units(v) if k in ("figures", "predicted") else v) for k, v in m.items()
                               if k != "limits_met_measured"}
    if do_retrain and cfg.retrain.epochs > 0:
        rt0 = time.monotonic()
        bits = result.hw_config.bits()
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            net = prob.space.build_network(result.genotype, QuantState.fixed(*bits))
        rbar = _EpochBar(cfg.retrain.epochs, progress)
        summary["retrain"] = retrain(net, prob.data, cfg.retrain, cfg.seed, progress=rbar.update)
        rbar.close()
        summary["retrain"]["seconds"] = round(time.monotonic() - rt0, 1)
        summary["test_accuracy"] = summary["retrain"]["test_accuracy"]
        torch.save(net.state_dict(), work / "weights.pt")
        finished = prob.backend.finish(prob.space, result, prob.cost_model, work)
        if finished:
            summary[prob.backend.finish_key] = finished
    try:
        from .report import plot_history

        plot_history(work / "history.jsonl", work / "search.png", cfg.limits_si())
    except Exception as e:  # a plot must never cost the results
        summary["plot_error"] = f"{type(e).__name__}: {e}"
    _atomic_json(work / "summary.json", summary)
    if out.exists():
        shutil.rmtree(out)
    os.replace(work, out)
    summary["run_dir"] = str(out)
    from .runs import register_run

    register_run(out, summary, {**cfg.as_dict(), "method": method}, exploration=exploration)
    return summary


def _run_method(prob: Problem, method: str, on_step) -> SearchResult:
    cfg = prob.cfg
    con = prob.constraints()
    if method == "cosearch":
        measurer = prob.backend.measurer(prob.cost_model, calibration=cfg.calibration, timing=cfg.search.measure_timing)
        try:
            return CoSearch(prob.space, prob.hw, prob.cost_model, prob.data, cfg.search, con, prob.target.name,
                            cfg.seed, on_step=on_step, measurer=measurer).run()
        finally:
            if measurer is not None:
                measurer.close()
    from .search.baselines import random_search, sequential_search

    if method == "sequential":
        return sequential_search(prob.space, prob.hw, prob.cost_model, prob.data, cfg, con, prob.target.name, on_step)
    return random_search(prob.space, prob.hw, prob.cost_model, prob.data, cfg, con, prob.target.name, on_sample=on_step)


class _Progress:
    """A tqdm bar over search steps (or wall-clock budget, whichever ends first)."""

    def __init__(self, cfg: RunConfig, prob: Problem, enabled: bool, method: str):
        self.enabled = enabled
        if not enabled:
            return
        from tqdm import tqdm

        self.bar = tqdm(total=cfg.search.steps, desc=f"{method} {cfg.space}/{cfg.target}", unit="step", dynamic_ncols=True)

    def update(self, rec):
        if not self.enabled or "event" in rec:
            return
        self.bar.update(1)
        post = {}
        if rec.get("L") is not None and rec.get("L") == rec.get("L"):
            post["L"] = f"{rec['L']:.3f}"
        exp = rec.get("expected") or rec.get("figures") or {}
        if "latency_s" in exp:
            post["lat"] = f"{exp['latency_s'] * 1e3:.3f}ms"
        if "area_mm2" in exp:
            post["area"] = f"{exp['area_mm2']:.2f}mm2"
        if "derived" in rec:
            post["val"] = f"{rec['derived']['val_accuracy']:.3f}"
        self.bar.set_postfix(post, refresh=False)

    def close(self):
        if self.enabled:
            self.bar.close()


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
    """Continue a killed or interrupted search from its last checkpoint (see ``explorer search --resume``)."""
    raise ConfigError("--resume: checkpoints are not written yet")  # replaced by the checkpointing work
