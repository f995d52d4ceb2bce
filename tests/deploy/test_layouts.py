"""Convolution layouts (NCHW, NHWC, blocked NCHWc) and weight prepacking: real TVM builds checked
against onnxruntime."""

import numpy as np
import pytest
import torch

TOL = 1e-4  # as tests/deploy/test_export_compile.py's TVM-against-onnxruntime check


class _SmallCNN(torch.nn.Module):
    """A normal, a depthwise, a grouped (neither) and a 1x1 convolution, BatchNorm, ReLU6 (ONNX Clip)
    and ReLU, a global average pool and a dense layer: every case the blocked lowering handles."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.stem, self.bn1 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.dw, self.bn2 = nn.Conv2d(16, 16, 3, padding=1, groups=16, stride=2), nn.BatchNorm2d(16)
        self.grouped = nn.Conv2d(16, 16, 3, padding=1, groups=2)
        self.pw = nn.Conv2d(16, 24, 1)
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        x = torch.clamp(self.bn1(self.stem(x)), 0, 6)
        x = torch.relu(self.bn2(self.dw(x)))
        x = self.pw(torch.relu(self.grouped(x)))
        return self.fc(x.mean((2, 3)))


@pytest.fixture(scope="module")
def small_cnn(tmp_path_factory):
    torch.manual_seed(0)
    net = _SmallCNN().eval()
    with torch.no_grad():  # non-trivial BN statistics
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("cnn") / "cnn.onnx"
    torch.onnx.export(net, torch.randn(1, 3, 16, 16), str(path), dynamo=False, opset_version=17, input_names=["input"])
    return path


def _max_diff_vs_onnxruntime(onnx_path, lib) -> float:
    import onnxruntime as ort
    import tvm
    from tvm import relax

    x = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(lib)), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    want = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    return float(np.abs(got - want).max())


def _kernels(onnx_path, layout, prepack=False):
    import tvm

    from explorer.deploy.tvm_build import import_relax, load_onnx, lower_for_schedules

    mod = lower_for_schedules(import_relax(load_onnx(onnx_path), layout, prepack))
    return sorted(gv.name_hint for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc))


@pytest.mark.parametrize("layout", ["NCHWc", "NHWC"])
def test_layout_build_matches_onnxruntime(small_cnn, tmp_path, layout):
    from explorer.deploy.tvm_build import build, host_target, load_onnx

    card = build(load_onnx(small_cnn), host_target(), tmp_path / "m.so", database="none", layout=layout)
    assert card["layout"] == layout and card["prepack"] is False
    assert _max_diff_vs_onnxruntime(small_cnn, tmp_path / "m.so") < TOL
    names = _kernels(small_cnn, layout)
    if layout == "NCHWc":
        assert card["layout_block"] == 8
        # the blocked computes really are used (not a silent fall-back to NCHW): the 1x1 and the
        # depthwise convolution; the stem (3 input channels) stays NCHW, the grouped one goes through NCHW
        assert any(n.startswith("fused_conv2d_NCHWc") for n in names), names
        assert any(n.startswith("fused_depthwise_conv2d_NCHWc") for n in names), names
        assert "conv2d_grouped" in names
    # ReLU6 between convolutions stays in the converted layout: no conversion back and forth around
    # it (the ONNX importer's opaque maximum/minimum kernels are Relax ops again)
    assert not any("isnan" in n for n in names), names


def test_nchwc_elementwise_ops_stay_blocked(small_cnn):
    """Between the blocked convolutions the activations are not converted back: only the model's edges
    (after the NCHW stem, before the dense layer) and the grouped convolution convert."""
    names = _kernels(small_cnn, "NCHWc")
    edges = [n for n in names if "layout_transform" in n or "to_nchw" in n or "to_blocked" in n]
    assert len(edges) <= 4, names


@pytest.mark.slow  # TVM tuning: the slow tier
@pytest.mark.parametrize("layout", ["NCHW", "NCHWc"])
def test_prepacked_build_matches_onnxruntime(small_cnn, tmp_path, layout):
    """Tuned with prepacking (a batch per kernel), built with the database: weights relaid at build
    time for the kernels whose schedules rewrite them, outputs as onnxruntime's."""
    from explorer.deploy.tune import tune_onnx
    from explorer.deploy.tvm_build import build, host_target, load_onnx

    kernels = len(_kernels(small_cnn, layout, prepack=True))
    r = tune_onnx(small_cnn, host_target(2), tmp_path / "db", layout=layout, prepack=True, trials=4 * kernels,
                  num_cores=2, per_iter=4, progress=False)
    assert r.new_trials >= kernels  # (kernels with small design spaces run out of candidates)
    card = build(load_onnx(small_cnn), host_target(2), tmp_path / "m.so", database=tmp_path / "db", layout=layout,
                 prepack=True)
    assert card["prepack"] is True and card["scheduled_kernels"] >= 1
    assert card["prepacked_kernels"] >= 1, card["workloads"]
    assert _max_diff_vs_onnxruntime(small_cnn, tmp_path / "m.so") < TOL
    # the same database does not serve a build without prepacking: other kernels
    plain = build(load_onnx(small_cnn), host_target(2), tmp_path / "p.so", database=tmp_path / "db", layout=layout)
    assert plain["prepacked_kernels"] == 0 and plain["scheduled_kernels"] == 0


def test_cli_compile_nchwc(small_cnn, tmp_path, capsys):
    """`explorer compile --layout NCHWc --no-prepack`: the CLI reaches the blocked build; the library it
    writes computes what onnxruntime computes."""
    from explorer.cli import main

    out = tmp_path / "m.so"
    assert main(["compile", str(small_cnn), "--layout", "NCHWc", "--no-prepack", "--schedules", "none",
                 "--out", str(out), "--store", str(tmp_path / "s.sqlite")]) == 0
    printed = capsys.readouterr().out
    assert "NCHWc" in printed, printed
    assert _max_diff_vs_onnxruntime(small_cnn, out) < TOL
