"""What network spaces and cost models share: workloads, slots, the combination table.

A space describes its hardware demand as :class:`Slot` s (parts of the network whose workloads depend
on a few choices); every cost model prices the same slots through one :class:`ComboTable`: the
flattened (slot, option combination) rows, their probability under the architecture distribution,
one-hot probabilities of a genotype, and per-slot minima. Neither ``space`` nor ``cost`` owns this
module, so neither imports the other for it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import torch

__all__ = ["Workload", "conv", "alu", "OPS_ALU", "Slot", "slot_workloads", "full_table", "ComboTable", "joint_probs",
           "onehot_genotype", "workload_features_basic"]


@dataclass(frozen=True)
class Workload:
    """One layer's demand on a VTA-style core.

    ``kind="conv"``: a convolution or dense layer lowered to the GEMM core (dense is a 1x1 conv on a
    1x1 map). ``groups`` splits it into independent GEMMs. After the GEMM, ``alu_ops`` fused ALU
    operations run per output vector (requantisation).

    ``kind="alu"``: vector work on the ALU (pooling, depthwise conv, residual add, activations):
    ``alu_ops`` operations per output position and channel block, reading ``load_elems`` and
    writing ``store_elems`` elements from/to DRAM (0 when fused into the producer).
    """

    kind: str
    name: str
    cin: int = 0
    cout: int = 0
    hin: int = 1
    win: int = 1
    hout: int = 1
    wout: int = 1
    kh: int = 1
    kw: int = 1
    groups: int = 1
    n: int = 1
    alu_ops: int = 0
    load_elems: int = 0
    store_elems: int = 0
    stride: int = 1
    dilation: int = 1
    op: str = ""  # what it computes, for backends that build it (see OPS_ALU); "conv2d" for kind="conv"

    @property
    def macs(self) -> int:
        """Useful multiply-accumulates (no padding)."""
        if self.kind != "conv":
            return 0
        return self.n * self.hout * self.wout * self.kh * self.kw * (self.cin // self.groups) * self.cout

    def as_json(self) -> dict:
        return asdict(self)


# VTA requantises every GEMM result with a shift and a clip to the activation range:
# SHR, MAX, MIN (VTA ISA ALU opcodes; "VTA Hardware Guide", ALU section).
REQUANT_ALU_OPS = 3


# The operators an ALU workload can stand for: a backend that builds workloads (the CPU/GPU timer)
# emits exactly this operator, never guessing from the workload's name.
OPS_ALU = ("elementwise", "depthwise_conv2d", "max_pool", "avg_pool", "avg_pool_2x2", "global_avg_pool")


def conv(name, cin, cout, hin, win, k, stride=1, groups=1, dilation=1, n=1) -> Workload:
    pad = dilation * (k - 1) // 2
    hout = (hin + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    wout = (win + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    return Workload("conv", name, cin, cout, hin, win, hout, wout, k, k, groups, n, REQUANT_ALU_OPS,
                    stride=stride, dilation=dilation, op="conv2d")


def alu(name, channels, hin, win, hout, wout, ops, load_elems=0, store_elems=0, n=1, op="elementwise") -> Workload:
    """Vector work; ``op`` (one of :data:`OPS_ALU`) is the operator it stands for."""
    if op not in OPS_ALU:
        raise ValueError(f"alu workload {name!r}: op {op!r} is not one of {OPS_ALU}")
    stride = max(1, hin // max(1, hout)) if hout > 1 else 1
    return Workload(
        "alu", name, channels, channels, hin, win, hout, wout, 1, 1, 1, n, ops, load_elems, store_elems, stride=stride,
        op=op,
    )


@dataclass(frozen=True)
class Slot:
    """A part of the network whose workloads depend on a few choices (``axes``).

    ``table[(i, j, ...)]`` lists the workloads when axis 0 takes option ``i``, axis 1 option ``j``...
    Every combination of options must be present. A slot with no axes is a fixed part (stem, head).
    The expected cost of a network is ``sum_slots sum_combos prod_axes p(option) * cost(workloads)``.
    """

    name: str
    axes: tuple[str, ...]
    table: dict[tuple[int, ...], list[Workload]]


def slot_workloads(slots: list[Slot], choices: dict[str, list[str]], genotype: dict[str, str]) -> list[Workload]:
    """The workloads ``slots`` give for one genotype: each slot's table at the genotype's options."""
    out = []
    for s in slots:
        out.extend(s.table[tuple(choices[a].index(genotype[a]) for a in s.axes)])
    return out


def full_table(axes_options: list[list[str]], fn) -> dict[tuple[int, ...], list[Workload]]:
    """Build a slot table by calling ``fn(*options)`` for every combination."""
    table = {}
    for combo in itertools.product(*[range(len(o)) for o in axes_options]):
        table[combo] = fn(*[axes_options[i][j] for i, j in enumerate(combo)])
    return table


def workload_features_basic(wls: list[Workload]) -> tuple[float, float, float]:
    """(multiply-accumulates, ALU element operations, kernels) of a list of workloads."""
    macs = alu_ops = kernels = 0.0
    for w in wls:
        if w.kind == "conv":
            macs += w.macs
            kernels += 1
        else:
            alu_ops += w.n * w.hout * w.wout * w.cin * max(1, w.alu_ops)
            kernels += 1 if (w.load_elems or w.store_elems) else 0
    return macs, alu_ops, kernels


def joint_probs(probs: dict[str, torch.Tensor], names) -> torch.Tensor:
    """Probabilities of every combination of the independent choices ``names`` (C order), flattened."""
    p = probs[names[0]]
    for k in names[1:]:
        p = (p[:, None] * probs[k][None, :]).reshape(-1)
    return p


def onehot_genotype(choices: dict[str, list[str]], genotype: dict[str, str]) -> dict[str, torch.Tensor]:
    """Constant one-hot probabilities selecting ``genotype``."""
    return {k: torch.tensor([float(o == genotype[k]) for o in opts]) for k, opts in choices.items()}


class ComboTable:
    """Every (slot, option combination) of a space as one row, for vectorised cost models.

    ``probs(net_probs)`` gives each row's probability (the product of its axes' option
    probabilities; 1 for fixed slots), differentiable in ``net_probs``. Rows keep the slots' order and
    each slot's table order, so per-row figures summed with these probabilities are the expectation
    over the architecture distribution.

    Attributes:
        choices: choice name -> options, in order.
        slots: the slots.
        row_slot: slot index of every row (a long tensor).
        row_workloads: the workloads of every row.
    """

    def __init__(self, slots: list[Slot], choices: dict[str, list[str]]):
        self.choices = {k: list(v) for k, v in choices.items()}
        self.slots = list(slots)
        offsets, off = {}, 0
        for k, v in self.choices.items():
            offsets[k] = off
            off += len(v)
        self._one = off  # index of a constant 1 appended to the flat probability vector
        max_axes = max([len(s.axes) for s in slots] + [1])
        idx, row_slot, self.row_workloads = [], [], []
        for si, s in enumerate(slots):
            for combo, wls in s.table.items():
                ids = [offsets[a] + j for a, j in zip(s.axes, combo)]
                idx.append(ids + [self._one] * (max_axes - len(ids)))
                row_slot.append(si)
                self.row_workloads.append(wls)
        self.idx = torch.tensor(idx, dtype=torch.long)
        self.row_slot = torch.tensor(row_slot, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.row_workloads)

    def probs(self, net_probs: dict[str, torch.Tensor]) -> torch.Tensor:
        """[rows] probability of every row under ``net_probs``."""
        flat = torch.cat([net_probs[k] for k in self.choices] + [torch.ones(1)])
        return flat[self.idx].prod(dim=-1)

    def onehot(self, genotype: dict[str, str]) -> dict[str, torch.Tensor]:
        return onehot_genotype(self.choices, genotype)

    def slot_min(self, per_row: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """The cheapest row of every slot: ``per_row`` has the rows along ``dim``; the result has
        the slots there instead."""
        shape = list(per_row.shape)
        n = shape[dim]
        view = [1] * len(shape)
        view[dim] = n
        idx = self.row_slot.reshape(view).expand(shape)
        shape[dim] = len(self.slots)
        return per_row.new_full(shape, math.inf).scatter_reduce(dim, idx, per_row, reduce="amin")
