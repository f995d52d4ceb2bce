"""Workloads: what one piece of a network asks of the hardware, independent of the hardware."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["Workload", "conv", "alu"]


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


def conv(name, cin, cout, hin, win, k, stride=1, groups=1, dilation=1, n=1) -> Workload:
    pad = dilation * (k - 1) // 2
    hout = (hin + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    wout = (win + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    return Workload("conv", name, cin, cout, hin, win, hout, wout, k, k, groups, n, REQUANT_ALU_OPS,
                    stride=stride, dilation=dilation)


def alu(name, channels, hin, win, hout, wout, ops, load_elems=0, store_elems=0, n=1) -> Workload:
    stride = max(1, hin // max(1, hout)) if hout > 1 else 1
    return Workload(
        "alu", name, channels, channels, hin, win, hout, wout, 1, 1, 1, n, ops, load_elems, store_elems, stride=stride
    )
