"""The report's tables, as DataFrames (display strings where they are shown as they are).

Joint-ILP study (rows of :mod:`pruneopt.reports.studies.joint_study`): :func:`summarize` per
solver, :func:`gap_by_size`, :func:`instances_table`, :func:`flag_table`, :func:`versions_table`.
Sweep part (rows of :mod:`pruneopt.reports.studies.sweep`): :func:`solver_summary` per
formulation × solver, :func:`network_table` per network run, :func:`gap_table` per structured
pruner's gap measure. Every run (all rows of a report): :func:`run_outcomes` (solved, time
limit, infeasible, refused, errored, budget missed), :func:`outcome_counts`,
:func:`outcome_table` per formulation × solver and :func:`unsolved_runs`, each unsolved run with
its reason; cross-check flags are verdicts other than :data:`NOT_FLAGS`.
"""

from __future__ import annotations

import math
import re

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

# ----------------------------------------------------------------------------------- outcomes
#: Verdicts that are not cross-check flags: ``ok`` (checked, no flag), ``not-checked`` (no
#: result to check: an error or a refusal), ``error`` (old rows files' job errors), empty.
NOT_FLAGS = ("ok", "not-checked", "error", "", "nan", "None", "<NA>")

#: What became of a run (:func:`run_outcomes`), in the order the report lists them.
OUTCOMES = ("solved", "time limit", "infeasible", "refused", "errored", "budget missed")
NOT_SOLVED = OUTCOMES[1:]
FAILURES = ("errored", "budget missed")


def _text(rows: pd.DataFrame, column: str) -> pd.Series:
    if column not in rows.columns:
        return pd.Series("", index=rows.index, dtype=object)
    col = rows[column].astype(object)
    return col.where(col.notna(), "").map(str)


def is_flagged(rows: pd.DataFrame) -> pd.Series:
    """Whether each row carries a cross-check flag (a verdict other than :data:`NOT_FLAGS`)."""
    return ~_text(rows, "verdict").str.strip().isin(NOT_FLAGS)


