"""Safe by default: files a user may receive are never unpickled, and loading an ONNX model never runs
code from it nor reads anything outside its folder.

1. The sources (``explorer/`` and ``tools/``) load weights and checkpoints only with
   ``torch.load(..., weights_only=True)``; nothing calls ``pickle``/``cloudpickle``/``marshal``
   loaders, ``np.load(allow_pickle=True)``, ``yaml.load`` without ``SafeLoader``, ``eval`` or
   ``exec``, and archives are extracted with ``filter="data"`` only.
2. A checkpoint or weights file whose pickle would run code (it creates a marker file) is refused
   with one clear error by the real entry points, ``explorer export`` and ``explorer search
   --resume``, and the marker is never created.
3. An ONNX tensor whose external data names a file outside the model's folder (absolute path,
   ``..``, a link pointing out, or a name that only exists in the working directory) is refused by
   ``load_onnx`` before anything is opened; data beside the model is read into the model, so
   neither the ONNX checker nor TVM's import (which would resolve the name against the working
   directory) reads a file afterwards.
4. A node of a custom domain (``com.evil::Exec``, or ``com.evil::Relu``, which TVM's importer, going
   by op type alone, would take for a Relu) is refused with one clear message.
"""

from __future__ import annotations

import ast
import json
import os
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from explorer.errors import ConfigError, ModelError

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(ROOT / "explorer").rglob("*.py"), *(ROOT / "tools").rglob("*.py")])


# -- 1. the sources --------------------------------------------------------------------------------------


def _name(node) -> str:
    """``a.b.c`` for a Name/Attribute chain, else ''."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _kw(call: ast.Call, key: str):
    for k in call.keywords:
        if k.arg == key:
            return k.value
    return None


def _is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


UNPICKLERS = {"pickle.load", "pickle.loads", "pickle.Unpickler", "cloudpickle.load", "cloudpickle.loads",
              "marshal.load", "marshal.loads", "shelve.open", "joblib.load", "dill.load", "dill.loads",
              "yaml.unsafe_load", "yaml.full_load", "torch.jit.load", "numpy.lib.format.read_array"}


def _violations(path: Path) -> list[str]:
    src = path.read_text()
    out = []
    # text too: code that explorer writes into a user's folder (deploy's run_example.py) lives in strings
    for pat in (r"allow_pickle\s*=\s*True", r"weights_only\s*=\s*False", r"\bpickle\.loads?\(", r"yaml\.load\((?![^)]*SafeLoader)"):
        for m in re.finditer(pat, src):
            out.append(f"{path.relative_to(ROOT)}:{src.count(chr(10), 0, m.start()) + 1}: {m.group(0)}")
    for node in ast.walk(ast.parse(src, str(path))):
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        where = f"{path.relative_to(ROOT)}:{node.lineno}: {name or ast.unparse(node.func)}"
        if name == "torch.load" and not _is_true(_kw(node, "weights_only")):
            out.append(where + " without weights_only=True")
        elif name in ("np.load", "numpy.load") and _kw(node, "allow_pickle") is not None and not (
                isinstance(_kw(node, "allow_pickle"), ast.Constant) and _kw(node, "allow_pickle").value is False):
            out.append(where + " with allow_pickle other than False")
        elif name in UNPICKLERS or name.endswith(".Unpickler"):
            out.append(where)
        elif name == "yaml.load" and "SafeLoader" not in ast.unparse(_kw(node, "Loader") or ast.Constant(None)):
            out.append(where + " without SafeLoader")
        elif name in ("eval", "exec", "builtins.eval", "builtins.exec"):
            out.append(where)
        elif isinstance(node.func, ast.Attribute) and node.func.attr in ("extractall", "extract"):
            f = _kw(node, "filter")
            if not (isinstance(f, ast.Constant) and f.value == "data"):
                out.append(where + ' without filter="data"')
    return out


def test_sources_are_found():
    assert len(SOURCES) > 40 and any(p.name == "api.py" for p in SOURCES) and any(p.parent.name == "tools" for p in SOURCES)


def test_no_unsafe_loads_in_the_sources():
    """Every torch.load passes weights_only=True; no unpickling, eval or exec; archives extracted safely."""
    bad = [v for p in SOURCES for v in _violations(p)]
    assert not bad, "unsafe loads:\n" + "\n".join(bad)


def test_the_checker_catches_what_it_should(tmp_path):
    """The audit itself: each forbidden form in a scratch file is reported."""
    f = tmp_path / "bad.py"
    f.write_text("import torch, pickle, numpy as np, yaml, tarfile\n"
                 "torch.load('a')\ntorch.load('a', weights_only=False)\npickle.loads(b'')\n"
                 "np.load('a', allow_pickle=True)\nyaml.load(s)\neval('1')\nexec('1')\n"
                 "tarfile.open('a').extractall('b')\ntorch.load('ok', weights_only=True)\n"
                 "np.load('ok')\nyaml.load(s, Loader=yaml.SafeLoader)\ntarfile.open('a').extractall('b', filter='data')\n")
    global ROOT
    old, ROOT = ROOT, tmp_path
    try:
        found = _violations(f)
    finally:
        ROOT = old
    lines = sorted({int(v.split(":")[1]) for v in found})
    assert lines == [2, 3, 4, 5, 6, 7, 8, 9], found


# -- 2. malicious checkpoints and weights -------------------------------------------------------------------


class _Marker:
    """An object whose unpickling creates ``path`` (what a malicious checkpoint would do, harmlessly)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def _malicious(path: Path, marker: Path, legacy: bool = False) -> Path:
    """A file torch.load would unpickle into code execution: torch's zip format, or a legacy plain pickle."""
    payload = {"state": _Marker(marker), "weight": torch.zeros(2)}
    if legacy:
        import pickle

        path.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        torch.save(payload, path)
    return path


