"""A MobileNetV2-style network in plain PyTorch (Sandler et al., 2018), exported to ONNX.

Usage: python tools/mobilenetv2.py --out mbv2.onnx [--size 224] [--classes 1000] [--width 1.0]
Random weights: latency does not depend on them.
"""

from __future__ import annotations

import argparse

import torch

from explorer.zoo import MobileNetV2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--width", type=float, default=1.0)
    a = ap.parse_args()
    torch.manual_seed(0)
    from explorer.deploy.export import export_onnx

    r = export_onnx(MobileNetV2(a.classes, a.width).eval(), (3, a.size, a.size), a.out)
    print(f"wrote {r.path}; onnxruntime vs PyTorch max abs diff {r.max_abs_diff:.3g}")


if __name__ == "__main__":
    main()
