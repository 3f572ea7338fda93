"""The report's plots, as PNG bytes (matplotlib's Agg canvas: no display, no pyplot state).

Joint-ILP study (:data:`PLOTS`, :func:`make_plots`): gap to the best bound against the FLOP
budget, and solve time against instance size, one series per solver. Sweep part
(:data:`STUDY_PLOTS`, :func:`study_plots`): the same two per formulation (a grid of panels),
accuracy against MACs kept per model, and the per-layer kept fractions as small multiples (one
panel per model × method, one bar per budget). Points are runs and lines join their medians.

**Gaps** are drawn on a log scale; a gap that is exactly zero has no logarithm, so zeros are
drawn as hollow markers on a line marked ``0`` one decade below the smallest nonzero gap
(:func:`gap_floor`): every nonzero gap, however small, stays above it and readable.
**Time limits** are dashed segments over the sizes each limit applied to, each labelled.
Legends sit outside the data (beside or under a panel).
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

from pruneopt.reports.rendering.formatting import (
    as_bool,
    as_number,
    asked,
    instance_rows,
    json_cell,
    network_rows,
    solver_order,
)

GAP_FLOOR = 1e-12  # the zero line when no nonzero gap is below 1e-11 (see gap_floor)
MARKERS = "osD^vP*Xh<>"
SECONDS_FLOOR = 1e-5  # seconds below this are drawn at it


def figure(width: float = 8.0, height: float = 5.0) -> Figure:
    """A new figure on its own Agg canvas."""
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _style(k: int) -> dict:
    return {"color": f"C{k % 10}", "marker": MARKERS[k % len(MARKERS)]}


def _points_and_medians(ax, xs, ys, k: int, label: str, *, size: float, lw: float,
                        ms: float, zero=None) -> None:
    """Series ``k``: its points (hollow where ``zero`` marks a zero gap), and a line through
    the median y at each x."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    keep = np.isfinite(xs) & np.isfinite(ys)
    zero = np.zeros_like(keep) if zero is None else np.asarray(zero, bool)
    xs, ys, zero = xs[keep], ys[keep], zero[keep]
    if not len(xs):
        return
    style = _style(k)
    ax.scatter(xs[~zero], ys[~zero], s=size, alpha=0.4, **style)
    if zero.any():
        ax.scatter(xs[zero], ys[zero], s=size * 1.6, facecolors="none", alpha=0.8,
                   edgecolors=style["color"], marker=style["marker"], linewidths=1.0)
    med = pd.Series(ys).groupby(xs).median()
    ax.plot(med.index.to_numpy(dtype=float), med.to_numpy(), lw=lw, ms=ms, label=label,
            **style)


# ----------------------------------------------------------------------------------- axes
def gap_floor(gaps) -> float:
    """Where zero gaps are drawn: one decade below the smallest nonzero gap (rounded down to a
    power of ten), and at most :data:`GAP_FLOOR`."""
    g = np.asarray(gaps, dtype=float)
    g = g[np.isfinite(g) & (g > 0)]
    if not len(g):
        return GAP_FLOOR
    return min(GAP_FLOOR, 10.0 ** (math.floor(math.log10(float(g.min()))) - 1))


def _decade_label(k: int) -> str:
    return f"$10^{{{k}}}$"


def _gap_axis(ax, floor: float, top: float) -> None:
    """Log y axis from just below ``floor`` (the zero line, labelled ``0``) to ``top``, with
    at most about eight decade ticks above it."""
    ax.set_yscale("log")
    lo_dec = int(round(math.log10(floor)))
    hi_dec = max(lo_dec + 1, math.ceil(math.log10(max(top, floor * 10))))
    ax.set_ylim(floor / 3, 10.0 ** hi_dec * 1.5)
    decades = list(range(lo_dec + 1, hi_dec + 1))
    step = max(1, math.ceil(len(decades) / 8))
    decades = decades[::-1][::step][::-1]
    if decades and decades[0] - lo_dec < 1:
        decades = decades[1:]
    ticks = [floor] + [10.0 ** k for k in decades]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.set_yticklabels(["0"] + [_decade_label(k) for k in decades])
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.axhline(floor, color="0.55", lw=0.8, ls=":", zorder=0)


