"""Lowering of a convolution onto the VTA-style core, and a timed simulator of the result.

Tiling (:func:`plan`): the output is cut into tiles of ``rows`` x ``cols`` pixels x ``groups``
BLOCK_OUT blocks whose accumulators stay in the accumulator buffer until they are final; the input
channels are consumed ``ci_chunk`` BLOCK_IN blocks at a time (one GEMM instruction per tile and
chunk: a *step*), the partial sums accumulating across the chunks; a tile holds all kernel taps. Two
loop orders, as in VTA's tuned schedules: ``order="wgt"`` runs the output-channel groups outside the
spatial tiles, so that a group's weights, if they hold all input channels (``resident``), stay on chip
across the spatial tiles and only the inputs are reloaded; ``order="inp"`` is the converse. Without
a resident operand (or with several chunks and ``resident=False``) both operands are reloaded every
step, as VTA's own conv2d schedule does. Every block fits half of its buffer (double buffering).

The planner either searches the tile shapes (``tiling="search"``, the default): every tiling that
fits is priced in closed form (:func:`tiling_costs`: the counters exactly, the cycles estimated), the
dominated ones are dropped and the best few simulated; the fewest simulated cycles win, then the least
DRAM traffic, cycles within ``SEARCH_CYCLE_TIE`` (0.5%) of the fewest counting as a tie, and never
more cycles than the fixed rule's tiling; or applies the former fixed rule (``tiling="fixed"``: all input channels per tile, the
largest tiles that fit, output-channel groups outer). Results are cached per layer shape and
configuration. If not even the smallest tile (one output pixel, one BLOCK_OUT group, one BLOCK_IN
block) fits, the configuration cannot run the layer (:class:`BufferCapacityError`).

Instruction stream (:func:`lower`), VTA's: LOAD (input and weight blocks) on the load module;
LOAD (bias into the accumulators, at a tile's first chunk), GEMM and, after a tile's last chunk, ALU
(requantise: SHR, MAX, MIN) on the compute module; STORE on the store module. A block used over several
steps has its successor prefetched into the other half of the buffer, spread over the steps after the
first; after a one-step block the next is loaded with its step; the first block of a resident operand
is loaded chunk by chunk with the steps that read the chunks. Dependency tokens are VTA's four
queues: a LOAD pops the compute->load token of the last step that used its buffer half (WAR), a GEMM
the load->compute token of the last LOAD it reads (RAW); the bias load pops store->compute (the
accumulator half two tiles back is stored) and the STORE compute->store.

Simulation (:func:`simulate`): the three modules execute their queues in order; an instruction starts
when its module is free and the tokens it pops have been pushed; LOAD/STORE take DRAM latency +
bytes / bandwidth, GEMM one cycle per BATCH x BLOCK_IN x BLOCK_OUT op, ALU ``ALU_II`` cycles per
vector op. It reports VTA's counters (the bytes a LOAD reads from DRAM: padding is written on chip and
not counted, as in VTA's simulator) and the cycles.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections import defaultdict, deque
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import ExplorerError
from .params import VTAParams

__all__ = ["ConvLayer", "Insn", "Tiling", "LayerStats", "BufferCapacityError", "TILINGS", "plan", "lower",
           "tiling_costs", "simulate", "run_layer"]

DRAM_LATENCY_CYCLES = 64  # assumption: AXI read/write latency of a DDR controller at ~100-300 MHz
GEMM_DEPTH = 4  # assumption: GEMM pipeline fill per instruction (VTA's GEMM core is a short pipeline)
ALU_II = 2  # as in the analytical model (explorer/cost/vta.py): read-modify-write on the register file
ALU_DEPTH = 4
REQUANT_OPS = 3  # SHR, MAX, MIN
UOP_BYTES = 4  # VTA micro-ops are 32 bits wide
PREFETCH_CHUNK_BYTES = 8192  # a prefetched block is loaded in pieces of about this size (fewer stalls)
SEARCH_SIMULATE = 8  # tilings simulated per layer: the least-traffic ones near the best estimate, the fastest
SEARCH_CYCLE_TIE = 0.005  # simulated cycles within this fraction of the fewest are a tie (least traffic wins)
SEARCH_EST_MARGIN = 0.003  # the closed-form cycles' error, allowed for when picking what to simulate
TILINGS = ("search", "fixed")


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
    """One layer's tiling (see the module docstring); sizes in output rows/columns and blocks."""

    rows: int  # output rows per tile (tile_h)
    cols: int  # output columns per tile (tile_w)
    groups: int  # BLOCK_OUT blocks per tile (tile_co)
    b_t: int  # BATCH blocks (all in every tile)
    ci_t: int  # BLOCK_IN blocks of the layer
    co_t: int  # BLOCK_OUT blocks of the layer
    ci_chunk: int = 0  # BLOCK_IN blocks per step (tile_ci); 0: all
    order: str = "wgt"  # "wgt": output-channel groups outer; "inp": spatial tiles outer
    resident: bool = True  # the outer loop's operand holds all input channels (stays on chip)

    def __post_init__(self):
        if not self.ci_chunk:
            object.__setattr__(self, "ci_chunk", self.ci_t)
        if self.order not in ("wgt", "inp"):
            raise ValueError(f"tiling order {self.order!r}: valid: wgt, inp")


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
    # what it reads or writes: (operand, block) pairs, a block of an operand occupying half (block % 2)
    # of its buffer: ("LOAD_INP", j), ("LOAD_WGT", j), ("ACC", accumulator tile)
    buf: tuple = ()
    chunk: int = -1  # GEMM: the input-channel chunk it computes; LOAD: the one it carries (-1: all)


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
    tiles: int = 0  # accumulator tiles
    steps: int = 0  # GEMM instructions: tiles x input-channel chunks
    busy: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return asdict(self)


