"""Pareto fronts and hypervolume of (accuracy, cost) points: accuracy maximised, cost minimised."""

from __future__ import annotations

from ..units import RESOURCES_TABLE

__all__ = ["front", "hypervolume", "OBJECTIVES", "point_of"]

#: the costs an exploration draws fronts for (summary figure keys, user units): ``latency_ms``, ...
OBJECTIVES = tuple(r.figure_key for r in RESOURCES_TABLE)


def front(points: list[tuple[object, float, float]]) -> list[object]:
    """Ids of the non-dominated ``(id, accuracy, cost)`` points, by increasing cost.

    A point is dominated when another is at least as accurate and at most as costly, and better in
    one of the two; of exact duplicates the first is kept.
    """
    best_acc, out = float("-inf"), []
    for pid, acc, cost in sorted(points, key=lambda p: (p[2], -p[1])):
        if acc > best_acc:
            out.append(pid)
            best_acc = acc
    return out


def hypervolume(points: list[tuple[float, float]], ref_cost: float, ref_acc: float) -> float:
    """Share of the box ``[ref_acc, 1] x [0, ref_cost]`` (accuracy x cost) dominated by the
    ``(accuracy, cost)`` points, in [0, 1]. Points below ``ref_acc`` or above ``ref_cost`` add
    nothing. Higher is better: more accurate designs at lower cost.
    """
    if ref_cost <= 0 or ref_acc >= 1:
        raise ValueError("hypervolume needs ref_cost > 0 and ref_acc < 1")
    pts = sorted((c, a) for a, c in points if a > ref_acc and c < ref_cost)
    area, best = 0.0, ref_acc
    # sweep cost from low to high: between a point's cost and the next, the dominated height is the
    # best accuracy seen so far
    for i, (c, a) in enumerate(pts):
        best = max(best, a)
        nxt = pts[i + 1][0] if i + 1 < len(pts) else ref_cost
        area += (nxt - c) * (best - ref_acc)
    return area / ((1.0 - ref_acc) * ref_cost)


def point_of(summary: dict) -> dict:
    """What a finished run contributes to fronts: accuracy (test accuracy after retraining, else the
    validation accuracy after selection's brief training, else the one-shot validation accuracy,
    named in ``accuracy_kind``) and its costs, the measured latency
    (and what follows it) where the target measured the design."""
    if summary.get("test_accuracy") is not None:
        acc, kind = summary["test_accuracy"], "test"
    elif summary.get("proxy_val_accuracy") is not None:  # trained from scratch, if briefly
        acc, kind = summary["proxy_val_accuracy"], "briefly trained val"
    else:
        acc, kind = summary.get("one_shot_val_accuracy"), "one-shot val"
    fig = dict(summary.get("figures") or {})
    meas = (summary.get("measured") or {}).get("figures") or {}
    fig.update({k: v for k, v in meas.items() if k in OBJECTIVES})
    return {"accuracy": acc, "accuracy_kind": kind, **{k: fig[k] for k in OBJECTIVES if k in fig},
            "measured": bool(meas)}