def _size_axis(ax, sizes) -> None:
    """Log x axis with a tick at each distinct size (labels thinned so that none overlap);
    a general log axis when there are many sizes."""
    s = np.unique(np.asarray([v for v in sizes if np.isfinite(v) and v > 0], dtype=float))
    ax.set_xscale("log")
    if not len(s):
        return
    lo, hi = float(s.min()), float(s.max())
    ax.set_xlim(lo / 1.6, hi * 1.6)
    if len(s) > 10:
        ax.xaxis.set_minor_formatter(NullFormatter())
        return
    span = max(math.log10(hi * 1.6) - math.log10(lo / 1.6), 1e-9)
    labels, last = [], -math.inf
    for v in s:
        pos = math.log10(v)
        if (pos - last) / span >= 0.09:  # about 9 % of the axis between labels
            labels.append(f"{v:,.0f}")
            last = pos
        else:
            labels.append("")
    ax.xaxis.set_major_locator(FixedLocator(s))
    ax.set_xticklabels(labels)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _time_limits(ax, rows: pd.DataFrame, size_col: str) -> None:
    """A dashed segment at each time limit over the sizes it applied to, labelled."""
    if "time_limit" not in rows.columns or not len(rows):
        return
    d = pd.DataFrame({"t": as_number(rows["time_limit"]), "p": as_number(rows[size_col])})
    d = d.dropna()
    spans = d.groupby("t")["p"].agg(["min", "max"])
    for t, (lo, hi) in spans.iterrows():
        if t <= 0:
            continue
        ax.hlines(t, lo / 1.35, hi * 1.35, colors="0.45", linestyles="--", lw=1.0, zorder=1)
        ax.annotate(f"limit {t:g} s", (hi * 1.35, t), xytext=(2, 2),
                    textcoords="offset points", ha="right", va="bottom", fontsize=7,
                    color="0.3")


def _legend_beside(ax, title: str | None = None, fontsize: float = 9) -> None:
    ax.legend(title=title, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=fontsize,
              frameon=False)


def _legend_below(ax, ncol: int = 3, fontsize: float = 7.5) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.2),
                  ncol=ncol, fontsize=fontsize, frameon=False, columnspacing=1.0,
                  handletextpad=0.4)


