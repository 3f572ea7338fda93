"""The report's tables, as DataFrames (display strings where they are shown as they are).

Joint-ILP study (rows of :mod:`pruneopt.reports.studies.joint_study`): :func:`summarize` per
solver, :func:`gap_by_size`, :func:`instances_table`, :func:`flag_table`, :func:`versions_table`.
Sweep part (rows of :mod:`pruneopt.reports.studies.sweep`): :func:`solver_summary` per
formulation × solver, :func:`network_table` per network run, :func:`gap_table` per structured
pruner's gap measure.
"""

from __future__ import annotations

import math

import pandas as pd

from pruneopt.reports.rendering.formatting import (
    as_bool,
    as_number,
    asked,
    fmt,
    fmt_gap,
    fmt_seconds,
    instance_rows,
    json_cell,
    network_rows,
    solver_order,
)


# ----------------------------------------------------------------------------------- joint ILP
def flagged(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows whose cross-check verdict is not ``ok``."""
    return rows[rows["verdict"].astype(str) != "ok"]


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per solver: runs, solved, proven optima, gap to the best bound, seconds, flags."""
    out = []
    for name in solver_order(rows):
        sub = rows[rows["solver"] == name]
        feas = sub["feasible"] == True  # noqa: E712
        g = sub.loc[feas, "gap_to_best_bound"].astype(float)
        s = sub["seconds"].astype(float)
        out.append({
            "solver": name, "kind": sub["kind"].iloc[0],
            "largest p": int(sub["p"].max()), "instances": len(sub),
            "solved": int(feas.sum()), "proven optimal": int((sub["proven_optimal"] == True).sum()),  # noqa: E712
            "time limit hit": int((sub["status"] == "time_limit").sum()),
            "median gap to best bound": float(g.median()) if len(g) else math.nan,
            "max gap to best bound": float(g.max()) if len(g) else math.nan,
            "median seconds": float(s.median()) if s.notna().any() else math.nan,
            "max seconds": float(s.max()) if s.notna().any() else math.nan,
            "non-ok verdicts": int((sub["verdict"].astype(str) != "ok").sum()),
        })
    return pd.DataFrame(out)


def display_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """:func:`summarize` as display strings (gaps, seconds; non-ok verdicts in bold)."""
    d = summary.copy()
    for c in ("median gap to best bound", "max gap to best bound"):
        d[c] = d[c].map(fmt_gap)
    for c in ("median seconds", "max seconds"):
        d[c] = d[c].map(fmt_seconds)
    d["non-ok verdicts"] = d["non-ok verdicts"].map(lambda n: f"**{n}**" if n else "0")
    return d.astype(str)


def _size_label(row) -> str:
    return f"{row['shape']} p={int(row['p'])}" if row["shape"] != "random" else f"p={int(row['p'])}"


def gap_by_size(rows: pd.DataFrame) -> pd.DataFrame:
    """Median (max) gap to the best bound per solver (rows) and instance size (columns)."""
    d = rows.assign(size=rows.apply(_size_label, axis=1))
    sizes = list(dict.fromkeys(d.sort_values("p")["size"]))
    out = []
    for name in solver_order(rows):
        rec = {"solver": name}
        for size in sizes:
            g = d[(d["solver"] == name) & (d["size"] == size) & (d["feasible"] == True)]  # noqa: E712
            g = g["gap_to_best_bound"].astype(float)
            ran = ((d["solver"] == name) & (d["size"] == size)).any()
            rec[size] = (f"{fmt_gap(g.median())} ({fmt_gap(g.max())})" if len(g)
                         else ("no feasible x" if ran else "not run"))
        out.append(rec)
    return pd.DataFrame(out).astype(str)


def instances_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per instance: its data, the best objective and bound, and who proved it."""
    out = []
    for inst, sub in rows.groupby("instance", sort=False):
        r0 = sub.iloc[0]
        exact = sub[sub["kind"] == "exact"]
        proven = exact[exact["proven_optimal"] == True]["solver"].tolist()  # noqa: E712
        feas = sub[sub["feasible"] == True]["objective"].astype(float)  # noqa: E712
        out.append({
            "instance": inst, "p": int(r0["p"]), "layers": int(r0["layers"]), "dist": r0["dist"],
            "keep nnz": f"{r0['keep_nnz']:g}", "keep flops": f"{r0['keep_flops']:g}",
            "best objective": f"{feas.max():.10g}" if len(feas) else "—",
            "best bound": f"{r0['best_bound']:.10g}" if math.isfinite(r0["best_bound"]) else "—",
            "source": r0["best_bound_source"],
            "proven by": ", ".join(proven) if proven else ("—" if len(exact) == 0
                                                           else "**none (time limit)**"),
        })
    return pd.DataFrame(out).astype(str)


def flag_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The flagged runs (non-ok verdicts), with their objective, bound and message."""
    f = flagged(rows)
    return pd.DataFrame({
        "instance": f["instance"], "solver": f["solver"], "status": f["status"],
        "verdict": f["verdict"].map(lambda v: f"**{v}**"),
        "objective": f["objective"].map(lambda v: f"{v:.12g}"),
        "bound": f["bound"].map(lambda v: f"{v:.12g}"),
        "message": f["message"].astype(str).str.slice(0, 160),
    }).astype(str)


def versions_table(rows: pd.DataFrame, meta: dict) -> pd.DataFrame:
    """Backend and version of each solver, then the environment (``meta["versions"]``)."""
    out = []
    for name in solver_order(rows):
        sub = rows[rows["solver"] == name]
        backends = sorted(set(sub["backend"].dropna().astype(str)) - {""})
        versions = sorted(set(sub["backend_version"].dropna().astype(str)) - {"", "nan"})
        out.append({"solver": name, "backend": ", ".join(backends) or "—",
                    "version": ", ".join(versions) or "—"})
    for key, val in meta.get("versions", {}).items():
        out.append({"solver": "(environment)", "backend": key, "version": str(val)})
    return pd.DataFrame(out).astype(str)


# ----------------------------------------------------------------------------------- sweep part
def solver_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per formulation × solver: runs, proven optima, gap to the best bound, seconds."""
    inst = instance_rows(rows)
    out = []
    for (form, solver), sub in inst.groupby(["formulation", "solver"], sort=False):
        feas = sub[as_bool(sub["feasible"])]
        g = as_number(feas["gap_to_best_bound"])
        sec, p = as_number(sub["seconds"]), as_number(sub["p"])
        out.append({
            "formulation": form, "solver": solver, "kind": str(sub["kind"].iloc[0]),
            "runs": len(sub), "solved": len(feas),
            "proven optimal": int(as_bool(sub["proven_optimal"]).sum()),
            "median gap": fmt(g.median()), "max gap": fmt(g.max()),
            "median s": fmt(sec.median()), "max s": fmt(sec.max()),
            "largest p": int(p.max()) if p.notna().any() else "—",
            "flags": int((sub["verdict"].astype(str) != "ok").sum()),
        })
    return pd.DataFrame(out)


def network_miqp_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The joint MIQP of whole networks (a named joint-qp size): per solver its Q, the excess
    over the best Q found and over the best certified lower bound (relative to that bound)."""
    inst = instance_rows(rows)
    if not len(inst):
        return pd.DataFrame()
    sub = inst[(inst["formulation"] == "joint-qp")
               & ~pd.to_numeric(inst["size"], errors="coerce").notna()]
    out = []
    for _, job in sub.groupby("job_id", sort=False):
        q = as_number(job["objective"]).where(as_bool(job["feasible"]))
        bounds = as_number(job["bound"])
        best_q, best_bound = q.min(), bounds.max()
        scale = max(abs(best_bound), 1e-300) if math.isfinite(best_bound) else math.nan
        for rec, qi in zip(job.to_dict("records"), q):
            out.append({
                "network": rec.get("size"), "weights": rec.get("p"),
                "asked": f"NNZ {fmt(rec.get('keep_nnz'), '.2g')}, "
                         f"MACs {fmt(rec.get('budget'), '.2g')}",
                "solver": rec.get("solver"), "status": rec.get("status"),
                "Q": fmt(qi, ".8g"),
                "excess over best Q": fmt((qi - best_q) / scale, ".2g"),
                "excess over certified bound": fmt((qi - best_bound) / scale, ".2g"),
                "seconds": fmt(rec.get("seconds"), ".3g"),
            })
    return pd.DataFrame(out)


def network_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per model × method × budget: what was kept and the accuracy."""
    net = network_rows(rows)
    out = []
    for rec in net.to_dict("records"):
        out.append({
            "model": rec.get("model"), "method": rec.get("method"), "asked": asked(rec),
            "MACs kept": fmt(rec.get("macs_kept"), ".3f"),
            "NNZ kept": fmt(rec.get("nnz_kept"), ".3f"),
            "acc. dense": fmt(rec.get("accuracy_before"), ".3f"),
            "acc. pruned": fmt(rec.get("accuracy_after"), ".3f"),
            "acc. fine-tuned": fmt(rec.get("accuracy_finetuned"), ".3f"),
            "budget met": str(rec.get("budgets_met")),
            "seconds": fmt(rec.get("seconds"), ".1f"),
            "status": rec.get("job_status", rec.get("status")),
        })
    return pd.DataFrame(out)


def gap_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per structured-method run × gap measure."""
    net = network_rows(rows)
    out = []
    if "gaps" not in net.columns:
        return pd.DataFrame(out)
    for rec in net.to_dict("records"):
        gaps = json_cell(rec.get("gaps"))
        if not gaps:
            continue
        what = asked(rec)
        for g in gaps:
            out.append({
                "model": rec.get("model"), "method": rec.get("method"), "asked": what,
                "MACs kept": fmt(rec.get("macs_kept"), ".3f"), "measure": g.get("measure"),
                "method value": fmt(g.get("method_value"), ".6g"),
                "exact value": fmt(g.get("exact_value"), ".6g"),
                "gap": fmt(g.get("gap"), ".3g") if "skipped" not in g else "skipped",
                "what": g.get("description", g.get("skipped", "")),
            })
    return pd.DataFrame(out)


__all__ = ["display_summary", "flag_table", "flagged", "gap_by_size", "gap_table",
           "instances_table", "network_miqp_table", "network_table", "solver_summary", "summarize", "versions_table"]
