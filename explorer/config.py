"""Run configuration: parsed and validated once, at the boundary (TOML file + CLI overrides)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError
from .fsutil import read_toml
from .units import LIMIT_KEYS, RESOURCES, by_limit_key

__all__ = ["SearchConfig", "RetrainConfig", "RunConfig", "load_config", "config_from_dict", "LIMIT_KEYS"]


@dataclass
class SearchConfig:
    """The alternating loop. ``stages``: ``[[progress fraction, keep k], ...]`` prune points."""

    steps: int = 500
    # a safety net: the planned steps end a run, not the clock (see progress)
    budget_min: float = 20.0
    batch_size: int = 64
    warmup_steps: int = 200
    # warm-up never takes more than this share of the steps
    warmup_fraction: float = 0.33
    # the architecture and hardware are updated every this many weight steps
    arch_every: int = 2
    relax: str = "softmax"
    tau_start: float = 1.0
    tau_end: float = 0.3
    w_lr: float = 0.05
    w_momentum: float = 0.9
    w_weight_decay: float = 3e-4
    alpha_lr: float = 0.05
    theta_lr: float = 0.02
    dual_lr: float = 0.1
    margin: float = 0.05
    # The stop rule, checked once every stage has been reached, on the scale-free combined loss (the
    # task losses over chance level's cross-entropy, plus the derived design's relative excess over
    # its limits; smoothed): stop when it is <= threshold (0 or less: never), or when it has not improved
    # by min_improvement (relative) for `patience` architecture steps (0: never).
    threshold: float | None = 0.02
    patience: int = 100
    min_improvement: float = 0.01
    # How the returned design is chosen: "loss" (the derived design with the lowest smoothed search
    # loss among those within the limits) or "accuracy" (candidates around the final distribution
    # scored by BatchNorm-recalibrated one-shot accuracy within the limits, the best few trained
    # select_proxy_steps steps from scratch; see explorer.search.select)
    selection: str = "accuracy"
    # weight of the mean entropy of the op choices in the architecture loss, ramped from 0 at the end of
    # warm-up to this at the last step (0: off): the final distribution decides instead of near-tying
    entropy_weight: float = 0.3
    select_proxy_steps: int = 150
    # each finalist's brief training is repeated with this many seeds and judged by the mean (one
    # training's accuracy moves by as much as finalists differ: on the quality benchmark's digits
    # finalists, 3 seeds picked designs that retrain 0.3 points better than 1, 0.7 at 0.025 ms;
    # BENCHMARKS.md, issue 25, twelfth session)
    select_proxy_seeds: int = 3
    # of the finalists whose mean brief-training accuracy lies within this fraction of the leader's
    # standard error on the validation set, the lowest validation loss is kept (0: accuracy alone)
    select_loss_tie: float = 0.5
    # peak learning rate of the brief trainings from scratch (selection's finalists, random search's
    # samples): a one-cycle schedule, as the retraining's (RetrainConfig.lr)
    proxy_lr: float = 0.2
    eval_every: int = 25
    measure_every: int = 25
    measure_drain_s: float = 60.0
    # Measurements refine the cost model in the loop, and a kept design that breaks a limit on the
    # truth is repaired; false: nothing is measured in the loop and the final check only reports.
    refine: bool = True
    # CPU/GPU: when a built candidate is timed, "between-steps" (the search waits, nothing else runs)
    # or "concurrent" (beside the training search, for comparison)
    measure_timing: str = "between-steps"
    # CPU/GPU with refine: minutes spent tuning the leading candidate's kernels on this machine
    # (MetaSchedule, into the user's schedule database), the search waiting: an equal slice at each
    # stage boundary and one for the kept design before its final measurement. 0: no tuning.
    tune_minutes: float = 2.0
    stages: list = field(default_factory=lambda: [[0.55, 4], [0.8, 2]])
    # What stage boundaries and the temperature schedule follow: "steps" (the same seed gives the
    # same result on any machine, however loaded) or "time" (fractions of budget_min: for runs
    # compared at equal wall-clock budgets).
    progress: str = "steps"
    # A resumable checkpoint (``<out>.partial/checkpoint.pt``, see ``explorer search --resume``) every
    # this many steps and at least every this many seconds; 0 turns either off.
    checkpoint_every: int = 25
    checkpoint_s: float = 60.0


@dataclass
class RetrainConfig:
    """Training a derived network from scratch (:func:`explorer.search.train.retrain`): SGD with
    Nesterov momentum, a one-cycle schedule peaking at ``lr``. The peak of 0.2 was chosen on mnist5k
    (two splits, two seeds each; BENCHMARKS.md, issue 25, seventh session): against 0.05 it gains
    0.25-0.55 points after 20 epochs and 9 points on a tiny network after 3, and is level on digits."""

    epochs: int = 20
    batch_size: int = 128
    lr: float = 0.2
    weight_decay: float = 3e-4
    augment: bool = True
    rotate_deg: float = 0.0  # with augment: random rotations of up to this many degrees
    scale: float = 0.0  # with augment: random zooms within 1 +- scale
    label_smoothing: float = 0.0
    # Retrain this many times (seeds seed, seed+1, ...) and report the mean test accuracy beside each
    # run's: a short recipe's result moves by points between seeds (3 epochs on mnist5k: 79.3 and
    # 95.7% for one design, BENCHMARKS.md, issue 25, eleventh session). The first seed's weights are kept.
    seeds: int = 1


@dataclass
class RunConfig:
    """Everything a run needs. ``limits`` in user units (``latency_ms``, ``energy_mj``, ``area_mm2``);
    ``objective`` weights on log(expected cost) that apply whether or not a limit is set."""

    dataset: str = "mnist5k"
    space: str = "chain"
    target: str = "vta"
    seed: int = 0
    calibration: str | None = None  # vta: a file written by `explorer calibrate`
    space_options: dict = field(default_factory=dict)
    limits: dict = field(default_factory=dict)
    objective: dict = field(default_factory=lambda: dict.fromkeys(RESOURCES, 0.01))
    search: SearchConfig = field(default_factory=SearchConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)

    def limits_si(self) -> dict[str, float]:
        """Limits keyed by resource name in SI units."""
        return {by_limit_key(k).name: by_limit_key(k).from_user(v) for k, v in self.limits.items()}

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _finite(v) -> bool:
    """A number (not a bool) that is a finite float, ints too large for a float excluded."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def _fill(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"[{where}] must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"[{where}]: unknown key(s) {unknown}; valid: {', '.join(sorted(fields))}")
    obj = cls()
    for k, v in data.items():
        default = getattr(obj, k)
        if isinstance(default, bool):
            ok = isinstance(v, bool)
        elif isinstance(default, int) and not isinstance(default, bool):
            ok = isinstance(v, int) and not isinstance(v, bool)
        elif isinstance(default, float) or default is None:
            ok = isinstance(v, float) or _finite(v)  # a float's nan/inf are refused by validate, with its name
            v = float(v) if ok else v
            ok = ok or (default is None and v is None)  # a config.json records an unset option as null
        elif isinstance(default, str):
            ok = isinstance(v, str)
        else:
            ok = isinstance(v, type(default))
        if not ok:
            raise ConfigError(f"[{where}] {k}: expected {type(default).__name__}, got {v!r}")
        setattr(obj, k, v)
    return obj


