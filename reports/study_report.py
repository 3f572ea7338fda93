"""Report sections and plots for the rows of a study run by the sweep engine
(:mod:`pruneopt.reports.sweep`): every formulation's generated instances and every pruning
method on networks. :mod:`pruneopt.reports.gap_report` puts them after its joint-ILP sections.

Instance rows (``job_kind == "instance"``) carry, per solver, the cross-check of its instance:
``gap_to_best_bound`` is the relative distance of its recomputed objective to the best bound of
the instance (a proven optimum where an exact solver proved one). Network rows carry the
pruned model's MACs and NNZ kept, accuracy before/after (and after fine-tuning), the per-layer
kept fractions (JSON) and, for the structured pruners, their gap measures (JSON).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from pruneopt.reports.gap_report import GAP_FLOOR, Section, _figure, _png

_MARKERS = "osD^vP*Xh<>"
FORMULATION_TITLES = {
    "joint": "joint FLOP/NNZ ILP",
    "joint-qp": "joint MIQP (local quadratic model)",
    "allocation": "layer budget allocation (multiple-choice knapsack)",
    "channels": "structured channel selection (bilinear FLOPs)",
}


def _num(series) -> pd.Series:
    return pd.to_numeric(series, errors="coerce")


def _bool(series) -> pd.Series:
    return series.astype(str).str.lower().isin(("true", "1", "1.0"))


def instance_rows(rows: pd.DataFrame) -> pd.DataFrame:
    if "job_kind" not in rows.columns:
        return rows.iloc[0:0]
    return rows[rows["job_kind"] == "instance"].copy()


def network_rows(rows: pd.DataFrame) -> pd.DataFrame:
    if "job_kind" not in rows.columns:
        return rows.iloc[0:0]
    return rows[rows["job_kind"] == "network"].copy()


def _fmt(v, spec: str = ".3g") -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "—"
    return "—" if math.isnan(v) else format(v, spec)


# ----------------------------------------------------------------------------------- tables
def solver_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per formulation × solver: runs, proven optima, gap to the best bound, seconds."""
    inst = instance_rows(rows)
    out = []
    for (form, solver), sub in inst.groupby(["formulation", "solver"], sort=False):
        feas = sub[_bool(sub["feasible"])]
        g = _num(feas["gap_to_best_bound"])
        sec = _num(sub["seconds"])
        out.append({
            "formulation": form, "solver": solver, "kind": str(sub["kind"].iloc[0]),
            "runs": len(sub), "solved": len(feas),
            "proven optimal": int(_bool(sub["proven_optimal"]).sum()),
            "median gap": _fmt(g.median()), "max gap": _fmt(g.max()),
            "median s": _fmt(sec.median()), "max s": _fmt(sec.max()),
            "largest p": int(_num(sub["p"]).max()) if _num(sub["p"]).notna().any() else "—",
            "flags": int((sub["verdict"].astype(str) != "ok").sum()),
        })
    return pd.DataFrame(out)


def network_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per model × method × budget: what was kept and the accuracy."""
    net = network_rows(rows)
    out = []
    for rec in net.to_dict("records"):
        asked = (f"α={_fmt(rec.get('tolerance'), 'g')}" if rec.get("method") == "fair"
                 else _fmt(rec.get("flops"), "g"))
        out.append({
            "model": rec.get("model"), "method": rec.get("method"), "asked": asked,
            "MACs kept": _fmt(rec.get("macs_kept"), ".3f"),
            "NNZ kept": _fmt(rec.get("nnz_kept"), ".3f"),
            "acc. dense": _fmt(rec.get("accuracy_before"), ".3f"),
            "acc. pruned": _fmt(rec.get("accuracy_after"), ".3f"),
            "acc. fine-tuned": _fmt(rec.get("accuracy_finetuned"), ".3f"),
            "budget met": str(rec.get("budgets_met")),
            "seconds": _fmt(rec.get("seconds"), ".1f"),
            "status": rec.get("job_status", rec.get("status")),
        })
    return pd.DataFrame(out)


def _json_cell(v):
    if isinstance(v, list | dict):
        return v
    if not isinstance(v, str) or not v.strip():
        return None
    try:
        return json.loads(v)
    except ValueError:
        return None


def gap_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per structured-method run × gap measure."""
    net = network_rows(rows)
    out = []
    if "gaps" not in net.columns:
        return pd.DataFrame(out)
    for rec in net.to_dict("records"):
        gaps = _json_cell(rec.get("gaps"))
        if not gaps:
            continue
        asked = (f"α={_fmt(rec.get('tolerance'), 'g')}" if rec.get("method") == "fair"
                 else _fmt(rec.get("flops"), "g"))
        for g in gaps:
            out.append({
                "model": rec.get("model"), "method": rec.get("method"), "asked": asked,
                "MACs kept": _fmt(rec.get("macs_kept"), ".3f"), "measure": g.get("measure"),
                "method value": _fmt(g.get("method_value"), ".6g"),
                "exact value": _fmt(g.get("exact_value"), ".6g"),
                "gap": _fmt(g.get("gap"), ".3g") if "skipped" not in g else "skipped",
                "what": g.get("description", g.get("skipped", "")),
            })
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------------- plots
def _per_formulation(inst: pd.DataFrame, x: str, y: str, *, floor: float, xlog: bool,
                     xlabel: str, ylabel: str) -> bytes | None:
    """One panel per formulation, one series per solver: points are runs, lines join the
    medians at each x; y on a log scale with values below ``floor`` drawn at it."""
    forms = list(dict.fromkeys(inst["formulation"])) if len(inst) else []
    if not forms:
        return None
    fig = _figure(width=4.2 * len(forms), height=4.2)
    axes = fig.subplots(1, len(forms), squeeze=False)[0]
    for ax, form in zip(axes, forms, strict=True):
        sub = inst[inst["formulation"] == form]
        for k, (solver, s) in enumerate(sub.groupby("solver", sort=False)):
            xs = _num(s[x]).to_numpy(float)
            ys = np.maximum(_num(s[y]).to_numpy(float), floor)
            style = {"color": f"C{k % 10}", "marker": _MARKERS[k % len(_MARKERS)]}
            ax.scatter(xs, ys, s=12, alpha=0.35, **style)
            med = pd.Series(ys).groupby(xs).median()
            ax.plot(med.index, med.to_numpy(), lw=1.4, ms=5, label=solver, **style)
        if xlog:
            ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(form)
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel(ylabel)
    return _png(fig)


