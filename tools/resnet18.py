"""ResNet-18 (He et al., 2016) in plain PyTorch, exported to ONNX.

Usage: python tools/resnet18.py --out resnet18.onnx [--size 224] [--classes 1000]
Random weights (latency, op counts and lowering do not depend on them).
"""

from __future__ import annotations

import argparse

import torch

from explorer.zoo import ResNet18


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--classes", type=int, default=1000)
    a = ap.parse_args()
    torch.manual_seed(0)
    from explorer.deploy.export import export_onnx

    r = export_onnx(ResNet18(a.classes).eval(), (3, a.size, a.size), a.out)
    print(f"wrote {r.path}; onnxruntime vs PyTorch max abs diff {r.max_abs_diff:.3g}")


if __name__ == "__main__":
    main()