def flagged(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows whose cross-check verdict is a flag (a bug; see :data:`NOT_FLAGS`)."""
    return rows[is_flagged(rows)]


def run_outcomes(rows: pd.DataFrame) -> pd.Series:
    """What became of each run (one of :data:`OUTCOMES`): ``solved`` (status optimal or
    feasible), ``time limit``, ``infeasible`` (proved: no decision meets the budgets), and
    for status ``error``: ``refused`` (the solver does not apply to the instance by design:
    ``refused`` true, or a message starting ``refused:``), ``budget missed`` (a pruning method
    that missed the budget it was asked for) or ``errored`` (a failure)."""
    status = _text(rows, "status").str.strip()
    message = _text(rows, "message").str.strip()
    refused = (as_bool(rows["refused"]) if "refused" in rows.columns
               else pd.Series(False, index=rows.index)) | message.str.startswith("refused:")
    out = pd.Series("errored", index=rows.index, dtype=object)
    out[status.isin(("optimal", "feasible", "ok"))] = "solved"  # "ok": network rows of old files
    out[status == "time_limit"] = "time limit"
    out[status == "infeasible"] = "infeasible"
    err = ~status.isin(("optimal", "feasible", "ok", "time_limit", "infeasible"))
    out[err & refused] = "refused"
    out[err & ~refused & message.str.startswith("budget missed")] = "budget missed"
    return out


def outcome_counts(rows: pd.DataFrame) -> dict[str, int]:
    """How many runs had each outcome (every key of :data:`OUTCOMES`), and ``flagged``."""
    counts = run_outcomes(rows).value_counts()
    out = {k: int(counts.get(k, 0)) for k in OUTCOMES}
    out["flagged"] = int(is_flagged(rows).sum())
    out["runs"] = len(rows)
    return out


def row_part(rows: pd.DataFrame) -> pd.Series:
    """The formulation of an instance row, the model of a network row."""
    form, model = _text(rows, "formulation"), _text(rows, "model")
    return form.where(form != "", model)


def row_who(rows: pd.DataFrame) -> pd.Series:
    """The solver of an instance row, the method of a network row."""
    solver, method = _text(rows, "solver"), _text(rows, "method")
    return solver.where(solver != "", method)


def _run_label(rows: pd.DataFrame) -> pd.Series:
    """The instance (or network run) a row belongs to: its job key, else its instance id."""
    key, inst = _text(rows, "job_key"), _text(rows, "instance")
    return key.where(key != "", inst)


def outcome_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per formulation (or model) × solver (or method) with a run that did not solve: how many
    runs, solved, and each outcome that is not solved (display strings)."""
    if not len(rows):
        return pd.DataFrame()
    d = pd.DataFrame({"part": row_part(rows), "who": row_who(rows), "outcome": run_outcomes(rows)})
    out = []
    for (part, who), sub in d.groupby(["part", "who"], sort=False):
        counts = sub["outcome"].value_counts()
        if not any(counts.get(k, 0) for k in NOT_SOLVED):
            continue
        rec = {"formulation / model": part, "solver / method": who, "runs": len(sub),
               "solved": int(counts.get("solved", 0))}
        for k in NOT_SOLVED:
            n = int(counts.get(k, 0))
            rec[k] = (f"**{n}**" if n and k in FAILURES else str(n))
        out.append(rec)
    df = pd.DataFrame(out)
    if len(df):  # drop outcome columns that are zero everywhere
        df = df[[c for c in df.columns if c not in NOT_SOLVED or (df[c] != "0").any()]]
    return df.astype(str)


def unsolved_runs(rows: pd.DataFrame, *, limit: int = 400) -> pd.DataFrame:
    """Every run that did not solve (at most ``limit`` rows), failures first: where, who, the
    outcome and the reason (the run's message; a time limit says its limit)."""
    if not len(rows):
        return pd.DataFrame()
    outcome = run_outcomes(rows)
    sub = rows[outcome != "solved"]
    if not len(sub):
        return pd.DataFrame()
    oc = outcome[sub.index]
    message = _text(sub, "message").str.strip()
    limit_s = as_number(sub["time_limit"]) if "time_limit" in sub.columns else None
    reasons = []
    for i, (o, m) in enumerate(zip(oc, message, strict=True)):
        if o == "time limit":
            t = limit_s.iloc[i] if limit_s is not None else math.nan
            head = f"stopped at its time limit ({fmt(t, 'g')} s)" if math.isfinite(t) else \
                "stopped at its time limit"
            m = f"{head}: {m}" if m else head
        elif o == "refused" and m.startswith("refused: "):
            m = m[len("refused: "):]
        reasons.append(m[:400] + ("…" if len(m) > 400 else "") if m else "—")
    rank = {k: i for i, k in enumerate(("errored", "budget missed", "infeasible", "time limit",
                                        "refused"))}
    df = pd.DataFrame({
        "formulation / model": row_part(sub).to_numpy(), "run": _run_label(sub).to_numpy(),
        "solver / method": row_who(sub).to_numpy(),
        "outcome": [f"**{o}**" if o in FAILURES else o for o in oc],
        "reason": reasons, "_rank": [rank.get(o, 9) for o in oc]})
    df = df.sort_values("_rank", kind="stable").drop(columns="_rank").head(limit)
    return df.reset_index(drop=True).astype(str)


# ----------------------------------------------------------------------------------- joint ILP


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
            "errored or refused": int((sub["status"] == "error").sum()),
            "median gap to best bound": float(g.median()) if len(g) else math.nan,
            "max gap to best bound": float(g.max()) if len(g) else math.nan,
            "median seconds": float(s.median()) if s.notna().any() else math.nan,
            "max seconds": float(s.max()) if s.notna().any() else math.nan,
            "flags": int(is_flagged(sub).sum()),
        })
    return pd.DataFrame(out)


