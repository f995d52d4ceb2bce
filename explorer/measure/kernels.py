"""Kernel-level truth: time every kernel of a built library, and attribute kernels to the search
space's slots.

:func:`time_kernels` runs ``main`` once with the Relax VM's instrument hook to capture every kernel
call (name and arguments) in program order, then times each kernel alone with ``time_evaluator``
on those arguments (no Python in the figure). What ``main`` costs beyond its kernels (the VM's
dispatch, allocations) is the end-to-end figure minus their sum.

:func:`attribute` maps the kernels of a derived design to groups of consecutive slots. TVM's importer
keeps no link from a kernel back to the ONNX node it came from, so the link is made by order and
shape: "anchor" kernels (convolutions, pools, reductions, matrix products) are matched one to one,
in program order, with the design's anchor workloads (checking weight and input shapes), and every
other kernel (bias adds, activations, residual adds, layout copies) goes with the anchor before it.
A group is a slot that holds anchors plus the slots after it that hold none (a layer's activation
slot joins its operator's group), so a group's kernel time prices exactly its slots' rows. Spaces
whose slots are not in program order, or a graph the compiler changed beyond this, fail the shape
checks: the design is then used end to end only.
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import ModelError

__all__ = ["time_kernels", "attribute", "AttributionError", "is_anchor_workload", "is_anchor_kernel"]

_ANCHOR_OPS = ("depthwise_conv2d", "max_pool", "avg_pool", "avg_pool_2x2", "global_avg_pool")
_ANCHOR_KERNEL = re.compile(r"conv2d|max_pool|avg_pool|pool2d|mean|matmul|dense")


class AttributionError(ModelError):
    """The kernels of a design could not be matched to its slots."""


def is_anchor_workload(w) -> bool:
    return w.kind == "conv" or w.op in _ANCHOR_OPS


def is_anchor_kernel(name: str) -> bool:
    return bool(_ANCHOR_KERNEL.search(name))


def time_kernels(rt, vm, dev, args: list, repeat: int = 5, number: int = 20) -> list[list]:
    """``[[kernel name, seconds, [argument shapes]], ...]`` in program order, for one run of
    ``main(*args)``; each kernel timed alone on the arguments it had."""
    calls = []

    def hook(func, name, before, ret, *a):
        if before and not name.startswith("vm.builtin"):
            calls.append((name, list(a)))
        return 0

    vm.set_instrument(hook)
    try:
        vm["main"](*args)
    finally:
        vm.set_instrument(None)
    lib = rt.imports[0] if rt.imports else rt
    out, cache = [], {}
    for name, a in calls:
        shapes = [list(x.shape) for x in a if hasattr(x, "shape")]
        key = (name, str(shapes))
        if key not in cache:
            res = lib.time_evaluator(name, dev, number=number, repeat=repeat)(*a)
            cache[key] = float(np.median(list(res.results)))
        out.append([name, cache[key], shapes])
    return out


def _check(w, shapes) -> bool:
    """Does an anchor kernel's arguments fit anchor workload ``w``?"""
    if not shapes:
        return False
    x = shapes[0]
    if w.kind == "conv" and w.hin == 1 and w.win == 1 and len(x) == 2:  # a classifier: matmul on (N, C)
        return x[1] == w.cin
    if len(x) != 4:
        return False
    if w.kind == "conv" or w.op == "depthwise_conv2d":
        if len(shapes) < 2 or len(shapes[1]) != 4:
            return False
        groups = w.cin if w.op == "depthwise_conv2d" else w.groups
        return x[1] == w.cin and x[2] == w.hin and shapes[1][0] == w.cout and shapes[1][1] == w.cin // groups \
            and shapes[1][2] == w.kh
    return x[1] == w.cin and x[2] == w.hin and x[3] == w.win


def attribute(space, genotype: dict, kernels: list) -> list[tuple[list[int], float]]:
    """``[(slot indices, seconds), ...]``: the kernel time of each group of consecutive slots of
    ``space``'s cost slots for ``genotype`` (see the module docstring). Raises AttributionError."""
    from ..slots import ComboTable

    ct = ComboTable(space.cost_slots(), space.choices())
    per_slot = []  # the anchor workloads of each slot, in program order
    for s in ct.slots:
        combo = tuple(ct.choices[a].index(genotype[a]) for a in s.axes)
        per_slot.append([w for w in s.table[combo] if is_anchor_workload(w)])
    wanted = [w for ws in per_slot for w in ws]
    found = [i for i, k in enumerate(kernels) if is_anchor_kernel(k[0])]
    if len(found) != len(wanted):
        raise AttributionError(f"{len(found)} anchor kernels for {len(wanted)} anchor workloads")
    for j, (i, w) in enumerate(zip(found, wanted)):
        if not _check(w, kernels[i][2]):
            raise AttributionError(f"anchor {j}: kernel {kernels[i][0]} {kernels[i][2][:2]} does not fit workload {w.name}")
    groups, a = [], 0  # (slots, first anchor index)
    for si, ws in enumerate(per_slot):
        if ws or not groups:
            groups.append(([si], a))
        else:
            groups[-1][0].append(si)
        a += len(ws)
    out = []
    for g, (slots, first) in enumerate(groups):
        lo = 0 if g == 0 else found[first]
        nxt = groups[g + 1][1] if g + 1 < len(groups) else None
        hi = found[nxt] if nxt is not None and nxt < len(found) else len(kernels)
        out.append((slots, float(sum(k[1] for k in kernels[lo:hi]))))
    return out
