"""Synthetic rows of a report (no solver, no torch): the joint-ILP study's rows and a sweep part
with every formulation, the whole-network MIQP, network runs and structured gap measures — and
runs that did not solve (an error, a refusal by design, a time limit, a missed budget), so that
the report's tables are as wide and its outcomes as varied as a real study's.

Used by ``tests/test_report.py`` (the outcome tables and headline) and
``tests/test_report_browser.py`` (the page in a real browser).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from pruneopt.reports.studies.joint_study import ROW_COLUMNS, add_best_bound_gaps
from pruneopt.reports.studies.rows import SWEEP_COLUMNS

JOINT_SOLVERS = (("pyomo-highs", "exact"), ("highs", "exact"), ("cpsat", "exact"),
                 ("pyomo-scip", "exact"), ("exact", "exact"), ("falcon", "fast"),
                 ("magnitude", "fast"), ("ratio", "fast"))
SWEEP_SOLVERS = {
    "joint-qp": (("exact", "exact"), ("enumerate", "exact"), ("oa-highs", "exact"),
                 ("pyomo-scip", "exact"), ("falcon", "fast"), ("chita", "fast"),
                 ("woodfisher", "fast"), ("magnitude-backsolve", "fast")),
    "allocation": (("pyomo-highs", "exact"), ("highs", "exact"), ("cpsat", "exact"),
                   ("dp", "exact"), ("exact", "exact"), ("fast", "fast"), ("uniform", "fast")),
    "channels": (("pyomo-highs", "exact"), ("pyomo-highs-mccormick", "exact"),
                 ("pyomo-scip", "exact"), ("cpsat", "exact"), ("dp", "exact"),
                 ("exact", "exact"), ("fast", "fast"), ("global-threshold", "fast"),
                 ("uniform", "fast")),
}
REFUSAL = ("refused: dp is exact on chains only, and this coupling graph is not one (group 1 "
           "is coupled to 4 groups (a chain allows 2)); exact and pyomo-highs solve it")
ERROR = ("RuntimeError: HiGHS returned kModelError while reading the model; the instance has "
         "a row whose coefficients overflow float64 after scaling (synthetic error)")
BUDGET_MISSED = "budget missed: autobot kept 0.908 of the dense MACs, asked 0.7"


def joint_rows(seed: int = 0) -> pd.DataFrame:
    """Joint-ILP study rows: 3 sizes × 3 budgets, every solver solved (one time limit)."""
    rng = np.random.default_rng(seed)
    out = []
    for p, limit in ((300, 20.0), (2000, 20.0), (268_336, 10.0)):
        for keep_nnz, keep_flops in ((0.25, 0.2), (0.48, 0.4), (0.68, 0.6)):
            inst = f"p{p}-kaiming-F{keep_flops:g}"
            opt = float(rng.uniform(50, 100))
            for solver, kind in JOINT_SOLVERS:
                if p > 20_000 and solver in ("pyomo-highs", "cpsat", "pyomo-scip"):
                    continue
                exact = kind == "exact"
                timed_out = solver == "highs" and p > 20_000
                gap = 0.0 if exact and not timed_out else float(10 ** rng.uniform(-14, -3))
                obj = opt * (1 - gap)
                out.append({
                    "instance": inst, "shape": "random" if p < 20_000 else "resnet20", "p": p,
                    "layers": 12, "dist": "kaiming", "keep_nnz": keep_nnz,
                    "keep_flops": keep_flops, "instance_seed": 1, "nnz_budget": p * keep_nnz,
                    "flop_budget": 1e6 * keep_flops, "formulation": "joint",
                    "sense": "maximize", "solver": solver, "kind": kind, "time_limit": limit,
                    "status": ("time_limit" if timed_out else
                               "optimal" if exact else "feasible"),
                    "refused": False, "proven_optimal": exact and not timed_out,
                    "objective": obj, "bound": opt if exact or solver == "falcon" else opt * 1.1,
                    "gap": gap, "seconds": float(10 ** rng.uniform(-3, 1)), "feasible": True,
                    "verdict": "ok", "nnz_used": p * keep_nnz * 0.9,
                    "flops_used": 1e6 * keep_flops * 0.99, "backend": solver,
                    "backend_version": "1.0",
                    "message": ("time limit reached" if timed_out else ""),
                    "best_bound": math.nan, "best_bound_source": None,
                    "gap_to_best_bound": math.nan,
                })
    df = pd.DataFrame(out)
    for col in ROW_COLUMNS:
        if col not in df.columns:
            df[col] = math.nan
    return add_best_bound_gaps(df[ROW_COLUMNS])


def _instance(job: str, form: str, size, p: int, budget: float, solver: str, kind: str,
              rng, limit: float = 20.0) -> dict:
    exact = kind == "exact"
    opt = float(rng.uniform(1, 10))
    gap = 0.0 if exact else float(10 ** rng.uniform(-9, -1))
    return {"job_id": job, "job_key": f"{form}/{size}/F{budget:g}/#0", "job_kind": "instance",
            "job_status": "ok", "formulation": form, "size": str(size), "p": p,
            "budget": budget, "keep_nnz": 1.0, "seed": 1, "sense": "minimize",
            "time_limit": limit, "solver": solver, "kind": kind,
            "status": "optimal" if exact else "feasible", "refused": False,
            "proven_optimal": exact, "objective": opt * (1 + gap), "bound": opt,
            "gap": gap, "gap_to_best_bound": gap, "feasible": True, "verdict": "ok",
            "seconds": float(10 ** rng.uniform(-3, 0.5)), "message": ""}


def sweep_rows(seed: int = 0, *, failures: bool = True) -> pd.DataFrame:
    """The sweep part: instances of each formulation (with a refusal, an error and a time limit
    when ``failures``), the whole digits MLP's MIQP, and network runs (with a missed budget)."""
    rng = np.random.default_rng(seed)
    out = []
    sizes = {"joint-qp": (12, 16), "allocation": (20, 100), "channels": (6, 12, 24)}
    for form, solvers in SWEEP_SOLVERS.items():
        for size in sizes[form]:
            p = size * (8 if form != "joint-qp" else 1)
            for budget in (0.3, 0.5, 0.7):
                job = f"{form}-{size}-{budget}"
                for solver, kind in solvers:
                    row = _instance(job, form, size, p, budget, solver, kind, rng)
                    if failures and form == "channels" and solver == "dp" and size > 6:
                        row.update(status="error", refused=True, proven_optimal=False,
                                   feasible=False, objective=math.nan, bound=math.nan,
                                   gap=math.nan, gap_to_best_bound=math.nan, seconds=math.nan,
                                   verdict="not-checked", message=REFUSAL)
                    if failures and form == "allocation" and solver == "cpsat" and size == 100 \
                            and budget == 0.5:
                        row.update(status="error", proven_optimal=False, feasible=False,
                                   objective=math.nan, bound=math.nan, gap=math.nan,
                                   gap_to_best_bound=math.nan, verdict="not-checked",
                                   message=ERROR)
                    if failures and form == "joint-qp" and solver == "pyomo-scip" and size == 16:
                        row.update(status="time_limit", proven_optimal=False,
                                   message="SCIP stopped at its time limit (gap 3.2e-02)")
                    out.append(row)
    for solver, q in (("exact", 2.0), ("falcon", 2.19), ("chita", 2.25), ("woodfisher", 2.3),
                      ("magnitude", 2.38)):
        out.append({**_instance("mlp", "joint-qp", "digits-mlp", 6464, 0.35, solver,
                                "exact" if solver == "exact" else "fast", rng, 30.0),
                    "status": "time_limit" if solver == "exact" else "feasible",
                    "proven_optimal": False, "objective": q, "bound": 1.9 if solver == "exact"
                    else math.nan})
    methods = ("magnitude", "chita", "woodfisher", "falcon", "falcon++", "autobot", "fair",
               "relaxation")
    for model, layers in (("digits-mlp", ("fc1", "fc2", "fc3")),
                          ("digits-cnn", ("conv1", "conv2", "conv3", "fc1", "fc2"))):
        for method in methods:
            budgets = (0.005, 0.05) if method == "fair" else (0.3, 0.5, 0.7)
            for b in budgets:
                kept = min(1.0, b * float(rng.uniform(0.95, 1.0))) if method != "fair" else \
                    float(rng.uniform(0.4, 0.9))
                missed = failures and method == "autobot" and b == 0.7 and model == "digits-cnn"
                if missed:
                    kept = 0.908
                structured = method in ("autobot", "fair", "relaxation")
                gaps = None
                if structured:
                    gaps = json.dumps([
                        {"measure": "G1", "method_value": 1.0, "exact_value": 1.01,
                         "gap": 0.0099, "description": "kept score against the exact channel-"
                         "selection optimum at the achieved MACs, proved by the exact solver"},
                        {"measure": "G2", "skipped": "enumeration: 20736 prefix-count "
                         "combinations exceed max_combinations=4096"}])
                out.append({
                    "job_id": f"{model}-{method}-{b}", "job_key": f"{model}/{method}/F{b:g}/#0",
                    "job_kind": "network", "job_status": "ok", "model": model,
                    "method": method, "flops": None if method == "fair" else b,
                    "tolerance": b if method == "fair" else None, "budget": b,
                    "status": "error" if missed else "feasible", "refused": False,
                    "accuracy_before": 0.98, "accuracy_after": 0.9 * kept + 0.05,
                    "accuracy_finetuned": 0.95 if structured else None, "macs_kept": kept,
                    "nnz_kept": kept * 0.9, "budgets_met": not missed, "data": "digits",
                    "kept_fractions": json.dumps({name: float(rng.uniform(0.2, 1.0))
                                                  for name in layers}),
                    "gaps": gaps, "seconds": float(rng.uniform(0.5, 20)),
                    "message": BUDGET_MISSED if missed else ""})
    df = pd.DataFrame(out)
    df["job_rows"] = df.groupby("job_id")["job_id"].transform("size")
    for col in SWEEP_COLUMNS:
        if col not in df.columns:
            df[col] = math.nan
    return df[SWEEP_COLUMNS]


META = {"quick": True, "seed": 0, "study": "synthetic", "workers": 2, "wall_seconds": 1.0,
        "generated": "2026-01-01 00:00:00 UTC", "host": "test", "versions": {"python": "3"}}
