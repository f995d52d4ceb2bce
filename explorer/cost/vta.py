"""Differentiable analytical cost model of a VTA-style accelerator.

Per workload (layer) and hardware configuration it computes GEMM and ALU cycles, DRAM load/store
traffic given the buffer sizes and reuse, overlap of load/compute/store, then latency (cycles and
seconds), energy (J) and area (mm2). The traffic of a GEMM layer is that of the tiling the lowering
searches (:mod:`explorer.accel.sim`), in closed form: the least-traffic member of each of its families
(weights resident, inputs resident, both streamed in input-channel chunks) that fits the buffers,
the cheapest of them (:meth:`VTACostModel._gemm_tiling`).

How the hardware is relaxed: the core shape (LOG_BATCH x LOG_BLOCK_IN x LOG_BLOCK_OUT) is small, so
every shape is evaluated exactly (true ceilings, no padding approximations) and weighted by its
joint probability. The other knobs (buffer sizes, bit widths, clock, bandwidth) have 1,944
combinations here, too many to evaluate at every step: the expectation over them is taken exactly
over the ``knob_topk`` (16) most probable combinations (true ceilings, exact figures), and the rest of
the probability mass is priced at the knobs' expected values, c(E[knob]), with ceilings relaxed to
``1 + softplus(x - 1)``. As the knob distribution settles, the exact part takes over; with one-hot
probabilities the figures are exact. ``knob_topk = 0`` prices everything at the expected values
(the earlier relaxation, which under-estimates the expectation: the ceilings and maxima are convex).
``tools/relaxation_gap.py`` measures both against the full expectation over a search (BENCHMARKS.md).

Coefficients and their sources are the module constants below.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import torch
import torch.nn.functional as F

from ..slots import ComboTable, Slot, joint_probs, slot_workloads
from ..space.hardware import HWConfig, HardwareSpace
from .base import COST_MODELS, CostModel

__all__ = ["VTACostModel"]

# --- coefficients ------------------------------------------------------------------------------
# Energies and areas of arithmetic at 45 nm, 0.9 V: M. Horowitz, "Computing's energy problem (and
# what we can do about it)", ISSCC 2014, Fig. 1.1.9 (energy) and the accompanying area table.
E_ADD32_J = 0.1e-12  # 32-bit integer add
E_MUL8_J = 0.2e-12  # 8-bit integer multiply; scaled by (b_inp * b_wgt) / 64 for narrower operands
A_ADD32_UM2 = 137.0  # 32-bit integer adder
A_MUL8_UM2 = 282.0  # 8-bit integer multiplier; same bit-product scaling (array multiplier area ~ n*m)
# SRAM read energy (Horowitz 2014): 10 pJ per 64-bit read from 8 KB, 20 pJ from 32 KB, 100 pJ from
# 1 MB, i.e. about sqrt(size) scaling: 1.25 pJ/byte at 8 KB times sqrt(size / 8 KB).
E_SRAM_BYTE_8KB_J = 10e-12 / 8
# DRAM access (Horowitz 2014): 1.3-2.6 nJ per 64-bit access; we take the middle, 2 nJ / 8 bytes.
E_DRAM_BYTE_J = 2.0e-9 / 8
# SRAM area: 6T bit cell of 0.346 um2 at 45 nm (Mistry et al., "A 45nm logic technology with high-k +
# metal gate transistors...", IEDM 2007), over an assumed 50% array efficiency (decoders, sense amps).
A_SRAM_BIT_UM2 = 0.346 / 0.5
# Assumptions (no single public source; the calibration of the accelerator issue refits them):
A_CTRL_MM2 = 0.05  # fetch, decode, command queues, dependency-token FIFOs
A_ALU_LANE_UM2 = 2 * A_ADD32_UM2  # one 32-bit add/min/max unit plus a shifter per ALU lane
P_LEAK_W_PER_MM2 = 0.010  # leakage density of 45 nm low-power logic/SRAM
P_DRAM_IF_W_PER_GBPS = 0.050  # DRAM controller + PHY power per GB/s of provisioned bandwidth
V_NOM = 0.9  # Horowitz's figures are at 0.9 V


def volts(f_mhz):
    """Assumed DVFS curve: 0.8 V at 100 MHz to 1.0 V at 300 MHz (dynamic energy ~ V^2)."""
    return 0.7 + 0.1 * (f_mhz / 100.0)


def logic_area_scale(f_mhz):
    """Assumed cost of timing closure: +10% logic area per 100 MHz above 100 MHz."""
    return 1.0 + 0.1 * (f_mhz / 100.0 - 1.0)


# VTA micro-architecture (VTA Hardware Guide, "Compute module"): the GEMM core retires one
# BATCH x BLOCK_IN x BLOCK_OUT tensor op per cycle (II = 1). The tensor ALU does read-modify-write on
# the register file; we assume II = 2 per vector op.
GEMM_II = 1
ALU_II = 2
ACC_BYTES = 4  # LOG_ACC_WIDTH = 5: 32-bit accumulators
UOP_BYTES = 4  # VTA micro-ops are 32 bits wide
# as in the simulator (explorer/accel/sim.py): DRAM latency per LOAD/STORE, pipeline fills per GEMM
# and ALU instruction
DRAM_LATENCY_CYCLES = 64
GEMM_DEPTH = 4
ALU_DEPTH = 4
LAYER_SYNC_CYCLES = 200  # assumption: per-layer instruction fetch + dependency drain; refit later

# Cycles = sum_k w_k * feature_k over the features of :meth:`VTACostModel.cycle_features`; these
# weights are the analytical prior, ``explorer calibrate`` refits them against the simulator.
CYCLE_FEATURES = ("peak", "overlap_rest", "sync", "gemm", "alu", "load", "store")
DEFAULT_CYCLE_WEIGHTS = (1.0, 1.0, float(LAYER_SYNC_CYCLES), 0.0, 0.0, 0.0, 0.0)

GRID = ("LOG_BATCH", "LOG_BLOCK_IN", "LOG_BLOCK_OUT")
RELAXED = (
    "LOG_INP_BUFF_SIZE",
    "LOG_WGT_BUFF_SIZE",
    "LOG_ACC_BUFF_SIZE",
    "LOG_UOP_BUFF_SIZE",
    "LOG_INP_WIDTH",
    "LOG_WGT_WIDTH",
    "HW_FREQ_MHZ",
    "DRAM_BW_GBPS",
)
_POW2 = {k for k in RELAXED if k.startswith("LOG_")}
KNOB_TOPK = 16  # combinations of the RELAXED knobs over which predict() takes the expectation exactly


def _softceil(x, exact: bool):
    """Number of blocks: ceil(x) clamped to >= 1, or its smooth relaxation 1 + softplus(x - 1)."""
    if exact:
        return torch.clamp(torch.ceil(x - 1e-9), min=1.0)
    return 1.0 + F.softplus(x - 1.0, beta=8.0)


@COST_MODELS.register("vta")
class VTACostModel(CostModel):
    """Analytical model over the slots of a network space and the knobs of a hardware space.

    Args:
        slots: the network space's cost slots.
        net_choices: the network space's choices (names and option lists, in order).
        hw: the hardware space (its knobs must include GRID and RELAXED).
    """

    def __init__(self, slots: list[Slot], net_choices: dict[str, list[str]], hw: HardwareSpace):
        self.hw = hw
        names = [k.name for k in hw.knobs]
        missing = [k for k in GRID + RELAXED if k not in names]
        if missing:
            from ..errors import ConfigError

            raise ConfigError(f"the VTA cost model needs knobs {missing} in the target")
        self.combos = ComboTable(slots, net_choices)
        self.net_choices = self.combos.choices
        self.slot_names = [s.name for s in slots]
        wl_combo, fields = [], []
        for cid, wls in enumerate(self.combos.row_workloads):
            for w in wls:
                wl_combo.append(cid)
                fields.append(w)
        self.slots = slots
        self.wl_combo = torch.tensor(wl_combo, dtype=torch.long)
        self.n_combos = len(self.combos)
        self.correction: tuple[float, ...] | None = None  # calibrated cycle weights, or the prior
        self.knob_topk = KNOB_TOPK  # 0: expected knob values (the old relaxation)
        # Workloads are priced once per distinct shape (the combinations repeat them) and summed per
        # combination through their index.
        unique: dict = {}
        self._wl_index = torch.tensor([unique.setdefault(dataclasses.replace(w, name=""), len(unique)) for w in fields],
                                      dtype=torch.long)
        self._wl = self._workload_tensors(list(unique))
        # The enumerated core shapes, flattened in C order over GRID.
        gv = [torch.tensor([float(2**v) for v in hw.knob(k).values]) for k in GRID]
        mesh = torch.meshgrid(*gv, indexing="ij")
        self._grid = {k: m.reshape(1, 1, -1) for k, m in zip(GRID, mesh)}

    # -- workloads as column tensors ---------------------------------------------------------------
    @staticmethod
    def _workload_tensors(wls) -> dict[str, torch.Tensor]:
        def col(attr):
            return torch.tensor([float(getattr(w, attr)) for w in wls]).reshape(1, -1, 1)

        t = {a: col(a) for a in ("cin", "cout", "hin", "win", "hout", "wout", "kh", "kw", "groups", "n", "alu_ops", "load_elems",
                                 "store_elems", "stride", "dilation")}
        t["is_conv"] = torch.tensor([float(w.kind == "conv") for w in wls]).reshape(1, -1, 1)
        # constants of the spatial tiling (see _gemm_tiling)
        kh_eff, kw_eff = t["dilation"] * (t["kh"] - 1) + 1, t["dilation"] * (t["kw"] - 1) + 1
        pad = torch.floor(t["dilation"] * (t["kh"] - 1) / 2)
        t["pix"] = t["hout"] * t["wout"]
        t["hw_in"] = t["hin"] * t["win"]
        t["foot_ratio"] = (t["hin"] + 2 * pad) * (t["win"] + 2 * pad) / t["hw_in"]
        t["window"] = kh_eff * kw_eff
        # input rows (cols) of sp tiles of the map's aspect, over the map's: 1 - a + sqrt(sp) * a * rho
        over_h, over_w = (kh_eff - t["stride"]) / t["hin"], (kw_eff - t["stride"]) / t["win"]
        t["halo_h0"], t["halo_w0"] = 1 - over_h, 1 - over_w
        t["halo_h1"] = over_h * torch.sqrt(t["hout"] / t["wout"])
        t["halo_w1"] = over_w * torch.sqrt(t["wout"] / t["hout"])
        return t

    # -- the model -------------------------------------------------------------------------------
    def _relaxed_values(self, hw_probs) -> dict[str, torch.Tensor]:
        out = {}
        for k in RELAXED:
            vals = torch.tensor([float(2**v if k in _POW2 else v) for v in self.hw.knob(k).values])
            out[k] = (hw_probs[k] * vals).sum().reshape(1, 1, 1)
        return out

    def _relaxed_topk(self, hw_probs, k: int):
        """The ``k`` most probable combinations of the RELAXED knobs: their values (each [k, 1, 1])
        and their joint probabilities (differentiable)."""
        joint = self._relaxed_joint(hw_probs)
        flat = joint.reshape(-1)
        top = torch.topk(flat.detach(), min(k, flat.numel())).indices
        return self._relaxed_at(top, joint.shape), flat[top]

    @staticmethod
    def _relaxed_joint(hw_probs) -> torch.Tensor:
        """Joint probability of every combination of the RELAXED knobs (one axis per knob)."""
        joint = None
        for name in RELAXED:
            p = hw_probs[name]
            joint = p if joint is None else joint.unsqueeze(-1) * p
        return joint

    def _relaxed_at(self, flat_idx, shape) -> dict[str, torch.Tensor]:
        """Knob values (each [len(flat_idx), 1, 1]) of the given flattened combinations."""
        r = {}
        for name, ix in zip(RELAXED, torch.unravel_index(flat_idx, shape)):
            vals = torch.tensor([float(2**v if name in _POW2 else v) for v in self.hw.knob(name).values])
            r[name] = vals[ix].reshape(-1, 1, 1)
        return r

    def _grid_probs(self, hw_probs) -> torch.Tensor:
        return joint_probs(hw_probs, GRID)

    def area_mm2(self, r: dict[str, torch.Tensor]) -> torch.Tensor:
        """Area for every core shape: [R, 1, G]."""
        B, BI, BO = (self._grid[k] for k in GRID)
        bi, bw, f = r["LOG_INP_WIDTH"], r["LOG_WGT_WIDTH"], r["HW_FREQ_MHZ"]
        mac_um2 = B * BI * BO * (A_MUL8_UM2 * bi * bw / 64.0 + A_ADD32_UM2)
        alu_um2 = B * BO * A_ALU_LANE_UM2
        sram_bytes = r["LOG_INP_BUFF_SIZE"] + r["LOG_WGT_BUFF_SIZE"] + r["LOG_ACC_BUFF_SIZE"] + r["LOG_UOP_BUFF_SIZE"]
        sram_um2 = sram_bytes * 8 * A_SRAM_BIT_UM2
        return ((mac_um2 + alu_um2) * logic_area_scale(f) + sram_um2) / 1e6 + A_CTRL_MM2 * logic_area_scale(f)

    def _gemm_tiling(self, r: dict[str, torch.Tensor], b_t, ci_t, co_t, exact: bool) -> dict[str, torch.Tensor]:
        """DRAM loads (inputs, weights, biases) and accumulator tiles of one group of a GEMM workload
        under the lowering's tiling search (:mod:`explorer.accel.sim`), in closed form.

        The search keeps, among the tilings within a hair of the fewest cycles, the one that moves the
        least; this prices the least-traffic member of each of its three families and takes the
        cheapest that fits (every buffer block in half its buffer):

        * weights resident (groups outer; a group's weights hold all input channels, inputs are streamed
          in input-channel chunks): the weights once, the inputs once per group tile;
        * inputs resident (spatial tiles outer, all input channels): the inputs once, the weights once
          per spatial tile;
        * both streamed in input-channel chunks (VTA's own schedule): inputs once per group tile,
          weights once per spatial tile, with as many of each as the accumulator half requires, split
          to minimise the traffic.

        A spatial tiling re-reads the rows and columns where neighbouring tiles' windows overlap
        (``halo``). With ``exact`` the tile counts are true ceilings, otherwise smooth.
        """
        w = self._wl
        B, BI, BO = (self._grid[k] for k in GRID)
        inp_half, wgt_half, acc_half = (r[k] / 2 for k in RELAXED[:3])
        inp_byte, wgt_byte = r["LOG_INP_WIDTH"] / 8, r["LOG_WGT_WIDTH"] / 8
        # Factors of the workload and core shape ([1, W, G]) are combined before those of the knobs
        # ([R, 1, 1]): every operation on the full [R, W, G] shape counts.
        n_pad = b_t * B
        pix = w["pix"]
        inp_elems = n_pad * ci_t * BI * w["hw_in"]  # input map elements (VTA's loads skip the padding)
        inp_b = inp_elems * inp_byte
        slice_elems = BO * ci_t * BI * w["kh"] * w["kw"]  # weights of one BLOCK_OUT group
        wgt_b = (co_t * slice_elems) * wgt_byte
        acc_map = pix * n_pad * BO * ACC_BYTES  # accumulator bytes of the map, one group
        bias_px = B * BO * ACC_BYTES  # bias bytes loaded per group and spatial tile

        def ceil(x):
            return _softceil(x, exact)

        def halo(sp):
            """Input bytes of one pass over the map cut into ``sp`` spatial tiles of the map's aspect
            (the least overlap for that many tiles): neighbouring tiles' windows overlap by the kernel
            extent less the stride."""
            root = torch.sqrt(sp)
            return inp_b * (w["halo_h0"] + root * w["halo_h1"]) * (w["halo_w0"] + root * w["halo_w1"])

        n_acc = torch.clamp((acc_map * co_t) / acc_half, min=1.0)  # accumulator tiles at the least
        # weights resident: as many groups per tile as half the weight buffer holds
        g_res = wgt_half / (slice_elems * wgt_byte)
        if exact:
            g_res = torch.floor(g_res)
        g_res = torch.minimum(g_res, co_t)
        infeasible_w = (g_res < 1).float()
        g_res = torch.clamp(g_res, min=1.0)
        sp_w = ceil(g_res * acc_map / acc_half)
        n_g_w = ceil(co_t / g_res)
        tiles_w = sp_w * n_g_w
        load_w = wgt_b + n_g_w * halo(sp_w) + infeasible_w * 1e30
        # inputs resident: as many spatial tiles as the input half (all channels) and one group's
        # accumulators need
        infeasible_i = (w["window"] * n_pad * ci_t * BI > inp_half / inp_byte).float()
        sp_i = ceil(torch.maximum((inp_elems * w["foot_ratio"]) * (inp_byte / inp_half), acc_map / acc_half))
        tiles_i = torch.maximum(sp_i, n_acc)
        load_i = halo(sp_i) + sp_i * wgt_b + infeasible_i * 1e30
        # both streamed: spatial tiles x group tiles >= n_acc, split where traffic is least
        sp_s = torch.minimum(torch.clamp(torch.sqrt(n_acc * (inp_elems / (co_t * slice_elems)) * (inp_byte / wgt_byte)),
                                         min=1.0), pix)
        n_g_s = torch.minimum(ceil(n_acc / sp_s), co_t)
        sp_s = torch.clamp(ceil(n_acc / n_g_s), min=1.0)
        tiles_s = sp_s * n_g_s
        load_s = n_g_s * halo(sp_s) + sp_s * wgt_b
        use_w = (load_w <= load_i) & (load_w <= load_s)
        use_i = ~use_w & (load_i <= load_s)

        def pick(x_w, x_i, x_s):
            return torch.where(use_w, x_w, torch.where(use_i, x_i, x_s))

        return {"load_bytes": pick(load_w, load_i, load_s), "bias_bytes": pick(sp_w, sp_i, sp_s) * (co_t * bias_px),
                "tiles": pick(tiles_w, tiles_i, tiles_s),
                # LOAD instructions: one per tile of a streamed operand, one per outer tile of a resident one
                "loads": pick(tiles_w + n_g_w, tiles_i + sp_i, 2 * tiles_s)}

    def workload_costs(self, r: dict[str, torch.Tensor], exact: bool = False, features: bool = False) -> dict[str, torch.Tensor]:
        """Per distinct workload and core shape: cycles, latency_s, energy_j, load/store bytes, GEMM/ALU ops.

        ``r`` holds relaxed knob values shaped [R, 1, 1]; results are [R, U, G] over the U distinct
        workloads (:meth:`_combo_sum` sums them per combination).
        """
        w = self._wl
        B, BI, BO = (self._grid[k] for k in GRID)
        bi, bw = r["LOG_INP_WIDTH"], r["LOG_WGT_WIDTH"]
        f_mhz, bw_gbps = r["HW_FREQ_MHZ"], r["DRAM_BW_GBPS"]
        inp_buf, wgt_buf, acc_buf, uop_buf = (r[k] for k in RELAXED[:4])
        conv = w["is_conv"]
        g = w["groups"]
        b_t = torch.ceil(w["n"] / B)
        ci_t = torch.ceil(w["cin"] / g / BI)
        co_t = torch.ceil(w["cout"] / g / BO)
        pos = w["hout"] * w["wout"]
        # --- GEMM layers (conv, dense) ---
        gemm_ops = conv * g * b_t * pos * w["kh"] * w["kw"] * ci_t * co_t
        n_pad = b_t * B
        out_b = n_pad * g * co_t * BO * pos * bi / 8
        tiling = self._gemm_tiling(r, b_t, ci_t, co_t, exact)
        main_load = g * tiling["load_bytes"]
        bias_load = g * tiling["bias_bytes"]
        # the micro-op kernel of one input-channel chunk, loaded once (the tiling keeps it in the cache)
        uop_load = g * torch.minimum(UOP_BYTES * w["kh"] * w["kw"] * ci_t, uop_buf)
        req_vec = g * b_t * pos * co_t
        # --- ALU workloads (pooling, depthwise, residual add, activations) ---
        alu_vec = (1 - conv) * b_t * pos * torch.ceil(w["cin"] / BO)
        alu_ops = ALU_II * (conv * req_vec + alu_vec) * w["alu_ops"]
        alu_load = w["load_elems"] * bi / 8
        alu_store = w["store_elems"] * bi / 8
        alu_blk = _softceil(w["load_elems"] * ACC_BYTES / (acc_buf / 2), exact)

        tiles = g * tiling["tiles"]
        bytes_per_cycle = bw_gbps * 1e9 / (f_mhz * 1e6)
        # The compute module also loads the micro-ops (once) and the biases (per accumulator tile) and
        # fills the GEMM and ALU pipelines per tile; every LOAD and STORE pays the DRAM latency.
        compute = GEMM_II * gemm_ops + alu_ops + conv * (
            (uop_load + bias_load) / bytes_per_cycle + (g + tiles) * DRAM_LATENCY_CYCLES + tiles * (GEMM_DEPTH + ALU_DEPTH))
        load = conv * (main_load + uop_load + bias_load) + (1 - conv) * alu_load
        store = conv * out_b + (1 - conv) * alu_store
        load_c = conv * (main_load / bytes_per_cycle + g * tiling["loads"] * DRAM_LATENCY_CYCLES) + (1 - conv) * load / bytes_per_cycle
        store_c = store / bytes_per_cycle + conv * tiles * DRAM_LATENCY_CYCLES
        # The search splits the input channels into one-block chunks (shorter pipeline fill, one more
        # GEMM per chunk) where the GEMM core is the bottleneck, and keeps them whole where the loads
        # are (each extra LOAD pays the DRAM latency); it pipelines at least by output-channel group
        # (no extra traffic). The pipeline has tiles x chunks steps.
        chunked = (compute >= load_c).float() if exact else torch.sigmoid(8.0 * (compute / torch.clamp(load_c, min=1.0) - 1.0))
        steps = torch.maximum(tiles, g * co_t) * (1.0 + (ci_t - 1.0) * chunked)
        compute = compute + conv * (steps - tiles) * GEMM_DEPTH
        blocks = conv * steps + (1 - conv) * alu_blk
        peak = torch.maximum(torch.maximum(compute, load_c), store_c)
        # Decoupled access-execute with two virtual threads overlaps all but one block's worth.
        has_io = ((load + store) > 0).float()
        feats = self.cycle_features(peak, compute, load_c, store_c, blocks, has_io, gemm_ops, alu_ops / ALU_II)
        w = self.correction if self.correction is not None else DEFAULT_CYCLE_WEIGHTS
        # GEMM layers use the calibrated weights (fitted on the simulator); ALU work keeps the prior.
        cycles_gemm = sum(wi * f for wi, f in zip(w, feats))
        cycles_prior = sum(wi * f for wi, f in zip(DEFAULT_CYCLE_WEIGHTS, feats))
        cycles = conv * cycles_gemm + (1 - conv) * cycles_prior
        latency_s = cycles / (f_mhz * 1e6)

        # --- energy ---
        vscale = (volts(f_mhz) / V_NOM) ** 2

        def e_sram(size):
            return E_SRAM_BYTE_8KB_J * torch.sqrt(size / 8192.0)

        e_mac = E_MUL8_J * bi * bw / 64.0 + E_ADD32_J
        macs = gemm_ops * B * BI * BO
        sram_gemm = gemm_ops * (
            B * BI * bi / 8 * e_sram(inp_buf) + BI * BO * bw / 8 * e_sram(wgt_buf) + 2 * B * BO * ACC_BYTES * e_sram(acc_buf)
        )
        lanes = B * BO
        e_alu = (alu_ops / ALU_II) * lanes * (E_ADD32_J + 2 * ACC_BYTES * e_sram(acc_buf))
        e_fill = load * e_sram(inp_buf)  # writing loaded data into the buffers
        dyn = vscale * (macs * e_mac + sram_gemm + e_alu + e_fill)
        e_dram = (load + store) * E_DRAM_BYTE_J
        p_static = self.area_mm2(r) * P_LEAK_W_PER_MM2 + bw_gbps * P_DRAM_IF_W_PER_GBPS
        energy_j = dyn + e_dram + p_static * latency_s
        out = {
            "cycles": cycles,
            "latency_s": latency_s,
            "energy_j": energy_j,
            "load_bytes": load,
            "store_bytes": store,
            "gemm_ops": gemm_ops,
            "alu_ops": alu_ops / ALU_II,
        }
        if features:
            out["features"] = [torch.broadcast_to(f, cycles.shape) for f in feats]
        return out

    def space_workloads(self, genotype: dict[str, str]) -> list:
        """The workloads of one derived network, from the slots this model was built on."""
        return slot_workloads(self.slots, self.net_choices, genotype)

    def correction_state(self) -> dict:
        return {"cycle_weights": list(self.correction) if self.correction is not None else None}

    @staticmethod
    def cycle_features(peak, compute, load_c, store_c, blocks, has_io, gemm_ops, alu_ops):
        """The terms the cycle count is a non-negative combination of (see CYCLE_FEATURES)."""
        return (peak, (compute + load_c + store_c - peak) / (2 * blocks), has_io, GEMM_II * gemm_ops,
                ALU_II * alu_ops, load_c, store_c)

    def layer_features(self, w, config: HWConfig) -> list[float]:
        """Exact cycle features of one workload on one configuration (for calibration)."""
        single = VTACostModel([Slot("one", (), {(): [w]})], {}, self.hw)
        hwp = self.hw.onehot(config)
        with torch.no_grad():
            r = single._relaxed_values(hwp)
            pg = single._grid_probs(hwp)
            wc = single.workload_costs(r, exact=True, features=True)
            return [float(f.reshape(-1) @ pg) for f in wc["features"]]

    def _combo_probs(self, net_probs) -> torch.Tensor:
        return self.combos.probs(net_probs)

    def _combo_sum(self, per_wl: torch.Tensor) -> torch.Tensor:
        """[R, U, G] over the distinct workloads -> [R, n_combos, G] summing each combo's workloads."""
        R, _, G = per_wl.shape
        out = per_wl.new_zeros(R, self.n_combos, G)
        return out.index_add(1, self.wl_combo, per_wl.index_select(1, self._wl_index))

    def predict(self, net_probs, hw_probs, exact: bool = False) -> dict[str, torch.Tensor]:
        """Expected latency (s), energy (J) and area (mm2); differentiable in both probability sets."""
        pg = self._grid_probs(hw_probs)
        pc = self._combo_probs(net_probs)
        top = None
        if self.knob_topk:
            r, w = self._relaxed_topk(hw_probs, self.knob_topk)
            wc = self.workload_costs(r, exact=True)
            top = {k: w @ torch.einsum("c,kcg,g->k", pc, self._combo_sum(wc[k]), pg) for k in ("latency_s", "energy_j")}
            top["area_mm2"] = w @ (self.area_mm2(r).reshape(len(w), -1) @ pg)
            mass = w.sum()
            if float(mass.detach()) > 1.0 - 1e-6:
                return top
        r = self._relaxed_values(hw_probs)
        wc = self.workload_costs(r, exact)
        out = {}
        for k in ("latency_s", "energy_j"):
            per_combo = self._combo_sum(wc[k])[0]  # [n_combos, G]
            out[k] = (pc @ per_combo) @ pg
        out["area_mm2"] = self.area_mm2(r).reshape(-1) @ pg
        if top is not None:  # exact over the top combinations, the mean relaxation for the rest of the mass
            out = {k: top[k] + (1.0 - mass) * out[k] for k in out}
        return out

    def exact_expectation(self, net_probs, hw_probs, chunk: int = 96) -> dict[str, float]:
        """The expectation over every combination of the RELAXED knobs (no gradient; for measuring
        how far :meth:`predict`'s relaxation is from it)."""
        with torch.no_grad():
            joint = self._relaxed_joint(hw_probs)
            flat = joint.reshape(-1)
            pg, pc = self._grid_probs(hw_probs), self._combo_probs(net_probs)
            idx_all = torch.arange(flat.numel())
            out = {"latency_s": 0.0, "energy_j": 0.0, "area_mm2": 0.0}
            for start in range(0, flat.numel(), chunk):
                sel = idx_all[start:start + chunk]
                r = self._relaxed_at(sel, joint.shape)
                w = flat[sel]
                wc = self.workload_costs(r, exact=True)
                for k in ("latency_s", "energy_j"):
                    out[k] += float(w @ torch.einsum("c,kcg,g->k", pc, self._combo_sum(wc[k]), pg))
                out["area_mm2"] += float(w @ (self.area_mm2(r).reshape(len(w), -1) @ pg))
            return out

    def evaluate(self, genotype: dict[str, str], config: HWConfig) -> dict[str, float]:
        """Exact figures of one design, plus cycles and traffic."""
        net = self.combos.onehot(genotype)
        hwp = self.hw.onehot(config)
        with torch.no_grad():
            r = self._relaxed_values(hwp)
            pg = self._grid_probs(hwp)
            pc = self._combo_probs(net)
            wc = self.workload_costs(r, exact=True)
            out = {k: float((pc @ self._combo_sum(v)[0]) @ pg) for k, v in wc.items()}
            out["area_mm2"] = float(self.area_mm2(r).reshape(-1) @ pg)
        return out

    def lower_bounds(self, chunk: int = 96) -> dict[str, float]:
        """Cheapest latency, energy and area any (network, hardware) pair can reach.

        Exhaustive over hardware; per slot the cheapest option (a lower bound where slots share a
        choice, exact otherwise).
        """
        relaxed_opts = [list(range(len(self.hw.knob(k).values))) for k in RELAXED]
        combos = list(itertools.product(*relaxed_opts))
        best = {"latency_s": math.inf, "energy_j": math.inf, "area_mm2": math.inf}
        with torch.no_grad():
            for start in range(0, len(combos), chunk):
                part = combos[start : start + chunk]
                r = {}
                for j, k in enumerate(RELAXED):
                    vals = self.hw.knob(k).values
                    r[k] = torch.tensor(
                        [float(2 ** vals[c[j]] if k in _POW2 else vals[c[j]]) for c in part]
                    ).reshape(-1, 1, 1)
                wc = self.workload_costs(r, exact=True)
                for k in ("latency_s", "energy_j"):
                    per_slot = self.combos.slot_min(self._combo_sum(wc[k]), dim=1)  # [R, slots, G]
                    best[k] = min(best[k], float(per_slot.sum(1).min()))
                best["area_mm2"] = min(best["area_mm2"], float(self.area_mm2(r).min()))
        return best
