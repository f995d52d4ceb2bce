"""The VTA-style accelerator: parameters, per-layer lowering to an instruction stream, simulator."""
