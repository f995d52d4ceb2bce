"""Export -> ONNX -> TVM, with the real onnx, onnxruntime and TVM."""

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from explorer.deploy.export import build_module, export_onnx, load_design
from explorer.space import create_space
from explorer.space.design import DesignPoint
from explorer.space.quant import QuantState
from explorer.backends import load_target

from tests.conftest import run_cli as cli


@pytest.fixture(scope="module")
def design_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("design")
    space = create_space("chain", (1, 12, 12), 10, stem_channels=8, stages=[[8, 2, 2], [16, 1, 1]])
    hw = load_target("vta").hardware_space()
    g = space.random_genotype(np.random.default_rng(0))
    idx = {k.name: 0 for k in hw.knobs}
    idx["LOG_WGT_WIDTH"] = hw.knob("LOG_WGT_WIDTH").values.index(2)  # 4-bit weights
    cfg = hw.config_from_indices(idx)
    dp = DesignPoint.make(space, g, "vta", cfg)
    (d / "design.json").write_text(json.dumps(dp.as_json()))
    torch.manual_seed(1)
    net = space.build_network(g, QuantState.fixed(8, 2 ** cfg["LOG_WGT_WIDTH"]))
    with torch.no_grad():  # non-trivial BN statistics
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    torch.save(net.state_dict(), d / "weights.pt")
    return d


def test_export_matches_pytorch(design_dir, tmp_path):
    design, weights = load_design(design_dir)
    net = build_module(design, weights)
    r = export_onnx(net, design.input_shape, tmp_path / "m.onnx")
    assert r.max_abs_diff <= 1e-4
    m = onnx.load(str(tmp_path / "m.onnx"))
    assert next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
    # weights really are on the design's grid: at most 2^b distinct values per output channel
    bits = 2 ** design.hardware_dict["LOG_WGT_WIDTH"]
    for mod in net.modules():
        if isinstance(mod, torch.nn.Conv2d):
            for ch in mod.weight:
                assert len(torch.unique(ch)) <= 2**bits


@pytest.mark.slow  # long (10-20 s on 2 cores): the slow tier, which CI runs
def test_export_compile_measure_cli(design_dir, tmp_path):
    onnx_path = tmp_path / "m.onnx"
    r = cli("export", str(design_dir), "--out", str(onnx_path))
    assert r.returncode == 0, r.stderr
    assert "max abs difference" in r.stdout
    store = tmp_path / "st.sqlite"
    r = cli("compile", str(onnx_path), "--store", str(store))
    assert r.returncode == 0, r.stderr
    lib = tmp_path / "m.cpu.so"
    card = json.loads((tmp_path / "m.cpu.so.json").read_text())
    assert card["inputs"]["input"]["shape"] == [1, 1, 12, 12] and card["workloads"]
    assert card["toolchain"]["tvm"].startswith("0.27") and card["target"]["num-cores"] >= 1
    r = cli("measure", str(lib), "--vs", "onnxruntime", "--repeat", "3", "--number", "2", "--store", str(store))
    assert r.returncode == 0, r.stderr
    assert "ratio tvm / onnxruntime" in r.stdout
    from explorer.measure.store import Store

    with Store(store) as st:
        kinds = [(x.kind, x.target, x.ok) for x in st.query()]
    assert ("build", "cpu", True) in kinds and ("measure", "cpu", True) in kinds and ("measure", "onnxruntime", True) in kinds


def test_tvm_output_matches_onnxruntime(design_dir, tmp_path):
    import onnxruntime as ort
    import tvm
    from tvm import relax

    from explorer.deploy.tvm_build import build, host_target, load_onnx

    design, weights = load_design(design_dir)
    export_onnx(build_module(design, weights), design.input_shape, tmp_path / "m.onnx")
    m = load_onnx(tmp_path / "m.onnx")
    build(m, host_target(), tmp_path / "m.so")
    x = np.random.default_rng(0).random((1, 1, 12, 12), dtype=np.float32)
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(tmp_path / "m.so")), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    want = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert np.abs(got - want).max() < 1e-4


def _save(model, path):
    onnx.save(model, str(path))
    return path


def test_truncated_onnx(design_dir, tmp_path):
    good = tmp_path / "m.onnx"
    design, weights = load_design(design_dir)
    export_onnx(build_module(design, weights), design.input_shape, good)
    bad = tmp_path / "trunc.onnx"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    r = cli("compile", str(bad), "--store", str(tmp_path / "s.sqlite"))
    assert r.returncode == 2 and "truncated or corrupt" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_op_tvm_cannot_import(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [])
    g = helper.make_graph([helper.make_node("Det", ["x"], ["y"])], "det", [x], [y])
    p = _save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "det.onnx")
    r = cli("compile", str(p), "--store", str(tmp_path / "s.sqlite"))
    assert r.returncode == 2 and "Det" in r.stderr and "Traceback" not in r.stderr, r.stderr
    from explorer.measure.store import Store

    with Store(tmp_path / "s.sqlite") as st:
        fails = st.query(ok=False)
    assert fails and "Det" in fails[0].error  # a failure is a record