def test_the_payload_would_run(tmp_path):
    """Control: unpickled without weights_only, the payload does create the marker."""
    marker = tmp_path / "ran"
    torch.load(_malicious(tmp_path / "w.pt", marker), weights_only=False)
    assert marker.exists()


def _design(folder: Path) -> Path:
    from explorer.space import create_space
    from explorer.space.design import DesignPoint
    from explorer.space.hardware import HWConfig

    space = create_space("chain", (1, 8, 8), 10, stem_channels=8, stages=[[8, 2, 2], [16, 1, 1]])
    g = space.random_genotype(np.random.default_rng(0))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "design.json").write_text(json.dumps(DesignPoint.make(space, g, "cpu", HWConfig((("THREADS", 1),))).as_json()))
    return folder


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_export_refuses_malicious_weights(tmp_path, legacy, capsys):
    from explorer.cli import main

    run = _design(tmp_path / "run")
    marker = tmp_path / "ran"
    _malicious(run / "weights.pt", marker, legacy)
    assert main(["export", str(run), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("explorer: error: ") and "weights.pt" in err, err
    assert not marker.exists() and not (tmp_path / "m.onnx").exists()


def test_export_malicious_weights_message(tmp_path, capsys):
    from explorer.cli import main

    run = _design(tmp_path / "run")
    _malicious(run / "weights.pt", tmp_path / "ran")
    assert main(["export", str(run), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "weights_only=False" not in err, err


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_resume_refuses_malicious_checkpoint(tmp_path, legacy):
    from explorer.api import CHECKPOINT, _work_dir, resume_search
    from tests.conftest import tiny_config

    out = tmp_path / "run"
    work = _work_dir(out)
    work.mkdir(parents=True)
    (work / "config.json").write_text(json.dumps({**tiny_config().as_dict(), "method": "cosearch"}))
    marker = tmp_path / "ran"
    _malicious(work / CHECKPOINT, marker, legacy)
    before = sorted((p.name, p.read_bytes()) for p in work.iterdir())
    with pytest.raises(ConfigError) as e:
        resume_search(out, progress=False)
    assert "checkpoint" in str(e.value) and "\n" not in str(e.value)
    assert not marker.exists()
    assert sorted((p.name, p.read_bytes()) for p in work.iterdir()) == before  # nothing in the folder changed


# -- 3. ONNX external data --------------------------------------------------------------------------------


def _external_model(folder: Path, location: str, n: int = 8) -> Path:
    """A model adding a weight of ``n`` floats whose data lives in the external file ``location``."""
    import onnx
    from onnx import TensorProto, helper

    w = TensorProto()
    w.name, w.data_type = "w", TensorProto.FLOAT
    w.dims.extend([n])
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", str(4 * n))):
        e = w.external_data.add()
        e.key, e.value = k, v
    g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / "m.onnx"
    p.write_bytes(m.SerializeToString())
    return p


def _load_watched(path: Path, fifo: Path):
    """load_onnx in a thread while ``fifo`` (the outside file) is a named pipe: opening it for reading
    blocks until a writer comes, so a load that finishes has not opened it. Returns the error."""
    from explorer.deploy.tvm_build import load_onnx

    result = {}

    def run():
        try:
            result["model"] = load_onnx(path)
        except Exception as e:  # noqa: BLE001 - the test checks which
            result["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(20)
    if t.is_alive():  # something opened the pipe: release it, then fail
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        t.join(5)
        pytest.fail(f"load_onnx opened {fifo}, outside the model's folder")
    assert "model" not in result, "a model whose data lies outside its folder was accepted"
    return result["error"]


@pytest.mark.parametrize("how", ["absolute", "dotdot", "link", "dotdot-inside"])
def test_external_data_outside_the_folder_is_refused_unread(tmp_path, how):
    outside = tmp_path / "secret.bin"
    os.mkfifo(outside)
    folder = tmp_path / "models" / "a"
    folder.mkdir(parents=True)
    if how == "absolute":
        loc = str(outside)
    elif how == "dotdot":
        loc = "../../secret.bin"
    elif how == "dotdot-inside":  # goes down, then out: a/sub/../../../secret.bin
        (folder / "sub").mkdir()
        loc = "sub/../../../secret.bin"
    else:
        (folder / "w.bin").symlink_to(outside)
        loc = "w.bin"
    e = _load_watched(_external_model(folder, loc), outside)
    assert isinstance(e, ModelError), repr(e)
    assert "outside the model's folder" in str(e) and "\n" not in str(e)


def test_absolute_system_path_is_refused(tmp_path):
    from explorer.deploy.tvm_build import load_onnx

    with pytest.raises(ModelError, match="outside the model's folder"):
        load_onnx(_external_model(tmp_path, "/etc/passwd"))


def test_external_data_is_read_from_the_models_folder_not_the_working_directory(tmp_path, monkeypatch):
    """Before: the checker and TVM resolved ``w.bin`` against the working directory, so a model read
    a same-named file there (and missed its own). Now the folder's file is read, into the model."""
    from onnx import TensorProto
    from onnx.numpy_helper import to_array

    from explorer.deploy.tvm_build import load_onnx

    mine, theirs = np.arange(8, dtype=np.float32), np.full(8, 666, np.float32)
    path = _external_model(tmp_path / "model", "w.bin")
    (tmp_path / "model" / "w.bin").write_bytes(mine.tobytes())
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    (cwd / "w.bin").write_bytes(theirs.tobytes())
    monkeypatch.chdir(cwd)
    m = load_onnx(path)
    (w,) = m.proto.graph.initializer
    assert w.data_location == TensorProto.DEFAULT and not w.external_data  # nothing left for TVM to open
    np.testing.assert_array_equal(to_array(w), mine)


def test_external_data_only_in_the_working_directory_is_refused(tmp_path, monkeypatch):
    """The hazard itself: onnx's to_array (what TVM's importer calls) reads a relative location from the
    working directory. load_onnx reads the model's folder, where the file is not."""
    from explorer.deploy.tvm_build import load_onnx

    path = _external_model(tmp_path / "model", "secret.bin")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "secret.bin").write_bytes(np.full(8, 7, np.float32).tobytes())
    with pytest.raises(ModelError, match="secret.bin"):
        load_onnx(path)


def test_tvm_import_reads_only_the_inlined_data(tmp_path, monkeypatch):
    """TVM's ONNX import of a model with external data beside it: the weights are the folder's, from
    any working directory, and the import opens no file (the data is already in the model)."""
    pytest.importorskip("tvm")
    from explorer.deploy.tvm_build import import_relax, load_onnx

    path = _external_model(tmp_path / "model", "w.bin")
    (tmp_path / "model" / "w.bin").write_bytes(np.arange(8, dtype=np.float32).tobytes())
    m = load_onnx(path)
    (tmp_path / "model" / "w.bin").unlink()  # were the import to read it, it would fail now
    monkeypatch.chdir(tmp_path)
    mod = import_relax(m)
    add = mod["main"].body.blocks[0].bindings[0].value  # R.add(x, <the weight>)
    np.testing.assert_array_equal(add.args[1].value.numpy(), np.arange(8, dtype=np.float32))


# -- 4. custom domains -------------------------------------------------------------------------------------


def _domain_model(path: Path, op: str, domain: str, where: str = "graph") -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    evil = helper.make_node(op, ["x"], ["y"], domain=domain, cmd="touch /tmp/pwned")
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)]
    functions = []
    if where == "graph":
        g = helper.make_graph([evil], "g", [x], [y])
    elif where == "subgraph":  # inside an If's branch
        inner = helper.make_node(op, ["x"], ["b"], domain=domain)
        branch = helper.make_graph([inner], "then", [], [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 4])])
        cond = helper.make_tensor("c", TensorProto.BOOL, [], [True])
        g = helper.make_graph([helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)], "g", [x], [y],
                              [cond])
    else:  # a model-local function whose body uses the op
        body = helper.make_node(op, ["a"], ["b"], domain=domain)
        functions = [helper.make_function("local", "Wrap", ["a"], ["b"], [body], opsets)]
        g = helper.make_graph([helper.make_node("Wrap", ["x"], ["y"], domain="local")], "g", [x], [y])
        opsets.append(helper.make_opsetid("local", 1))
    m = helper.make_model(g, opset_imports=opsets, functions=functions)
    m.ir_version = 8
    path.write_bytes(m.SerializeToString())
    return path


@pytest.mark.parametrize("op,where", [("Exec", "graph"), ("Relu", "graph"), ("Exec", "subgraph"), ("Exec", "function")])
def test_custom_domain_is_refused(tmp_path, op, where):
    from explorer.deploy.tvm_build import load_onnx

    with pytest.raises(ModelError) as e:
        load_onnx(_domain_model(tmp_path / "m.onnx", op, "com.evil", where))
    msg = str(e.value)
    assert "\n" not in msg and ("com.evil" in msg or "local" in msg), msg
    assert not Path("/tmp/pwned").exists()


def test_custom_domain_through_the_cli(tmp_path, capsys):
    from explorer.cli import main

    model = _domain_model(tmp_path / "m.onnx", "Exec", "com.evil")
    assert main(["compile", str(model), "--out", str(tmp_path / "m.so"), "--store", str(tmp_path / "s.sqlite")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "com.evil" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # nothing built, nothing recorded
