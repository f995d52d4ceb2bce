"""The ``vta`` backend: a VTA-style GEMM accelerator whose micro-architecture is searched.

Priced by the differentiable analytical model (:mod:`explorer.cost.vta`, optionally calibrated by
``explorer calibrate``); its source of truth in the loop is the cycle simulator
(:class:`explorer.accel.calibrate.SimRefiner`); after a search the retrained design is exported,
lowered to the GEMM core and simulated (:mod:`explorer.accel.compile`). Configurations are written
and read with ``vta_config.json`` field names.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..units import RESOURCES
from .base import BACKENDS, TargetBackend

__all__ = ["AcceleratorBackend"]


@BACKENDS.register("vta")
class AcceleratorBackend(TargetBackend):
    resources = RESOURCES  # prices every resource
    finish_key = "simulated"
    reads_calibration = True  # `explorer calibrate` files (--calibration); other backends refuse one

    @property
    def required_knobs(self):
        from ..cost.vta import GRID, RELAXED

        return GRID + RELAXED

    def cost_model(self, space, hw, calibration=None, store_path=None, progress=False):
        from ..cost.vta import VTACostModel

        cm = VTACostModel(space.cost_slots(), space.choices(), hw)
        if calibration:
            from ..accel.calibrate import load_calibration

            cm.correction = tuple(load_calibration(calibration)["weights"])
        return cm

    def measurer(self, cost_model, calibration=None, timing="between-steps"):
        from ..accel.calibrate import SimRefiner, load_calibration

        points = load_calibration(calibration)["points"] if calibration else []
        return SimRefiner(cost_model, points)

    def hw_config_json(self, config) -> dict:
        from ..accel.params import vta_json

        return vta_json(config)

    def load_hw_config(self, path):
        from ..accel.params import from_vta_json
        from ..errors import ConfigError

        hw = self.target.hardware_space()
        if not path:
            return hw.default_config()
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: not a readable hardware config JSON ({e})") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: hardware config must be a JSON object")
        return from_vta_json(d, hw)

    def finish(self, space, result, cost_model, work: Path) -> dict:
        """Export the retrained design, compile it for the core and simulate it; compare the
        simulated cycles of its GEMM layers with what the (calibrated) cost model predicts."""
        from ..accel.compile import compile_stats
        from ..cost.vta import DEFAULT_CYCLE_WEIGHTS
        from ..deploy.export import build_module, export_onnx

        export_onnx(build_module(result.design, work / "weights.pt"), result.design.input_shape, work / "model.onnx")
        stats = compile_stats(work / "model.onnx", self.hw_config_json(result.hw_config), work / "vta_stats.json")
        cm = cost_model
        weights = cm.correction or DEFAULT_CYCLE_WEIGHTS
        predicted = sum(sum(a * b for a, b in zip(weights, cm.layer_features(x, result.hw_config)))
                        for x in cm.space_workloads(result.genotype) if x.kind == "conv")
        f_hz = result.hw_config["HW_FREQ_MHZ"] * 1e6
        sim = stats["total"]["cycles"]
        return {"gemm_layers": stats["offloaded_layers"], "simulated_cycles": sim, "predicted_cycles": predicted,
                "simulated_ms": sim / f_hz * 1e3, "predicted_ms": predicted / f_hz * 1e3,
                "rel_error": (predicted - sim) / sim, "stats": "vta_stats.json"}

    def compile(self, model, out=None, shapes=None, hw=None, calib=0, data=None, check=200, **_):
        """Plan the offload, lower to the GEMM core and simulate; with ``calib`` > 0 also run int8 on
        the simulator and check it against onnxruntime's QDQ model."""
        from ..accel.compile import compile_stats

        cfg = self.load_hw_config(hw)
        out = out or str(Path(model).with_suffix(".vta.json"))
        s = compile_stats(model, self.hw_config_json(cfg), None, shapes)
        if calib > 0:
            s["numerics"] = self._numerics(model, shapes, self.hw_config_json(cfg), Path(out), calib, data, check)
        Path(out).write_text(json.dumps(s, indent=2) + "\n")
        t = s["total"]
        lines = [f"offloaded {s['offloaded_layers']} layers to the GEMM core; on the host: "
                 + (", ".join(f"{k} x{v}" for k, v in sorted(s["host_ops"].items())) or "nothing")]
        lines += [f"note: {n}" for n in s["notes"]]
        lines.append(f"simulated {t['cycles']} cycles = {t['seconds'] * 1e3:.3f} ms at {cfg['HW_FREQ_MHZ']} MHz; "
                     f"GEMM ops {t['gemm_ops']}, ALU ops {t['alu_ops']}; loads inp {t['inp_load_bytes']} B, "
                     f"wgt {t['wgt_load_bytes']} B, acc {t['acc_load_bytes']} B, uop {t['uop_load_bytes']} B; "
                     f"stores {t['out_store_bytes']} B")
        if "numerics" in s:
            n = s["numerics"]
            if "worst_layer_input_diff_lsb" in n:
                line = (f"int8 on the simulator vs onnxruntime QDQ ({n['inputs']} inputs): layer inputs within "
                        f"{n['worst_layer_input_diff_lsb']:.0f} LSB, outputs within {n['worst_output_abs_diff']:.3g}")
            else:
                line = f"{n['bits']['activations']}-bit activations on the simulator ({n['inputs']} inputs; {n['qdq_reference']})"
            if "accuracy_float" in n:
                line += f"; top-1 {n['accuracy_int8_simulated'] * 100:.2f}% int8 vs {n['accuracy_float'] * 100:.2f}% float"
            lines.append(line)
        lines.append(f"wrote {out}")
        return s, lines

    @staticmethod
    def _numerics(model, shapes, hw: dict, out: Path, calib: int, data, check: int) -> dict:
        import numpy as np

        from ..accel.execute import QuantizedModel, check_against_qdq
        from ..errors import ConfigError

        q = QuantizedModel(model, hw, shapes)
        shape, _ = next(iter(q.model.inputs.values()))
        y = None
        if data:
            from ..data import load_dataset

            d = load_dataset(data)
            if tuple(d.input_shape) != tuple(shape[1:]):
                raise ConfigError(f"--data {data}: inputs {d.input_shape} do not match the model's {tuple(shape[1:])}")
            calib_x = d.x_train[:calib, None]
            x, y = d.x_test[:check, None], d.y_test[:check]
        else:
            rng = np.random.default_rng(0)
            calib_x = rng.random((calib, *shape), dtype=np.float32)
            x = rng.random((check, *shape), dtype=np.float32)
        if shape[0] != 1:
            raise ConfigError(f"--calib needs a model with batch 1 inputs; this one has {shape}")
        q.calibrate(calib_x)
        res = check_against_qdq(q, x, y, model, out.with_suffix(".qdq.onnx"))
        res.update({"calibration_inputs": int(calib), "data": data or "random uniform",
                    "bits": {"activations": q.p.inp_bits, "weights": q.p.wgt_bits}})
        return res

    def calibrate(self, space, samples, seed=0, progress=None) -> dict:
        from ..accel.calibrate import calibrate

        cm = self.cost_model(space, self.target.hardware_space())
        wls = [w for s in space.cost_slots() for v in s.table.values() for w in v]
        return calibrate(cm, wls, samples, seed=seed, progress=progress)