def _axis_sizes(n: int) -> list[int]:
    """Tile sizes along an axis of ``n``: for each tile count, the smallest size that reaches it (larger
    sizes with the same count only waste buffer)."""
    return sorted({math.ceil(n / k) for k in range(1, n + 1)})


def _span(nout: int, size: int, stride: int, k: int, dil: int, pad: int, nin: int) -> tuple[int, int]:
    """Input extent of tiles of ``size`` outputs along one axis: the buffer footprint of the largest
    tile (padding included: the load module writes it on chip) and the sum over the tiles of the
    input rows read from DRAM (inside the map: VTA's loads count ``x_size * y_size``, not the pads)."""
    dram = sum(_span_at(o0, min(size, nout - o0), stride, k, dil, pad, nin) for o0 in range(0, nout, size))
    return (min(size, nout) - 1) * stride + (k - 1) * dil + 1, dram


def _span_at(o0: int, n: int, stride: int, k: int, dil: int, pad: int, nin: int) -> int:
    """Input rows (or columns) inside the map that ``n`` outputs from ``o0`` read."""
    i0, i1 = o0 * stride - pad, (o0 + n - 1) * stride - pad + (k - 1) * dil + 1
    return max(0, min(nin, i1) - max(0, i0))


def _caps(p: VTAParams) -> dict:
    return {"inp": p.inp_buf_bytes // 2, "wgt": p.wgt_buf_bytes // 2, "acc": p.acc_buf_bytes // 2, "uop": p.uop_buf_bytes}


def _footprint(L: ConvLayer, p: VTAParams, rows: int, cols: int, groups: int, ci_inp: int, ci_wgt: int, ci_step: int) -> dict:
    """Bytes of the largest tile in each buffer (input/weight blocks of ``ci_inp``/``ci_wgt`` BLOCK_IN
    blocks; the micro-op kernel of one step of ``ci_step`` blocks)."""
    b_t = math.ceil(L.n / p.batch)
    fr = _span(L.hout, rows, L.stride, L.kh, L.dilation, L.pad, L.hin)[0]
    fc = _span(L.wout, cols, L.stride, L.kw, L.dilation, L.pad, L.win)[0]
    return {"inp": b_t * ci_inp * fr * fc * p.inp_elem_bytes,
            "wgt": groups * ci_wgt * L.kh * L.kw * p.wgt_elem_bytes,
            "acc": b_t * min(rows, L.hout) * min(cols, L.wout) * groups * p.acc_elem_bytes,
            "uop": UOP_BYTES * L.kh * L.kw * ci_step}


def _fixed_plan(L: ConvLayer, p: VTAParams) -> Tiling:
    """The former fixed rule: a tile holds all input-channel blocks and kernel taps; as many weight
    groups as fit stay resident (output-channel groups outer), then as many rows (or, if one row is too
    wide, columns) as fit."""
    b_t = math.ceil(L.n / p.batch)
    ci_t = math.ceil(L.cin / p.block_in)
    co_t = math.ceil(L.cout / p.block_out)
    cap = _caps(p)

    def fits(rows, cols, groups, keys=("inp", "wgt", "acc", "uop")):
        t = _footprint(L, p, rows, cols, groups, ci_t, ci_t, ci_t)
        return all(t[k] <= cap[k] for k in keys)

    if not fits(1, 1, 1):
        _capacity_error(L, p, _footprint(L, p, 1, 1, 1, ci_t, ci_t, ci_t), f"all {L.cin} input channels")
    groups = max(g for g in range(1, co_t + 1) if fits(1, 1, g, ("wgt", "acc")))
    if fits(1, L.wout, groups):
        cols = L.wout
        rows = max(r for r in range(1, L.hout + 1) if fits(r, cols, groups))
    else:
        rows = 1
        cols = max(c for c in range(1, L.wout + 1) if fits(1, c, groups))
    return Tiling(rows, cols, groups, b_t, ci_t, co_t, ci_t, "wgt", True)


def _capacity_error(L: ConvLayer, p: VTAParams, need: dict, channels: str):
    cap = _caps(p)
    parts = ", ".join(f"{k} {need[k]} B > {cap[k]} B" for k in ("inp", "wgt", "acc", "uop") if need[k] > cap[k])
    raise BufferCapacityError(
        f"layer {L.name} ({L.cin}->{L.cout}, {L.kh}x{L.kw}, {L.hin}x{L.win}) cannot run on this configuration: "
        f"one tile (1 output pixel, {p.block_out} output channels, {channels}, all {L.kh}x{L.kw} kernel taps) "
        f"needs {parts} (half of the input, weight and accumulator buffers per tile: double buffering)")


def _closed_form(L: ConvLayer, p: VTAParams, rows, cols, groups, chunk, order_inp, resident) -> dict:
    """Counters and an estimate of the cycles of tilings (numpy arrays, one entry per tiling), as
    :func:`lower` emits them: the bytes are exact, the cycles a pipelined estimate (max of the module
    busy times plus the pipeline's fill and drain) used to rank tilings before simulating the best."""
    b_t = math.ceil(L.n / p.batch)
    ci_t = math.ceil(L.cin / p.block_in)
    co_t = math.ceil(L.cout / p.block_out)
    bpc = p.bytes_per_cycle
    taps = L.kh * L.kw
    span_r = {r: _span(L.hout, r, L.stride, L.kh, L.dilation, L.pad, L.hin) for r in np.unique(rows).tolist()}
    span_c = {c: _span(L.wout, c, L.stride, L.kw, L.dilation, L.pad, L.win) for c in np.unique(cols).tolist()}
    foot_r = np.array([span_r[r][0] for r in rows.tolist()])
    foot_c = np.array([span_c[c][0] for c in cols.tolist()])
    dram_r = np.array([span_r[r][1] for r in rows.tolist()])
    dram_c = np.array([span_c[c][1] for c in cols.tolist()])
    n_sp = -(-L.hout // rows) * -(-L.wout // cols)
    n_g = -(-co_t // groups)
    n_c = -(-ci_t // chunk)
    steps = n_sp * n_g * n_c
    tiles = n_sp * n_g
    one = n_c == 1
    order_wgt = ~order_inp
    # the operand of the outer loop holds all input channels if resident (or with one chunk)
    ci_inp = np.where((order_inp & resident) | one, ci_t, chunk)
    ci_wgt = np.where((order_wgt & resident) | one, ci_t, chunk)
    # an operand is loaded once per layer pass if its block does not change along the middle loop
    inp_once = (order_inp & (resident | one)) | (order_wgt & (n_sp == 1) & one)
    wgt_once = (order_wgt & (resident | one)) | (order_inp & (n_g == 1) & one)
    inp_pass = b_t * ci_t * p.inp_elem_bytes * dram_r * dram_c
    wgt_pass = co_t * ci_t * taps * p.wgt_elem_bytes
    inp_b = inp_pass * np.where(inp_once, 1, n_g)
    wgt_b = wgt_pass * np.where(wgt_once, 1, n_sp)
    acc_b = n_sp * co_t * p.acc_elem_bytes
    uop_b = UOP_BYTES * taps * chunk
    out_b = b_t * L.hout * L.wout * co_t * p.out_elem_bytes
    # runs of one block: middle-loop reuse gives one run per outer iteration, otherwise one per step
    inp_runs = np.where(inp_once, np.where(order_inp, n_sp, 1), steps)
    wgt_runs = np.where(wgt_once, np.where(order_wgt, n_g, 1), steps)
    inp_blk = b_t * ci_inp * foot_r * foot_c * p.inp_elem_bytes
    wgt_blk = groups * ci_wgt * taps * p.wgt_elem_bytes
    # the first block is one LOAD per chunk it holds; each later one is one LOAD or, prefetched over a
    # longer run, several
    load_insns = sum(np.where(ci_x == ci_t, n_c, 1) + (runs - 1) * np.where(steps >= 2 * runs, _prefetch_chunks(blk, steps // runs), 1)
                     for runs, blk, ci_x in ((inp_runs, inp_blk, ci_inp), (wgt_runs, wgt_blk, ci_wgt)))
    gemm_ops = b_t * L.hout * L.wout * taps * ci_t * co_t
    vec = b_t * L.hout * L.wout * co_t
    pix = b_t * np.minimum(rows, L.hout) * np.minimum(cols, L.wout)
    step_ops = pix * taps * np.minimum(chunk, ci_t) * np.minimum(groups, co_t)
    tile_alu = ALU_DEPTH + ALU_II * REQUANT_OPS * pix * np.minimum(groups, co_t)
    tile_store = DRAM_LATENCY_CYCLES + pix * np.minimum(groups, co_t) * p.out_elem_bytes / bpc
    compute = (DRAM_LATENCY_CYCLES + uop_b / bpc + tiles * DRAM_LATENCY_CYCLES + acc_b / bpc
               + steps * GEMM_DEPTH + gemm_ops + tiles * ALU_DEPTH + ALU_II * REQUANT_OPS * vec)
    load = load_insns * DRAM_LATENCY_CYCLES + (inp_b + wgt_b) / bpc
    store = tiles * DRAM_LATENCY_CYCLES + out_b / bpc
    # the first step waits for its chunk of each operand
    head = 2 * DRAM_LATENCY_CYCLES + (np.minimum(inp_blk * chunk // ci_inp, inp_pass) + wgt_blk * chunk // ci_wgt) / bpc
    cycles = np.maximum.reduce([head + compute + tile_store,
                                load + GEMM_DEPTH + step_ops + tile_alu + tile_store,
                                head + GEMM_DEPTH + step_ops + tile_alu + store])
    return {"inp_load_bytes": inp_b, "wgt_load_bytes": wgt_b, "acc_load_bytes": np.broadcast_to(acc_b, rows.shape),
            "uop_load_bytes": uop_b, "out_store_bytes": np.broadcast_to(out_b, rows.shape),
            "traffic_bytes": inp_b + wgt_b + acc_b + uop_b + out_b, "cycles": cycles, "steps": steps,
            "fits": _fits(p, inp_blk, wgt_blk, b_t * np.minimum(rows, L.hout) * np.minimum(cols, L.wout) * groups
                          * p.acc_elem_bytes, uop_b)}


def _fits(p, inp, wgt, acc, uop):
    cap = _caps(p)
    return (inp <= cap["inp"]) & (wgt <= cap["wgt"]) & (acc <= cap["acc"]) & (uop <= cap["uop"])


def _prefetch_chunks(block_bytes, run_len):
    """LOAD instructions a prefetched block is split into (spread over the steps of the run before it)."""
    return np.maximum(1, np.minimum(np.maximum(run_len - 1, 1), -(-block_bytes // PREFETCH_CHUNK_BYTES)))


def tiling_costs(L: ConvLayer, p: VTAParams, t: Tiling) -> dict:
    """The closed-form counters (exact) and cycle estimate of one tiling (see :func:`_closed_form`)."""
    a = lambda v: np.array([v])  # noqa: E731
    cf = _closed_form(L, p, a(t.rows), a(t.cols), a(t.groups), a(t.ci_chunk), a(t.order == "inp"), a(bool(t.resident)))
    return {k: (bool(v[0]) if k == "fits" else float(v[0]) if k == "cycles" else int(v[0])) for k, v in cf.items()}


def _candidates(L: ConvLayer, p: VTAParams) -> tuple:
    """Every tiling worth considering, as arrays (rows, cols, groups, ci_chunk, order is "inp",
    resident) after the layer's b_t, ci_t, co_t: tile sizes from :func:`_axis_sizes`, both loop
    orders, the outer operand resident over all input channels or chunked like the other."""
    b_t = math.ceil(L.n / p.batch)
    ci_t = math.ceil(L.cin / p.block_in)
    co_t = math.ceil(L.cout / p.block_out)
    grid = np.array(np.meshgrid(_axis_sizes(L.hout), _axis_sizes(L.wout), _axis_sizes(co_t), _axis_sizes(ci_t),
                                [0, 1], [0, 1], indexing="ij")).reshape(6, -1)
    rows, cols, groups, chunk, order_inp, resident = grid
    # one chunk: nothing to choose between resident and chunked; keep one of the two
    keep = (chunk < ci_t) | (resident == 1)
    return b_t, ci_t, co_t, rows[keep], cols[keep], groups[keep], chunk[keep], order_inp[keep].astype(bool), resident[keep].astype(bool)


def _search_plan(L: ConvLayer, p: VTAParams) -> tuple[Tiling, LayerStats]:
    """Fewest simulated cycles, then least DRAM traffic, over the tilings that fit.

    Every candidate is priced in closed form; within a band of the best estimated cycles, the tilings
    another beats on both estimated cycles and traffic are dropped; the least-traffic survivors, the
    fastest estimates and the fixed rule's tiling are simulated. Simulated cycles within
    ``SEARCH_CYCLE_TIE`` of the fewest count as a tie (the differences are pipeline fill of a few hundred
    cycles, finer than the simulator's timing assumptions) and the tie goes to the least traffic, then
    the fewer cycles; never to more cycles than the fixed rule's tiling takes.
    """
    b_t, ci_t, co_t, rows, cols, groups, chunk, order_inp, resident = _candidates(L, p)
    cf = _closed_form(L, p, rows, cols, groups, chunk, order_inp, resident)
    ok = np.flatnonzero(cf["fits"])
    assert len(ok), "plan() checks that the smallest tile fits"
    est, traffic = cf["cycles"][ok], cf["traffic_bytes"][ok]
    fastest = np.lexsort((traffic, est))
    band = np.flatnonzero(est <= est[fastest[0]] * (1 + SEARCH_CYCLE_TIE + SEARCH_EST_MARGIN))
    front, best_traffic = [], math.inf  # Pareto front of the band on (estimated cycles, traffic)
    for i in band[np.lexsort((traffic[band], est[band]))]:
        if traffic[i] < best_traffic:
            front.append(i)
            best_traffic = traffic[i]
    front.reverse()  # least traffic first
    picks = list(dict.fromkeys(list(front[:SEARCH_SIMULATE]) + list(fastest[:SEARCH_SIMULATE // 2])))
    tilings = [Tiling(int(rows[ok[i]]), int(cols[ok[i]]), int(groups[ok[i]]), b_t, ci_t, co_t, int(chunk[ok[i]]),
                      "inp" if order_inp[ok[i]] else "wgt", bool(resident[ok[i]])) for i in picks]
    try:
        fixed = _fixed_plan(L, p)
    except BufferCapacityError:
        fixed = None
    sims = [(t, _simulate_tiling(L, p, t)) for t in dict.fromkeys(tilings + [fixed] * (fixed is not None))]
    limit = min(s.cycles for _, s in sims) * (1 + SEARCH_CYCLE_TIE)
    limit = min([limit] + [s.cycles for t, s in sims if t == fixed])
    return min(((t, s) for t, s in sims if s.cycles <= limit), key=lambda x: (_traffic(x[1]), x[1].cycles))


def _traffic(s: LayerStats) -> int:
    return s.inp_load_bytes + s.wgt_load_bytes + s.acc_load_bytes + s.uop_load_bytes + s.out_store_bytes


def _simulate_tiling(L: ConvLayer, p: VTAParams, t: Tiling) -> LayerStats:
    prog = _emit(L, p, t)
    st = simulate(L.name, prog, p, sum(1 for i in prog if i.op == "ALU"))
    st.steps = sum(1 for i in prog if i.op == "GEMM")
    return st


def _shape_key(L: ConvLayer) -> ConvLayer:
    return dataclasses.replace(L, name="")


@functools.lru_cache(maxsize=4096)
def _searched(L: ConvLayer, p: VTAParams) -> tuple[Tiling, LayerStats]:
    return _search_plan(L, p)


def _check_smallest_tile(L: ConvLayer, p: VTAParams) -> None:
    need = _footprint(L, p, 1, 1, 1, 1, 1, 1)
    if any(need[k] > v for k, v in _caps(p).items()):
        _capacity_error(L, p, need, f"{min(p.block_in, L.cin)} input channel(s)")


def plan(L: ConvLayer, p: VTAParams, tiling: str = "search") -> Tiling:
    """The layer's tiling: searched (``"search"``, the default) or the former fixed rule (``"fixed"``).

    Raises:
        BufferCapacityError: not even the smallest tile fits (for ``"fixed"``: a tile with all input
            channels).
    """
    if tiling not in TILINGS:
        raise ValueError(f"unknown tiling {tiling!r}; valid: {', '.join(TILINGS)}")
    if tiling == "fixed":
        return _fixed_plan(L, p)
    _check_smallest_tile(L, p)
    return _searched(_shape_key(L), p)[0]


def lower(L: ConvLayer, p: VTAParams, tiling: str | Tiling = "search") -> tuple[Tiling, list[Insn]]:
    """The layer's tiling and instruction stream (see the module docstring for loop order and tokens)."""
    t = tiling if isinstance(tiling, Tiling) else plan(L, p, tiling)
    return t, _emit(L, p, t)


def _emit(L: ConvLayer, p: VTAParams, t: Tiling) -> list[Insn]:
    row_t = [(r0, min(t.rows, L.hout - r0)) for r0 in range(0, L.hout, t.rows)]
    col_t = [(c0, min(t.cols, L.wout - c0)) for c0 in range(0, L.wout, t.cols)]
    row_in = [_span_at(r0, r, L.stride, L.kh, L.dilation, L.pad, L.hin) for r0, r in row_t]
    col_in = [_span_at(c0, c, L.stride, L.kw, L.dilation, L.pad, L.win) for c0, c in col_t]
    pix = [r * c for _, r in row_t for _, c in col_t]  # output pixels of each spatial tile
    pix_in = [r * c for r in row_in for c in col_in]  # input pixels it reads from DRAM
    gsz = [min(t.groups, t.co_t - g0) for g0 in range(0, t.co_t, t.groups)]
    csz = [min(t.ci_chunk, t.ci_t - k0) for k0 in range(0, t.ci_t, t.ci_chunk)]
    n_s, n_g, n_c = len(pix), len(gsz), len(csz)
    inp_full = (t.order == "inp" and t.resident) or n_c == 1
    wgt_full = (t.order == "wgt" and t.resident) or n_c == 1
    inp_elem = t.b_t * p.inp_elem_bytes
    wgt_elem = L.kh * L.kw * p.wgt_elem_bytes
    # steps in program order: (spatial tile, group, chunk); acc tile = step // n_c
    if t.order == "wgt":
        steps = [(s, g, c) for g in range(n_g) for s in range(n_s) for c in range(n_c)]
    else:
        steps = [(s, g, c) for s in range(n_s) for g in range(n_g) for c in range(n_c)]
    # each operand's blocks: runs of consecutive steps that use the same block; run[k] = block of step k
    runs = {"LOAD_INP": ([], [], [], []), "LOAD_WGT": ([], [], [], [])}  # first, last, bytes; block per step
    last_key = {}
    for k, (s, g, c) in enumerate(steps):
        for op, key, nbytes in (
                ("LOAD_INP", (s, -1) if inp_full else (s, c), pix_in[s] * (t.ci_t if inp_full else csz[c]) * inp_elem),
                ("LOAD_WGT", (g, -1) if wgt_full else (g, c), gsz[g] * (t.ci_t if wgt_full else csz[c]) * wgt_elem)):
            first, last, size, of = runs[op]
            if first and key == last_key[op]:
                last[-1] = k
            else:
                first.append(k)
                last.append(k)
                size.append(nbytes)
                last_key[op] = key
            of.append(len(first) - 1)
    # where each block's loads go: a block is prefetched into the free half of its buffer during the
    # previous block's run (spread over its steps but the first, by when the block two back, which
    # held that half, is no longer used), or, after a one-step run, loaded with its first step; a
    # block holding all input channels that is not prefetched (the first) is loaded chunk by chunk
    # with the steps that use the chunks, so that the first step waits for one chunk only
    at = [[] for _ in steps]  # per step, the loads issued with it: (prefetch?, op, bytes, need, block)
    for op, (first, last, size, _) in runs.items():
        full = inp_full if op == "LOAD_INP" else wgt_full
        for j in range(len(first)):
            need = last[j - 2] if j >= 2 else -1
            if j and last[j - 1] > first[j - 1]:
                span = last[j - 1] - first[j - 1]
                n = int(_prefetch_chunks(size[j], span + 1))
                for i in range(n):
                    part = size[j] * (i + 1) // n - size[j] * i // n
                    at[first[j - 1] + 1 + i * span // n].append((True, op, part, need, j, -1))
            elif full and n_c > 1:
                for c in range(n_c):
                    at[first[j] + c].append((False, op, size[j] * csz[c] // t.ci_t, need, j, c))
            else:
                at[first[j]].append((False, op, size[j], need, j, -1))
    # load order per step: the step's own blocks (inputs, then weights), then the prefetches
    loads: list[tuple[int, Insn, int]] = []  # (step, insn, need)
    pieces = defaultdict(list)  # (op, block) -> [(step it is issued with, index in `loads`)]
    for k, items in enumerate(at):
        for _, op, nbytes, need, j, c in sorted(items, key=lambda x: x[:2]):
            loads.append((k, Insn("load", op, nbytes=nbytes, buf=((op, j),), chunk=c), need))
            pieces[(op, j)].append((k, len(loads) - 1))
    # tokens: a LOAD pops compute's WAR token of the last step that used its buffer half (unless the
    # load module already waited for a later one); a GEMM pops the RAW token of the last LOAD it reads
    war_steps, waited = set(), -1
    for _, ins, need in loads:
        if need > waited:
            ins.pop_next, waited = True, need
            war_steps.add(need)
    inp_of, wgt_of = runs["LOAD_INP"][3], runs["LOAD_WGT"][3]
    raw_pops, popped = set(), -1
    for k in range(len(steps)):
        # the last piece of each block it reads that is issued before or with this step
        ready = max(max(i for st, i in pieces[(op, of[k])] if st <= k)
                    for op, of in (("LOAD_INP", inp_of), ("LOAD_WGT", wgt_of)))
        if ready > popped:
            raw_pops.add(k)
            popped = ready
            loads[ready][1].push_next = True
    prog: list[Insn] = [Insn("compute", "LOAD_UOP", nbytes=UOP_BYTES * L.kh * L.kw * t.ci_chunk)]
    li = 0
    taps = L.kh * L.kw
    for k, (s, g, c) in enumerate(steps):
        while li < len(loads) and loads[li][0] == k:
            prog.append(loads[li][1])
            li += 1
        tile = k // n_c
        acc = (("ACC", tile),)
        if c == 0:
            # the bias load needs a free accumulator half (store->compute), not the inputs: it is issued
            # first so that it overlaps the wait for the step's loads
            prog.append(Insn("compute", "LOAD_ACC", nbytes=gsz[g] * p.acc_elem_bytes, pop_next=tile >= 2, buf=acc))
        prog.append(Insn("compute", "GEMM", ops=t.b_t * pix[s] * taps * csz[c] * gsz[g], pop_prev=k in raw_pops,
                         push_prev=k in war_steps, buf=(("LOAD_INP", inp_of[k]), ("LOAD_WGT", wgt_of[k])) + acc, chunk=c))
        if c == n_c - 1:
            vec = t.b_t * pix[s] * gsz[g]
            prog.append(Insn("compute", "ALU", ops=vec * REQUANT_OPS, push_next=True, buf=acc))
            prog.append(Insn("store", "STORE", nbytes=vec * p.out_elem_bytes, pop_prev=True, push_prev=True, buf=acc))
    return prog


def simulate(name: str, prog: list[Insn], p: VTAParams, tiles: int = 0, trace: list | None = None) -> LayerStats:
    """Run the three in-order module queues with VTA's dependency-token queues; count and time.

    ``trace``, if given, receives each instruction's (start, end) cycle, in program order.
    """
    mods = ("load", "compute", "store")
    bpc = p.bytes_per_cycle
    queues = {m: [] for m in mods}
    for idx, ins in enumerate(prog):
        if ins.op.startswith("LOAD") or ins.op == "STORE":
            dur = DRAM_LATENCY_CYCLES + math.ceil(ins.nbytes / bpc)
        elif ins.op == "GEMM":
            dur = GEMM_DEPTH + ins.ops
        else:
            dur = ALU_DEPTH + ALU_II * ins.ops
        queues[ins.module].append((idx, dur, ins.pop_prev, ins.pop_next, ins.push_prev, ins.push_next))
    # tokens[(a, b)]: the cycles at which module a pushed tokens to module b, not yet popped
    tokens = {k: deque() for k in (("load", "compute"), ("compute", "load"), ("compute", "store"), ("store", "compute"))}
    prev = {"load": None, "compute": "load", "store": "compute"}
    nxt = {"load": "compute", "compute": "store", "store": None}
    pos = {m: 0 for m in mods}
    free_at = {m: 0 for m in mods}
    busy = {m: 0 for m in mods}
    times = [None] * len(prog) if trace is not None else None
    remaining = len(prog)
    while remaining:
        progressed = False
        for m in mods:
            q, i = queues[m], pos[m]
            t_free = free_at[m]
            from_prev, from_next = tokens.get((prev[m], m)), tokens.get((nxt[m], m))
            to_prev, to_next = tokens.get((m, prev[m])), tokens.get((m, nxt[m]))
            while i < len(q):
                idx, dur, pop_p, pop_n, push_p, push_n = q[i]
                if (pop_p and not from_prev) or (pop_n and not from_next):
                    break
                start = t_free
                if pop_p:
                    start = max(start, from_prev.popleft())
                if pop_n:
                    start = max(start, from_next.popleft())
                t_free = start + dur
                busy[m] += dur
                if push_p:
                    to_prev.append(t_free)
                if push_n:
                    to_next.append(t_free)
                if times is not None:
                    times[idx] = (start, t_free)
                i += 1
            if i > pos[m]:
                remaining -= i - pos[m]
                pos[m], free_at[m] = i, t_free
                progressed = True
        if not progressed:
            raise RuntimeError(f"{name}: the instruction stream deadlocked (a lowering bug)")
    st = LayerStats(name, int(max(free_at.values())), tiles=tiles, instructions=len(prog), busy=dict(busy))
    for ins in prog:
        counter, what = _COUNTERS[ins.op]
        setattr(st, counter, getattr(st, counter) + getattr(ins, what))
    if trace is not None:
        trace[:] = times
    return st


# Which counter each instruction adds to, and whether it counts bytes or ops (VTA's counters).
_COUNTERS = {"LOAD_INP": ("inp_load_bytes", "nbytes"), "LOAD_WGT": ("wgt_load_bytes", "nbytes"),
             "LOAD_ACC": ("acc_load_bytes", "nbytes"), "LOAD_UOP": ("uop_load_bytes", "nbytes"),
             "STORE": ("out_store_bytes", "nbytes"), "GEMM": ("gemm_ops", "ops"), "ALU": ("alu_ops", "ops")}


def run_layer(L: ConvLayer, p: VTAParams, tiling: str = "search") -> LayerStats:
    """Plan, lower and simulate one layer (cached per layer shape, configuration and tiling rule)."""
    plan(L, p, tiling)  # checks the name and that a tile fits, with this layer's name in errors
    st = _searched(_shape_key(L), p)[1] if tiling == "search" else _fixed_stats(_shape_key(L), p)
    return dataclasses.replace(st, name=L.name, busy=dict(st.busy))


@functools.lru_cache(maxsize=4096)
def _fixed_stats(L: ConvLayer, p: VTAParams) -> LayerStats:
    return _simulate_tiling(L, p, _fixed_plan(L, p))
