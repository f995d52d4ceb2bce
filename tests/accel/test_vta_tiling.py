"""The tiling search of the VTA lowering: VTA's published ResNet-18 traffic, buffer halves, honest counters,
never slower than the former fixed rule."""

import math
import time
from collections import defaultdict

import numpy as np
import pytest

from explorer.accel import sim
from explorer.accel.params import VTAParams, vta_json
from explorer.accel.sim import BufferCapacityError, ConvLayer, Tiling, lower, plan, run_layer, simulate, tiling_costs
from explorer.backends import load_target

HW = load_target("vta").hardware_space()
DEFAULT = vta_json(HW.default_config())
# VTA's simulator on ResNet-18, default configuration (TVM's "Deploy Pretrained Vision Model" tutorial)
VTA_INP_LOAD_BYTES = 5_549_568
VTA_WGT_LOAD_BYTES = 12_763_136


def params(**kw) -> VTAParams:
    return VTAParams.from_config({**DEFAULT, **kw})


def random_params(rng) -> VTAParams:
    return VTAParams.from_config(vta_json(HW.config_from_indices({k.name: int(rng.integers(len(k.values))) for k in HW.knobs})))


def closed_form_gemm_ops(L: ConvLayer, p: VTAParams) -> int:
    return (math.ceil(L.n / p.batch) * math.ceil(L.cin / p.block_in) * math.ceil(L.cout / p.block_out)
            * L.hout * L.wout * L.kh * L.kw)


# layers of the shapes the search spaces and the zoo produce (strided, 1x1, 7x7, dense, odd channels)
LAYERS = [
    ConvLayer("c3", 64, 64, 56, 56, 3, 3, 1, 1),
    ConvLayer("s2", 128, 256, 28, 28, 3, 3, 2, 1),
    ConvLayer("pw", 256, 512, 14, 14, 1, 1, 2, 0),
    ConvLayer("deep", 512, 512, 7, 7, 3, 3, 1, 1),
    ConvLayer("stem", 3, 64, 224, 224, 7, 7, 2, 3),
    ConvLayer("odd", 40, 72, 15, 15, 3, 3, 1, 1),
    ConvLayer("dense", 512, 1000, 1, 1, 1, 1, 1, 0),
    ConvLayer("dil", 32, 48, 20, 20, 3, 3, 1, 2, 2),
    ConvLayer("batch", 64, 64, 14, 14, 3, 3, 1, 1, 1, 2),
]


def test_resnet18_searched_loads_meet_vta_published_figures(resnet18_layers):
    """Summed over the convolutions but the first (VTA's published run offloads conv1..conv19): input and
    weight loads at most VTA's; GEMM ops the closed form; never more cycles than the fixed rule."""
    p = params()
    convs = [L for L in resnet18_layers if L.name.startswith("conv")][1:]
    assert [L.name for L in convs] == [f"conv{i}" for i in range(1, 20)]
    new = [run_layer(L, p) for L in convs]
    old = [run_layer(L, p, "fixed") for L in convs]
    inp, wgt = sum(s.inp_load_bytes for s in new), sum(s.wgt_load_bytes for s in new)
    assert inp <= VTA_INP_LOAD_BYTES and wgt <= VTA_WGT_LOAD_BYTES, (inp, wgt)
    assert inp < sum(s.inp_load_bytes for s in old) / 2
    assert sum(s.gemm_ops for s in new) == sum(closed_form_gemm_ops(L, p) for L in convs)
    assert all(a.cycles <= b.cycles for a, b in zip(new, old))


@pytest.mark.parametrize("kw", [{}, {"LOG_BLOCK_IN": 3, "LOG_BLOCK_OUT": 5}, {"LOG_BLOCK_IN": 5, "LOG_BLOCK_OUT": 3},
                                {"LOG_BATCH": 1, "LOG_INP_BUFF_SIZE": 14, "LOG_ACC_BUFF_SIZE": 15},
                                {"LOG_WGT_BUFF_SIZE": 16, "LOG_INP_WIDTH": 2, "LOG_WGT_WIDTH": 2, "DRAM_BW_GBPS": 1.0}])