def validate(cfg: RunConfig) -> RunConfig:
    s, r = cfg.search, cfg.retrain
    checks = [
        (s.steps >= 1, "search.steps must be >= 1"),
        (s.budget_min > 0, "search.budget_min must be > 0"),
        (s.batch_size >= 2, "search.batch_size must be >= 2"),
        (s.warmup_steps >= 0, "search.warmup_steps must be >= 0"),
        (0 <= s.warmup_fraction < 1, "search.warmup_fraction must be in [0, 1)"),
        (s.arch_every >= 1, "search.arch_every must be >= 1"),
        (s.relax in ("softmax", "gumbel", "sample"), f"search.relax must be 'softmax', 'gumbel' or 'sample', got {s.relax!r}"),
        (s.progress in ("steps", "time"), f"search.progress must be 'steps' or 'time', got {s.progress!r}"),
        (s.tau_start > 0 and s.tau_end > 0, "search.tau_start and tau_end must be > 0"),
        (min(s.w_lr, s.alpha_lr, s.theta_lr, s.proxy_lr) > 0, "learning rates must be > 0"),
        (s.dual_lr >= 0, "search.dual_lr must be >= 0"),
        (0 <= s.margin < 1, "search.margin must be in [0, 1)"),
        (s.patience >= 0, "search.patience must be >= 0"),
        (0 <= s.min_improvement < 1, "search.min_improvement must be in [0, 1)"),
        (s.selection in ("loss", "accuracy"), f"search.selection must be 'loss' or 'accuracy', got {s.selection!r}"),
        (s.select_proxy_steps >= 0, "search.select_proxy_steps must be >= 0"),
        (isinstance(s.select_loss_tie, (int, float)) and not isinstance(s.select_loss_tie, bool) and 0 <= s.select_loss_tie <= 5, "search.select_loss_tie must be a number from 0 to 5"),
        (isinstance(s.select_proxy_seeds, int) and not isinstance(s.select_proxy_seeds, bool) and s.select_proxy_seeds >= 1, "search.select_proxy_seeds must be an integer >= 1"),
        (s.entropy_weight >= 0, "search.entropy_weight must be >= 0"),
        (s.eval_every >= 1, "search.eval_every must be >= 1"),
        (s.measure_every >= 1, "search.measure_every must be >= 1"),
        (s.measure_drain_s >= 0, "search.measure_drain_s must be >= 0"),
        (s.measure_timing in ("between-steps", "concurrent"), "search.measure_timing must be \"between-steps\" or \"concurrent\""),
        (isinstance(s.refine, bool), "search.refine must be true or false"),
        (isinstance(s.tune_minutes, (int, float)) and s.tune_minutes >= 0, "search.tune_minutes must be >= 0"),
        (s.checkpoint_every >= 0, "search.checkpoint_every must be >= 0 (0: no step checkpoints)"),
        (s.checkpoint_s >= 0, "search.checkpoint_s must be >= 0 (0: no timed checkpoints)"),
        (r.epochs >= 0 and r.batch_size >= 2 and r.lr > 0, "retrain: epochs >= 0, batch_size >= 2, lr > 0"),
        (isinstance(r.seeds, int) and not isinstance(r.seeds, bool) and r.seeds >= 1, "retrain.seeds must be an integer >= 1"),
        (0 <= r.rotate_deg <= 180 and 0 <= r.scale < 1 and 0 <= r.label_smoothing < 1,
         "retrain: rotate_deg in [0, 180], scale in [0, 1), label_smoothing in [0, 1)"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)
    if s.threshold is None:  # "never", written as a number so that TOML and config.json carry it
        s.threshold = 0.0
    for sec, obj in (("search", s), ("retrain", r)):
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{sec}.{f.name} must be a finite number, got {v!r}")

    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    def stage_ok(x) -> bool:
        return (isinstance(x, list) and len(x) == 2 and number(x[0]) and 0 < x[0] < 1
                and isinstance(x[1], int) and not isinstance(x[1], bool) and x[1] >= 1)

    if not isinstance(s.stages, list) or not all(stage_ok(x) for x in s.stages):
        raise ConfigError("search.stages must be [[fraction in (0,1), keep >= 1], ...]")
    try:  # a run writes its config to config.json: no dates, no nan or infinity
        json.dumps(cfg.space_options, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as e:
        raise ConfigError(f"[space_options] must hold only strings, finite numbers, booleans, arrays and tables "
                          f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    for k, v in cfg.limits.items():
        if k not in LIMIT_KEYS:
            raise ConfigError(f"[limits]: unknown limit {k!r}; valid: {', '.join(LIMIT_KEYS)}")
        if not _finite(v) or v <= 0:
            raise ConfigError(f"[limits] {k} must be a positive number, got {v!r}")
        cfg.limits[k] = float(v)
    for k, v in cfg.objective.items():
        if k not in RESOURCES:
            raise ConfigError(f"[objective]: unknown resource {k!r}; valid: {', '.join(RESOURCES)}")
        if not _finite(v) or v < 0:
            raise ConfigError(f"[objective] {k} must be a number >= 0, got {v!r}")
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool) or not 0 <= cfg.seed < 2**63:
        raise ConfigError(f"seed must be an integer in [0, 2**63), got {cfg.seed!r}")
    if cfg.calibration is not None:
        from .backends import load_target

        b = load_target(cfg.target).backend()
        if not b.reads_calibration:
            raise ConfigError(f"calibration: target {cfg.target!r} does not read a calibration file (a vta target does); "
                              "leave out --calibration")
    return cfg


def _from_data(data: dict) -> RunConfig:
    """The config a parsed TOML table (or a config.json) describes; not validated yet."""
    top = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(data) - top)
    if unknown:
        raise ConfigError(f"config: unknown key(s) {unknown}; valid: {', '.join(sorted(top))}")
    cfg = RunConfig()
    if "calibration" in data:
        if not isinstance(data["calibration"], str):
            raise ConfigError("config: calibration must be a path string")
        cfg.calibration = data["calibration"]
    for k in ("dataset", "space", "target"):
        if k in data:
            if not isinstance(data[k], str):
                raise ConfigError(f"config: {k} must be a string")
            setattr(cfg, k, data[k])
    if "seed" in data:
        cfg.seed = data["seed"]
    for k in ("space_options", "limits", "objective"):
        if k in data:
            if not isinstance(data[k], dict):
                raise ConfigError(f"config: [{k}] must be a table")
            setattr(cfg, k, dict(data[k]) if k != "objective" else {**cfg.objective, **data[k]})
    if "search" in data:
        cfg.search = _fill(SearchConfig, data["search"], "search")
    if "retrain" in data:
        cfg.retrain = _fill(RetrainConfig, data["retrain"], "retrain")
    return cfg


def config_from_dict(data: dict) -> RunConfig:
    """The config a run folder's ``config.json`` records (:meth:`RunConfig.as_dict` plus keys that are
    not config fields, ignored), validated like a TOML file."""
    top = {f.name for f in dataclasses.fields(RunConfig)}
    cfg = _from_data({k: v for k, v in data.items() if k in top and v is not None})
    if isinstance(data.get("objective"), dict):  # recorded in full: taken as it is, not merged with the defaults
        cfg.objective = dict(data["objective"])
    return validate(cfg)


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> RunConfig:
    """Read a TOML config (optional), apply CLI ``overrides``, validate. Errors are ConfigError."""
    data: dict = {}
    if path is not None:
        data = read_toml(Path(path), "malformed TOML", missing="no such config file")
    cfg = _from_data(data)
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        if k in LIMIT_KEYS:
            cfg.limits[k] = v
        elif k in ("budget_min", "steps"):
            setattr(cfg.search, k, v)
        elif k == "epochs":
            cfg.retrain.epochs = v
        else:
            setattr(cfg, k, v)
    return validate(cfg)
