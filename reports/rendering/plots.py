"""The report's plots, as PNG bytes (matplotlib's Agg canvas: no display, no pyplot state).

Joint-ILP study (:data:`PLOTS`, :func:`make_plots`): gap to the best bound against the FLOP
budget, and solve time against instance size, one series per solver. Sweep part
(:data:`STUDY_PLOTS`, :func:`study_plots`): the same two per formulation, accuracy against MACs
kept per model, and the per-layer kept fractions of each method. Points are runs and lines join
their medians; gaps are drawn on a log scale with zero at :data:`GAP_FLOOR`.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pruneopt.reports.rendering.formatting import (
    as_bool,
    as_number,
    asked,
    instance_rows,
    json_cell,
    network_rows,
    solver_order,
)

GAP_FLOOR = 1e-12  # gaps below this (zero, or float rounding) are drawn at the floor
MARKERS = "osD^vP*Xh<>"


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
                        ms: float) -> None:
    """Series ``k``: its points, and a line through the median y at each x."""
    ax.scatter(xs, ys, s=size, alpha=0.35, **_style(k))
    med = pd.Series(ys).groupby(xs).median()
    ax.plot(med.index.to_numpy(dtype=float), med.to_numpy(), lw=lw, ms=ms, label=label,
            **_style(k))


def _panels(rows: pd.DataFrame, column: str, width: float) -> tuple[Figure | None, list]:
    """One figure with a panel per value of ``column`` (in order of appearance), side by side:
    the figure and its (axes, value, rows of that value); ``(None, [])`` without rows."""
    keys = list(dict.fromkeys(rows[column])) if len(rows) else []
    if not keys:
        return None, []
    fig = figure(width=width * len(keys), height=4.2)
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    return fig, [(ax, key, rows[rows[column] == key]) for ax, key in zip(axes, keys, strict=True)]


def _label_panel(ax, title: str, xlabel: str, *, legend_size: float = 7, ncol: int = 1,
                 grid_axis: str = "both") -> None:
    """Title, x label, grid and legend of one panel of a sweep-part plot."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.grid(True, axis=grid_axis, alpha=0.3)
    ax.legend(fontsize=legend_size, ncol=ncol)