@pytest.mark.slow  # two CLI builds (~10 s): the slow tier
def test_dynamic_shape_needs_shape_flag(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    p = _save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "dyn.onnx")
    r = cli("compile", str(p), "--store", str(tmp_path / "s.sqlite"))
    assert r.returncode == 2 and "dynamic shape" in r.stderr and "--shape x=1x4" in r.stderr, r.stderr
    r = cli("compile", str(p), "--shape", "x=2x4", "--store", str(tmp_path / "s.sqlite"))
    assert r.returncode == 0, r.stderr
    r = cli("compile", str(p), "--shape", "x=2x5", "--store", str(tmp_path / "s.sqlite"))
    assert r.returncode == 2 and "does not match" in r.stderr


@pytest.mark.slow  # a CUDA build: the slow tier
def test_gpu_build_without_a_gpu_and_measure_says_so(design_dir, tmp_path):
    design, weights = load_design(design_dir)
    export_onnx(build_module(design, weights), design.input_shape, tmp_path / "m.onnx")
    r = cli("compile", str(tmp_path / "m.onnx"), "--target", "cuda", "--store", str(tmp_path / "s.sqlite"))
    assert r.returncode == 0, r.stderr  # TVM's CUDA codegen needs no GPU
    card = json.loads((tmp_path / "m.cuda.so.json").read_text())
    assert card["target"]["kind"] == "cuda"
    import tvm

    if tvm.cuda().exist:
        pytest.skip("this machine has a GPU: tools/gpu_check.sh measures on it")
    r = cli("measure", str(tmp_path / "m.cuda.so"), "--target", "cuda", "--store", str(tmp_path / "s.sqlite"))
    assert r.returncode == 2 and "no cuda device" in r.stderr, r.stderr


@pytest.mark.skipif("not __import__('tvm').cuda().exist", reason="needs an NVIDIA GPU")
def test_gpu_measure(design_dir, tmp_path):
    design, weights = load_design(design_dir)
    export_onnx(build_module(design, weights), design.input_shape, tmp_path / "m.onnx")
    assert cli("compile", str(tmp_path / "m.onnx"), "--target", "cuda", "--store", str(tmp_path / "s")).returncode == 0
    r = cli("measure", str(tmp_path / "m.cuda.so"), "--target", "cuda", "--repeat", "5", "--store", str(tmp_path / "s"))
    assert r.returncode == 0 and "tvm          median" in r.stdout, r.stderr


@pytest.mark.slow
def test_schedule_database_is_applied(design_dir, tmp_path):
    """A (tiny) tuning run's database is applied by compile; the card counts kernels."""
    design, weights = load_design(design_dir)
    export_onnx(build_module(design, weights), design.input_shape, tmp_path / "m.onnx")
    t = cli("tune", str(tmp_path / "m.onnx"), "--trials", "6", "--per-iter", "3", "--num-cores", "1",
            "--db", str(tmp_path / "db"), "--no-progress")
    assert t.returncode == 0, t.stderr
    tuned = cli("compile", str(tmp_path / "m.onnx"), "--schedules", str(tmp_path / "db"), "--num-cores", "1",
                "--out", str(tmp_path / "t.so"), "--store", str(tmp_path / "s.sqlite"))
    assert tuned.returncode == 0, tuned.stderr
    card = json.loads((tmp_path / "t.so.json").read_text())
    assert card["schedule_database"] and card["scheduled_kernels"] >= 1
    plain = cli("compile", str(tmp_path / "m.onnx"), "--schedules", "none", "--out", str(tmp_path / "u.so"),
                "--store", str(tmp_path / "s.sqlite"))
    assert plain.returncode == 0 and json.loads((tmp_path / "u.so.json").read_text())["scheduled_kernels"] == 0
    bad = cli("compile", str(tmp_path / "m.onnx"), "--schedules", str(tmp_path / "nope"), "--store", str(tmp_path / "s.sqlite"))
    assert bad.returncode == 2 and "not a schedule database" in bad.stderr


def test_export_of_a_network_that_ignores_its_input(tmp_path):
    """Every nb201 edge 'none': the output is a constant; export says so instead of failing in onnxruntime."""
    from explorer.errors import ConfigError

    space = create_space("nb201", (1, 8, 8), 4)
    g = {k: "none" for k in space.choices()}
    hw = load_target("vta").hardware_space()
    dp = DesignPoint.make(space, g, "vta", hw.config_from_indices({k.name: 0 for k in hw.knobs}))
    with pytest.raises(ConfigError, match="does not depend on its input"):
        export_onnx(build_module(dp, None), dp.input_shape, tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())  # nothing half-written left behind