def test_gemm_ops_equal_the_closed_form(kw):
    p = params(**kw)
    for L in LAYERS:
        for tiling in ("search", "fixed"):
            try:
                assert run_layer(L, p, tiling).gemm_ops == closed_form_gemm_ops(L, p), (L.name, tiling)
            except BufferCapacityError:
                assert tiling == "fixed"  # the search splits input channels where the fixed rule cannot


def _footprint_bytes(L: ConvLayer, p: VTAParams, t: Tiling) -> dict:
    """Buffer bytes of the largest tile, written out from the tiling (independent of the planner)."""
    rows, cols = min(t.rows, L.hout), min(t.cols, L.wout)
    rows_in = (rows - 1) * L.stride + (L.kh - 1) * L.dilation + 1
    cols_in = (cols - 1) * L.stride + (L.kw - 1) * L.dilation + 1
    several = t.ci_chunk < t.ci_t
    ci_inp = t.ci_chunk if several and not (t.order == "inp" and t.resident) else t.ci_t
    ci_wgt = t.ci_chunk if several and not (t.order == "wgt" and t.resident) else t.ci_t
    return {"inp": t.b_t * ci_inp * rows_in * cols_in * p.batch * p.block_in * p.inp_bits // 8,
            "wgt": t.groups * ci_wgt * L.kh * L.kw * p.block_out * p.block_in * p.wgt_bits // 8,
            "acc": t.b_t * rows * cols * t.groups * p.batch * p.block_out * 4,
            "uop": 4 * L.kh * L.kw * t.ci_chunk}


