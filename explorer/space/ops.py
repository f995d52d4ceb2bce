"""Primitive operations of the search spaces, registered by name.

Each :class:`OpSpec` builds a module and states the hardware workloads it lowers to, so the network
and the cost model can never disagree about what an op is. Convolutions are quantisation-aware
(:class:`QConv2d`); the activation is not part of an op (it is a choice of its own).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..slots import Workload, alu, conv
from ..registry import Registry
from .quant import QConv2d

__all__ = ["OpSpec", "OPS", "ACTIVATIONS", "Zero", "out_hw"]

OPS: Registry = Registry("op")


@dataclass(frozen=True)
class OpSpec:
    """``build(cin, cout, stride, qstate)`` -> module; ``workloads(cin, cout, h, w, stride)`` -> list.

    ``needs_residual``: only legal where the layer adds its input back (so it cannot cut the graph).
    """

    name: str
    build: Callable[..., nn.Module]
    workloads: Callable[..., list[Workload]]
    needs_residual: bool = False

    def legal(self, cin: int, cout: int, stride: int, residual: bool) -> bool:
        return residual or not self.needs_residual


def out_hw(h: int, w: int, stride: int) -> tuple[int, int]:
    """Spatial size after a 'same'-padded op with ``stride``."""
    return (h + stride - 1) // stride, (w + stride - 1) // stride


def qconv(cin, cout, k, stride, qstate, groups=1, dilation=1):
    pad = dilation * (k - 1) // 2
    return QConv2d(cin, cout, k, stride, pad, dilation=dilation, groups=groups, bias=False, qstate=qstate)


def conv_bn(cin, cout, k, stride, qstate, dilation=1):
    return nn.Sequential(qconv(cin, cout, k, stride, qstate, dilation=dilation), nn.BatchNorm2d(cout))


def _register(spec: OpSpec) -> OpSpec:
    OPS.register(spec.name)(lambda: spec)
    return spec


def _conv_op(name, k, dilation=1):
    return _register(
        OpSpec(
            name,
            lambda cin, cout, stride, qs: conv_bn(cin, cout, k, stride, qs, dilation),
            lambda cin, cout, h, w, stride: [conv(name, cin, cout, h, w, k, stride, dilation=dilation)],
        )
    )


def _dw_workloads(name, k):
    def wl(cin, cout, h, w, stride):
        ho, wo = out_hw(h, w, stride)
        # A depthwise conv has one input channel per group: on the GEMM core it would use
        # 1/(BLOCK_IN*BLOCK_OUT) of the array, so the compiler runs it on the ALU:
        # MUL + ADD per tap and output vector; input and k*k*C weights come from DRAM.
        dw = replace(alu(f"{name}.dw", cin, h, w, ho, wo, 2 * k * k, load_elems=cin * (h * w + k * k), op="depthwise_conv2d"), kh=k, kw=k)
        pw = conv(f"{name}.pw", cin, cout, ho, wo, 1)
        return [dw, pw]

    return wl


def _dwsep_op(name, k):
    def build(cin, cout, stride, qs):
        return nn.Sequential(
            qconv(cin, cin, k, stride, qs, groups=cin),
            nn.BatchNorm2d(cin),
            qconv(cin, cout, 1, 1, qs),
            nn.BatchNorm2d(cout),
        )

    return _register(OpSpec(name, build, _dw_workloads(name, k)))


class MaxPool3x3(nn.Module):
    """3x3 max pooling, padding 1. Where no gradient is taken (selection's one-shot scoring,
    evaluation), the same values from cheaper kernels: PyTorch's CPU ``max_pool2d`` (which computes
    the argmax indices even then) ran 4-12x slower than a running maximum over shifted views (stride
    1) or channels-last pooling (stride 2) on the demo's shapes, and was a third of the scoring
    time. Training and export keep ``max_pool2d``: its gradient goes to one of tied maxima, and the
    exported graph keeps its MaxPool."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = int(stride)

    def forward(self, x):
        if torch.is_grad_enabled() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or x.dim() != 4:
            return F.max_pool2d(x, 3, self.stride, 1)
        if self.stride != 1:
            return F.max_pool2d(x.contiguous(memory_format=torch.channels_last), 3, self.stride, 1).contiguous()
        h, w = x.shape[2], x.shape[3]
        p = F.pad(x, (1, 1, 1, 1), value=float("-inf"))
        r = torch.maximum(torch.maximum(p[:, :, :, :w], p[:, :, :, 1:w + 1]), p[:, :, :, 2:w + 2])
        return torch.maximum(torch.maximum(r[:, :, :h], r[:, :, 1:h + 1]), r[:, :, 2:h + 2])


class _PoolProj(nn.Module):
    """3x3 pooling with ``stride``, then a 1x1 conv where the channel count changes."""

    def __init__(self, kind, cin, cout, stride, qs):
        super().__init__()
        self.pool = (
            MaxPool3x3(stride) if kind == "max" else nn.AvgPool2d(3, stride, 1, count_include_pad=False)
        )
        self.proj = conv_bn(cin, cout, 1, 1, qs) if cin != cout else None

    def forward(self, x):
        x = self.pool(x)
        return self.proj(x) if self.proj is not None else x


