"""Lowering of a convolution onto the VTA-style core, and a timed simulator of the result.

Lowering (``lower``): the output is tiled into row blocks x output-channel groups; a tile holds all
input-channel blocks and kernel taps, so its accumulators are final. Tile sizes are the largest that
fit the buffers with double buffering (half of each buffer per in-flight tile); if not even one
output row of one BLOCK_OUT group fits, the configuration cannot run the layer
(:class:`BufferCapacityError`). Per tile the instruction stream is VTA's: LOAD (input rows; weights per
output-channel group, prefetched one group ahead) on the load module; LOAD (bias into the accumulators), GEMM and
ALU (requantise: SHR, MAX, MIN) on the compute module; STORE on the store module. Dependency tokens
between the modules are VTA's four queues (load->compute RAW, compute->load WAR, compute->store
RAW, store->compute WAR); the first two tiles run without WAR tokens (two buffer halves).

Simulation (``simulate``): the three modules execute their queues in order; an instruction starts
when its module is free and the tokens it pops have been pushed; LOAD/STORE take DRAM latency +
bytes / bandwidth, GEMM one cycle per BATCH x BLOCK_IN x BLOCK_OUT op, ALU ``ALU_II`` cycles per
vector op. It reports VTA's counters and the cycles.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from ..errors import ExplorerError
from .params import VTAParams

__all__ = ["ConvLayer", "Insn", "Tiling", "LayerStats", "BufferCapacityError", "plan", "lower", "simulate", "run_layer"]

DRAM_LATENCY_CYCLES = 64  # assumption: AXI read/write latency of a DDR controller at ~100-300 MHz
GEMM_DEPTH = 4  # assumption: GEMM pipeline fill per instruction (VTA's GEMM core is a short pipeline)
ALU_II = 2  # as in the analytical model (explorer/cost/vta.py): read-modify-write on the register file
ALU_DEPTH = 4
REQUANT_OPS = 3  # SHR, MAX, MIN


class BufferCapacityError(ExplorerError):
    """A hardware configuration whose buffers cannot hold one tile of a layer."""


@dataclass(frozen=True)
class ConvLayer:
    name: str
    cin: int
    cout: int
    hin: int
    win: int
    kh: int
    kw: int
    stride: int = 1
    pad: int = 0
    dilation: int = 1
    n: int = 1

    @property
    def hout(self) -> int:
        return (self.hin + 2 * self.pad - self.dilation * (self.kh - 1) - 1) // self.stride + 1

    @property
    def wout(self) -> int:
        return (self.win + 2 * self.pad - self.dilation * (self.kw - 1) - 1) // self.stride + 1

    @property
    def macs(self) -> int:
        return self.n * self.hout * self.wout * self.kh * self.kw * self.cin * self.cout


@dataclass(frozen=True)
class Tiling:
    rows: int  # output rows per tile
    cols: int  # output columns per tile (the full width unless one row does not fit)
    groups: int  # BLOCK_OUT blocks per tile
    b_t: int
    ci_t: int
    co_t: int


@dataclass
class Insn:
    module: str  # "load" | "compute" | "store"
    op: str  # LOAD_INP, LOAD_WGT, LOAD_ACC, LOAD_UOP, GEMM, ALU, STORE
    nbytes: int = 0
    ops: int = 0
    pop_prev: bool = False
    pop_next: bool = False
    push_prev: bool = False
    push_next: bool = False


@dataclass
class LayerStats:
    name: str
    cycles: int
    inp_load_bytes: int = 0
    wgt_load_bytes: int = 0
    acc_load_bytes: int = 0
    uop_load_bytes: int = 0
    out_store_bytes: int = 0
    gemm_ops: int = 0
    alu_ops: int = 0
    instructions: int = 0
    tiles: int = 0
    busy: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return asdict(self)


def _tile_bytes(L: ConvLayer, p: VTAParams, rows: int, groups: int, ci_t: int, b_t: int, cols: int | None = None) -> dict:
    rows_in = (rows - 1) * L.stride + (L.kh - 1) * L.dilation + 1
    if cols is None or cols >= L.wout:
        cols, cols_in = L.wout, L.win + 2 * L.pad
    else:
        cols_in = (cols - 1) * L.stride + (L.kw - 1) * L.dilation + 1
    return {
        "inp": b_t * ci_t * rows_in * cols_in * p.inp_elem_bytes,
        "wgt": groups * ci_t * L.kh * L.kw * p.wgt_elem_bytes,
        "acc": b_t * rows * cols * groups * p.acc_elem_bytes,
        "uop": 4 * L.kh * L.kw * ci_t,
    }


def plan(L: ConvLayer, p: VTAParams) -> Tiling:
    """Largest tiles that fit: all weights resident if possible, then as many rows (or, if one row
    is too wide, columns) as fit."""
    b_t = math.ceil(L.n / p.batch)
    ci_t = math.ceil(L.cin / p.block_in)
    co_t = math.ceil(L.cout / p.block_out)
    cap = {"inp": p.inp_buf_bytes // 2, "wgt": p.wgt_buf_bytes // 2, "acc": p.acc_buf_bytes // 2, "uop": p.uop_buf_bytes}

    def fits(rows, cols, groups, keys=("inp", "wgt", "acc", "uop")):
        t = _tile_bytes(L, p, rows, groups, ci_t, b_t, cols)
        return all(t[k] <= cap[k] for k in keys)

    if not fits(1, 1, 1):
        need = _tile_bytes(L, p, 1, 1, ci_t, b_t, 1)
        parts = ", ".join(f"{k} {need[k]} B > {cap[k]} B" for k in ("inp", "wgt", "acc", "uop") if need[k] > cap[k])
        raise BufferCapacityError(
            f"layer {L.name} ({L.cin}->{L.cout}, {L.kh}x{L.kw}, {L.hin}x{L.win}) cannot run on this configuration: "
            f"one tile (1 output pixel, {p.block_out} output channels, all {L.cin} input channels) needs {parts} "
            "(half of each buffer per tile, double buffering)")
    groups = max(g for g in range(1, co_t + 1) if fits(1, 1, g, ("wgt", "acc")))
    if fits(1, L.wout, groups):
        cols = L.wout
        rows = max(r for r in range(1, L.hout + 1) if fits(r, cols, groups))
    else:
        rows = 1
        cols = max(c for c in range(1, L.wout + 1) if fits(1, c, groups))
    return Tiling(rows, cols, groups, b_t, ci_t, co_t)


def lower(L: ConvLayer, p: VTAParams) -> tuple[Tiling, list[Insn]]:
    """The layer's instruction stream (see the module docstring for the loop order and tokens)."""
    t = plan(L, p)
    prog: list[Insn] = [Insn("compute", "LOAD_UOP", nbytes=_tile_bytes(L, p, 1, 1, t.ci_t, t.b_t)["uop"])]
    groups = [(g0, min(t.groups, t.co_t - g0)) for g0 in range(0, t.co_t, t.groups)]
    tiles_of = [(r0, min(t.rows, L.hout - r0), c0, min(t.cols, L.wout - c0))
                for r0 in range(0, L.hout, t.rows) for c0 in range(0, L.wout, t.cols)]
    cols_arg = None if t.cols >= L.wout else t.cols
    wgt_bytes = [_tile_bytes(L, p, 1, g, t.ci_t, t.b_t)["wgt"] for _, g in groups]
    # Weights are double-buffered like inputs: group k+1's weights are prefetched in chunks spread over
    # group k's tiles 1..n-1 (by tile 1 the group that used that half has finished computing), so
    # that no single load burst stalls the GEMM. A group with a single tile cannot prefetch its
    # successor's weights; the successor then loads its own.
    prefetched = set()
    spread = max(1, len(tiles_of) - 1)
    tile = 0
    for gi, (_, g) in enumerate(groups):
        for ti, (_, r, _, c) in enumerate(tiles_of):
            b = _tile_bytes(L, p, r, g, t.ci_t, t.b_t, cols_arg if c < L.wout else None)
            war = tile >= 2
            loads = [Insn("load", "LOAD_INP", nbytes=b["inp"], pop_next=war)]
            if ti == 0 and gi not in prefetched:
                loads.append(Insn("load", "LOAD_WGT", nbytes=wgt_bytes[gi]))
            if ti >= 1 and gi + 1 < len(groups):
                total = wgt_bytes[gi + 1]
                part = total * ti // spread - total * (ti - 1) // spread
                if part:
                    loads.append(Insn("load", "LOAD_WGT", nbytes=part))
                prefetched.add(gi + 1)
            loads[-1].push_next = True
            prog += loads
            vec = t.b_t * r * c * g
            # The bias load needs a free accumulator half (store->compute), not the inputs: it is
            # issued first so that it overlaps the wait for the tile's loads.
            prog.append(Insn("compute", "LOAD_ACC", nbytes=g * p.acc_elem_bytes, pop_next=war))
            prog.append(Insn("compute", "GEMM", ops=t.b_t * r * c * L.kh * L.kw * t.ci_t * g, pop_prev=True))
            prog.append(Insn("compute", "ALU", ops=vec * REQUANT_OPS, push_prev=True, push_next=True))
            prog.append(Insn("store", "STORE", nbytes=vec * p.out_elem_bytes, pop_prev=True, push_prev=True))
            tile += 1
    return t, prog