def _finish(ax, xlabel: str, ylabel: str, title: str) -> None:
    """Labels, title, grid and the solver legend of a joint-study plot."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(title="solver", loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9)


# ----------------------------------------------------------------------------------- joint ILP
def plot_gap_vs_budget(rows: pd.DataFrame) -> bytes:
    """Gap to the best bound vs keep_flops, one series per solver, log y with a floor."""
    fig = figure()
    ax = fig.add_subplot()
    solvers = solver_order(rows)
    budgets = sorted(set(rows["keep_flops"].astype(float)))
    step = min(np.diff(budgets)) if len(budgets) > 1 else 0.2
    width = 0.6 * step
    for k, name in enumerate(solvers):
        sub = rows[(rows["solver"] == name) & (rows["feasible"] == True)]  # noqa: E712
        if not len(sub):
            continue
        off = (k - (len(solvers) - 1) / 2) * width / max(len(solvers), 1)
        g = np.maximum(sub["gap_to_best_bound"].astype(float).to_numpy(), GAP_FLOOR)
        x = sub["keep_flops"].astype(float).to_numpy() + off
        _points_and_medians(ax, x, g, k, name, size=14, lw=1.6, ms=6)
    ax.set_yscale("log")
    ax.axhline(GAP_FLOOR, color="0.6", lw=0.8, ls=":")
    ax.text(0.01, GAP_FLOOR, f" floor {GAP_FLOOR:g} (zero gap)", transform=ax.get_yaxis_transform(),
            va="bottom", ha="left", fontsize=8, color="0.4")
    ax.set_xticks(budgets)
    ax.set_xticklabels([f"{b:g}" for b in budgets])
    _finish(ax, "FLOP budget kept (fraction of dense MACs)", "relative gap to the best bound",
            "Gap to the best bound vs FLOP budget")
    return png(fig)


def plot_time_vs_size(rows: pd.DataFrame) -> bytes:
    """Seconds vs number of items, one series per solver, log-log."""
    fig = figure()
    ax = fig.add_subplot()
    solvers = solver_order(rows)
    for k, name in enumerate(solvers):
        sub = rows[(rows["solver"] == name) & rows["seconds"].notna()]
        if not len(sub):
            continue
        jitter = 1.0 + 0.04 * (k - (len(solvers) - 1) / 2)
        sec = np.maximum(sub["seconds"].astype(float).to_numpy(), 1e-5)
        _points_and_medians(ax, sub["p"].astype(float).to_numpy() * jitter, sec, k, name,
                            size=14, lw=1.6, ms=6)
    for t in sorted(set(rows["time_limit"].dropna().astype(float))):
        ax.axhline(t, color="0.5", lw=0.9, ls="--")
        ax.text(0.01, t, f"time limit {t:g} s", transform=ax.get_yaxis_transform(), ha="left",
                va="bottom", fontsize=8, color="0.35")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _finish(ax, "instance size p (prunable weights)", "seconds (wall clock)",
            "Solve time vs instance size")
    return png(fig)


PLOTS = {"gap_vs_budget": plot_gap_vs_budget, "time_vs_size": plot_time_vs_size}


def make_plots(rows: pd.DataFrame) -> dict[str, bytes]:
    """Every plot of the joint-ILP study as PNG bytes, by key."""
    return {key: fn(rows) for key, fn in PLOTS.items()}


# ----------------------------------------------------------------------------------- sweep part
def _per_formulation(inst: pd.DataFrame, x: str, y: str, *, floor: float, xlog: bool,
                     xlabel: str, ylabel: str) -> bytes | None:
    """One panel per formulation, one series per solver: points are runs, lines join the
    medians at each x; y on a log scale with values below ``floor`` drawn at it."""
    fig, panels = _panels(inst, "formulation", 4.2)
    if fig is None:
        return None
    for ax, form, sub in panels:
        for k, (solver, s) in enumerate(sub.groupby("solver", sort=False)):
            xs = as_number(s[x]).to_numpy(float)
            ys = np.maximum(as_number(s[y]).to_numpy(float), floor)
            _points_and_medians(ax, xs, ys, k, solver, size=12, lw=1.4, ms=5)
        if xlog:
            ax.set_xscale("log")
        ax.set_yscale("log")
        _label_panel(ax, form, xlabel)
    panels[0][0].set_ylabel(ylabel)
    return png(fig)


def plot_gap_vs_budget_all(rows: pd.DataFrame) -> bytes | None:
    """Gap to the best bound vs the budget, one panel per formulation, one series per solver."""
    inst = instance_rows(rows)
    inst = inst[as_bool(inst["feasible"])] if len(inst) else inst
    return _per_formulation(inst, "budget", "gap_to_best_bound", floor=GAP_FLOOR, xlog=False,
                            xlabel="FLOP budget kept",
                            ylabel=f"gap to the best bound (floor {GAP_FLOOR:g})")


def plot_seconds_vs_size_all(rows: pd.DataFrame) -> bytes | None:
    """Seconds vs instance size (items), one panel per formulation, log–log."""
    return _per_formulation(instance_rows(rows), "p", "seconds", floor=1e-5, xlog=True,
                            xlabel="size (items)", ylabel="seconds")


def plot_accuracy_vs_macs(rows: pd.DataFrame) -> bytes | None:
    """Accuracy (before fine-tuning) vs MACs kept, one panel per model, one series per method."""
    net = network_rows(rows)
    net = net[as_number(net["accuracy_after"]).notna()] if len(net) else net
    fig, panels = _panels(net, "model", 4.6)
    if fig is None:
        return None
    for ax, model, sub in panels:
        for k, (method, s) in enumerate(sub.groupby("method", sort=False)):
            s = s.assign(m=as_number(s["macs_kept"]), a=as_number(s["accuracy_after"]))
            s = s.sort_values("m")
            ax.plot(s["m"], s["a"], lw=1.2, label=method, **_style(k))
        dense = as_number(sub["accuracy_before"]).max()
        if math.isfinite(dense):
            ax.axhline(dense, color="0.5", ls="--", lw=0.9)
        _label_panel(ax, model, "fraction of dense MACs kept")
    panels[0][0].set_ylabel("test accuracy (no fine-tuning)")
    return png(fig)


def plot_kept_fractions(rows: pd.DataFrame) -> bytes | None:
    """Per-layer kept fractions chosen by each method (one panel per model × budget asked)."""
    net = network_rows(rows)
    if not len(net) or "kept_fractions" not in net.columns:
        return None
    net = net.assign(kf=net["kept_fractions"].map(json_cell))
    net = net[net["kf"].map(lambda v: isinstance(v, dict) and bool(v))]
    fig, panels = _panels(net, "model", 5.0)
    if fig is None:
        return None
    for ax, model, sub in panels:
        layers = list(dict.fromkeys(name for kf in sub["kf"] for name in kf))
        runs = list(sub.to_dict("records"))
        width = 0.8 / max(len(runs), 1)
        for k, rec in enumerate(runs):
            vals = [rec["kf"].get(name, np.nan) for name in layers]
            ax.bar(np.arange(len(layers)) + (k - (len(runs) - 1) / 2) * width, vals, width,
                   label=f"{rec['method']} {asked(rec)}", color=f"C{k % 10}")
        ax.set_xticks(np.arange(len(layers)))
        ax.set_xticklabels(layers, rotation=45, ha="right", fontsize=8)
        ax.set_ylim(0, 1.05)
        _label_panel(ax, model, "", legend_size=6, ncol=2, grid_axis="y")
    panels[0][0].set_ylabel("fraction kept per layer (weights or channels)")
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


__all__ = ["GAP_FLOOR", "PLOTS", "STUDY_PLOTS", "figure", "make_plots", "plot_accuracy_vs_macs",
           "plot_gap_vs_budget", "plot_gap_vs_budget_all", "plot_kept_fractions",
           "plot_seconds_vs_size_all", "plot_time_vs_size", "png", "study_plots"]
