"""ResNet-18 on the VTA-style core: the former fixed tiling against the searched one, per layer and in total.

Prints, per offloaded layer and for both tilings (``explorer.accel.sim.plan(..., "fixed" | "search")``),
VTA's counters (GEMM ops, input/weight/accumulator/micro-op load bytes, store bytes) and the simulated
cycles; then the totals over the convolutions but the first (conv1..conv19: the layers VTA's published
ResNet-18 run offloads) against VTA's published simulator figures, and over all offloaded layers.

Usage: python tools/vta_tiling.py [--onnx resnet18.onnx] [--hw hw.json] [--set LOG_INP_BUFF_SIZE=16 ...]
Without --onnx, ResNet-18 (224x224, random weights) is exported to a temporary folder. The configuration
is the VTA target's default (1x16x16, int8, 32 KiB input, 256 KiB weight, 128 KiB accumulator buffers),
changed by --hw (vta_config.json fields) and --set.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

# VTA's simulator on ResNet-18, default configuration (TVM's "Deploy Pretrained Vision Model" tutorial,
# execution statistics printed after the run)
VTA_PUBLISHED = {"inp_load_bytes": 5_549_568, "wgt_load_bytes": 12_763_136, "acc_load_bytes": 6_051_840,
                 "uop_load_bytes": 22_864, "out_store_bytes": 2_433_536, "gemm_ops": 6_623_232}
COUNTERS = ("gemm_ops", "inp_load_bytes", "wgt_load_bytes", "acc_load_bytes", "uop_load_bytes", "out_store_bytes", "cycles")
HEAD = ("GEMM ops", "input B", "weight B", "acc B", "uop B", "store B", "cycles")


def config(hw_path: str | None, sets: list[str]) -> dict:
    from explorer.accel.params import from_vta_json, vta_json
    from explorer.backends import load_target

    space = load_target("vta").hardware_space()
    d = json.loads(Path(hw_path).read_text()) if hw_path else {}
    for s in sets:
        k, _, v = s.partition("=")
        d[k] = float(v) if "." in v else int(v)
    return vta_json(from_vta_json(d, space))


def layers_of(onnx: str | None):
    import torch

    from explorer.accel.compile import offload_plan
    from explorer.deploy.export import export_onnx
    from explorer.deploy.tvm_build import import_relax, load_onnx
    from explorer.zoo import ResNet18

    with tempfile.TemporaryDirectory() as tmp:
        if onnx is None:
            onnx = str(Path(tmp) / "resnet18.onnx")
            torch.manual_seed(0)
            export_onnx(ResNet18().eval(), (3, 224, 224), onnx)
        return offload_plan(import_relax(load_onnx(onnx)))[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--onnx", help="a ResNet-18 ONNX (default: exported here)")
    ap.add_argument("--hw", help="hardware config JSON (vta_config.json fields; missing ones take the default)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="change config fields")
    a = ap.parse_args()

    from explorer.accel.params import VTAParams
    from explorer.accel.sim import BufferCapacityError, plan, run_layer

    hw = config(a.hw, a.set)
    p = VTAParams.from_config(hw)
    layers = layers_of(a.onnx)
    rows, times = [], {}
    for tiling in ("fixed", "search"):
        t0 = time.perf_counter()
        for i, L in enumerate(layers):
            try:
                s = run_layer(L, p, tiling).as_json()
                t = plan(L, p, tiling)
            except BufferCapacityError as e:
                s, t = None, str(e).split(": ", 1)[-1]
            if tiling == "fixed":
                rows.append({"layer": L, "fixed": s})
            else:
                rows[i].update(search=s, tiling=t)
        times[tiling] = time.perf_counter() - t0

    print("hardware: " + ", ".join(f"{k}={v}" for k, v in hw.items() if k.startswith(("LOG_", "HW_", "DRAM"))))
    print(f"lowering + simulation of {len(layers)} layers: fixed {times['fixed']:.2f} s, search {times['search']:.2f} s "
          "(first call; results are cached per layer shape and configuration)\n")
    print("| layer | shape | " + " | ".join(f"{h} fixed / search" for h in HEAD) + " | searched tiling |")
    print("|---" * (3 + len(HEAD)) + "|")
    for r in rows:
        L, f, s = r["layer"], r["fixed"], r["search"]
        shape = f"{L.cin}->{L.cout} {L.kh}x{L.kw}/{L.stride} {L.hin}x{L.win}"
        cells = [f"{_n(f, k)} / {_n(s, k)}" for k in COUNTERS]
        t = r["tiling"]
        desc = t if isinstance(t, str) else (f"{t.rows}x{t.cols} px, {t.groups}/{t.co_t} co blk, {t.ci_chunk}/{t.ci_t} ci blk, "
                                             f"{t.order} outer, {'resident' if t.resident else 'streamed'}")
        print(f"| {L.name} | {shape} | " + " | ".join(cells) + f" | {desc} |")
        if s is not None:
            closed = (math.ceil(L.n / p.batch) * math.ceil(L.cin / p.block_in) * math.ceil(L.cout / p.block_out)
                      * L.hout * L.wout * L.kh * L.kw)
            assert s["gemm_ops"] == closed, (L.name, s["gemm_ops"], closed)

    convs = [r for r in rows if r["layer"].name.startswith("conv")]
    groups = [("convolutions but the first (conv1..conv19)", convs[1:]), ("all convolutions (conv0..conv19)", convs),
              ("all offloaded layers", rows)]
    print("\n| total | " + " | ".join(f"{h} fixed / search" for h in HEAD) + " |")
    print("|---" * (1 + len(HEAD)) + "|")
    for name, rs in groups:
        cells = []
        for k in COUNTERS:
            f = None if any(r["fixed"] is None for r in rs) else sum(r["fixed"][k] for r in rs)
            s = None if any(r["search"] is None for r in rs) else sum(r["search"][k] for r in rs)
            cells.append(f"{_n(f)} / {_n(s)}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("| VTA published (ResNet-18, default config) | " + " | ".join(
        f"{VTA_PUBLISHED[k]:,}" if k in VTA_PUBLISHED else "-" for k in COUNTERS) + " |")
    tot = {k: sum(r["search"][k] for r in convs[1:]) for k in ("inp_load_bytes", "wgt_load_bytes")} \
        if all(r["search"] for r in convs[1:]) else None
    if tot:
        print(f"\nsearched, conv1..conv19: input loads {tot['inp_load_bytes']:,} B "
              f"({'<=' if tot['inp_load_bytes'] <= VTA_PUBLISHED['inp_load_bytes'] else '>'} VTA's "
              f"{VTA_PUBLISHED['inp_load_bytes']:,}), weight loads {tot['wgt_load_bytes']:,} B "
              f"({'<=' if tot['wgt_load_bytes'] <= VTA_PUBLISHED['wgt_load_bytes'] else '>'} VTA's "
              f"{VTA_PUBLISHED['wgt_load_bytes']:,})")


def _n(d, k=None):
    v = d if k is None else (None if d is None else d[k])
    return "-" if v is None else f"{v:,}"


if __name__ == "__main__":
    main()