def _finish(ax, xlabel: str, ylabel: str, title: str) -> None:
    """Labels, title, grid and the solver legend of a joint-study plot."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    _legend_beside(ax, "solver")


def _grid(n: int, ncols: int, width: float, height: float) -> tuple[Figure, list]:
    """A figure of ``n`` panels in rows of ``ncols`` (spare axes hidden); its axes in order."""
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = figure(width=width * ncols, height=height * nrows)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


# ----------------------------------------------------------------------------------- joint ILP
def plot_gap_vs_budget(rows: pd.DataFrame) -> bytes:
    """Gap to the best bound vs keep_flops, one series per solver (zero gaps on the 0 line)."""
    fig = figure(9.0, 5.0)
    ax = fig.add_subplot()
    solvers = solver_order(rows)
    feas = rows[rows["feasible"] == True]  # noqa: E712
    gaps = as_number(feas["gap_to_best_bound"])
    floor = gap_floor(gaps)
    budgets = sorted(set(rows["keep_flops"].astype(float)))
    step = min(np.diff(budgets)) if len(budgets) > 1 else 0.2
    width = 0.6 * step
    for k, name in enumerate(solvers):
        sub = feas[feas["solver"] == name]
        if not len(sub):
            continue
        off = (k - (len(solvers) - 1) / 2) * width / max(len(solvers), 1)
        g = as_number(sub["gap_to_best_bound"]).to_numpy()
        zero = g <= 0
        x = sub["keep_flops"].astype(float).to_numpy() + off
        _points_and_medians(ax, x, np.where(zero, floor, g), k, name, size=16, lw=1.6, ms=6,
                            zero=zero)
    top = float(gaps.max()) if gaps.notna().any() else floor * 10
    _gap_axis(ax, floor, top)
    ax.set_xticks(budgets)
    ax.set_xticklabels([f"{b:g}" for b in budgets])
    _finish(ax, "FLOP budget kept (fraction of dense MACs)",
            "relative gap to the best bound (0: hollow markers)",
            "Gap to the best bound vs FLOP budget")
    return png(fig)


def plot_time_vs_size(rows: pd.DataFrame) -> bytes:
    """Seconds vs number of items, one series per solver, log-log; each time limit a dashed
    segment over the sizes it applied to."""
    fig = figure(9.0, 5.0)
    ax = fig.add_subplot()
    solvers = solver_order(rows)
    for k, name in enumerate(solvers):
        sub = rows[(rows["solver"] == name) & as_number(rows["seconds"]).notna()]
        if not len(sub):
            continue
        jitter = 1.0 + 0.04 * (k - (len(solvers) - 1) / 2)
        sec = np.maximum(as_number(sub["seconds"]).to_numpy(), SECONDS_FLOOR)
        _points_and_medians(ax, as_number(sub["p"]).to_numpy() * jitter, sec, k, name,
                            size=14, lw=1.6, ms=6)
    _size_axis(ax, as_number(rows["p"]).to_numpy())
    ax.set_yscale("log")
    _time_limits(ax, rows, "p")
    _finish(ax, "instance size p (prunable weights)", "seconds (wall clock)",
            "Solve time vs instance size")
    return png(fig)


PLOTS = {"gap_vs_budget": plot_gap_vs_budget, "time_vs_size": plot_time_vs_size}


def make_plots(rows: pd.DataFrame) -> dict[str, bytes]:
    """Every plot of the joint-ILP study as PNG bytes, by key."""
    return {key: fn(rows) for key, fn in PLOTS.items()}


# ----------------------------------------------------------------------------------- sweep part
def _per_formulation(inst: pd.DataFrame, x: str, y: str, *, gaps: bool, xlog: bool,
                     xlabel: str, ylabel: str, limits: bool = False) -> bytes | None:
    """A grid of panels (two per row), one per formulation, one series per solver: points are
    runs, lines join the medians at each x; y on a log scale (gaps: zeros on the 0 line)."""
    inst = inst[as_number(inst[y]).notna()] if len(inst) else inst
    forms = list(dict.fromkeys(inst["formulation"])) if len(inst) else []
    if not forms:
        return None
    fig, axes = _grid(len(forms), 2, 6.2, 4.6)
    for ax, form in zip(axes, forms, strict=True):
        sub = inst[inst["formulation"] == form]
        values = as_number(sub[y])
        floor = gap_floor(values) if gaps else SECONDS_FLOOR
        for k, (solver, s) in enumerate(sub.groupby("solver", sort=False)):
            xs = as_number(s[x]).to_numpy(float)
            ys = as_number(s[y]).to_numpy(float)
            zero = ys <= 0 if gaps else None
            _points_and_medians(ax, xs, np.maximum(ys, floor) if not gaps else
                                np.where(ys <= 0, floor, ys), k, solver, size=14, lw=1.4,
                                ms=5, zero=zero)
        if gaps:
            _gap_axis(ax, floor, float(values.max()) if values.notna().any() else floor * 10)
        else:
            ax.set_yscale("log")
        if xlog:
            _size_axis(ax, as_number(sub[x]).to_numpy(float))
        else:
            xs = sorted(set(as_number(sub[x]).dropna()))
            ax.set_xticks(xs)
            ax.set_xticklabels([f"{v:g}" for v in xs])
        if limits:
            _time_limits(ax, sub, x)
        ax.set_title(form)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        _legend_below(ax, ncol=3)
    return png(fig)


def plot_gap_vs_budget_all(rows: pd.DataFrame) -> bytes | None:
    """Gap to the best bound vs the budget, one panel per formulation, one series per solver."""
    inst = instance_rows(rows)
    inst = inst[as_bool(inst["feasible"])] if len(inst) else inst
    return _per_formulation(inst, "budget", "gap_to_best_bound", gaps=True, xlog=False,
                            xlabel="FLOP budget kept",
                            ylabel="gap to the best bound (0: hollow)")


def plot_seconds_vs_size_all(rows: pd.DataFrame) -> bytes | None:
    """Seconds vs instance size (items), one panel per formulation, log–log, time limits
    dashed."""
    return _per_formulation(instance_rows(rows), "p", "seconds", gaps=False, xlog=True,
                            xlabel="size (items)", ylabel="seconds", limits=True)


def plot_accuracy_vs_macs(rows: pd.DataFrame) -> bytes | None:
    """Accuracy (before fine-tuning) vs MACs kept, one panel per model, one series per method."""
    net = network_rows(rows)
    net = net[as_number(net["accuracy_after"]).notna()] if len(net) else net
    models = list(dict.fromkeys(net["model"])) if len(net) else []
    if not models:
        return None
    fig, axes = _grid(len(models), 2, 6.2, 4.8)
    for ax, model in zip(axes, models, strict=True):
        sub = net[net["model"] == model]
        for k, (method, s) in enumerate(sub.groupby("method", sort=False)):
            s = s.assign(m=as_number(s["macs_kept"]), a=as_number(s["accuracy_after"]))
            s = s.sort_values("m")
            ax.plot(s["m"], s["a"], lw=1.2, ms=5, label=method, **_style(k))
        dense = as_number(sub["accuracy_before"]).max()
        if math.isfinite(dense):
            ax.axhline(dense, color="0.5", ls="--", lw=0.9)
            ax.annotate("dense model", (1.0, dense), xycoords=("axes fraction", "data"),
                        xytext=(-3, 2), textcoords="offset points", ha="right", va="bottom",
                        fontsize=7, color="0.35")
        ax.set_title(model)
        ax.set_xlabel("fraction of dense MACs kept")
        ax.set_ylabel("test accuracy (no fine-tuning)")
        ax.grid(True, alpha=0.3)
        _legend_below(ax, ncol=4)
    return png(fig)


def _budget_label(rec: dict) -> str:
    return f"α = {asked(rec)[2:]}" if rec.get("method") == "fair" else f"{asked(rec)} of MACs"


def plot_kept_fractions(rows: pd.DataFrame) -> bytes | None:
    """Per-layer kept fractions: small multiples, one panel per model × method (four panels a
    row), one bar per budget asked in each layer (the same colour for a budget everywhere)."""
    net = network_rows(rows)
    if not len(net) or "kept_fractions" not in net.columns:
        return None
    net = net.assign(kf=net["kept_fractions"].map(json_cell))
    net = net[net["kf"].map(lambda v: isinstance(v, dict) and bool(v))]
    if not len(net):
        return None
    panels = list(dict.fromkeys(zip(net["model"], net["method"], strict=True)))
    recs = net.to_dict("records")
    labels = list(dict.fromkeys(_budget_label(r) for r in
                                sorted(recs, key=lambda r: (r.get("method") == "fair",
                                                            str(asked(r))))))
    colour = {lab: f"C{k % 10}" for k, lab in enumerate(labels)}
    ncols = 4
    fig, axes = _grid(len(panels), ncols, 3.3, 2.7)
    for ax, (model, method) in zip(axes, panels, strict=True):
        runs = [r for r in recs if r["model"] == model and r["method"] == method]
        runs.sort(key=lambda r: str(asked(r)))
        layers = list(dict.fromkeys(name for r in runs for name in r["kf"]))
        width = 0.8 / max(len(runs), 1)
        for k, rec in enumerate(runs):
            lab = _budget_label(rec)
            vals = [rec["kf"].get(name, np.nan) for name in layers]
            ax.bar(np.arange(len(layers)) + (k - (len(runs) - 1) / 2) * width, vals, width,
                   color=colour[lab], label=lab)
        ax.set_xticks(np.arange(len(layers)))
        ax.set_xticklabels(layers, rotation=30 if len(layers) > 3 else 0,
                           ha="right" if len(layers) > 3 else "center", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_ylim(0, 1.0)
        ax.set_title(f"{model} · {method}", fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    for ax in axes[::ncols]:
        ax.set_ylabel("fraction kept", fontsize=8)
    fig.legend([Patch(color=colour[lab]) for lab in labels], labels, loc="outside upper center",
               ncol=len(labels), fontsize=8, frameon=False,
               title="budget asked (bars in each layer, left to right)", title_fontsize=8)
    return png(fig)


STUDY_PLOTS = {"gap_vs_budget_all": plot_gap_vs_budget_all,
               "seconds_vs_size_all": plot_seconds_vs_size_all,
               "accuracy_vs_macs": plot_accuracy_vs_macs,
               "kept_fractions": plot_kept_fractions}


def study_plots(rows: pd.DataFrame) -> dict[str, bytes]:
    """The sweep part's plots as PNG bytes, by key (a plot without data is left out)."""
    out = {}
    for key, fn in STUDY_PLOTS.items():
        image = fn(rows)
        if image is not None:
            out[key] = image
    return out


__all__ = ["GAP_FLOOR", "PLOTS", "STUDY_PLOTS", "figure", "gap_floor", "make_plots",
           "plot_accuracy_vs_macs", "plot_gap_vs_budget", "plot_gap_vs_budget_all",
           "plot_kept_fractions", "plot_seconds_vs_size_all", "plot_time_vs_size", "png",
           "study_plots"]
