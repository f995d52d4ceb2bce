"""Fake quantisation so that the searched bit width changes accuracy, not just cost."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["fake_quant", "QuantState", "QConv2d", "QLinear"]


def fake_quant(x: torch.Tensor, bits: int, channel_dim: int | None = None) -> torch.Tensor:
    """Symmetric signed fake quantisation with a straight-through gradient.

    The scale is max |x| (per tensor, or per channel along ``channel_dim``) and is not learned,
    matching post-training int8/int4 quantisation of a VTA-style core.
    """
    qmax = 2 ** (bits - 1) - 1
    if channel_dim is None:
        amax = x.detach().abs().amax()
    else:
        dims = [d for d in range(x.dim()) if d != channel_dim]
        amax = x.detach().abs().amax(dim=dims, keepdim=True)
    scale = amax.clamp_min(1e-8) / qmax
    q = torch.clamp(torch.round(x / scale), -qmax - 1, qmax) * scale
    return x + (q - x).detach()


class QuantState:
    """Shared by every quantised layer of one network: bit choices and their current weights.

    ``inp_probs``/``wgt_probs`` are probability vectors over ``bits`` (one-hot for a derived
    network, relaxed during the search); ``None`` means float.
    """

    def __init__(self, bits: tuple[int, ...] = (8, 4)):
        self.bits = tuple(bits)
        self.inp_probs: torch.Tensor | None = None
        self.wgt_probs: torch.Tensor | None = None

    def set(self, inp_probs, wgt_probs) -> None:
        self.inp_probs, self.wgt_probs = inp_probs, wgt_probs

    @classmethod
    def fixed(cls, inp_bits: int | None, wgt_bits: int | None) -> "QuantState":
        """A state for a derived network with fixed widths (``None`` = float)."""
        bits = tuple(sorted({b for b in (inp_bits, wgt_bits) if b is not None}, reverse=True)) or (8,)
        s = cls(bits)
        onehot = lambda b: None if b is None else torch.tensor([float(x == b) for x in bits])  # noqa: E731
        s.set(onehot(inp_bits), onehot(wgt_bits))
        return s

    def apply(self, x: torch.Tensor, probs: torch.Tensor | None, channel_dim: int | None) -> torch.Tensor:
        if probs is None:
            return x
        out = None
        for p, b in zip(probs, self.bits):
            if float(p.detach()) == 0.0:
                continue  # masked or one-hot: no contribution and no gradient to the logits
            term = p * fake_quant(x, b, channel_dim)
            out = term if out is None else out + term
        return x * 0 if out is None else out

    def operands(self, x: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A quantised layer's input (per tensor) and weight (per output channel), fake-quantised."""
        return self.apply(x, self.inp_probs, None), self.apply(weight, self.wgt_probs, 0)


class QConv2d(nn.Conv2d):
    """Conv2d whose input (per tensor) and weight (per output channel) are fake-quantised."""

    def __init__(self, *args, qstate: QuantState, **kwargs):
        super().__init__(*args, **kwargs)
        self.qstate = qstate

    def forward(self, x):
        x, w = self.qstate.operands(x, self.weight)
        return self._conv_forward(x, w, self.bias)


class QLinear(nn.Linear):
    """Linear with fake-quantised input and weight (the classifier runs on the GEMM core too)."""

    def __init__(self, *args, qstate: QuantState, **kwargs):
        super().__init__(*args, **kwargs)
        self.qstate = qstate

    def forward(self, x):
        x, w = self.qstate.operands(x, self.weight)
        return F.linear(x, w, self.bias)
