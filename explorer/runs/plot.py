"""The plot of a search history, ``search.png`` in a run folder (Matplotlib's pyplot on the Agg
backend); the HTML report draws its own figures (:mod:`explorer.report.page`)."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["plot_history", "NothingToPlot"]


class NothingToPlot(ValueError):
    """The history holds no search steps (a random-search run samples designs instead)."""


def plot_history(history_path: str | Path, out_png: str | Path, limits_si: dict | None = None) -> Path:
    """Losses, expected resources against their limits, and choice entropies over the steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [json.loads(line) for line in Path(history_path).read_text().splitlines() if line.strip()]
    recs = [r for r in recs if "step" in r and "event" not in r and "expected" in r]
    limits_si = limits_si or {}
    if not recs:
        raise NothingToPlot("no search steps in the history to plot (a random-search run has samples, not steps)")
    fig, axes = plt.subplots(2, 4, figsize=(18, 7))
    steps = list(range(len(recs)))
    for key, ax in zip(("L1", "L2", "L"), [axes[0, 0]] * 3):
        ys = [r.get(key) if r.get(key) is not None else float("nan") for r in recs]
        ax.plot(steps, ys, label=key, lw=0.8)
    axes[0, 0].set_title("losses (L1 hardware step, L2 network step, L = L1 + L2)")
    axes[0, 0].legend()
    from ..units import RESOURCES_TABLE

    for ax, res in zip((axes[0, 1], axes[0, 2], axes[1, 0]), RESOURCES_TABLE):
        k = res.name
        if k not in recs[0]["expected"]:
            ax.axis("off")
            ax.text(0.5, 0.5, f"{res.display}: not priced by this target", ha="center", va="center",
                    transform=ax.transAxes)
            continue
        ax.plot(steps, [res.to_user(r["expected"][k]) for r in recs], lw=0.8, label="expected")
        der = [(i, res.to_user(r["derived"]["figures"][k])) for i, r in enumerate(recs) if "derived" in r]
        if der:
            ax.plot(*zip(*der), "o", ms=3, label="derived design")
        if k in limits_si:
            ax.axhline(res.to_user(limits_si[k]), color="r", ls="--", label="limit")
        ax.set_title(res.label)
        ax.legend(fontsize=7)
    axes[1, 1].plot(steps, [r["entropy_ops"] for r in recs], label="network choices")
    axes[1, 1].plot(steps, [r["entropy_knobs"] for r in recs], label="hardware knobs")
    axes[1, 1].set_title("mean entropy (nats)")
    axes[1, 1].legend(fontsize=7)
    acc = [(i, r["derived"]["val_accuracy"]) for i, r in enumerate(recs) if "derived" in r]
    if acc:
        axes[1, 2].plot(*zip(*acc), "o-", ms=3)
    axes[1, 2].set_title("derived design: one-shot val accuracy")
    meas = [(r["step"], m) for r in recs for m in r.get("measured", []) if "measured_s" in m]
    ax = axes[1, 3]
    if meas:
        ax.plot([s for s, _ in meas], [abs(m["rel_error"]) * 100 for _, m in meas], "o-", ms=3)
        ax.set_ylabel("|predicted - measured| / measured (%)")
        ax.set_title("cost model vs background measurements")
        inset = axes[0, 3]
        inset.plot([m["measured_s"] * 1e3 for _, m in meas], [m["predicted_s"] * 1e3 for _, m in meas], "o", ms=3)
        lo = min(min(m["measured_s"], m["predicted_s"]) for _, m in meas) * 1e3
        hi = max(max(m["measured_s"], m["predicted_s"]) for _, m in meas) * 1e3
        inset.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        inset.set_xlabel("measured latency (ms)")
        inset.set_ylabel("predicted before refit (ms)")
        inset.set_title("predicted vs measured")
    else:
        for a in (axes[0, 3], axes[1, 3]):
            a.axis("off")
        ax.text(0.5, 0.5, "no measurements\n(analytical target)", ha="center", va="center", transform=ax.transAxes)
    for ax in list(axes[0, :3]) + list(axes[1, :3]) + [axes[1, 3]]:
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return Path(out_png)
