"""The alternating network + hardware co-search.

Every step:
  1. hardware step - network (``w``, ``alpha``) fixed; ``theta`` updated on
     ``L1 = CE(val batch) + penalty(E[cost])``; the task loss depends on ``theta`` through the fake
     quantisation of the bit-width knobs;
  2. network step - ``theta`` fixed; ``w`` updated on a train batch, ``alpha`` on a val batch with
     ``L2 = CE(val batch) + penalty(E[cost])``;
  3. ``L = L1 + L2``; multipliers of violated limits rise (dual ascent); stop when ``L`` reaches the
     threshold, on patience, or when the step/time budget is spent. The best derived design seen
     (feasible first, then lowest smoothed L) is kept.
Between progressive stages the weakest options of every choice are pruned. After the loop the kept
design is selected by recalibrated one-shot accuracy within the limits, repaired, tuned and checked
on the target's truth.

:meth:`CoSearch.run` reads as these steps (``_schedule``, ``_hardware_step``, ``_network_step``,
``_combined``, ``_keep_best``, :meth:`LoopState.should_stop`, ``_finish``); the loop's variables are
a :class:`LoopState`, which a checkpoint holds as plain data.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..config import SearchConfig
from ..cost.base import CostModel, Measurement
from ..data import DataSplits
from ..space.base import SearchSpace, entropy
from ..space.design import DesignPoint
from ..space.hardware import BIT_KNOBS, HardwareSpace, HWConfig
from ..space.quant import QuantState
from .constraints import Constraints, repair
from .train import Batches

__all__ = ["CoSearch", "LoopState", "SearchResult", "VERIFY_ROUNDS"]

#: measurements of the kept design on the truth, each after a repair when a limit broke there (the
#: co-search's and the baselines' final check alike): a repair takes one move per round, and a design
#: whose truth is 40% over the limit took five (3 left it over)
VERIFY_ROUNDS = 5


@dataclass
class SearchResult:
    """What a search returns: the kept design, its figures, and how the search went."""

    design: DesignPoint
    genotype: dict
    hw_config: HWConfig
    figures: dict
    feasible: bool
    best_step: int
    steps: int
    wall_s: float
    stop_reason: str
    repaired: list = field(default_factory=list)
    one_shot_val_accuracy: float = float("nan")
    history: list = field(default_factory=list)
    #: how the kept design was chosen among candidates (``search.selection = "accuracy"``), or None
    selection: dict | None = None
    #: the kept design checked on the target's truth (see :meth:`CoSearch.verify_on_truth`), or None
    measured: dict | None = None
    #: why the loop ended, in words (stop_reason: "steps", "threshold", "patience" or "budget")
    stop_detail: str = ""
    #: validation accuracy of the kept design after selection's brief training from scratch, where it
    #: had one and repair did not change it afterwards; else None
    proxy_val_accuracy: float | None = None


@dataclass
class LoopState:
    """The loop's variables: where it is, the stop rule's losses, and the best derived design so far
    (``best``: rank key, step, genotype, config, evaluation). A checkpoint holds it as plain data
    (:meth:`as_dict` / :meth:`from_dict`)."""

    step: int = 0
    stage_i: int = 0
    warm_done: bool = False
    done: bool = False  # the loop has ended (a checkpoint taken after it)
    elapsed_s: float = 0.0
    stop_reason: str = "steps"
    stop_detail: str = ""
    L_ema: float | None = None  # the combined loss, smoothed (ranks derived designs)
    # the stop rule's scale-free loss, smoothed; its best value in this stage and the steps since
    S_ema: float | None = None
    S_best: float | None = None
    S_since: int = 0
    evals_since_best: int = 0
    best: tuple | None = None

    def track(self, S: float, min_improvement: float) -> float:
        """Smooth the scale-free loss ``S``; count the architecture steps since it last improved by
        ``min_improvement`` (relative). Returns the smoothed value."""
        self.S_ema = S if self.S_ema is None else 0.9 * self.S_ema + 0.1 * S
        if self.S_best is None or self.S_ema < self.S_best * (1 - min_improvement):
            self.S_best, self.S_since = self.S_ema, 0
        else:
            self.S_since += 1
        return self.S_ema

    def new_stage(self) -> None:
        """A pruned supernet is a new problem: patience counts within a stage."""
        self.S_best, self.S_since = None, 0

    def should_stop(self, cfg: SearchConfig, n_stages: int) -> bool:
        """The stop rule, once every stage has been reached (the search has its final options): the
        scale-free loss at or below ``cfg.threshold``, or no better for ``cfg.patience`` architecture
        steps. Sets ``stop_reason`` and ``stop_detail``."""
        if self.S_ema is None or self.stage_i < n_stages or self.step >= cfg.steps:
            return False
        if cfg.threshold is not None and cfg.threshold > 0 and self.S_ema <= cfg.threshold:
            self.stop_reason = "threshold"
            self.stop_detail = f"scale-free loss {self.S_ema:.4f} <= threshold {cfg.threshold:g} at step {self.step}"
            return True
        if cfg.patience and self.S_since >= cfg.patience:
            self.stop_reason = "patience"
            self.stop_detail = (f"scale-free loss no better than {self.S_best:.4f} (by {cfg.min_improvement:.0%}) for "
                                f"{self.S_since} architecture steps, at step {self.step}")
            return True
        return False

    def as_dict(self, done: bool, elapsed_s: float) -> dict:
        b = self.best
        return {"step": self.step, "stage_i": self.stage_i, "stop_reason": self.stop_reason,
                "evals_since_best": self.evals_since_best, "L_ema": self.L_ema, "warm_done": self.warm_done,
                "done": done, "elapsed_s": elapsed_s, "S_ema": self.S_ema, "S_best": self.S_best,
                "S_since": self.S_since, "stop_detail": self.stop_detail,
                "best": None if b is None else {"key": list(b[0]), "step": b[1], "genotype": dict(b[2]),
                                                "config": b[3].as_dict(), "eval": b[4]}}

    @classmethod
    def from_dict(cls, d: dict, hw: HardwareSpace) -> "LoopState":
        b = d.get("best")
        best = None if b is None else (tuple(b["key"]), int(b["step"]), dict(b["genotype"]),
                                       HWConfig.from_dict(b["config"], hw), b["eval"])
        return cls(step=d["step"], stage_i=d["stage_i"], warm_done=d["warm_done"], done=d["done"],
                   elapsed_s=d["elapsed_s"], stop_reason=d["stop_reason"], stop_detail=d.get("stop_detail", ""),
                   L_ema=d["L_ema"], S_ema=d.get("S_ema"), S_best=d.get("S_best"), S_since=d.get("S_since", 0),
                   evals_since_best=d["evals_since_best"], best=best)


class CoSearch:
    """Runs the alternating loop for one (space, hardware space, cost model, data).

    Args:
        space: network search space.
        hw: hardware space (its ``theta`` is optimised unless ``update_hw`` is False).
        cost_model: differentiable cost model for (space, hw).
        data: train/val splits are used; test is never seen by the search.
        cfg: loop settings.
        constraints: limits, multipliers and objective weights.
        target: target name recorded in the design.
        seed: seeds every generator the search owns (weights, batches, Gumbel noise).
        update_hw / update_alpha: variants for baselines (hardware or network held fixed).
        cost_on_alpha: False for a network search that ignores the hardware.
        supernet: reuse a trained supernet (sequential baseline); built fresh otherwise.
        on_step: callback(record dict) after every step (history writer, progress bar).
        measurer: the target's source of truth (a :class:`~explorer.measure.base.Measurer`, given
            by its backend); every ``cfg.measure_every`` steps the derived design is submitted, and
            the cost model learns from results as they arrive (never waited on).
        on_checkpoint: callback(state dict) every ``cfg.checkpoint_every`` steps, at least every
            ``cfg.checkpoint_s`` seconds, and once when the loop ends; the state is
            :meth:`state_dict`'s, and ``run(resume=state)`` on a search built the same way continues
            from it.

    Checkpoints: :meth:`state_dict` holds plain tensors, numbers, strings, lists and dicts (readable
    with ``torch.load(weights_only=True)``): supernet and hardware-space parameters and masks, the
    three optimisers, the multipliers, every generator (the Gumbel generator, the batches' numpy
    generator and permutations, torch's global one), the loop's variables, and what the cost model
    learned: measurements it was updated with (replayed on resume) and, for a measurer with
    ``state_dict``/``load_state_dict`` (the simulator refiner), the measurer's own state. With
    ``cfg.progress == "steps"`` the resumed search takes the same steps as an uninterrupted one;
    the elapsed time is restored too, so ``time_s`` and time budgets continue where they stopped
    (a time-based run cannot repeat its timing, so it is not reproduced exactly). A measurement in
    flight in a background measurer at the checkpoint is forgotten and may be submitted again.
    """

    def __init__(
        self,
        space: SearchSpace,
        hw: HardwareSpace,
        cost_model: CostModel,
        data: DataSplits,
        cfg: SearchConfig,
        constraints: Constraints,
        target: str,
        seed: int = 0,
        update_hw: bool = True,
        update_alpha: bool = True,
        cost_on_alpha: bool = True,
        supernet=None,
        on_step: Callable[[dict], None] | None = None,
        measurer=None,
        on_checkpoint: Callable[[dict], None] | None = None,
        on_select: Callable[[int], None] | None = None,
    ):
        self.space, self.hw, self.cm, self.data, self.cfg = space, hw, cost_model, data, cfg
        self.con, self.target, self.seed = constraints, target, seed
        self.update_hw, self.update_alpha, self.cost_on_alpha = update_hw, update_alpha, cost_on_alpha
        self.on_step = on_step
        self.on_select = on_select  # told the count of candidates scored so far while selection runs
        self._t0: float | None = None  # the loop's clock origin (events after the loop record their time_s)
        self.measurer = measurer  # real latencies (or simulated cycles) refine the cost model
        if measurer is not None:
            measurer.refit = cfg.refine
        self._submitted: set[str] = set()  # design keys sent to the measurer
        self._pending: set[str] = set()  # ... of which no result has come back yet
        self._learned: list[dict] = []  # measurements the cost model was updated with (plain data)
        self.on_checkpoint = on_checkpoint
        self._entropy_ramp = 0.0  # 0 -> 1 from the end of warm-up to the last step (the entropy regulariser)
        names = {k.name for k in hw.knobs}
        inp_k, wgt_k = BIT_KNOBS
        self.has_bits = set(BIT_KNOBS) <= names
        bits = tuple(2 ** v for v in hw.knob(inp_k).values) if self.has_bits else (8,)
        if self.has_bits and hw.knob(wgt_k).values != hw.knob(inp_k).values:
            from ..errors import ConfigError

            raise ConfigError(f"target: {inp_k} and {wgt_k} must offer the same widths")
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            if supernet is None:
                self.qstate = QuantState(bits)
                supernet = space.build_supernet(self.qstate)
            else:
                self.qstate = supernet.qstate
        self.net = supernet
        self.gen = torch.Generator().manual_seed(seed + 1)
        rng = np.random.default_rng(seed)
        self.train_b = Batches(data.x_train, data.y_train, cfg.batch_size, rng)
        self.val_b = Batches(data.x_val, data.y_val, cfg.batch_size, rng)
        self.opt_w = torch.optim.SGD(
            supernet.weight_parameters(), lr=cfg.w_lr, momentum=cfg.w_momentum, weight_decay=cfg.w_weight_decay
        )
        self.opt_a = torch.optim.Adam(supernet.arch_parameters(), lr=cfg.alpha_lr, betas=(0.5, 0.999))
        self.opt_t = torch.optim.Adam(hw.hw_parameters(), lr=cfg.theta_lr, betas=(0.5, 0.999))

    # -- pieces of a step ----------------------------------------------------------------------
    def _tau(self, progress: float) -> float:
        """Temperature: ``tau_start`` until warm-up ends, then down to ``tau_end`` (geometrically) over
        the rest of the run."""
        c = self.cfg
        w = self._warm_fraction()
        t = min(1.0, max(0.0, (progress - w) / max(1e-9, 1.0 - w)))
        return c.tau_start * (c.tau_end / c.tau_start) ** t

    def _warm_fraction(self) -> float:
        """The share of the run that warm-up (weights only) takes: ``warmup_steps``, but never more than
        ``warmup_fraction`` of the steps, so that short runs still search."""
        c = self.cfg
        return min(c.warmup_steps, int(c.steps * c.warmup_fraction)) / c.steps

    def _derive_net(self) -> dict:
        """The network the search would return now: the argmax of every choice, made to connect the
        input to the output where the argmax does not (a cell of only ``none``/dead edges computes a
        constant; see :meth:`~explorer.space.base.SearchSpace.connect`)."""
        g = self.net.derive()
        if self.space.connected(g):
            return g
        return self.space.connect(g, self._net_prefs())

    def _net_prefs(self) -> dict:
        return {k: dict(zip(self.net.choice_options[k], p.tolist())) for k, p in self.net.probs().items()}

    def _set_bits(self, hw_probs):
        if self.has_bits:
            self.qstate.set(*(hw_probs[k] for k in BIT_KNOBS))
        else:  # a float target: no quantisation
            self.qstate.set(None, None)

    def _detached(self, probs):
        return {k: v.detach() for k, v in probs.items()}

    def _relaxed(self, part, tau):
        """(weights for the forward pass, weights for the expected cost) of the network's or the
        hardware's choices. With ``relax = "sample"`` the forward pass runs one drawn option per
        choice while the cost is the exact expectation under the softmax, so that every option's
        price reaches its logit at every step (ProxylessNAS, FBNet)."""
        fwd = part.probs(self.cfg.relax, tau, self.gen)
        return fwd, (part.probs("softmax", tau) if self.cfg.relax == "sample" else fwd)

    def _hardware_step(self, xv, yv, tau):
        net_p, net_c = (self._detached(p) for p in self._relaxed(self.net, tau))
        hw_p, hw_c = self._relaxed(self.hw, tau)
        self._set_bits(hw_p)
        if self.has_bits:
            task = F.cross_entropy(self.net(xv, net_p), yv)
        else:  # the hardware does not change the numerics: the task loss is a constant here
            with torch.no_grad():
                task = F.cross_entropy(self.net(xv, net_p), yv)
        cost = self.cm.predict(net_c, hw_c)
        loss = task + self.con.penalty(cost)
        if not loss.requires_grad:  # neither the numerics nor the costs depend on the knobs (a fixed device)
            return loss.item(), task.item()
        self.opt_t.zero_grad(set_to_none=True)
        loss.backward(inputs=self.hw.hw_parameters())
        self.opt_t.step()
        return loss.item(), task.item()

    def _network_step(self, xt, yt, xv, yv, tau, search_arch: bool, warm: bool = False):
        hw_p, hw_c = (self._detached(p) for p in self._relaxed(self.hw, tau))
        self._set_bits(hw_p)
        if warm and self.cfg.relax == "sample":  # warm-up: uniformly drawn paths, no op favoured
            net_p = self.net.sample_uniform(self.gen)
        else:
            net_p = self._detached(self.net.probs(self.cfg.relax, tau, self.gen))
        w_loss = F.cross_entropy(self.net(xt, net_p), yt)
        self.opt_w.zero_grad(set_to_none=True)
        w_loss.backward(inputs=self.net.weight_parameters())
        self.opt_w.step()
        if not search_arch:
            return float("nan"), float("nan"), w_loss.item(), None
        net_p, net_c = self._relaxed(self.net, tau)
        task = F.cross_entropy(self.net(xv, net_p), yv)
        cost = self.cm.predict(net_c, hw_c)
        loss = task + (self.con.penalty(cost) if self.cost_on_alpha else 0.0)
        if self.cfg.entropy_weight > 0 and self._entropy_ramp > 0:
            # push every choice towards one option (which one is left to the task and cost gradients), so
            # that the final argmax is a decision, not a near-tie broken by noise
            loss = loss + self.cfg.entropy_weight * self._entropy_ramp * torch.stack(
                [-(p * torch.log(p.clamp_min(1e-12))).sum() for p in net_c.values()]).mean()
        self.opt_a.zero_grad(set_to_none=True)
        loss.backward(inputs=self.net.arch_parameters())
        self.opt_a.step()
        return loss.item(), task.item(), w_loss.item(), {k: v.detach() for k, v in cost.items()}

    @torch.no_grad()
    def evaluate_derived(self, genotype, config) -> dict:
        """Exact cost figures and one-shot validation loss/accuracy of a derived design."""
        figures = self.cm.evaluate(genotype, config)
        self._set_bits(self.hw.onehot(config))
        probs = self.net.onehot(genotype)
        ce, correct = 0.0, 0
        x, y = self.data.x_val, self.data.y_val
        for i in range(0, len(y), 250):  # train-mode BN: batch statistics, as during the search
            logits = self.net(torch.from_numpy(x[i : i + 250]), probs)
            yb = torch.from_numpy(y[i : i + 250])
            ce += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
        return {"figures": figures, "val_loss": ce / len(y), "val_accuracy": correct / len(y)}

    def one_shot_accuracy(self, genotype, config) -> float:
        """Validation accuracy of a design in the trained supernet, BatchNorm recalibrated for it."""
        from .select import calibration_batches, recalibrated_accuracy

        self._set_bits(self.hw.onehot(config))
        calib = calibration_batches(self.data, self.seed)
        return recalibrated_accuracy(self.net, self.net.onehot(genotype), calib, self.data.x_val, self.data.y_val)[0]

    def _prefs(self) -> dict:
        out = self._net_prefs()
        for k in self.hw.knobs:
            out[k.name] = dict(zip(k.values, self.hw.probs()[k.name].tolist()))
        return out

    def _measure(self, step: int, search_arch: bool, rec: dict, final_wait_s: float | None = None) -> None:
        from ..measure.base import Job

        if final_wait_s is not None:  # the loop has ended: collect the measurement in flight
            done = self.measurer.drain(final_wait_s)
        else:
            if search_arch and step % self.cfg.measure_every == 0 and self.measurer.idle():
                pick = self._pick_candidate()
                if pick is not None:
                    g, c, why = pick
                    d = DesignPoint.make(self.space, g, self.target, c)
                    self._submitted.add(d.key())
                    if self.measurer.submit(Job(step, d.key(), d.as_json(), info={"genotype": g, "config": c, "why": why})):
                        self._pending.add(d.key())
            done = self.measurer.poll()
        if not done:
            return
        out = []
        cur_g, cur_c = self._derive_net(), self.hw.derive()
        for job in done:
            self._pending.discard(job.key)
            if job.latency_s is None:
                out.append({"submitted_step": job.step, "error": job.error})
                continue
            g, c = job.info["genotype"], job.info["config"]
            predicted = job.info.get("predicted_s")  # set by refiners that refit the model themselves
            # how far this refit moves the model's figure for the design the search holds now
            before = job.info.get("current_before_s")
            parts = self._parts(g, job)
            if predicted is None:
                predicted = self.cm.evaluate(g, c)["latency_s"]  # before this measurement is used
                before = self.cm.evaluate(cur_g, cur_c)["latency_s"]
                self._learn(Measurement(g, c, job.latency_s, parts))
            rec_m = {"submitted_step": job.step, "predicted_s": predicted, "measured_s": job.latency_s,
                     "rel_error": (predicted - job.latency_s) / job.latency_s, "cached": job.info.get("cached", False),
                     "correction": self.cm.correction_state()}
            if before is not None:
                rec_m["current_before_s"] = before
                rec_m["current_after_s"] = self.cm.evaluate(cur_g, cur_c)["latency_s"]
            for k in ("why", "tuning", "spread", "timing_wait_s", "whole_network", "kernels_ms", "kernel_groups", "attribution"):
                if k in job.info:
                    rec_m[k] = job.info[k]
            out.append(rec_m)
        rec["measured"] = out

    def _learn(self, m: Measurement) -> None:
        """Update the cost model with a measurement, kept (as plain data) for the checkpoints."""
        self._learned.append({"genotype": dict(m.genotype), "config": m.config.as_dict(), "latency_s": float(m.latency_s),
                              "parts": [[[int(i) for i in slots], float(sec)] for slots, sec in m.parts]})
        self.cm.update([m])

    # -- checkpoints -----------------------------------------------------------------------------
    def state_dict(self, loop: dict) -> dict:
        """Everything the search has changed, with ``loop`` (the loop's variables, given by
        :meth:`run`), as tensors and plain data; see the class docstring."""
        measurer = {} if self.measurer is None else self.measurer.state_dict()
        return {
            "supernet": self.net.state_dict(),
            "hardware": self.hw.state_dict(),
            "opt_w": self.opt_w.state_dict(),
            "opt_a": self.opt_a.state_dict(),
            "opt_t": self.opt_t.state_dict(),
            "multipliers": _plain(self.con.lam),
            "cost_ref": _plain(self.con.ref),
            "gumbel_rng": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "train_batches": self.train_b.state_dict(),
            "val_batches": self.val_b.state_dict(),
            # a job still in flight is forgotten: submitted again if the resumed search picks it
            "submitted": sorted(self._submitted - self._pending),
            "learned": _plain(self._learned),
            "measurer": _plain(measurer),
            "loop": _plain(loop),
        }

    def load_state_dict(self, state: dict) -> dict:
        """Restore :meth:`state_dict`'s state into this search (built as the saved one was); returns
        the loop's variables."""
        self.net.load_state_dict(state["supernet"])
        self.hw.load_state_dict(state["hardware"])
        self.opt_w.load_state_dict(state["opt_w"])
        self.opt_a.load_state_dict(state["opt_a"])
        self.opt_t.load_state_dict(state["opt_t"])
        self.con.lam = {k: float(v) for k, v in state["multipliers"].items()}
        self.con.ref = {k: float(v) for k, v in state["cost_ref"].items()}
        self.gen.set_state(state["gumbel_rng"])
        torch.set_rng_state(state["torch_rng"])
        self.train_b.load_state_dict(state["train_batches"])
        self.val_b.load_state_dict(state["val_batches"])
        self._submitted, self._pending = set(state["submitted"]), set()
        self._learned = list(state["learned"])
        if self._learned:  # the model refits from all its measurements, as it did one by one
            self.cm.update([Measurement(d["genotype"], HWConfig.from_dict(d["config"], self.hw), d["latency_s"],
                                        tuple((tuple(sl), sec) for sl, sec in d["parts"])) for d in self._learned])
        if self.measurer is not None:
            self.measurer.load_state_dict(state["measurer"])
        return dict(state["loop"])

    # -- the loop --------------------------------------------------------------------------------
    def run(self, resume: dict | None = None, history: list | None = None) -> SearchResult:
        """Run the loop, then derive, select, repair and verify the kept design.

        Every step: the schedule (warm-up, temperature, the stages' pruning), the hardware step, the
        network step, the combined loss (dual ascent, the stop rule's scale-free loss), the derived
        design's evaluation, and the stop rule; see the module docstring.

        Args:
            resume: a state :attr:`on_checkpoint` was given; the loop continues after its step (or,
                if the loop had ended, goes on to what follows it).
            history: the records written before that checkpoint (the result's history starts with them).
        """
        cfg = self.cfg
        history = list(history or [])
        st = LoopState() if resume is None else LoopState.from_dict(self.load_state_dict(resume), self.hw)
        t0 = time.monotonic() - st.elapsed_s  # time_s and the time budget continue where they stopped
        self._t0 = t0
        checkpoints = self.on_checkpoint is not None and (cfg.checkpoint_every > 0 or cfg.checkpoint_s > 0)
        saved_at = time.monotonic()

        def checkpoint(done: bool) -> None:
            nonlocal saved_at
            self.on_checkpoint(self.state_dict(st.as_dict(done, time.monotonic() - t0)))
            saved_at = time.monotonic()

        for step in range(cfg.steps + 1 if st.done else st.step + 1, cfg.steps + 1):
            st.step = step
            tau, arch_now = self._schedule(st, time.monotonic() - t0, history)
            xt, yt = next(self.train_b)
            xv, yv = next(self.val_b)
            rec = {"step": step, "time_s": round(time.monotonic() - t0, 3), "tau": tau}
            if arch_now and self.update_hw:
                L1, task1 = self._hardware_step(xv, yv, tau)
            else:
                L1, task1 = float("nan"), float("nan")
            L2, task2, w_loss, cost = self._network_step(xt, yt, xv, yv, tau, arch_now and self.update_alpha,
                                                         warm=not st.warm_done)
            if cost is None:
                with torch.no_grad():
                    cost = self.cm.predict(self.net.probs(), self.hw.probs())
            if self.measurer is not None and cfg.refine:
                self._measure(step, st.warm_done, rec)
            L = self._combined(st, L1, L2, task1, task2, arch_now, rec)
            rec.update(self._record(L if arch_now else float("nan"), L1, L2, task1, task2, w_loss, cost))
            last = step == cfg.steps or (time.monotonic() - t0) >= cfg.budget_min * 60.0
            if st.warm_done and (step % cfg.eval_every == 0 or last):
                self._keep_best(st, L, rec)
            history.append(rec)
            if self.on_step:
                self.on_step(rec)
            if arch_now and st.should_stop(cfg, len(self._stages())):
                break
            if last and step < cfg.steps:
                st.stop_reason = "budget"
                st.stop_detail = f"the {cfg.budget_min:g}-minute clock ran out at step {step} of {cfg.steps}"
                break
            if checkpoints and step < cfg.steps and (
                    (cfg.checkpoint_every and step % cfg.checkpoint_every == 0)
                    or (cfg.checkpoint_s and time.monotonic() - saved_at >= cfg.checkpoint_s)):
                checkpoint(False)
        if checkpoints and not st.done:  # what follows the loop can be resumed without its steps
            checkpoint(True)
        return self._finish(st, history, t0)

    def _stages(self) -> list:
        return sorted((float(f), int(k)) for f, k in self.cfg.stages)

    def _schedule(self, st: "LoopState", elapsed: float, history: list) -> tuple[float, bool]:
        """Where the run stands at ``st.step``: ends warm-up, prunes at each stage boundary reached
        (and tunes the derived design there); returns (temperature, whether the architecture and
        hardware move this step: every ``arch_every`` weight steps after warm-up)."""
        cfg, step = self.cfg, st.step
        progress = step / cfg.steps if cfg.progress == "steps" else max(step / cfg.steps, elapsed / (cfg.budget_min * 60.0))
        w = self._warm_fraction()
        self._entropy_ramp = min(1.0, max(0.0, (progress - w) / max(1e-9, 1.0 - w)))
        if not st.warm_done and (step > int(round(w * cfg.steps))
                                 or (cfg.progress == "time" and elapsed > w * cfg.budget_min * 60.0)):
            st.warm_done = True
        stages = self._stages()
        while st.warm_done and st.stage_i < len(stages) and progress >= stages[st.stage_i][0]:
            if self.update_alpha:
                removed = self.net.prune(stages[st.stage_i][1])
                self._event(history, {"step": step, "event": "prune", "keep": stages[st.stage_i][1], "removed": removed})
            st.stage_i += 1
            st.new_stage()
            self._tune(self._derive_net(), self.hw.derive(), step, history, len(stages) + 1)
        arch_now = st.warm_done and (step - int(round(w * cfg.steps))) % cfg.arch_every == 0
        return self._tau(progress), arch_now

    def _combined(self, st: "LoopState", L1, L2, task1, task2, arch_now: bool, rec: dict) -> float:
        """Step 3: the combined loss ``L = L1 + L2``; on an architecture step the multipliers of the
        derived design's violated limits rise (dual ascent) and the stop rule's scale-free loss (task
        loss over chance level's, plus the derived design's relative excess over its limits) is
        tracked."""
        con = self.con
        L = (0.0 if math.isnan(L1) else L1) + (0.0 if math.isnan(L2) else L2)
        if not arch_now:
            return L
        derived_now = self.cm.evaluate(self._derive_net(), self.hw.derive()) if con.limits else {}
        con.ascend(derived_now)
        rec["derived_now"] = {k: derived_now[k] for k in con.limits}
        st.L_ema = L if st.L_ema is None else 0.9 * st.L_ema + 0.1 * L
        tasks = [t for t in (task1, task2) if not math.isnan(t)]
        if tasks:
            chance_ce = math.log(max(2, self.space.num_classes))
            S = float(np.mean(tasks)) / chance_ce + (con.violation(derived_now) if con.limits else 0.0)
            rec["L_scaled"] = st.track(S, self.cfg.min_improvement)
        return L

    def _record(self, L, L1, L2, task1, task2, w_loss, cost) -> dict:
        """A step's history record: losses, expected costs, multipliers, entropies, probabilities."""
        net_p, hw_p = self.net.probs(), self.hw.probs()
        return {
            "L1": L1,
            "L2": L2,
            "L": L,
            "task_hw": task1,
            "task_arch": task2,
            "train_loss": w_loss,
            "expected": {k: float(v) for k, v in cost.items()},
            "limits": dict(self.con.limits),
            "multipliers": dict(self.con.lam),
            "entropy_ops": float(np.mean([entropy(p) for p in net_p.values()])),
            "entropy_knobs": float(np.mean([entropy(p) for p in hw_p.values()])),
            # option probabilities, labelled so that the report needs no space or target to plot them
            "probs": {
                "network": {k: {str(o): round(float(x), 4) for o, x in zip(self.net.choice_options[k], p.tolist())}
                            for k, p in net_p.items()},
                "hardware": {kn.name: {str(v): round(float(x), 4) for v, x in zip(kn.values, hw_p[kn.name].tolist())}
                             for kn in self.hw.knobs},
            },
        }

    def _keep_best(self, st: "LoopState", L: float, rec: dict) -> None:
        """Evaluate the derived design and keep it if it ranks first so far: designs within the
        limits first, then the smoothed combined loss of the relaxed (alpha, theta) that produced
        them (the one-shot accuracy of a sub-network is recorded; selection ranks by it later)."""
        g, c = self._derive_net(), self.hw.derive()
        ev = self.evaluate_derived(g, c)
        viol = self.con.violation(ev["figures"])
        score = st.L_ema if st.L_ema is not None else L
        rec["derived"] = {
            "genotype": self.space.format_genotype(g),
            "hardware": c.as_dict(),
            "figures": ev["figures"],
            "val_accuracy": ev["val_accuracy"],
            "val_loss": ev["val_loss"],
            "violation": viol,
            "L_ema": score,
        }
        key = (viol > 0, viol, score)
        if st.best is None or key < st.best[0]:
            st.best = (key, st.step, g, c, ev)
            st.evals_since_best = 0
        else:
            st.evals_since_best += 1

    def _finish(self, st: "LoopState", history: list, t0: float) -> SearchResult:
        """After the loop: collect the measurement in flight, select by accuracy within the limits,
        repair, tune and check the kept design on the truth."""
        cfg, con, step = self.cfg, self.con, st.step
        if self.measurer is not None and cfg.refine:
            rec = {"step": step, "event": "measure-drain"}
            self._measure(step, False, rec, final_wait_s=self.cfg.measure_drain_s)
            self._event(history, rec)
        if st.best is None:  # budget ended inside warm-up: derive what we have
            g, c = self._derive_net(), self.hw.derive()
            st.best = ((True, 0.0, 0.0), step, g, c, self.evaluate_derived(g, c))
        _, best_step, g, c, ev = st.best
        selection, proxy, kept = None, None, None
        if cfg.selection == "accuracy" and self.update_alpha:
            from .select import select

            seen = [(self.space.parse_genotype(h["derived"]["genotype"]), HWConfig.from_dict(h["derived"]["hardware"], self.hw))
                    for h in history if "derived" in h]
            m = self.measurer
            truth = None
            if m is not None and cfg.refine and con.limits and not (m.tunes and m.tune_db):
                # a truth that needs no tuning (the simulator) checks the finalists before their brief training
                def truth(g2, c2):
                    return self.verify_on_truth(g2, c2, step, history, rounds=1, why="finalist")[2].get("limits_met_measured")
            kept, _, selection = select(self, seen, proxy_steps=cfg.select_proxy_steps, seed=self.seed,
                                          proxy_seeds=cfg.select_proxy_seeds, loss_tie=cfg.select_loss_tie, truth=truth, progress=self.on_select)
            g, c, ev = kept.genotype, kept.config, self.evaluate_derived(kept.genotype, kept.config)
            proxy = kept.proxy
            self._event(history, {"step": step, "event": "select", **selection})
        moves = []
        # a kept design the truth has passed is not repaired on the model's word (the model, refit on
        # the finalists' measurements, can put a design that fills the limit a little over it)
        passed = selection is not None and any(
            t["holds"] is True and t["genotype"] == self.space.format_genotype(g) and t["hardware"] == c.as_dict()
            for t in selection.get("truth_checks", []))
        if con.violation(ev["figures"]) > 0 and not passed:
            g, c, moves = repair(self.cm, g, c, self.hw, con, self._prefs(), valid=self.space.connected)
            ev = self.evaluate_derived(g, c)
        measured = None
        self._tune(g, c, step, history, 1)
        if self.measurer is not None:
            g, c, measured, more = self.verify_finalists(g, c, step, history, selection if not moves else None)
            moves += more
            ev = self.evaluate_derived(g, c)
        figures = ev["figures"]
        one_shot = ev["val_accuracy"]
        if selection is not None:  # the figure selection ranks by: BatchNorm recalibrated for the design
            one_shot = self.one_shot_accuracy(g, c)
            if (g, c.values) != (kept.genotype, kept.config.values):
                # another finalist (the kept one broke a limit on the truth), or repaired since
                proxy = next((f["proxy"] for f in selection.get("finalists", [])
                              if f["genotype"] == self.space.format_genotype(g) and f["hardware"] == c.as_dict()), None)
        return SearchResult(
            design=DesignPoint.make(self.space, g, self.target, c),
            genotype=g,
            hw_config=c,
            figures=figures,
            feasible=con.violation(figures) == 0,
            best_step=best_step,
            steps=step,
            wall_s=time.monotonic() - t0,
            stop_reason=st.stop_reason,
            stop_detail=st.stop_detail or (f"all {cfg.steps} steps run" if st.stop_reason == "steps" else ""),
            repaired=moves,
            one_shot_val_accuracy=one_shot,
            proxy_val_accuracy=proxy,
            selection=selection,
            history=history,
            measured=measured,
        )

    def _parts(self, g, job) -> tuple:
        """Kernel-level truth of a measured design, attributed to groups of its slots (empty when
        the measurer timed no kernels or they could not be matched; the reason goes in job.info)."""
        from ..measure.kernels import AttributionError, attribute

        kernels = job.info.get("kernels")
        if not kernels:
            return ()
        try:
            parts = tuple(attribute(self.space, g, kernels))
        except AttributionError as e:
            job.info["attribution"] = str(e)
            return ()
        job.info["kernel_groups"] = len(parts)
        return parts

    def _pick_candidate(self):
        """What to measure next: with a latency limit and a model that gives intervals, the most
        probable of the derived design and its one-change neighbours (the runner-up option of any
        choice or knob) whose 90% interval straddles the limit and that was not measured yet; else
        the derived design if it was not measured yet; else nothing. Returns (genotype, config, why)."""
        g0, c0 = self._derive_net(), self.hw.derive()
        fresh = lambda g, c: DesignPoint.make(self.space, g, self.target, c).key() not in self._submitted  # noqa: E731
        interval = getattr(self.cm, "latency_interval", None)
        limit = self.con.limits.get("latency_s")
        if interval is not None and limit is not None:
            cands = [(0.0, g0, c0)]
            for name, p in self.net.probs().items():
                opts, pv = self.net.choice_options[name], p.detach()
                top = torch.topk(pv, 2).indices.tolist() if len(pv) > 1 else []
                if len(top) == 2 and pv[top[1]] > 0:
                    cands.append((float(torch.log(pv[top[0]] / pv[top[1]])), {**g0, name: opts[top[1]]}, c0))
            hw_p = self.hw.probs()
            for k in self.hw.knobs:
                pv = hw_p[k.name].detach()
                top = torch.topk(pv, 2).indices.tolist() if len(pv) > 1 else []
                if len(top) == 2 and pv[top[1]] > 0:
                    c2 = type(c0)(tuple((n, k.values[top[1]] if n == k.name else x) for n, x in c0.values), c0.fixed)
                    cands.append((float(torch.log(pv[top[0]] / pv[top[1]])), g0, c2))
            for _, g, c in sorted(cands, key=lambda t: t[0]):
                _, lo, hi = interval(g, c)
                if lo < limit < hi and fresh(g, c):
                    return g, c, "derived design, interval straddles the limit" if g is g0 and c is c0 else \
                        "neighbour, interval straddles the limit"
        if fresh(g0, c0):
            return g0, c0, "derived design"
        return None

    def _tune(self, g, c, step: int, history: list, slices: int) -> None:
        """Tune the leading candidate's kernels on the target for an equal share of what is left of
        ``search.tune_minutes`` (``slices`` tuning points left, this one included), the search waiting
        (see :meth:`explorer.measure.background.BackgroundMeasurer.tune`)."""
        m = self.measurer
        if m is None or not m.tunes or not m.tune_db or not self.cfg.refine:
            return
        left = 60.0 * self.cfg.tune_minutes - m.tuned_s
        if left <= 1.0:
            return
        d = DesignPoint.make(self.space, g, self.target, c)
        cd = c.as_dict()
        knobs = {k.lower(): cd[k] for k in ("DEVICE", "THREADS", "BATCH") if k in cd}
        out = m.tune(d.as_json(), knobs, left / max(1, slices))
        if out is not None:
            self._event(history, {"step": step, "event": "tune", "design": d.key(), **out})

    def _event(self, history: list, rec: dict) -> None:
        """A record that is not a step (prune, measure-drain, select, verify): kept and written like
        one, with the loop clock's time when it ended (``time_s``: where the time after the steps goes)."""
        if self._t0 is not None:
            rec.setdefault("time_s", round(time.monotonic() - self._t0, 3))
        history.append(rec)
        if self.on_step:
            self.on_step(rec)

    def verify_on_truth(self, g, c, step: int, history: list, rounds: int | None = None, why: str = "kept design"):
        """Measure the kept design on the target's truth (blocking). The measurement refits the model;
        if a limit breaks on the truth, the design is repaired with the refit model and measured
        again, up to ``rounds`` times (default: :data:`VERIFY_ROUNDS` with ``refine``, else one
        measurement that only reports). Returns (genotype, config, measured figures, repair moves)."""
        if rounds is None:
            rounds = VERIFY_ROUNDS if self.cfg.refine else 1
        from ..measure.base import Job

        con, moves, out = self.con, [], None
        for r in range(rounds):
            d = DesignPoint.make(self.space, g, self.target, c)
            predicted = self.cm.evaluate(g, c)
            job = self.measurer.verify(Job(step, d.key(), d.as_json(), info={"genotype": g, "config": c}))
            if job.latency_s is None:
                out = {"error": job.error, "limits_met_measured": None}
                self._event(history, {"step": step, "event": "verify", "round": r, "error": job.error})
                break
            if job.info.get("predicted_s") is None and self.cfg.refine:  # refiners that refit themselves have done so
                self._learn(Measurement(g, c, job.latency_s, self._parts(g, job)))
            ratio = job.latency_s / max(predicted["latency_s"], 1e-15)
            # the truth measures latency; figures proportional to it (energy of a TVM target) follow it
            truth = {k: (v * ratio if k in getattr(self.cm, "latency_proportional", ()) else v) for k, v in predicted.items()}
            truth["latency_s"] = job.latency_s
            ok = con.violation(truth) == 0
            out = {"figures": truth, "predicted": predicted, "rel_error": (predicted["latency_s"] - job.latency_s) / job.latency_s,
                   "limits_met_measured": ok, "rounds": r + 1, "tuning": job.info.get("tuning"),
                   **({"spread_p90_p10": job.info["spread"]} if "spread" in job.info else {}),
                   **({"whole_network": job.info["whole_network"]} if "whole_network" in job.info else {})}
            self._event(history, {"step": step, "event": "verify", "why": why, "round": r, "measured_s": job.latency_s,
                                  "predicted_s": predicted["latency_s"], "limits_met_measured": ok,
                                  "tuning": job.info.get("tuning"), "correction": self.cm.correction_state()})
            if ok or r == rounds - 1:
                break
            g2, c2, more = repair(self.cm, g, c, self.hw, self._tightened(con, truth, g, c), self._prefs(),
                                  valid=self.space.connected)
            if not more:  # the refit model sees no move that helps
                break
            g, c, moves = g2, c2, moves + more
        return g, c, out, moves

    def verify_finalists(self, g, c, step: int, history: list, selection: dict | None):
        """:meth:`verify_on_truth` for the kept design (g, c), with the selection's other finalists as
        fall-backs: if the kept one breaks a limit on the truth, the others (all within the limits on
        the model when selected) are measured as they are, best brief training first (of those that trained every round), and the first
        that holds is kept; only when none does is the kept one repaired. A finalist that fills the limit on the
        model can break it on the truth by the model's few per cent, and a repair then takes
        convolutions out (measured: a kept design retrained 90.3% after its repair, against 92-93%
        for finalists that held). Returns what :meth:`verify_on_truth` does."""
        others = []
        if selection and self.cfg.refine:
            # those that trained every round of brief training first (their means are over the most rounds)
            order = lambda f: ((0, -1.0, 0.0) if f["proxy"] is None  # noqa: E731
                               else (-len(f.get("proxies") or [f["proxy"]]), -f["proxy"], f.get("proxy_loss") or 0.0))
            for f in sorted(selection.get("finalists", []), key=order):
                g2, c2 = self.space.parse_genotype(f["genotype"]), HWConfig.from_dict(f["hardware"], self.hw)
                if (g2, c2.values) != (g, c.values):
                    others.append((g2, c2))
        if not others:
            return self.verify_on_truth(g, c, step, history)
        first = self.verify_on_truth(g, c, step, history, rounds=1)
        if first[2] is None or first[2].get("limits_met_measured") is not False:
            return first
        for g2, c2 in others:
            alt = self.verify_on_truth(g2, c2, step, history, rounds=1)
            if alt[2] is not None and alt[2].get("limits_met_measured"):
                return alt
        return self.verify_on_truth(g, c, step, history)

    def _tightened(self, con: Constraints, truth: dict, g, c) -> Constraints:
        """The limits a repair must meet on the model so that they hold on the truth: each one divided
        by how far the (refit) model still under-estimates the design just measured. A model that
        refits only partly (a smoothed correction) would otherwise call a one-knob move enough while
        the truth stays over the limit (measured: 0.0788 predicted, 0.0836 simulated, 0.08 limit)."""
        now = self.cm.evaluate(g, c)
        lim = {k: v / max(1.0, truth[k] / max(now[k], 1e-30)) for k, v in con.limits.items()}
        return Constraints(lim, {}, con.dual_lr, con.margin)


def _plain(v):
    """Numpy scalars and arrays (which ``weights_only`` loading refuses) as Python numbers and lists."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(_plain(x) for x in v)
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def history_line(rec: dict) -> str:
    """One JSON line; NaN becomes null so that the file is standard JSON."""

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(rec))