def plot_gap_vs_budget_all(rows: pd.DataFrame) -> bytes | None:
    """Gap to the best bound vs the budget, one panel per formulation, one series per solver."""
    inst = instance_rows(rows)
    inst = inst[_bool(inst["feasible"])] if len(inst) else inst
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
    net = net[_num(net["accuracy_after"]).notna()] if len(net) else net
    models = list(dict.fromkeys(net["model"])) if len(net) else []
    if not models:
        return None
    fig = _figure(width=4.6 * len(models), height=4.2)
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for ax, model in zip(axes, models, strict=True):
        sub = net[net["model"] == model]
        for k, (method, s) in enumerate(sub.groupby("method", sort=False)):
            s = s.assign(m=_num(s["macs_kept"]), a=_num(s["accuracy_after"])).sort_values("m")
            ax.plot(s["m"], s["a"], color=f"C{k % 10}", marker=_MARKERS[k % len(_MARKERS)],
                    lw=1.2, label=method)
        dense = _num(sub["accuracy_before"]).max()
        if math.isfinite(dense):
            ax.axhline(dense, color="0.5", ls="--", lw=0.9)
        ax.set_title(model)
        ax.set_xlabel("fraction of dense MACs kept")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("test accuracy (no fine-tuning)")
    return _png(fig)