def display_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """:func:`summarize` as display strings (gaps, seconds; errors and flags in bold)."""
    d = summary.copy()
    for c in ("median gap to best bound", "max gap to best bound"):
        d[c] = d[c].map(fmt_gap)
    for c in ("median seconds", "max seconds"):
        d[c] = d[c].map(fmt_seconds)
    for c in ("errored or refused", "flags"):
        d[c] = d[c].map(lambda n: f"**{n}**" if n else "0")
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
    """The flagged runs (cross-check flags), with their objective, bound and message."""
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
    """Per formulation × solver: runs, solved, proven optima, the runs not solved (by outcome),
    gap to the best bound and seconds (median and max), largest size, cross-check flags."""
    inst = instance_rows(rows)
    if not len(inst):
        return pd.DataFrame()
    inst = inst.assign(_outcome=run_outcomes(inst))
    out = []
    for (form, solver), sub in inst.groupby(["formulation", "solver"], sort=False):
        feas = sub[as_bool(sub["feasible"])]
        g = as_number(feas["gap_to_best_bound"])
        sec, p = as_number(sub["seconds"]), as_number(sub["p"])
        counts = sub["_outcome"].value_counts()
        missing = [f"{int(counts[k])} {k}" for k in NOT_SOLVED if counts.get(k, 0)]
        flags = int(is_flagged(sub).sum())
        out.append({
            "formulation": form, "solver": solver, "kind": str(sub["kind"].iloc[0]),
            "runs": len(sub), "solved": len(feas),
            "proven optimal": int(as_bool(sub["proven_optimal"]).sum()),
            "not solved": ", ".join(f"**{m}**" if m.split(" ", 1)[1] in FAILURES else m
                                    for m in missing) or "0",
            "gap: median (max)": (f"{fmt(g.median())} ({fmt(g.max())})" if g.notna().any()
                                  else "—"),
            "seconds: median (max)": (f"{fmt(sec.median())} ({fmt(sec.max())})"
                                      if sec.notna().any() else "—"),
            "largest p": int(p.max()) if p.notna().any() else "—",
            "flags": f"**{flags}**" if flags else "0",
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
                "network": rec.get("size"), "weights": fmt(rec.get("p"), ",.0f"),
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
    """Per model × method × budget: what was kept, the accuracy, and whether the budget asked
    was met (a missed budget or a failed run in bold). The fine-tuned accuracy is a column
    only when some run was fine-tuned (``n/a`` for the runs that are not)."""
    net = network_rows(rows)
    if not len(net):
        return pd.DataFrame()
    outcome = run_outcomes(net)
    tuned = ("accuracy_finetuned" in net.columns
             and as_number(net["accuracy_finetuned"]).notna().any())
    out = []
    for (_, rec), oc in zip(net.iterrows(), outcome, strict=True):
        rec = rec.to_dict()
        kept = fmt(rec.get("macs_kept"), ".3f")
        result = {"solved": "met", "budget missed": "**budget missed**",
                  "errored": "**errored**"}.get(oc, oc)
        if rec.get("method") == "fair" and oc == "solved":
            result = "none asked (α)"
        row = {
            "model": rec.get("model"), "method": rec.get("method"), "asked": asked(rec),
            "MACs kept": f"**{kept}**" if oc == "budget missed" else kept,
            "NNZ kept": fmt(rec.get("nnz_kept"), ".3f"),
            "acc. dense": fmt(rec.get("accuracy_before"), ".3f"),
            "acc. pruned": fmt(rec.get("accuracy_after"), ".3f"),
        }
        if tuned:
            ft = as_number(pd.Series([rec.get("accuracy_finetuned")])).iloc[0]
            row["acc. fine-tuned"] = fmt(ft, ".3f") if math.isfinite(ft) else "n/a"
        row.update({"budget": result, "seconds": fmt(rec.get("seconds"), ".1f")})
        out.append(row)
    return pd.DataFrame(out)


_ENUMERATION = re.compile(r"enumeration: (\d+) prefix-count combinations exceed "
                          r"max_combinations=(\d+)")


def skipped_reason(reason: str) -> str:
    """Why a gap measure was skipped, and how to get it (an enumeration over its limit:
    the ``max_combinations`` of the study's ``[[networks]]`` block)."""
    m = _ENUMERATION.search(reason)
    if not m:
        return f"skipped: {reason}"
    need, cap = int(m.group(1)), int(m.group(2))
    return (f"skipped: the exact best prefix mask needs {need:,} masked forward passes, more "
            f"than max_combinations = {cap:,}; set `max_combinations = {need}` in the "
            "[[networks]] block of a study config to compute it")


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
                "what": (g.get("description", "") if "skipped" not in g
                         else skipped_reason(str(g["skipped"]))),
            })
    return pd.DataFrame(out)


__all__ = ["FAILURES", "NOT_FLAGS", "NOT_SOLVED", "OUTCOMES", "display_summary", "flag_table",
           "flagged", "gap_by_size", "gap_table", "instances_table", "is_flagged",
           "network_miqp_table", "network_table", "outcome_counts", "outcome_table",
           "row_part", "row_who", "run_outcomes", "skipped_reason", "solver_summary",
           "summarize", "unsolved_runs", "versions_table"]
