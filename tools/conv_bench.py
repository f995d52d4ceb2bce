"""One convolution (+ ReLU), tuned with MetaSchedule and timed beside onnxruntime in one run.

Builds the layer as a Relax module in NHWC with weight prepacking (``--lowering conv``: Relax's
conv2d, as ``deploy`` builds it) or as an explicit im2col kernel followed by a GEMM (``--lowering
im2col``), tunes it with :func:`explorer.deploy.tune.tune_module` into a fresh database, builds it,
checks it against PyTorch, and times it with ``--threads`` TVM threads; then onnxruntime on the same
layer (NCHW ONNX, ``--threads`` intra-op threads). Prints one JSON line with both, GFLOP/s and the
CPU model.

Usage: python tools/conv_bench.py [--cin 64] [--cout 64] [--size 7] [--kernel 5] [--trials 128]
       [--threads N] [--lowering conv|im2col]
The demo's largest kernel (BENCHMARKS.md, sixth session) is the default shape.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cin", type=int, default=64)
    ap.add_argument("--cout", type=int, default=64)
    ap.add_argument("--size", type=int, default=7, help="height = width of the input")
    ap.add_argument("--kernel", type=int, default=5, help="square kernel, padding kernel // 2, stride 1")
    ap.add_argument("--trials", type=int, default=128)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--lowering", choices=["conv", "im2col"], default="conv")
    a = ap.parse_args()
    # read by TVM's thread pool when it starts, and inherited by the tuner's timing child
    os.environ["TVM_NUM_THREADS"] = str(a.threads)

    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch
    import tvm
    from onnx import TensorProto, helper, numpy_helper
    from tvm import relax, te, topi

    from explorer.deploy.tune import tune_module
    from explorer.deploy.tvm_build import apply_schedules, host_target, with_prepack
    from explorer.measure.local import cpu_model

    ci, co, hw, k = a.cin, a.cout, a.size, a.kernel
    pad = k // 2
    rng = np.random.default_rng(0)
    w_ohwi = (rng.standard_normal((co, k, k, ci)) * 0.05).astype("float32")
    x_nhwc = rng.random((1, hw, hw, ci), dtype=np.float32)

    def im2col(data):
        n, h, w, c = (int(d) for d in data.shape)
        padded = topi.nn.pad(data, (0, pad, pad, 0), (0, pad, pad, 0), name="data_pad")
        return te.compute((n, h, w, k * k * c), lambda i, y, x, r: padded[i, y + r // (k * c), x + (r // c) % k, r % c],
                          name="im2col")

    def gemm(col, w2):
        n, h, w, kk = (int(d) for d in col.shape)
        r = te.reduce_axis((0, kk), name="r")
        return te.compute((n, h, w, int(w2.shape[0])), lambda i, y, x, o: te.sum(col[i, y, x, r] * w2[o, r], axis=r),
                          name="conv2d_gemm")

    bb = relax.BlockBuilder()
    xv = relax.Var("x", relax.TensorType((1, hw, hw, ci), "float32"))
    with bb.function("main", [xv]):
        with bb.dataflow():
            if a.lowering == "conv":
                y = bb.emit(relax.op.nn.conv2d(xv, relax.const(w_ohwi), padding=[pad] * 4, data_layout="NHWC",
                                               kernel_layout="OHWI"))
            else:
                col = bb.emit_te(im2col, xv, primfunc_name_hint="im2col")
                y = bb.emit_te(gemm, col, relax.const(w_ohwi.reshape(co, -1)), primfunc_name_hint="conv2d_gemm")
            out = bb.emit_output(bb.emit(relax.op.nn.relu(y)))
        bb.emit_func_output(out)
    mod = with_prepack(bb.get(), True)
    target = host_target(a.threads)
    with tempfile.TemporaryDirectory() as db:
        t0 = time.monotonic()
        res = tune_module(mod, target, db, trials=a.trials, num_cores=a.threads, progress=False, label="conv_bench")
        tune_s = time.monotonic() - t0
        lowered, _ = apply_schedules(mod, target, db)
    ex = tvm.compile(lowered, target=target)
    dev = tvm.cpu()
    vm = relax.VirtualMachine(ex, dev)
    xt = tvm.runtime.tensor(x_nhwc, dev)
    got = vm["main"](xt).numpy()
    want = torch.relu(torch.nn.functional.conv2d(torch.from_numpy(x_nhwc).permute(0, 3, 1, 2),
                                                 torch.from_numpy(w_ohwi).permute(0, 3, 1, 2), padding=pad))
    err = float(np.abs(got - want.permute(0, 2, 3, 1).numpy()).max())
    tvm_ms = float(np.median(vm.time_evaluator("main", dev, number=200, repeat=15)(xt).results)) * 1e3

    w_oihw = numpy_helper.from_array(np.ascontiguousarray(w_ohwi.transpose(0, 3, 1, 2)), "w")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"], pads=[pad] * 4), helper.make_node("Relu", ["c"], ["y"])],
                          "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, ci, hw, hw])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w_oihw])
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = a.threads, 1
    sess = ort.InferenceSession(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    feed = {"x": np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))}
    for _ in range(200):
        sess.run(None, feed)
    samples = []
    for _ in range(15):
        t = time.perf_counter()
        for _ in range(200):
            sess.run(None, feed)
        samples.append((time.perf_counter() - t) / 200)
    ort_ms = float(np.median(samples)) * 1e3
    gflop = 2 * co * ci * k * k * hw * hw / 1e9
    rep = res.as_json()
    print(json.dumps({"cpu": cpu_model(), "threads": a.threads, "tvm_num_threads": tvm.runtime.num_threads(),
                      "lowering": a.lowering, "shape": f"{ci}->{co} {k}x{k} on {hw}x{hw}", "trials": rep["trials_total"],
                      "tune_s": round(tune_s, 1), "stopped_by": rep["stopped_by"], "tvm_ms": round(tvm_ms, 4),
                      "tvm_gflops": round(gflop / tvm_ms * 1e3, 1), "onnxruntime_ms": round(ort_ms, 4),
                      "onnxruntime_gflops": round(gflop / ort_ms * 1e3, 1), "tvm_over_onnxruntime": round(tvm_ms / ort_ms, 3),
                      "max_abs_err_vs_torch": err}))
    sys.exit(0 if err < 1e-3 else 1)


if __name__ == "__main__":
    main()
