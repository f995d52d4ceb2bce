"""The ``chain`` space: an FBNet/ProxylessNAS-style stack of searchable layers.

stem (3x3 conv) -> stages of layers (the first of a stage may change stride and channels; the others
keep the shape and are residual, ``y = x + act(op(x))``) -> global average pool -> linear.
Each layer chooses an op and a nonlinearity; each stage chooses a width multiplier (FBNetV2-style
channel masking in the supernet, physically narrower layers in a derived network).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..slots import alu, conv
from ..errors import ConfigError
from .base import SPACES, SearchSpace, Slot, SuperNet, full_table, mix, scaled
from .ops import ACTIVATIONS, OPS, act_workload, out_hw, residual_add_workload
from .quant import QConv2d, QLinear

__all__ = ["ChainSpace"]

CHAIN_OPS = ["conv3x3", "conv5x5", "dwsep3x3", "dwsep5x5", "dil3x3", "skip", "maxpool", "avgpool", "zero"]


@dataclass(frozen=True)
class _Layer:
    index: int
    stage: int
    cin: int  # at full width
    cout: int
    stride: int
    residual: bool
    h: int  # input spatial size
    w: int


@SPACES.register("chain")
class ChainSpace(SearchSpace):
    """Args:
    input_shape: (C, H, W) of the data.
    num_classes: classifier outputs.
    stem_channels: output channels of the fixed stem.
    stages: ``[[channels, layers, stride], ...]``.
    widths: width multipliers to choose from, per stage.
    ops / activations: subsets of the registered ones.
    """

    name = "chain"

    def __init__(
        self,
        input_shape,
        num_classes,
        stem_channels: int = 16,
        stages=((24, 2, 2), (40, 2, 2), (64, 2, 1)),
        widths=("0.5", "0.75", "1.0"),
        ops=tuple(CHAIN_OPS),
        activations=("relu", "relu6", "hardswish"),
    ):
        super().__init__(input_shape, num_classes)
        try:
            self.stem_channels = int(stem_channels)
            self.stages = [tuple(int(v) for v in s) for s in stages]
            self.widths = [str(float(w)) for w in widths]
        except (TypeError, ValueError):
            raise ConfigError("space.chain: stem_channels int, stages [[channels, layers, stride]...], widths floats") from None
        if not self.stages or any(len(s) != 3 or min(s) < 1 or s[2] > 2 for s in self.stages):
            raise ConfigError("space.chain.stages: need [[channels >= 1, layers >= 1, stride 1 or 2], ...]")
        if not self.widths or any(not 0 < float(w) <= 1 for w in self.widths):
            raise ConfigError("space.chain.widths: multipliers in (0, 1]")
        for o in ops:
            OPS.get(o)
            if o not in CHAIN_OPS:
                raise ConfigError(f"space.chain.ops: {o!r} is not a chain op; valid: {', '.join(CHAIN_OPS)}")
        for a in activations:
            if a not in ACTIVATIONS:
                raise ConfigError(f"space.chain.activations: unknown {a!r}; valid: {', '.join(ACTIVATIONS)}")
        self.ops, self.activations = list(ops), list(activations)
        if not self.ops or not self.activations:
            raise ConfigError("space.chain: ops and activations must not be empty")
        self.layers: list[_Layer] = []
        c, h, w = self.stem_channels, self.input_shape[1], self.input_shape[2]
        for si, (ch, n, stride) in enumerate(self.stages):
            for j in range(n):
                s = stride if j == 0 else 1
                # residual inside a stage only: a stage's first layer changes width (its own multiplier)
                self.layers.append(_Layer(len(self.layers), si, c, ch, s, j > 0, h, w))
                h, w = out_hw(h, w, s)
                c = ch
        self.out_hw = (h, w)
        for L in self.layers:
            if not self.layer_ops(L):
                raise ConfigError(f"space.chain: no legal op for layer {L.index} among {self.ops}")

    def options(self) -> dict:
        return {
            "stem_channels": self.stem_channels,
            "stages": [list(s) for s in self.stages],
            "widths": self.widths,
            "ops": self.ops,
            "activations": self.activations,
        }

    def layer_ops(self, L: _Layer) -> list[str]:
        return [o for o in self.ops if OPS.create(o).legal(L.cin, L.cout, L.stride, L.residual)]

    def choices(self) -> dict[str, list[str]]:
        ch = {}
        for L in self.layers:
            ch[f"op_L{L.index}"] = self.layer_ops(L)
            ch[f"act_L{L.index}"] = list(self.activations)
        for si in range(len(self.stages)):
            ch[f"width_S{si}"] = list(self.widths)
        return ch

    def _cin_axis(self, L: _Layer) -> str | None:
        return f"width_S{L.stage - 1}" if (L.stage > 0 and not L.residual) else None

    def cost_slots(self) -> list[Slot]:
        ch = self.choices()
        cin0, H, W = self.input_shape
        slots = [
            Slot(
                "stem",
                (),
                {(): [conv("stem", cin0, self.stem_channels, H, W, 3)] + act_workload("relu", self.stem_channels, H, W)},
            )
        ]
        for L in self.layers:
            op_ax, act_ax, w_ax, in_ax = f"op_L{L.index}", f"act_L{L.index}", f"width_S{L.stage}", self._cin_axis(L)
            ho, wo = out_hw(L.h, L.w, L.stride)

            def op_wl(op, wout, win=None, L=L, ho=ho, wo=wo):
                cout = scaled(L.cout, wout)
                cin = cout if L.residual else (scaled(L.cin, win) if win is not None else L.cin)
                wl = OPS.create(op).workloads(cin, cout, L.h, L.w, L.stride)
                if L.residual and op != "zero":
                    wl = wl + residual_add_workload(cout, ho, wo)
                return wl

            if in_ax is None:
                slots.append(Slot(op_ax, (op_ax, w_ax), full_table([ch[op_ax], ch[w_ax]], op_wl)))
            else:
                slots.append(
                    Slot(
                        op_ax,
                        (op_ax, w_ax, in_ax),
                        full_table([ch[op_ax], ch[w_ax], ch[in_ax]], op_wl),
                    )
                )

            def act_wl(op, act, wout, L=L, ho=ho, wo=wo):
                if op == "zero":
                    return []  # act(0) = 0 is not computed: the layer is the identity
                return act_workload(act, scaled(L.cout, wout), ho, wo)

            slots.append(Slot(act_ax, (op_ax, act_ax, w_ax), full_table([ch[op_ax], ch[act_ax], ch[w_ax]], act_wl)))
        last = f"width_S{len(self.stages) - 1}"
        h, w = self.out_hw

        def head_wl(wl):
            c = scaled(self.stages[-1][0], wl)
            # Global average pool on the ALU (an ADD per position, then MUL+SHR), then the classifier.
            return [
                alu("head.pool", c, h, w, 1, 1, h * w + 2, load_elems=c * h * w, store_elems=c, op="global_avg_pool"),
                conv("head.fc", c, self.num_classes, 1, 1, 1),
            ]

        slots.append(Slot("head", (last,), full_table([ch[last]], head_wl)))
        return slots

    def build_supernet(self, qstate) -> "ChainSuperNet":
        return ChainSuperNet(self, qstate)

    def build_network(self, genotype: dict[str, str], qstate) -> nn.Module:
        self.validate_genotype(genotype)
        cin0 = self.input_shape[0]
        layers: list[nn.Module] = [_stem(cin0, self.stem_channels, qstate)]
        c = self.stem_channels
        for L in self.layers:
            cout = scaled(L.cout, genotype[f"width_S{L.stage}"])
            op = genotype[f"op_L{L.index}"]
            body = OPS.create(op).build(c if not L.residual else cout, cout, L.stride, qstate)
            act = ACTIVATIONS[genotype[f"act_L{L.index}"]][0]()
            layers.append(_FixedLayer(body, act, L.residual, op == "zero"))
            c = cout
        return nn.Sequential(*layers, _Head(c, self.num_classes, qstate))


def _stem(cin, cout, qstate):
    return nn.Sequential(QConv2d(cin, cout, 3, 1, 1, bias=False, qstate=qstate), nn.BatchNorm2d(cout), nn.ReLU())


class _Head(nn.Module):
    def __init__(self, c, num_classes, qstate):
        super().__init__()
        self.fc = QLinear(c, num_classes, qstate=qstate)

    def forward(self, x):
        return self.fc(x.mean(dim=(2, 3)))


class _FixedLayer(nn.Module):
    def __init__(self, body, act, residual, is_zero):
        super().__init__()
        self.body, self.act, self.residual, self.is_zero = body, act, residual, is_zero

    def forward(self, x):
        if self.is_zero:
            return x
        y = self.act(self.body(x))
        return x + y if self.residual else y


class ChainSuperNet(SuperNet):
    """Every layer holds all its legal ops at full width; widths are channel masks."""

    def __init__(self, space: ChainSpace, qstate):
        super().__init__(space.choices())
        self.space, self.qstate = space, qstate
        self.stem = _stem(space.input_shape[0], space.stem_channels, qstate)
        self.layer_ops = nn.ModuleList()
        for L in space.layers:
            self.layer_ops.append(
                nn.ModuleList(
                    OPS.create(o).build(L.cin, L.cout, L.stride, qstate) for o in self.choice_options[f"op_L{L.index}"]
                )
            )
        self.acts = nn.ModuleList(ACTIVATIONS[a][0]() for a in space.activations)
        for si, (c, _, _) in enumerate(space.stages):
            m = torch.stack([(torch.arange(c) < scaled(c, w)).float() for w in space.widths])
            self.register_buffer(f"wmask_{si}", m)
        self.head = _Head(space.stages[-1][0], space.num_classes, qstate)

    def forward(self, x, probs):
        x = self.stem(x)
        for L, ops in zip(self.space.layers, self.layer_ops):
            z = mix(ops, probs[f"op_L{L.index}"], x)
            a = mix(self.acts, probs[f"act_L{L.index}"], z)
            pw = probs[f"width_S{L.stage}"]
            m = (pw[:, None] * getattr(self, f"wmask_{L.stage}")).sum(0)
            a = a * m[None, :, None, None]
            x = x + a if L.residual else a
        return self.head(x)