def simulate(name: str, prog: list[Insn], p: VTAParams, tiles: int = 0) -> LayerStats:
    """Run the three in-order module queues with VTA's dependency-token queues; count and time."""
    queues = {m: [i for i in prog if i.module == m] for m in ("load", "compute", "store")}
    pos = {m: 0 for m in queues}
    free_at = {m: 0.0 for m in queues}
    busy = {m: 0.0 for m in queues}
    tokens = {("load", "compute"): [], ("compute", "load"): [], ("compute", "store"): [], ("store", "compute"): []}
    prev = {"load": None, "compute": "load", "store": "compute"}
    nxt = {"load": "compute", "compute": "store", "store": None}
    bpc = p.bytes_per_cycle
    st = LayerStats(name, 0, tiles=tiles, instructions=len(prog))
    remaining = len(prog)
    while remaining:
        progressed = False
        for m, q in queues.items():
            while pos[m] < len(q):
                ins = q[pos[m]]
                need = []
                if ins.pop_prev:
                    need.append((prev[m], m))
                if ins.pop_next:
                    need.append((nxt[m], m))
                if any(not tokens[k] for k in need):
                    break
                start = max([free_at[m]] + [tokens[k].pop(0) for k in need])
                if ins.op.startswith("LOAD") or ins.op == "STORE":
                    dur = DRAM_LATENCY_CYCLES + math.ceil(ins.nbytes / bpc)
                elif ins.op == "GEMM":
                    dur = GEMM_DEPTH + ins.ops
                else:
                    dur = ALU_DEPTH + ALU_II * ins.ops
                end = start + dur
                free_at[m] = end
                busy[m] += dur
                if ins.push_prev:
                    tokens[(m, prev[m])].append(end)
                if ins.push_next:
                    tokens[(m, nxt[m])].append(end)
                _count(st, ins)
                pos[m] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            raise RuntimeError(f"{name}: the instruction stream deadlocked (a lowering bug)")
    st.cycles = int(max(free_at.values()))
    st.busy = {m: int(v) for m, v in busy.items()}
    return st


# Which counter each instruction adds to, and whether it counts bytes or ops (VTA's counters).
_COUNTERS = {"LOAD_INP": ("inp_load_bytes", "nbytes"), "LOAD_WGT": ("wgt_load_bytes", "nbytes"),
             "LOAD_ACC": ("acc_load_bytes", "nbytes"), "LOAD_UOP": ("uop_load_bytes", "nbytes"),
             "STORE": ("out_store_bytes", "nbytes"), "GEMM": ("gemm_ops", "ops"), "ALU": ("alu_ops", "ops")}


def _count(st: LayerStats, ins: Insn) -> None:
    counter, what = _COUNTERS[ins.op]
    setattr(st, counter, getattr(st, counter) + getattr(ins, what))


def run_layer(L: ConvLayer, p: VTAParams) -> LayerStats:
    t, prog = lower(L, p)
    n_tiles = sum(1 for i in prog if i.op == "GEMM")
    return simulate(L.name, prog, p, n_tiles)
