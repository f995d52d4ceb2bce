"""The HTML report: a section per run and per exploration, every figure a PNG embedded as a data URI.

The page needs nothing but itself to render: CSS inline, no script, no font or image fetched (the
favicon too is an empty data URI, so that a browser does not ask for one). Figures are drawn with
Matplotlib's Agg canvas on figures that pyplot never sees (no global state, nothing shown).

The folders come read by :mod:`explorer.report.write` (``RunData``, ``ExplorationData``, told apart by their
``kind``); this module does not import it, so that the two stay one layer apart.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import math
import re

from ..explore.pareto import OBJECTIVES, front, point_of
from ..units import RESOURCES_TABLE, by_figure_key, by_limit_key

__all__ = ["render"]

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1300px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 2px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
h3 { margin-top: 1.5em; } h4 { margin: 1em 0 .3em; }
section.run, section.exploration { margin-bottom: 2.5em; }
section.exploration section.run { border-left: 3px solid #ddd; padding-left: 1em; }
table { border-collapse: collapse; margin: .4em 1.5em .8em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 2px 7px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.tables { display: flex; flex-wrap: wrap; align-items: flex-start; }
img.plot { max-width: 100%; display: block; margin: .3em 0 1em; border: 1px solid #eee; }
.pareto-row { display: flex; flex-wrap: wrap; gap: .5em; } .pareto-row img.plot { max-width: 420px; }
.note { background: #fff8e1; border-left: 4px solid #f0c040; padding: .3em .7em; }
.bad { color: #b00020; font-weight: 600; } .good { color: #1b7a1b; font-weight: 600; }
code, pre { font-size: 12px; background: #f6f6f6; } pre { padding: .4em; overflow-x: auto; white-space: pre-wrap; }
tr.front td:first-child { font-weight: 700; } nav ul { margin: .2em 0; }
.meta { color: #555; } p.genotype code { overflow-wrap: anywhere; }
"""


# -- small helpers -------------------------------------------------------------------------------

def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _num(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return _e(v)


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.2f}%"


def _yesno(v) -> str:
    if v is None:
        return "–"
    return '<span class="good">yes</span>' if v else '<span class="bad">no</span>'


