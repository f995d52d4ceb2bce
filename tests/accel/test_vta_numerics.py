"""int8 on the simulated core, through TVM, against onnxruntime's QDQ model of the same quantisation."""

import json

import numpy as np
import pytest
import torch

from explorer.accel.execute import QuantizedModel, check_against_qdq
from explorer.config import RetrainConfig
from explorer.data import load_dataset
from explorer.deploy.export import export_onnx
from explorer.search.train import retrain
from explorer.space import create_space
from explorer.space.quant import QuantState
from explorer.accel.params import vta_json
from explorer.backends import load_target
from tests.conftest import run_cli

HW = vta_json(load_target("vta").hardware_space().default_config())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = load_dataset("digits")
    space = create_space("chain", d.input_shape, d.num_classes, stem_channels=8, stages=[[16, 2, 2], [24, 1, 1]])
    g = {k: v[0] for k, v in space.choices().items()}
    g.update({k: "1.0" for k in g if k.startswith("width")})
    torch.manual_seed(0)
    net = space.build_network(g, QuantState.fixed(None, None))  # float: constant weights in the ONNX
    retrain(net, d, RetrainConfig(epochs=6, augment=False), seed=0)
    p = tmp_path_factory.mktemp("n") / "net.onnx"
    export_onnx(net.eval(), d.input_shape, p)
    return d, p


def test_int8_simulation_matches_qdq_within_one_lsb_and_keeps_accuracy(trained, tmp_path):
    d, p = trained
    q = QuantizedModel(p, HW)
    assert len(q.layers) == len(q.planned) >= 5
    q.calibrate(d.x_train[:32, None])
    r = check_against_qdq(q, d.x_test[:, None], d.y_test, p, tmp_path / "qdq.onnx")
    assert r["worst_layer_input_diff_lsb"] <= 1.0
    assert r["accuracy_float"] > 0.85
    assert r["accuracy_int8_simulated"] >= r["accuracy_float"] - 0.01


def test_quantisation_really_happens(trained):
    d, p = trained
    q = QuantizedModel(p, HW)
    q.calibrate(d.x_train[:16, None])
    x = d.x_test[:1, None][0]
    _ = q(x)
    for L in q.layers:
        assert np.all(L.last_x_q == np.round(L.last_x_q)) and np.abs(L.last_x_q).max() <= 128
        assert len(np.unique(L.w_q)) <= 256
    # 4-bit weights on the same network change the outputs
    q4 = QuantizedModel(p, {**HW, "LOG_WGT_WIDTH": 2})
    q4.calibrate(d.x_train[:16, None])
    assert np.abs(q4(x) - q(x)).max() > 1e-3
    assert all(len(np.unique(L.w_q)) <= 16 for L in q4.layers)


@pytest.mark.slow  # int8 on the simulator through the CLI; the in-process check stays fast: the slow tier
def test_cli_compile_vta_with_calibration(trained, tmp_path):
    d, p = trained
    r = run_cli("compile", str(p), "--target", "vta", "--calib", "16", "--data", "digits", "--check", "50",
                "--out", str(tmp_path / "s.json"))
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["numerics"]["worst_layer_input_diff_lsb"] <= 1 and s["numerics"]["inputs"] == 50
    bad = run_cli("compile", str(p), "--target", "vta", "--calib", "4", "--data", "mnist5k", "--out", str(tmp_path / "t.json"))
    assert bad.returncode == 2 and "do not match" in bad.stderr


@pytest.mark.slow  # calibration and simulation (~9 s): the slow tier
def test_four_bit_activations_run_without_an_int8_reference(trained, tmp_path):
    d, p = trained
    hw = tmp_path / "hw4.json"
    hw.write_text(json.dumps({"LOG_INP_WIDTH": 2, "LOG_WGT_WIDTH": 2}))
    r = run_cli("compile", str(p), "--target", "vta", "--hw", str(hw), "--calib", "16", "--data", "digits",
                "--check", "100", "--out", str(tmp_path / "s.json"))
    assert r.returncode == 0, r.stderr
    n = json.loads((tmp_path / "s.json").read_text())["numerics"]
    assert n["bits"] == {"activations": 4, "weights": 4} and "qdq_reference" in n
    assert 0.0 < n["accuracy_int8_simulated"] <= 1.0