def plot_kept_fractions(rows: pd.DataFrame) -> bytes | None:
    """Per-layer kept fractions chosen by each method (one panel per model × budget asked)."""
    net = network_rows(rows)
    if not len(net) or "kept_fractions" not in net.columns:
        return None
    net = net.assign(kf=net["kept_fractions"].map(_json_cell))
    net = net[net["kf"].map(lambda v: isinstance(v, dict) and bool(v))]
    if not len(net):
        return None
    models = list(dict.fromkeys(net["model"]))
    fig = _figure(width=5.0 * len(models), height=4.2)
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for ax, model in zip(axes, models, strict=True):
        sub = net[net["model"] == model]
        layers = list(dict.fromkeys(name for kf in sub["kf"] for name in kf))
        runs = list(sub.to_dict("records"))
        width = 0.8 / max(len(runs), 1)
        for k, rec in enumerate(runs):
            label = (f"{rec['method']} α={_fmt(rec.get('tolerance'), 'g')}"
                     if rec["method"] == "fair" else
                     f"{rec['method']} {_fmt(rec.get('flops'), 'g')}")
            vals = [rec["kf"].get(name, np.nan) for name in layers]
            ax.bar(np.arange(len(layers)) + (k - (len(runs) - 1) / 2) * width, vals, width,
                   label=label, color=f"C{k % 10}")
        ax.set_xticks(np.arange(len(layers)))
        ax.set_xticklabels(layers, rotation=45, ha="right", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(model)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    axes[0].set_ylabel("fraction kept per layer (weights or channels)")
    return _png(fig)


STUDY_PLOTS = {"gap_vs_budget_all": plot_gap_vs_budget_all,
               "seconds_vs_size_all": plot_seconds_vs_size_all,
               "accuracy_vs_macs": plot_accuracy_vs_macs,
               "kept_fractions": plot_kept_fractions}


def study_plots(rows: pd.DataFrame) -> dict[str, bytes]:
    out = {}
    for key, fn in STUDY_PLOTS.items():
        png = fn(rows)
        if png is not None:
            out[key] = png
    return out


# ----------------------------------------------------------------------------------- sections
def study_sections(rows: pd.DataFrame, meta: dict) -> list[Section]:
    """The sections of the sweep part of the report."""
    sections = []
    inst = instance_rows(rows)
    if len(inst):
        forms = list(dict.fromkeys(inst["formulation"]))
        flags = inst[inst["verdict"].astype(str) != "ok"]
        lines = [f"- **{f}** — {FORMULATION_TITLES.get(f, f)}: "
                 f"{inst[inst['formulation'] == f]['job_id'].nunique()} instances" for f in forms]
        verdict = ("> All solver runs of these instances passed the cross-check."
                   if flags.empty else
                   f"> **{len(flags)} run(s) carry a non-'ok' verdict: "
                   f"{', '.join(sorted(set(flags['solver'].astype(str))))}.**")
        sections.append(Section(
            "Every formulation: exact against fast",
            "Generated instances of each formulation, every practical registered solver on "
            "each, cross-checked per instance (the gap to the best bound as above).\n\n"
            + "\n".join(lines) + "\n\n" + verdict,
            tables=[("", solver_summary(rows))],
            images=[("gap_vs_budget_all", "Gap to the best bound vs budget, per formulation "
                     "and solver (log scale; zero drawn at the floor)."),
                    ("seconds_vs_size_all", "Seconds vs instance size, per formulation and "
                     "solver (log–log).")]))
    net = network_rows(rows)
    if len(net):
        sections.append(Section(
            "Pruning methods on networks",
            "Each method prunes the trained digits networks (scikit-learn's bundled digits; "
            "accuracy on its held-out split). FALCON, FALCON++, CHITA, WoodFisher and magnitude "
            "prune weights under a FLOP budget (`--flops`); AutoBot, FAIR-Pruner and the "
            "continuous relaxation remove whole channels (AutoBot aims at `--flops`, FAIR's "
            "budget is what its tolerance α gives, the relaxation's is set by its penalty). "
            "Accuracy is before fine-tuning unless the column says otherwise.",
            tables=[("", network_table(rows))],
            images=[("accuracy_vs_macs", "Accuracy before fine-tuning vs fraction of MACs "
                     "kept, per model and method; dashed: the dense model."),
                    ("kept_fractions", "Per-layer kept fractions chosen by each method "
                     "(weights for the unstructured methods, channels for the structured "
                     "ones).")]))
        gt = gap_table(rows)
        if len(gt):
            sections.append(Section(
                "Structured pruners against the exact optimum",
                "Each structured method's decision measured on its own scores and achieved "
                "MACs (see `pruneopt.models.method_gaps`): **G0** AutoBot's bisection against "
                "the best of all threshold cuts; **G1/F3/C2** the kept score against the exact "
                "channel-selection optimum (proved by the `exact` solver); **F4** FAIR's "
                "per-layer tolerance against one global tolerance; **G2/F5/C1** the calibration "
                "cross-entropy against the exact best prefix mask (enumerated); **C3** what "
                "thresholding the relaxation's gates changes. A positive gap is what the "
                "heuristic left on the table.",
                tables=[("", gt)]))
    return sections


__all__ = ["gap_table", "network_table", "solver_summary", "study_plots", "study_sections"]


# ----------------------------------------------------------------------------------- the study
def default_study_config(*, quick: bool = False, seed: int = 0) -> dict:
    """The default study beyond the joint ILP (a config dict in the ``pruneopt sweep`` schema).

    Full: the joint MIQP at p = 12 and 16, allocation with 20 and 100 layers, channel selection
    on random DAGs of 6, 12 and 24 groups, every available solver of each (sized so that
    ``make report`` stays within 5 minutes on 2 cores; the benchmarks go to network scale);
    on the digits MLP and CNN every pruning method at 30/50/70 % of the MACs (FAIR at α = 0.005
    and 0.05; FALCON++ with 5 stages). Quick: one small size per formulation, the digits MLP at
    50 %, FALCON++ left out.
    """
    if quick:
        instances = [
            {"formulation": "joint-qp", "sizes": [10], "budgets": [0.5]},
            {"formulation": "allocation", "sizes": [20], "budgets": [0.3, 0.6]},
            {"formulation": "channels", "sizes": [6], "budgets": [0.3, 0.6]},
        ]
        networks = [{"model": "digits-mlp", "flops": [0.5], "tolerances": [0.005],
                     "methods": ["magnitude", "chita", "woodfisher", "falcon", "autobot",
                                 "fair", "relaxation"]}]
        limit = 10.0
    else:
        instances = [
            {"formulation": "joint-qp", "sizes": [12, 16], "budgets": [0.3, 0.6]},
            {"formulation": "allocation", "sizes": [20, 100], "budgets": [0.3, 0.5, 0.7]},
            {"formulation": "channels", "sizes": [6, 12, 24], "budgets": [0.3, 0.5, 0.7]},
        ]
        methods = ["magnitude", "chita", "woodfisher", "falcon", "falcon++", "autobot", "fair",
                   "relaxation"]
        networks = [{"model": m, "flops": [0.3, 0.5, 0.7], "tolerances": [0.005, 0.05],
                     "methods": methods, "stages": 5} for m in ("digits-mlp", "digits-cnn")]
        limit = 20.0
    return {"study": {"name": "default-quick" if quick else "default", "seed": seed,
                      "time_limit": limit},
            "instances": instances, "networks": networks}


__all__ += ["default_study_config"]