def _f(v) -> float:
    """A history value as a float (the history writes NaN as null)."""
    return float("nan") if v is None else float(v)


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _table(head: list, rows: list, cls: str = "", row_cls=None) -> str:
    """Cells are HTML already (escape with :func:`_e`); ``row_cls`` gives each row a class."""
    out = [f'<table class="{_e(cls)}"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    for i, r in enumerate(rows):
        c = f' class="{_e(row_cls[i])}"' if row_cls and row_cls[i] else ""
        out.append(f"<tr{c}>" + "".join(f'<td class="num">{v}</td>' if _is_num(v) else f"<td>{v}</td>" for v in r)
                   + "</tr>")
    return "".join(out) + "</tbody></table>"


def _is_num(cell: str) -> bool:
    return bool(re.fullmatch(r"[-+]?[\d.]+(e[-+]?\d+)?%?|–", str(cell)))


def _figure_key(limit_key: str) -> str:
    """A config limit name (``energy_mj``) as the summary names the figure (``energy_mJ``)."""
    try:
        return by_limit_key(limit_key).figure_key
    except KeyError:
        return limit_key


def _label(fig_key: str) -> str:
    name, _, unit = fig_key.rpartition("_")
    return f"{name} ({unit})" if name else fig_key


def _limits_text(limits: dict | None) -> str:
    if not limits:
        return "none"
    return ", ".join(f"{_figure_key(k)} ≤ {v:g}" if isinstance(v, (int, float)) else f"{k}={v}"
                     for k, v in sorted(limits.items()))


def _target_name(t) -> str:
    t = str(t or "?")
    return re.sub(r"\.(json|toml)$", "", t.rsplit("/", 1)[-1])


class _Anchors:
    """Unique, readable ids for the page's sections."""

    def __init__(self):
        self.used: set[str] = set()

    def make(self, prefix: str, name: str) -> str:
        base = f"{prefix}-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "x")
        out, i = base, 2
        while out in self.used:
            out, i = f"{base}-{i}", i + 1
        self.used.add(out)
        return out


# -- figures -------------------------------------------------------------------------------------

def _fig(w: float, h: float, margins: dict | None = None):
    """A figure on its own Agg canvas. Margins are fixed (inches): a computed layout costs a second
    draw, and the report draws dozens of figures."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    if margins is not None:
        m = {"left": 0.6, "right": 0.15, "bottom": 0.5, "top": 0.35, "wspace": 0.25, **margins}
        fig.subplots_adjust(left=m["left"] / w, right=1 - m["right"] / w, bottom=m["bottom"] / h, top=1 - m["top"] / h,
                            wspace=m["wspace"])
    return fig


def _img(fig, cls: str, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img class="plot {_e(cls)}" alt="{_e(alt)}" src="data:image/png;base64,{data}">'


class _History:
    """A run's history split for plotting. ``x`` runs on over a sequential run's second phase,
    whose step count starts again at 1."""

    def __init__(self, records: list):
        self.steps, self.events, self.samples, self.phase_starts = [], [], [], []
        offset, last = 0, 0
        for r in records:
            if "sample" in r:
                self.samples.append(r)
            elif "event" in r:
                self.events.append((offset + int(r.get("step") or 0), r))
            elif "step" in r and isinstance(r.get("expected"), dict):
                if r["step"] + offset <= last:  # a new phase
                    offset = last
                    self.phase_starts.append(offset)
                last = r["step"] + offset
                self.steps.append((last, r))

    @property
    def x(self) -> list:
        return [x for x, _ in self.steps]

    def series(self, get) -> list:
        out = []
        for _, r in self.steps:
            try:
                out.append(_f(get(r)))
            except (KeyError, TypeError):
                out.append(float("nan"))
        return out

    def mark_events(self, ax) -> None:
        first = True
        for x, ev in self.events:
            if ev.get("event") == "prune":
                ax.axvline(x, color="0.5", ls=":", lw=1, label="prune" if first else None)
                first = False
        for i, x in enumerate(self.phase_starts):
            ax.axvline(x, color="purple", ls="--", lw=1, label="second phase (hardware)" if i == 0 else None)


def _losses_figure(h: _History) -> str:
    fig = _fig(12, 3.4, {})
    ax, ax2 = fig.subplots(1, 2, width_ratios=[2, 1])
    for key, style in (("L1", "-"), ("L2", "-"), ("L", "-")):
        ax.plot(h.x, h.series(lambda r, k=key: r.get(k)), style, lw=0.9, label=key)
    h.mark_events(ax)
    ax.set_xlabel("step")
    ax.set_title("losses: L1 hardware step, L2 network step, L = L1 + L2")
    ax.legend(fontsize=8)
    acc = [(x, r["derived"].get("val_accuracy")) for x, r in h.steps if isinstance(r.get("derived"), dict)]
    acc = [(x, a) for x, a in acc if a is not None]
    if acc:
        ax2.plot(*zip(*acc), "o-", ms=3)
        ax2.set_xlabel("step")
        ax2.set_ylim(0, 1)
    else:
        ax2.axis("off")
        ax2.text(0.5, 0.5, "no derived design evaluated", ha="center", va="center", transform=ax2.transAxes)
    ax2.set_title("derived design: one-shot val accuracy")
    return _img(fig, "plot-losses", "losses L1, L2 and L over the steps")


def _resources_figure(h: _History, lower_bounds: dict) -> tuple[str, list]:
    shown = [res for res in RESOURCES_TABLE if any(res.name in r["expected"] for _, r in h.steps)]
    fig = _fig(4.2 * max(1, len(shown)), 3.2, {"wspace": 0.3})
    axes = fig.subplots(1, max(1, len(shown)), squeeze=False)[0]
    for ax, res in zip(axes, shown):
        k = res.name
        ax.plot(h.x, [res.to_user(v) for v in h.series(lambda r: r["expected"][k])], lw=0.9, label="expected (relaxed)")
        der = [(x, res.to_user(r["derived"]["figures"][k])) for x, r in h.steps
               if isinstance(r.get("derived"), dict) and k in (r["derived"].get("figures") or {})]
        if der:
            ax.plot(*zip(*der), "o", ms=4, label="derived design")
        lim = [res.to_user(v) for v in h.series(lambda r: r["limits"][k])]
        if any(math.isfinite(v) for v in lim):
            ax.plot(h.x, lim, "r--", lw=1.2, label="limit")
        if lower_bounds.get(res.figure_key) is not None:
            ax.axhline(lower_bounds[res.figure_key], color="0.4", ls=":", lw=1, label="cheapest design")
        h.mark_events(ax)
        ax.set_title(res.label)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    if not shown:
        axes[0].axis("off")
    alt = "expected " + ", ".join(res.display for res in shown) + " against their limits"
    return _img(fig, "plot-resources", alt), [res.name for res in shown]


def _probs_figure(h: _History, group: str, order: list) -> str | None:
    """Option probabilities of every network choice (``group="network"``) or hardware knob over the
    steps: a band per choice, its options stacked, the leading option at the last step written at
    the right. One axes for all choices (small multiples draw many times slower)."""
    import numpy as np

    recs = [(x, r["probs"][group]) for x, r in h.steps if isinstance((r.get("probs") or {}).get(group), dict)]
    if not recs or not recs[-1][1]:
        return None
    names = sorted(recs[-1][1], key=lambda n: order.index(n) if n in order else len(order))
    xs = np.array([x for x, _ in recs], dtype=float)
    from matplotlib import colormaps

    labels = list(dict.fromkeys(o for _, p in recs for n in names for o in (p.get(n) or {})))
    colour = {o: colormaps["tab20"](i % 20) for i, o in enumerate(labels)}
    legend_rows = math.ceil(len(labels) / 10) if group == "network" else 0
    height = 0.36 * len(names) + 0.9 + 0.3 * legend_rows
    fig = _fig(11, height)
    ax = fig.add_axes((0.13, (0.45 + 0.3 * legend_rows) / height, 0.66, 1 - (0.8 + 0.3 * legend_rows) / height))
    band = 0.86
    for i, n in enumerate(names):
        base = len(names) - 1 - i  # the first choice on top
        opts = list(dict.fromkeys(o for _, p in recs for o in (p.get(n) or {})))
        cum = np.zeros(len(xs))
        for j, o in enumerate(opts):
            pr = np.array([(p.get(n) or {}).get(o) or 0.0 for _, p in recs])
            c = colour[o] if group == "network" else colormaps["viridis"](j / max(1, len(opts) - 1))
            ax.fill_between(xs, base + band * cum, base + band * (cum + pr), color=c, lw=0)
            cum += pr
        last = recs[-1][1].get(n) or {}
        if last:
            top = max(last, key=last.get)
            order_txt = "" if group == "network" else "   (" + " | ".join(opts) + ")"
            ax.text(1.005, (base + band / 2 + 0.1) / (len(names) + 0.1), f"{top}  p={last[top]:.2f}{order_txt}",
                    transform=ax.transAxes, va="center", fontsize=8)
    for x, ev in h.events:
        if ev.get("event") == "prune":
            ax.axvline(x, color="k", ls=":", lw=1)
    for x in h.phase_starts:
        ax.axvline(x, color="purple", ls="--", lw=1.2)
    ax.set_yticks([len(names) - 1 - i + band / 2 for i in range(len(names))], names, fontsize=8)
    ax.set_ylim(-0.1, len(names))
    ax.set_xlim(xs[0], xs[-1] if xs[-1] > xs[0] else xs[0] + 1)
    ax.set_xlabel("step", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    what = "network choices" if group == "network" else "hardware knobs"
    how = "colours: options" if group == "network" else "shades: the knob's values in the target's order, dark to light"
    marks = "; dotted: prune" + ("; dashed: second phase" if h.phase_starts else "")
    ax.set_title(f"option probabilities of the {what} (each band sums to 1; {how}{marks})", fontsize=9)
    if group == "network":
        from matplotlib.patches import Patch

        fig.legend(handles=[Patch(color=colour[o], label=o) for o in labels], loc="lower center",
                   ncols=min(10, len(labels)), fontsize=8, frameon=False)
    return _img(fig, f"plot-probs plot-probs-{group}", f"option probabilities of the {what} over the steps")


def _entropy_figure(h: _History) -> str:
    fig = _fig(7, 3, {})
    ax = fig.subplots()
    ax.plot(h.x, h.series(lambda r: r.get("entropy_ops")), label="network choices")
    ax.plot(h.x, h.series(lambda r: r.get("entropy_knobs")), label="hardware knobs")
    h.mark_events(ax)
    ax.set_xlabel("step")
    ax.set_title("mean entropy of the choices (nats); this history records no per-option probabilities", fontsize=9)
    ax.legend(fontsize=8)
    return _img(fig, "plot-entropy", "mean entropy of the network choices and hardware knobs over the steps")


def _measurements(h: _History) -> tuple[list, list]:
    """(points, errors): points are (x, kind, why, predicted_s, measured_s)."""
    pts, errs = [], []
    for x, r in h.steps:
        for m in r.get("measured") or []:
            if m.get("measured_s") is not None and m.get("predicted_s") is not None:
                pts.append((x, "during the search", m.get("why", ""), m["predicted_s"], m["measured_s"]))
            elif m.get("error"):
                errs.append(f"step {x}: {m['error']}")
    for x, ev in h.events:
        if ev.get("event") == "measure-drain":
            for m in ev.get("measured") or []:
                if m.get("measured_s") is not None and m.get("predicted_s") is not None:
                    pts.append((x, "after the search", m.get("why", ""), m["predicted_s"], m["measured_s"]))
        if ev.get("event") == "verify":
            if ev.get("measured_s") is not None and ev.get("predicted_s") is not None:
                pts.append((x, f"verify round {ev.get('round', 0)}", ev.get("why", "kept design"), ev["predicted_s"], ev["measured_s"]))
            elif ev.get("error"):
                errs.append(f"verify at step {x}: {ev['error']}")
    return pts, errs


def _measured_figure(pts: list) -> str:
    fig = _fig(10, 3.4, {"left": 0.7, "wspace": 0.35})
    ax, ax2 = fig.subplots(1, 2)
    for kind, marker in (("during", "o"), ("after", "s"), ("verify", "*")):
        sel = [p for p in pts if p[1].startswith(kind)]
        if sel:
            label = {"during": "during the search", "after": "after the search", "verify": "finalists and kept design (verify)"}[kind]
            ax.plot([p[4] * 1e3 for p in sel], [p[3] * 1e3 for p in sel], marker, ls="none",
                    ms=6 if marker == "*" else 4, label=label)
    lo = min(min(p[3], p[4]) for p in pts) * 1e3
    hi = max(max(p[3], p[4]) for p in pts) * 1e3
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="predicted = measured")
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted by the cost model (ms)")
    ax.set_title("predicted vs measured latency")
    ax.legend(fontsize=7)
    ax2.plot([p[0] for p in pts], [100 * (p[3] - p[4]) / p[4] for p in pts], "o-", ms=3)
    ax2.axhline(0, color="k", lw=0.6)
    ax2.set_xlabel("step")
    ax2.set_ylabel("(predicted - measured) / measured (%)")
    ax2.set_title("cost model error, before each measurement refits it", fontsize=9)
    return _img(fig, "plot-measured", "latency predicted by the cost model against the measured latency")


def _samples_figure(samples: list) -> str:
    fig = _fig(10, 3.4, {"left": 0.7, "wspace": 0.3})
    ax, ax2 = fig.subplots(1, 2)
    res = next((r for r in RESOURCES_TABLE if all(r.name in (s.get("figures") or {}) for s in samples)), None)
    scored = [s for s in samples if s.get("val_accuracy") is not None]
    if res and scored:
        key = res.name
        ax.plot([res.to_user(s["figures"][key]) for s in scored], [s["val_accuracy"] for s in scored], "o", ms=4)
        best = min(scored, key=lambda s: _f(s.get("score")))
        ax.plot([res.to_user(best["figures"][key])], [best["val_accuracy"]], "r*", ms=12,
                label=f"kept (sample {best['sample']})")
        ax.set_xlabel(res.label)
        ax.set_ylabel("val accuracy after a short proxy training")
        ax.legend(fontsize=7)
    ax.set_title("random search: the feasible samples")
    sc = [(s["sample"], _f(s.get("score"))) for s in scored]
    if sc:
        ax2.plot(*zip(*sc), "o", ms=3, label="sample")
        run_best, bests = float("inf"), []
        for n, v in sc:
            run_best = min(run_best, v)
            bests.append((n, run_best))
        ax2.plot(*zip(*bests), "r-", lw=1, label="best so far")
        ax2.legend(fontsize=7)
    ax2.set_xlabel("sample")
    ax2.set_title("score (val loss + objective), lower is better", fontsize=9)
    return _img(fig, "plot-samples", "random-search samples: accuracy against cost, and score over the samples")


def _pareto_figure(points: list, front_ids: list, numbers: dict, objective: str, group: str, by_target: bool) -> str:
    """``points``: (id, accuracy, cost, target, measured)."""
    fig = _fig(5.2, 3.6, {"left": 0.7})
    ax = fig.subplots()
    from matplotlib import colormaps

    targets = list(dict.fromkeys(p[3] for p in points))
    cmap = colormaps["tab10"]
    for i, t in enumerate(targets):
        sel = [p for p in points if p[3] == t]
        ax.plot([p[2] for p in sel], [p[1] for p in sel], "o", ms=6, alpha=0.7,
                color=cmap(i % 10) if by_target else "0.55", label=t if by_target else "runs")
    on = {p[0]: p for p in points}
    fr = [on[i] for i in front_ids if i in on]
    if fr:
        fr = sorted(fr, key=lambda p: p[2])
        ax.step([p[2] for p in fr], [p[1] for p in fr], where="post", color="crimson", lw=1.2)
        ax.plot([p[2] for p in fr], [p[1] for p in fr], "o", ms=10, mfc="none", mec="crimson", mew=2,
                label="Pareto front")
        for p in fr:
            ax.annotate(f"#{numbers[p[0]]}", (p[2], p[1]), textcoords="offset points", xytext=(6, 5), fontsize=9,
                        color="crimson")
    ax.margins(0.12)
    ax.set_xlabel(_label(objective))
    ax.set_ylabel("accuracy")
    where = "all targets" if group == "all" else f"target {group}"
    ax.set_title(f"accuracy vs {by_figure_key(objective).display}: {where}", fontsize=10)
    ax.legend(fontsize=7)
    alt = f"Pareto front of accuracy against {objective} for {where}; front: " + \
        ", ".join(f"#{numbers[p[0]]}" for p in fr)
    return _img(fig, f"pareto pareto-{objective}", alt)


# -- run sections --------------------------------------------------------------------------------

def _choices_tables(genotype: dict, final_probs: dict) -> str:
    """The network choices, one row per layer/stage/edge: ``op_L0`` and ``act_L0`` share row L0."""
    groups: dict = {}
    for name, opt in genotype.items():
        m = re.fullmatch(r"([A-Za-z]+)_(.+)", name)
        kind, unit = (m.group(1), m.group(2)) if m else (name, "")
        groups.setdefault(unit, {})[kind] = (name, opt)
    by_kinds: dict = {}
    for unit, kinds in groups.items():
        by_kinds.setdefault(tuple(kinds), []).append((unit, kinds))
    out = []
    for kinds, units in by_kinds.items():
        head = ["where"] + [_e(k) for k in kinds]
        rows = []
        for unit, ks in units:
            cells = [f"<code>{_e(unit)}</code>"]
            for k in kinds:
                name, opt = ks[k]
                p = (final_probs.get(name) or {}).get(str(opt))
                cells.append(f"<b>{_e(opt)}</b>" + (f' <span class="meta">p={p:.2f}</span>' if p is not None else ""))
            rows.append(cells)
        out.append(_table(head, rows, "design-choices", ["choice"] * len(rows)))
    return "".join(out)


def _run_section(run, anchor: str, title: str, level: int = 2) -> str:
    s, cfg = run.summary, run.config or {}
    hx = f"h{level}"
    sub = f"h{min(6, level + 1)}"
    h = _History(run.history)
    target = (run.design or {}).get("target") or cfg.get("target")
    data = cfg.get("data") or {}
    meta = [f"method <b>{_e(s.get('method', cfg.get('method', '?')))}</b>", f"target <b>{_e(_target_name(target))}</b>"]
    if cfg:
        meta += [f"data set {_e(cfg.get('dataset', '?'))}", f"space {_e(cfg.get('space', '?'))}",
                 f"seed {_e(cfg.get('seed', '?'))}"]
    meta += [f"limits: {_e(_limits_text(s.get('limits', cfg.get('limits'))))}",
             f"{_e(s.get('steps', '?'))} {'samples' if h.samples else 'steps'}, "
             f"stopped on {_e(s.get('stop_reason', '?'))}",
             f"search {_e(s.get('search_s', '?'))} s"]
    out = [f'<section class="run" id="{_e(anchor)}">', f"<{hx}>{_e(title)}</{hx}>",
           f'<p class="meta">{" · ".join(meta)}<br>folder <code>{_e(run.path)}</code></p>']
    out += [_note(n) for n in run.notes]

    # the final design
    out.append(f"<{sub}>Final design</{sub}>")
    lb = cfg.get("lower_bounds") or {}
    limits = {_figure_key(k): v for k, v in (s.get("limits") or {}).items()}
    fig = s.get("figures") or {}
    meas = (s.get("measured") or {}).get("figures") or {}
    keys = [k for k in OBJECTIVES if k in fig] + [k for k in fig if k not in OBJECTIVES]
    rows = []
    for k in keys:
        ok = "–" if k not in limits else _yesno(fig[k] <= limits[k])
        if meas and k in limits and k in meas:
            ok += " / " + _yesno(meas[k] <= limits[k])
        rows.append([_e(_label(k)), _num(fig[k]), _num(meas.get(k)) if meas else "–", _num(limits.get(k)),
                     _num(lb.get(k)), ok])
    cost_t = _table(["figure", "cost model", "measured", "limit", "cheapest design",
                     "within limit" + (" (model / measured)" if meas else "")], rows, "figures")
    retrain = s.get("retrain") or {}
    res_rows = [
        ["test accuracy" + (f" (retrained {retrain['epochs']} epochs)" if retrain.get("epochs") else ""),
         _pct(s.get("test_accuracy")) if s.get("test_accuracy") is not None else "not retrained"],
        ["val accuracy after a short proxy training" if h.samples else "one-shot val accuracy (in the supernet)",
         _pct(s.get("one_shot_val_accuracy"))],
        ["limits met (cost model)", _yesno(s.get("limits_met")) if limits else "no limits set"],
        ["limits met (measured)", _yesno(s.get("limits_met_measured")) if limits else "–"],
        ["kept from sample" if h.samples else "kept from step", _num(s.get("best_step"))],
        ["repair moves", _e("; ".join(map(str, s.get("repaired_moves") or [])) or "none")],
        ["design key", f"<code>{_e(s.get('design_key', '–'))}</code>"],
    ]
    res_t = _table(["result", ""], res_rows, "result")
    last_probs = next((r["probs"] for _, r in reversed(h.steps) if isinstance(r.get("probs"), dict)), {})
    hw = run.hw_config or s.get("hardware") or {}
    searched = set((run.design or {}).get("hardware") or hw)
    hw_p = last_probs.get("hardware") or {}
    hw_rows = [[f"<code>{_e(k)}</code>", f"<b>{_e(v)}</b>" if k in searched else _e(v),
                "searched" if k in searched else "fixed",
                _num((hw_p.get(k) or {}).get(str(v)), 2)] for k, v in hw.items()]
    hw_t = _table(["knob", "value", "", "final p"], hw_rows, "hardware")
    out.append(f'<div class="tables">{res_t}{cost_t}</div>')
    geno = (run.design or {}).get("genotype")
    gstr = (run.design or {}).get("genotype_str") or s.get("genotype")
    if gstr:
        out.append(f'<p class="genotype">genotype <code>{_e(gstr)}</code></p>')
    if isinstance(geno, dict) and geno:
        out.append(f'<div class="tables">{_choices_tables(geno, last_probs.get("network") or {})}{hw_t}</div>')
    else:
        out.append(_note("no design.json: the choices are shown as the genotype string only"))
        out.append(f'<div class="tables">{hw_t}</div>')
    extra = {k: v for k, v in s.items() if isinstance(v, dict) and k not in ("figures", "hardware", "limits", "retrain")}
    for k, v in extra.items():
        text = json.dumps(v, indent=1, default=str)
        out.append(f"<details><summary>{_e(k)}</summary><pre>{_e(text)}</pre></details>")

    # the search
    out.append(f"<{sub}>Search</{sub}>")
    if h.samples:
        out.append(f"<p>A random search: designs sampled uniformly, those within the limits trained briefly and "
                   f"scored ({len(h.samples)} in the history); it has no steps, losses or probabilities.</p>")
        out.append(_samples_figure(h.samples))
    elif not h.steps:
        out.append(_note("the history holds no search steps: nothing to plot"))
    if h.steps:
        out.append(_losses_figure(h))
        img, _ = _resources_figure(h, lb)
        out.append(img)
        design = run.design or {}
        probs = [_probs_figure(h, g, list(design.get(k) or {}))
                 for g, k in (("network", "genotype"), ("hardware", "hardware"))]
        if any(probs):
            out += [p for p in probs if p]
        else:
            out.append(_note("this history records no per-option probabilities (a run from before they were "
                             "recorded): the mean entropy of the choices is shown instead"))
            out.append(_entropy_figure(h))
    pts, errs = _measurements(h)
    out.append(f"<{sub}>Predicted vs measured latency</{sub}>")
    if pts:
        out.append(_measured_figure(pts))
        rows = [[_num(x), _e(kind), _e(why), _num(p * 1e3), _num(m * 1e3), f"{100 * (p - m) / m:+.1f}%"]
                for x, kind, why, p, m in pts[:60]]
        out.append(_table(["step", "when", "what", "predicted (ms)", "measured (ms)", "error"], rows, "measurements"))
        if len(pts) > 60:
            out.append(f"<p>… and {len(pts) - 60} more measurements.</p>")
    else:
        out.append(_note(f"no latency measurements in this history: target {_target_name(target)}'s cost model "
                         "was not checked against a measurement during this search"))
    out += [_note(f"measurement failed: {e}") for e in errs]
    out.append("</section>")
    return "\n".join(out)


# -- exploration sections ------------------------------------------------------------------------

def _exploration_section(ex, anchors: _Anchors, anchor: str) -> tuple[str, list]:
    doc = ex.doc
    runs = doc["runs"]
    grid = doc.get("grid") or {}
    numbers = {r["id"]: i + 1 for i, r in enumerate(runs)}
    run_anchor = {r["id"]: anchors.make("run", f"{ex.path.name}-{r['id']}") for r in runs}
    summaries = {}
    for r in runs:
        s = r.get("summary")
        if not isinstance(s, dict) and getattr(ex.runs.get(r["id"]), "kind", None) == "run":
            s = ex.runs[r["id"]].summary
        summaries[r["id"]] = s if isinstance(s, dict) else None
    points = {rid: point_of(s) for rid, s in summaries.items() if s is not None}
    status = [r.get("status", "?") for r in runs]
    counts = ", ".join(f"{status.count(k)} {k}" for k in dict.fromkeys(status))
    out = [f'<section class="exploration" id="{_e(anchor)}">', f"<h2>Exploration <code>{_e(ex.path.name)}</code></h2>",
           f'<p class="meta">folder <code>{_e(ex.path)}</code><br>'
           f'grid: targets {_e(", ".join(map(_target_name, grid.get("targets", []))) or "?")}'
           f' · limits {_e(" | ".join(_limits_text(x) for x in grid.get("limits", [])) or "?")}'
           f' · seeds {_e(", ".join(map(str, grid.get("seeds", []))) or "?")}'
           f' · methods {_e(", ".join(grid.get("methods", [])) or "?")}<br>{len(runs)} runs: {_e(counts)}'
           + (f' · started {_e(doc["created"])}' if doc.get("created") else "")
           + (f' · {doc["wall_s"]:.0f} s' if isinstance(doc.get("wall_s"), (int, float)) else "") + "</p>"]
    out += [_note(n) for n in doc.get("notes") or []]

    fronts = doc.get("fronts") or {}
    on_front = {rid for groups in fronts.values() if isinstance(groups, dict) for ids in groups.values() for rid in ids}
    rows, cls = [], []
    for r in runs:
        rid, st = r["id"], r.get("status", "?")
        p, s = points.get(rid), summaries[rid]
        link = run_anchor[rid] if (st == "done" and rid in ex.runs) or st == "failed" else None
        name = f'<a href="#{_e(link)}">{_e(rid)}</a>' if link else _e(rid)
        st_html = {"done": '<span class="good">done</span>', "failed": '<span class="bad">failed</span>'}.get(st, _e(st))
        fig_cells = []
        for k in OBJECTIVES:
            v = None if p is None else p.get(k)
            fig_cells.append(_num(v) + ("†" if v is not None and p["measured"] else ""))
        acc = "–"
        if p is not None and p["accuracy"] is not None:
            acc = _pct(p["accuracy"]) + ("*" if p["accuracy_kind"] != "test" else "")
        met = None
        if s is not None and r.get("limits", s.get("limits")):
            met = s["limits_met_measured"] if s.get("limits_met_measured") is not None else s.get("limits_met")
        rows.append([f"#{numbers[rid]}", name, st_html, _e(_target_name(r.get("target"))),
                     _e(_limits_text(r.get("limits"))), _e(r.get("seed", "–")), _e(r.get("method", "–")), acc,
                     *fig_cells, _yesno(met)])
        cls.append(f"status-{st}" + (" front" if rid in on_front else ""))
    out.append("<h3>Runs</h3>")
    out.append(_table(["#", "run", "status", "target", "limits", "seed", "method", "accuracy",
                       *(_e(_label(k)) for k in OBJECTIVES), "limits met"], rows, "runs", cls))
    out.append('<p class="meta">accuracy: test accuracy after retraining; * where the run was not retrained, the validation '
               "accuracy after the selection's brief training from scratch, else the one-shot one. † measured on the target's truth (device or simulator), else the cost model's figure. "
               "limits met: on the measurement where there is one. Bold: on a Pareto front.</p>")

    # Pareto fronts
    out.append("<h3>Pareto fronts</h3>")
    done = [r for r in runs if r.get("status") == "done" and points.get(r["id"], {}).get("accuracy") is not None]
    targets = list(dict.fromkeys(_target_name(r.get("target")) for r in done))
    raw_target = {_target_name(r.get("target")): r.get("target") for r in done}
    n_img = 0
    for obj in OBJECTIVES:
        have = [r for r in done if points[r["id"]].get(obj) is not None]
        if not have:
            continue
        imgs = []
        groups = targets + (["all"] if len(targets) > 1 else [])
        for g in groups:
            sel = [r for r in have if g == "all" or _target_name(r.get("target")) == g]
            if not sel:
                continue
            pts = [(r["id"], points[r["id"]]["accuracy"], points[r["id"]][obj], _target_name(r.get("target")))
                   for r in sel]
            given = (fronts.get(obj) or {})
            ids = given.get(g, given.get(raw_target.get(g, g))) if g != "all" else given.get("all")
            if not isinstance(ids, list):  # not recorded by the exploration: drawn from the points
                ids = front([p[:3] for p in pts])
            imgs.append(_pareto_figure(pts, ids, numbers, obj, g, by_target=(g == "all")))
        if imgs:
            n_img += len(imgs)
            out.append(f"<h4>accuracy vs {_e(_label(obj))}</h4>")
            out.append(f'<div class="pareto-row">{"".join(imgs)}</div>')
    if not n_img:
        out.append(_note("no finished run with an accuracy and a cost figure: no Pareto front to draw"))
    elif len(targets) == 1:
        out.append('<p class="meta">One target: its fronts are the fronts across targets.</p>')
    hv = doc.get("hypervolume")
    if isinstance(hv, dict) and hv:
        objs = [k for k in OBJECTIVES if any(k in (v or {}) for v in hv.values())]
        out.append(f"<h4>Hypervolume</h4>")
        out.append(_table(["target"] + [_e(_label(k)) for k in objs],
                          [[_e(g if g == "all" else _target_name(g))] + [_num((v or {}).get(k)) for k in objs]
                           for g, v in hv.items()], "hypervolume"))

    failed = [r for r in runs if r.get("status") == "failed"]
    if failed:
        out.append("<h3>Failed runs</h3>")
        for r in failed:
            out.append(f'<div class="failed" id="{_e(run_anchor[r["id"]])}"><p><b>#{numbers[r["id"]]} {_e(r["id"])}</b> '
                       f'(target {_e(_target_name(r.get("target")))}, limits {_e(_limits_text(r.get("limits")))}, '
                       f'seed {_e(r.get("seed", "–"))}, method {_e(r.get("method", "–"))})</p>'
                       f'<pre>{_e(r.get("error") or "no error recorded")}</pre></div>')
    pending = [r for r in runs if r.get("status") not in ("done", "failed")]
    if pending:
        out.append(_note("not finished: " + ", ".join(f"{r['id']} ({r.get('status', '?')})" for r in pending)))

    toc = []
    for r in runs:
        rid = r["id"]
        if r.get("status") != "done":
            continue
        rd = ex.runs.get(rid)
        title = f"Run #{numbers[rid]} {rid}"
        if getattr(rd, "kind", None) == "run":
            out.append(_run_section(rd, run_anchor[rid], title, level=3))
        else:
            why = rd or "the exploration gives no run folder for it"
            out.append(f'<section class="run" id="{_e(run_anchor[rid])}"><h3>{_e(title)}</h3>'
                       f'{_note("run folder not read: " + why)}</section>')
        toc.append((run_anchor[rid], title))
    out.append("</section>")
    return "\n".join(out), toc


def render(items: list) -> str:
    """The whole page for a list of ``RunData`` and ``ExplorationData`` (see :mod:`explorer.report.write`)."""
    anchors = _Anchors()
    body, toc = [], []
    for it in items:
        if it.kind == "exploration":
            a = anchors.make("exploration", it.path.name)
            sec, runs = _exploration_section(it, anchors, a)
            toc.append((a, f"Exploration {it.path.name}", runs))
        else:
            a = anchors.make("run", it.path.name)
            sec = _run_section(it, a, f"Run {it.path.name}")
            toc.append((a, f"Run {it.path.name}", []))
        body.append(sec)
    nav = ["<nav><ul>"]
    for a, title, sub in toc:
        nav.append(f'<li><a href="#{_e(a)}">{_e(title)}</a>')
        if sub:
            nav.append("<ul>" + "".join(f'<li><a href="#{_e(x)}">{_e(t)}</a></li>' for x, t in sub) + "</ul>")
        nav.append("</li>")
    nav.append("</ul></nav>")
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<title>Codesign Explorer report</title><link rel=\"icon\" href=\"data:,\">"
            f"<style>{_CSS}</style></head><body>\n<h1>Codesign Explorer report</h1>\n"
            f"<p class=\"meta\">written {_e(when)}</p>\n" + "".join(nav) + "\n" + "\n".join(body) + "\n</body></html>\n")
