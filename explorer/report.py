"""Plots of a search history, for people."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["plot_history"]


def plot_history(history_path: str | Path, out_png: str | Path, limits_si: dict | None = None) -> Path:
    """Losses, expected resources against their limits, and choice entropies over the steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [json.loads(line) for line in Path(history_path).read_text().splitlines() if line.strip()]
    recs = [r for r in recs if "step" in r and "event" not in r and "expected" in r]
    limits_si = limits_si or {}
    fig, axes = plt.subplots(2, 3, figsize=(14, 7))
    steps = list(range(len(recs)))
    for key, ax in zip(("L1", "L2", "L"), [axes[0, 0]] * 3):
        ys = [r.get(key) if r.get(key) is not None else float("nan") for r in recs]
        ax.plot(steps, ys, label=key, lw=0.8)
    axes[0, 0].set_title("losses (L1 hardware step, L2 network step, L = L1 + L2)")
    axes[0, 0].legend()
    units = {"latency_s": ("ms", 1e3), "energy_j": ("mJ", 1e3), "area_mm2": ("mm2", 1.0)}
    for ax, k in zip((axes[0, 1], axes[0, 2], axes[1, 0]), units):
        u, f = units[k]
        ax.plot(steps, [r["expected"][k] * f for r in recs], lw=0.8, label="expected")
        der = [(i, r["derived"]["figures"][k] * f) for i, r in enumerate(recs) if "derived" in r]
        if der:
            ax.plot(*zip(*der), "o", ms=3, label="derived design")
        if k in limits_si:
            ax.axhline(limits_si[k] * f, color="r", ls="--", label="limit")
        ax.set_title(f"{k.rsplit('_', 1)[0]} ({u})")
        ax.legend(fontsize=7)
    axes[1, 1].plot(steps, [r["entropy_ops"] for r in recs], label="network choices")
    axes[1, 1].plot(steps, [r["entropy_knobs"] for r in recs], label="hardware knobs")
    axes[1, 1].set_title("mean entropy (nats)")
    axes[1, 1].legend(fontsize=7)
    acc = [(i, r["derived"]["val_accuracy"]) for i, r in enumerate(recs) if "derived" in r]
    if acc:
        axes[1, 2].plot(*zip(*acc), "o-", ms=3)
    axes[1, 2].set_title("derived design: one-shot val accuracy")
    for ax in axes.flat:
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return Path(out_png)
