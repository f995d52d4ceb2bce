"""The VTA-style target: lowering, simulator and `explorer compile --target vta`, on a real ResNet-18."""

import json
import math
import os
import subprocess
import sys

import pytest

from explorer.accel.compile import compile_stats
from explorer.accel.params import VTAParams
from explorer.accel.sim import BufferCapacityError, ConvLayer, lower, plan, run_layer, simulate
from explorer.deploy.export import export_onnx
from explorer.accel.params import vta_json
from explorer.backends import load_target
from explorer.zoo import MobileNetV2

DEFAULT = vta_json(load_target("vta").hardware_space().default_config())


def cfg(**kw):
    return {**DEFAULT, **kw}


@pytest.mark.parametrize("hw", [cfg(), cfg(LOG_BLOCK_IN=3, LOG_BLOCK_OUT=4), cfg(LOG_BLOCK_IN=5, LOG_BLOCK_OUT=3),
                                cfg(LOG_BATCH=1, LOG_INP_BUFF_SIZE=16, LOG_ACC_BUFF_SIZE=15)])
def test_resnet18_gemm_ops_equal_closed_form(resnet18, hw):
    s = compile_stats(resnet18, hw)
    p = VTAParams.from_config(hw)
    assert s["offloaded_layers"] == 21  # 20 convolutions + the classifier
    total = 0
    for L in s["layers"]:
        g = L["layer"]
        closed = math.ceil(g["cin"] / p.block_in) * math.ceil(g["cout"] / p.block_out) * g["hout"] * g["wout"] * g["k"] ** 2
        assert L["gemm_ops"] == closed, L["name"]
        total += closed
    assert s["total"]["gemm_ops"] == total


def test_gemm_bound_layers_near_the_mac_bound(resnet18):
    s = compile_stats(resnet18, DEFAULT)
    bound_layers = [L for L in s["layers"] if L["gemm_bound"]]
    assert len(bound_layers) >= 15
    for L in bound_layers:
        assert L["gemm_ops"] <= L["cycles"] <= 1.2 * L["gemm_ops"], (L["name"], L["cycles"], L["gemm_ops"])
    # channel counts that are multiples of the block: GEMM ops are exactly MACs / (BATCH*BLOCK_IN*BLOCK_OUT)
    for L in s["layers"][1:20]:
        assert L["gemm_ops"] == L["mac_bound_cycles"]


def test_host_ops_are_listed():
    p = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"mbv2-{os.getpid()}.onnx")
    export_onnx(MobileNetV2(10, 0.5).eval(), (3, 32, 32), p)
    s = compile_stats(p, DEFAULT)
    s_ops = s["host_ops"]
    assert s_ops.get("relax.nn.conv2d (grouped)", 0) == 17  # every depthwise conv stays on the host
    assert any("depthwise" in n for n in s["notes"])
    assert s["offloaded_layers"] == 36  # stem, 16 expansions, 17 projections, last 1x1, classifier
    os.remove(p)


def test_double_buffering_overlaps_and_tokens_never_deadlock():
    p = VTAParams.from_config(DEFAULT)
    L = ConvLayer("c", 128, 128, 28, 28, 3, 3, 1, 1)
    t, prog = lower(L, p)
    s = simulate("c", prog, p)
    assert s.cycles < sum(s.busy.values())  # modules overlap
    assert s.cycles >= max(s.busy.values())
    assert sum(1 for i in prog if i.op == "GEMM") > 2


def test_buffer_too_small_for_one_tile():
    p = VTAParams.from_config(cfg(LOG_WGT_BUFF_SIZE=16, LOG_BLOCK_IN=5, LOG_BLOCK_OUT=5))
    # one 32x32 block of a 7x7 kernel is 49 KiB, more than half the 64 KiB weight buffer
    with pytest.raises(BufferCapacityError, match="layer big .*wgt 50176 B > 32768 B"):
        plan(ConvLayer("big", 512, 512, 7, 7, 7, 7, 1, 3), p)
    with pytest.raises(BufferCapacityError, match="wgt"):
        run_layer(ConvLayer("big", 512, 512, 7, 7, 7, 7, 1, 3), p)
    # a 3x3 kernel fits one input-channel block at a time: the search splits the input channels where
    # the fixed rule (all input channels per tile) cannot run the layer
    L = ConvLayer("c", 512, 512, 7, 7, 3, 3, 1, 1)
    with pytest.raises(BufferCapacityError, match="all 512 input channels"):
        plan(L, p, "fixed")
    t = plan(L, p)
    assert t.ci_chunk < t.ci_t and run_layer(L, p).gemm_ops == 16 * 16 * 49 * 9
    # width tiling lets a wide first layer fit where a whole row would not
    small = VTAParams.from_config(cfg(LOG_INP_BUFF_SIZE=14))
    t = plan(ConvLayer("conv1", 3, 64, 224, 224, 7, 7, 2, 3), small)
    assert t.cols < 112
    assert run_layer(ConvLayer("conv1", 3, 64, 224, 224, 7, 7, 2, 3), small).gemm_ops == 4 * 112 * 112 * 49


@pytest.mark.slow  # long (10-20 s on 2 cores): the slow tier, which CI runs
def test_cli_compile_vta_and_buffer_error(resnet18, tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    r = subprocess.run([sys.executable, "-m", "explorer.cli", "compile", str(resnet18), "--target", "vta",
                        "--out", str(tmp_path / "s.json")], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["total"]["cycles"] > 0 and "relax.nn.max_pool2d" in s["host_ops"]
    hw = tmp_path / "hw.json"
    hw.write_text(json.dumps({"LOG_WGT_BUFF_SIZE": 16, "LOG_BLOCK_IN": 5, "LOG_BLOCK_OUT": 5}))
    r = subprocess.run([sys.executable, "-m", "explorer.cli", "compile", str(resnet18), "--target", "vta", "--hw", str(hw),
                        "--out", str(tmp_path / "t.json")], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and "cannot run on this configuration" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "t.json").exists()
