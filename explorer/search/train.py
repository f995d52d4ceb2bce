"""Training helpers: seeded batches, augmentation, retraining a derived network, accuracy."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import RetrainConfig
from ..data import DataSplits

__all__ = ["Batches", "one_cycle", "proxy_train", "retrain", "accuracy", "translate", "rng_state", "set_rng_state"]


def rng_state(rng: np.random.Generator) -> dict:
    """A numpy generator's bit-generator state as plain data that ``torch.load(weights_only=True)``
    reads back: its integers (128-bit for PCG64) are written as decimal strings."""
    st = rng.bit_generator.state
    return {**st, "state": {k: str(v) if isinstance(v, int) else v for k, v in st["state"].items()}}


def set_rng_state(rng: np.random.Generator, state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    rng.bit_generator.state = {**state, "state": {k: int(v) if isinstance(v, str) else v for k, v in state["state"].items()}}


class Batches:
    """Endless shuffled mini-batches of (x, y) from numpy arrays, driven by its own generator."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator):
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)
        self.bs = min(batch_size, len(y))
        self.rng = rng
        self._perm, self._pos = None, len(y)

    def __next__(self):
        if self._pos + self.bs > len(self.y):
            self._perm = torch.from_numpy(self.rng.permutation(len(self.y)))
            self._pos = 0
        idx = self._perm[self._pos : self._pos + self.bs]
        self._pos += self.bs
        return self.x[idx], self.y[idx]

    def __iter__(self):
        return self

    def state_dict(self) -> dict:
        """Where the stream is: the generator's state, the current permutation and the position in it."""
        return {"rng": rng_state(self.rng), "perm": self._perm, "pos": self._pos}

    def load_state_dict(self, state: dict) -> None:
        """Continue the stream from :meth:`state_dict` (batches that share a generator restore the same state)."""
        set_rng_state(self.rng, state["rng"])
        self._perm, self._pos = state["perm"], int(state["pos"])


def translate(x: torch.Tensor, max_shift: float, generator: torch.Generator, rotate_deg: float = 0.0,
              scale: float = 0.0) -> torch.Tensor:
    """Random per-sample translation by up to ``max_shift`` pixels (zero fill); with ``rotate_deg``
    and ``scale`` also a rotation by up to that many degrees and a zoom by a factor within
    1 +- ``scale`` (a random affine map; drawn after the shift, so that a pure translation draws
    what it always has)."""
    n, _, h, w = x.shape
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * max_shift
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    if rotate_deg > 0 or scale > 0:
        a = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(rotate_deg)
        z = 1.0 + (torch.rand(n, generator=generator) * 2 - 1) * scale
        theta[:, 0, 0], theta[:, 0, 1] = torch.cos(a) / z, -torch.sin(a) / z
        theta[:, 1, 0], theta[:, 1, 1] = torch.sin(a) / z, torch.cos(a) / z
    theta[:, 0, 2] = shift[:, 0] * 2 / w
    theta[:, 1, 2] = shift[:, 1] * 2 / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 500, **fwd) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on arrays."""
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        xb = torch.from_numpy(x[i : i + batch_size])
        correct += int((model(xb, **fwd).argmax(1) == torch.from_numpy(y[i : i + batch_size])).sum())
    model.train(was)
    return correct / max(1, len(y))


def one_cycle(params, lr: float, steps: int, weight_decay: float = 0.0):
    """SGD with Nesterov momentum and a one-cycle schedule that peaks at ``lr`` 15% into ``steps``
    and anneals to near zero: (optimizer, scheduler), the scheduler stepped after every batch."""
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, steps), pct_start=0.15)


def proxy_train(net: nn.Module, data: DataSplits, steps: int, batch_size: int, lr: float, seed: int) -> tuple[float, float]:
    """Train ``net`` briefly from scratch on the train split and return its (validation loss,
    validation accuracy): a cheap, comparable proxy of how well a design learns, used to choose
    between candidates.

    The retraining's recipe in brief: SGD with Nesterov momentum and a one-cycle schedule peaking at
    ``lr`` over the ``steps`` batches, so that every candidate ends annealed. (A constant learning
    rate ended wherever its last steps left it: the same design scored 0.50 and 0.88 with two seeds,
    BENCHMARKS.md, issue 25, seventh session.)"""
    opt, sched = one_cycle(net.parameters(), lr, steps)
    batches = Batches(data.x_train, data.y_train, batch_size, np.random.default_rng(seed))
    net.train()
    for _ in range(steps):
        xb, yb = next(batches)
        loss = F.cross_entropy(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    with torch.no_grad():
        val_loss = 0.0
        for i in range(0, len(data.y_val), 500):
            yb = torch.from_numpy(data.y_val[i:i + 500])
            val_loss += float(F.cross_entropy(net(torch.from_numpy(data.x_val[i:i + 500])), yb, reduction="sum"))
    return val_loss / max(1, len(data.y_val)), accuracy(net, data.x_val, data.y_val)


def retrain(model: nn.Module, data: DataSplits, cfg: RetrainConfig, seed: int, progress=None) -> dict:
    """Train a derived network from scratch on train+val; report test accuracy.

    SGD with Nesterov momentum and a one-cycle schedule (:func:`one_cycle`); random translations of
    up to 10% of the image size when ``cfg.augment``, with rotations and zooms of up to
    ``cfg.rotate_deg`` and ``cfg.scale``; cross-entropy with ``cfg.label_smoothing``. ``progress`` is called with (epoch, epochs, train loss).
    """
    x = np.concatenate([data.x_train, data.x_val])
    y = np.concatenate([data.y_train, data.y_val])
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    batches = Batches(x, y, cfg.batch_size, rng)
    steps_per_epoch = max(1, math.ceil(len(y) / batches.bs))
    total = cfg.epochs * steps_per_epoch
    opt, sched = one_cycle(model.parameters(), cfg.lr, total, cfg.weight_decay)
    max_shift = 0.1 * data.input_shape[1]
    model.train()
    loss_ep = float("nan")
    for ep in range(cfg.epochs):
        tot = 0.0
        for _ in range(steps_per_epoch):
            xb, yb = next(batches)
            if cfg.augment:
                xb = translate(xb, max_shift, gen, cfg.rotate_deg, cfg.scale)
            loss = F.cross_entropy(model(xb), yb, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item()
        loss_ep = tot / steps_per_epoch
        if progress is not None:
            progress(ep + 1, cfg.epochs, loss_ep)
    return {
        "epochs": cfg.epochs,
        "train_loss": loss_ep,
        "test_accuracy": accuracy(model, data.x_test, data.y_test),
        "params": sum(p.numel() for p in model.parameters()),
    }