def _pool_op(name, kind):
    # VTA ALU: MAX (max pool) or ADD then MUL+SHR for the 1/9 scale (avg pool), per tap.
    ops_per_out = 9 if kind == "max" else 9 + 2

    def wl(cin, cout, h, w, stride):
        ho, wo = out_hw(h, w, stride)
        out = [alu(name, cin, h, w, ho, wo, ops_per_out, load_elems=cin * h * w, store_elems=cin * ho * wo,
                   op="max_pool" if kind == "max" else "avg_pool")]
        if cin != cout:
            out.append(conv(f"{name}.proj", cin, cout, ho, wo, 1))
        return out

    return _register(OpSpec(name, lambda cin, cout, stride, qs: _PoolProj(kind, cin, cout, stride, qs), wl))


class Zero(nn.Module):
    """The 'none' op: outputs zeros of the right shape (only legal beside another path)."""

    def __init__(self, cout, stride):
        super().__init__()
        self.cout, self.stride = cout, stride

    def forward(self, x):
        n, _, h, w = x.shape
        ho, wo = out_hw(h, w, self.stride)
        return x.new_zeros(n, self.cout, ho, wo)


class ReLUConvBN(nn.Sequential):
    """NAS-Bench-201's 'nor_conv': ReLU -> Conv -> BN."""

    def __init__(self, cin, cout, k, stride, qs):
        super().__init__(nn.ReLU(), qconv(cin, cout, k, stride, qs), nn.BatchNorm2d(cout))


def _skip_build(cin, cout, stride, qs):
    return nn.Identity() if (cin == cout and stride == 1) else conv_bn(cin, cout, 1, stride, qs)


def _skip_wl(cin, cout, h, w, stride):
    return [] if (cin == cout and stride == 1) else [conv("skip.proj", cin, cout, h, w, 1, stride)]


# --- the chain space's ops -------------------------------------------------------------------
_conv_op("conv3x3", 3)
_conv_op("conv5x5", 5)
_dwsep_op("dwsep3x3", 3)
_dwsep_op("dwsep5x5", 5)
_conv_op("dil3x3", 3, dilation=2)
_register(OpSpec("skip", _skip_build, _skip_wl))
_pool_op("maxpool", "max")
_pool_op("avgpool", "avg")
_register(
    OpSpec("zero", lambda cin, cout, stride, qs: Zero(cout, stride), lambda *a: [], needs_residual=True)
)

# --- NAS-Bench-201's ops (names as in the benchmark) ------------------------------------------
_register(OpSpec("none", lambda cin, cout, stride, qs: Zero(cout, stride), lambda *a: [], needs_residual=True))
_register(OpSpec("skip_connect", _skip_build, _skip_wl))
_register(
    OpSpec(
        "nor_conv_1x1",
        lambda cin, cout, stride, qs: ReLUConvBN(cin, cout, 1, stride, qs),
        lambda cin, cout, h, w, stride: [conv("nor_conv_1x1", cin, cout, h, w, 1, stride)],
    )
)
_register(
    OpSpec(
        "nor_conv_3x3",
        lambda cin, cout, stride, qs: ReLUConvBN(cin, cout, 3, stride, qs),
        lambda cin, cout, h, w, stride: [conv("nor_conv_3x3", cin, cout, h, w, 3, stride)],
    )
)
_register(
    OpSpec(
        "avg_pool_3x3",
        lambda cin, cout, stride, qs: _PoolProj("avg", cin, cout, stride, qs),
        OPS.create("avgpool").workloads,
    )
)


# --- activations: (module factory, VTA ALU ops per output vector) ------------------------------
class HardSwish(nn.Module):
    def forward(self, x):
        return nn.functional.hardswish(x)


ACTIVATIONS: dict[str, tuple[Callable[[], nn.Module], int]] = {
    # ReLU = MAX(x, 0); ReLU6 = MAX then MIN; hardswish = x * relu6(x + 3) / 6: ADD, MAX, MIN, MUL, SHR.
    "relu": (nn.ReLU, 1),
    "relu6": (nn.ReLU6, 2),
    "hardswish": (HardSwish, 5),
}


def act_workload(name: str, channels: int, h: int, w: int) -> list[Workload]:
    """Fused activation after a layer: ALU ops in the accumulator buffer, no DRAM traffic."""
    return [alu(f"act.{name}", channels, h, w, h, w, ACTIVATIONS[name][1])]


def residual_add_workload(channels: int, h: int, w: int) -> list[Workload]:
    """``x + f(x)``: load the skip operand, one ADD per vector, store the sum."""
    return [alu("residual_add", channels, h, w, h, w, 1, load_elems=channels * h * w, store_elems=channels * h * w)]

