"""DesignPoint -> standalone torch module with its trained weights -> ONNX, checked in onnxruntime.

The exported graph is the float network with every convolution/linear weight replaced by its
fake-quantised value (exactly on the design's weight grid, per output channel). Activation
quantisation is not baked in: it needs calibration and belongs to the compiler of a quantised
target; a float target runs the graph as is.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..errors import ConfigError
from ..fsutil import atomic_path
from ..space import create_space
from ..space.design import DesignPoint
from ..space.hardware import BIT_KNOBS
from ..space.quant import QConv2d, QLinear, QuantState, fake_quant

__all__ = ["load_design", "build_module", "export_onnx", "ExportResult"]


def load_design(path: str | os.PathLike) -> tuple[DesignPoint, Path | None]:
    """A run folder (design.json + weights.pt) or a design JSON file. Returns (design, weights)."""
    p = Path(path)
    if p.is_dir():
        dj, w = p / "design.json", p / "weights.pt"
        if not dj.is_file():
            raise ConfigError(f"{p}: not a run folder (no design.json)")
        return _read_design(dj), (w if w.is_file() else None)
    if not p.is_file():
        raise ConfigError(f"{p}: no such run folder or design file")
    w = p.with_name("weights.pt")
    return _read_design(p), (w if w.is_file() else None)


def _read_design(p: Path) -> DesignPoint:
    try:
        d = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{p}: not a readable design JSON ({e})") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{p}: a design JSON must be an object")
    return DesignPoint.from_json(d)


def build_module(design: DesignPoint, weights: Path | None, seed: int = 0) -> nn.Module:
    """The derived network in eval mode, float activations, weights on their quantised grid."""
    space = create_space(design.space, design.input_shape, design.num_classes, **json.loads(design.space_options))
    hw = design.hardware_dict
    wbits = 2 ** hw[BIT_KNOBS[1]] if BIT_KNOBS[1] in hw else None
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = space.build_network(design.genotype_dict, QuantState.fixed(None, None))
    if weights is not None:
        import pickle

        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:  # objects beyond tensors: never unpickled (it could run code)
            raise ConfigError(f"{weights}: not a plain state dict of tensors (it holds other Python objects, which "
                              "are never unpickled); save the weights with torch.save(net.state_dict())") from None
        except Exception as e:  # noqa: BLE001 - truncated, not a torch file: one line
            why = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
            raise ConfigError(f"{weights}: not a readable weights file ({type(e).__name__}: {why})") from None
        try:
            net.load_state_dict(state)
        except Exception as e:  # noqa: BLE001
            why = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
            raise ConfigError(f"{weights}: weights do not match the design ({type(e).__name__}: {why})") from None
    if wbits is not None:
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, (QConv2d, QLinear)):
                    m.weight.copy_(fake_quant(m.weight, wbits, channel_dim=0))
    return net.eval()


@dataclass(frozen=True)
class ExportResult:
    path: Path
    opset: int
    max_abs_diff: float
    input_name: str
    input_shape: tuple


def export_onnx(net: nn.Module, input_shape: tuple, out: str | os.PathLike, opset: int = 17, seed: int = 0,
                batch: int = 1) -> ExportResult:
    """Export ``net`` to a single ``.onnx`` file, check it, and compare onnxruntime with PyTorch."""
    import onnx
    import onnxruntime as ort

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    x = torch.from_numpy(np.random.default_rng(seed).random((batch, *input_shape), dtype=np.float32))
    with atomic_path(out) as tmp:
        torch.onnx.export(net, (x,), str(tmp), dynamo=False, opset_version=opset, input_names=["input"],
                          output_names=["logits"])
        model = onnx.load(str(tmp))
        if not any(i.name == "input" for i in model.graph.input):
            raise ConfigError("the network's output does not depend on its input (every path through a cell is "
                              "'none' or 'zero'); there is nothing to export")
        onnx.checker.check_model(model, full_check=True)
        sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = sess.run(None, {"input": x.numpy()})[0]
        with torch.no_grad():
            want = net(x).numpy()
        diff = float(np.abs(got - want).max())
    return ExportResult(out, opset, diff, "input", tuple(x.shape))