def test_tilings_fit_half_of_each_buffer(resnet18_layers):
    rng = np.random.default_rng(0)
    for p in [params()] + [random_params(rng) for _ in range(6)]:
        half = {"inp": p.inp_buf_bytes // 2, "wgt": p.wgt_buf_bytes // 2, "acc": p.acc_buf_bytes // 2, "uop": p.uop_buf_bytes}
        for L in resnet18_layers + LAYERS:
            try:
                t = plan(L, p)
            except BufferCapacityError:
                continue
            need = _footprint_bytes(L, p, t)
            assert all(need[k] <= half[k] for k in half), (L.name, t, need, half)
            # no single load moves more than its block
            _, prog = lower(L, p, t)
            assert max(i.nbytes for i in prog if i.op == "LOAD_INP") <= half["inp"]
            assert max(i.nbytes for i in prog if i.op == "LOAD_WGT") <= half["wgt"]


def _every_kind_of_tiling(L: ConvLayer, p: VTAParams):
    """Tilings of each loop order, resident or streamed, several chunks or one, with ragged edges."""
    ci_t, co_t = math.ceil(L.cin / p.block_in), math.ceil(L.cout / p.block_out)
    b_t = math.ceil(L.n / p.batch)
    for rows, cols, groups, chunk in [(1, L.wout, 1, 1), (3, max(1, L.wout // 2), 2, 3), (L.hout, L.wout, co_t, ci_t),
                                      (2, 5, 3, 2)]:
        for order in ("wgt", "inp"):
            for resident in (True, False):
                yield Tiling(rows, cols, min(groups, co_t), b_t, ci_t, co_t, min(chunk, ci_t), order, resident)


def test_instruction_streams_respect_buffer_halves_and_counters_match_the_closed_form():
    """Under the simulated timing, every GEMM reads blocks whose loads have finished (RAW) and every load
    overwrites a buffer half only after the last GEMM reading its previous occupant (WAR); the same
    for the accumulator halves. The closed-form counters equal the simulated ones."""
    p = params(DRAM_BW_GBPS=1.0)
    for L in [LAYERS[0], LAYERS[3], LAYERS[5], LAYERS[8]]:
        for t in _every_kind_of_tiling(L, p):
            _, prog = lower(L, p, t)
            trace = []
            s = simulate(L.name, prog, p, trace=trace)
            loaded, used = defaultdict(lambda: [math.inf, 0]), defaultdict(lambda: [math.inf, 0])
            pieces = defaultdict(list)  # (operand, block) -> [(chunk, end)] of its loads
            for ins, (start, end) in zip(prog, trace):
                for key in ins.buf:
                    span = loaded[key] if ins.op in ("LOAD_INP", "LOAD_WGT", "LOAD_ACC") else used[key]
                    span[0], span[1] = min(span[0], start), max(span[1], end)
                    if ins.op in ("LOAD_INP", "LOAD_WGT"):
                        pieces[key].append((ins.chunk, end))
            for ins, (start, _) in zip(prog, trace):
                if ins.op == "GEMM":  # RAW: the loads of what it reads (its chunk, or the whole block) are done
                    for key in ins.buf[:2]:
                        assert start >= max(e for c, e in pieces[key] if c in (-1, ins.chunk)), (t, key)
            for (op, j), (first_load, _) in loaded.items():
                if (op, j - 2) in used:
                    assert first_load >= used[(op, j - 2)][1], (t, op, j)  # WAR on the same half
            stores = {i.buf[0][1]: tr for i, tr in zip(prog, trace) if i.op == "STORE"}
            for i, (start, _) in zip(prog, trace):
                if i.op == "LOAD_ACC" and i.buf[0][1] >= 2:
                    assert start >= stores[i.buf[0][1] - 2][1], t
            cf = tiling_costs(L, p, t)
            for k in ("inp_load_bytes", "wgt_load_bytes", "acc_load_bytes", "uop_load_bytes", "out_store_bytes"):
                assert cf[k] == getattr(s, k), (t, k)
            assert s.gemm_ops == closed_form_gemm_ops(L, p)
            assert abs(cf["cycles"] / s.cycles - 1) < 0.25, (t, cf["cycles"], s.cycles)


def test_search_is_never_slower_than_the_fixed_rule():
    """Property over random layers and configurations: the searched tiling takes at most the fixed
    rule's cycles (where the fixed rule can run the layer at all)."""
    rng = np.random.default_rng(1)
    checked = 0
    for _ in range(40):
        p = random_params(rng)
        k = int(rng.choice([1, 3, 5]))
        s = int(rng.choice([1, 2]))
        h = int(rng.integers(k, 40))
        L = ConvLayer("r", int(rng.integers(1, 300)), int(rng.integers(1, 300)), h, h, k, k, s, k // 2)
        new = run_layer(L, p)
        try:
            old = run_layer(L, p, "fixed")
        except BufferCapacityError:
            continue
        checked += 1
        assert new.cycles <= old.cycles, (L, p)
        assert new.gemm_ops == old.gemm_ops == closed_form_gemm_ops(L, p)
    assert checked >= 30


def test_smallest_tile_that_does_not_fit_is_one_clear_error():
    p = params(LOG_WGT_BUFF_SIZE=16, LOG_BLOCK_IN=5, LOG_BLOCK_OUT=5)
    L = ConvLayer("stem", 3, 64, 224, 224, 7, 7, 2, 3)
    with pytest.raises(BufferCapacityError) as e:
        run_layer(L, p)
    msg = str(e.value)
    assert "layer stem" in msg and "cannot run on this configuration" in msg and "wgt 50176 B > 32768 B" in msg
    assert "inp" not in msg.split("needs")[1].split("(")[0]  # only the buffer that overflows is named
    with pytest.raises(ValueError, match="valid: search, fixed"):
        plan(L, params(), "best")


def test_results_are_cached_per_shape_and_configuration(resnet18_layers):
    p = params(LOG_ACC_BUFF_SIZE=16)
    sim._searched.cache_clear()
    sim._fixed_stats.cache_clear()
    t0 = time.perf_counter()
    first = [run_layer(L, p) for L in resnet18_layers]
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = [run_layer(L, p) for L in resnet18_layers]
    warm = time.perf_counter() - t0
    assert [s.name for s in again] == [L.name for L in resnet18_layers]
    assert [s.as_json() for s in first] == [s.as_json() for s in again]
    assert cold < 5.0 and warm < cold / 10, (cold, warm)
    # layers of the same shape share one search: conv1..conv4 are one entry
    assert sim._searched.cache_info().currsize < len(resnet18_layers)
