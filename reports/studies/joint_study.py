"""The joint-ILP study of ``pruneopt report``: generated joint instances, every practical solver
on each, cross-checked, one row per instance × solver (columns :data:`ROW_COLUMNS`).

* :func:`build_study` returns a list of :class:`Job`: one generated instance
  (:class:`InstanceSpec`, rebuilt from its seed wherever the job runs), the solvers practical at
  its size (:data:`~pruneopt.reports.studies.jobs.SOLVER_MAX_ITEMS`), and a time limit.
* :func:`run_study` runs the jobs (in a process pool by default, see
  :func:`~pruneopt.reports.studies.runner.run_guarded`; ``workers=1`` runs them in this
  process), each job one :func:`~pruneopt.solvers.crosscheck.crosscheck` so that the verdicts
  compare every solver of an instance; :func:`add_best_bound_gaps` then sets
  ``gap_to_best_bound``.
* :func:`as_sweep_rows` gives the rows the sweep's column names, for the report's one rows file.

The honest figure is the **gap to the best bound** of an instance: the bound of the best solver that
proved optimality there (its bound meets its objective within 1e-9), else the smallest (tightest)
valid bound any solver reported — FALCON's LP dual, an exact solver's bound at its time limit, or a
heuristic's single-row LP bound. A solver's own ``gap`` only measures it against its own bound.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from pruneopt.formulations.joint.generate import generate_joint
from pruneopt.formulations.joint.problem import JointBudgetProblem
from pruneopt.reports.studies.jobs import instance_seed, practical_solvers, solver_kinds
from pruneopt.reports.studies.runner import run_guarded
from pruneopt.solvers.crosscheck import crosscheck

#: (keep_nnz, keep_flops) pairs: the fractions of weights and of dense MACs kept.
BUDGETS: tuple[tuple[float, float], ...] = ((0.25, 0.2), (0.48, 0.4), (0.68, 0.6))

TIME_LIMIT = 20.0  # seconds per solver run, instances up to 20,000 items
TIME_LIMIT_LARGE = 10.0  # per solver run on network-size instances (HiGHS may not finish there)
LARGE_ITEMS = 100_000

ROW_COLUMNS = [
    "instance", "shape", "p", "layers", "dist", "keep_nnz", "keep_flops", "instance_seed",
    "nnz_budget", "flop_budget", "formulation", "sense", "solver", "kind", "time_limit",
    "status", "proven_optimal", "objective", "bound", "gap", "gap_to_best_bound",
    "best_bound", "best_bound_source", "seconds", "feasible", "verdict", "nnz_used",
    "flops_used", "backend", "backend_version", "message",
]


@dataclass(frozen=True)
class InstanceSpec:
    """A generated joint instance, reproducible from its fields (see ``generate_joint``)."""

    shape: str
    items: int
    layers: int
    dist: str
    keep_nnz: float
    keep_flops: float
    seed: int

    @property
    def id(self) -> str:
        size = f"p{self.items}-L{self.layers}" if self.shape == "random" else self.shape
        return f"{size}-{self.dist}-F{self.keep_flops:g}"

    def build(self) -> JointBudgetProblem:
        return generate_joint(layers=self.layers, items=self.items, dist=self.dist,
                              shape=self.shape, keep_nnz=self.keep_nnz,
                              keep_flops=self.keep_flops, seed=self.seed)


@dataclass(frozen=True)
class Job:
    """One instance and the solvers run on it (together, so that they are cross-checked)."""

    instance: InstanceSpec
    solvers: tuple[str, ...]
    time_limit: float
    p: int = 0  # number of items (filled by build_study)
    options: dict = field(default_factory=dict, hash=False, compare=False)


def _tiers(quick: bool) -> list[tuple[str, int, tuple[str, ...], tuple[tuple[float, float], ...]]]:
    """(shape, items, distributions, budgets) of each size tier of the study."""
    if quick:
        return [
            ("random", 300, ("kaiming", "lognormal", "ties"), BUDGETS),
            ("random", 1000, ("kaiming", "lognormal"), (BUDGETS[0],)),
        ]
    return [
        ("random", 300, ("kaiming", "lognormal", "ties"), BUDGETS),
        ("random", 2000, ("kaiming", "lognormal"), BUDGETS),
        ("random", 20_000, ("kaiming", "lognormal"), BUDGETS),
        ("resnet20", 0, ("kaiming", "lognormal"), BUDGETS),
    ]


def build_study(*, quick: bool = False, seed: int = 0, time_limit: float | None = None,
                max_items: dict[str, int] | None = None) -> list[Job]:
    """The jobs of the joint-ILP study (same ``seed`` → same instances).

    Full: p ∈ {300, 2000, 20000} with shape ``random`` (8–20 layers, drawn per instance) and the
    ResNet-20 layer table (268,336 weights); kaiming and lognormal scores (and ties at p = 300);
    the three (keep_nnz, keep_flops) pairs of :data:`BUDGETS`. Quick: p = 300 as in full, plus
    two instances of p = 1000 (every exact solver finishes in seconds there). ``time_limit``
    overrides both default limits.
    """
    jobs = []
    for shape, items, dists, budgets in _tiers(quick):
        for dist in dists:
            for keep_nnz, keep_flops in budgets:
                key = f"{shape}/{items}/{dist}/{keep_nnz:g}/{keep_flops:g}"
                s = instance_seed(seed, key)
                layers = int(np.random.default_rng(s).integers(8, 21)) if shape == "random" else 0
                spec = InstanceSpec(shape=shape, items=items, layers=layers, dist=dist,
                                    keep_nnz=keep_nnz, keep_flops=keep_flops, seed=s)
                problem = spec.build()
                if shape != "random":
                    spec = InstanceSpec(shape=shape, items=problem.num_items,
                                        layers=problem.num_groups, dist=dist, keep_nnz=keep_nnz,
                                        keep_flops=keep_flops, seed=s)
                limit = time_limit if time_limit is not None else (
                    TIME_LIMIT_LARGE if problem.num_items > LARGE_ITEMS else TIME_LIMIT)
                jobs.append(Job(instance=spec, solvers=practical_solvers(problem, max_items),
                                time_limit=float(limit), p=problem.num_items))
    return jobs


def _base_row(job: Job, problem=None) -> dict:
    spec = job.instance
    row = {"instance": spec.id, "shape": spec.shape, "p": job.p or spec.items,
           "layers": spec.layers, "dist": spec.dist, "keep_nnz": spec.keep_nnz,
           "keep_flops": spec.keep_flops, "instance_seed": spec.seed, "time_limit": job.time_limit}
    if problem is not None:
        row.update(p=problem.num_items, layers=problem.num_groups,
                   nnz_budget=problem.nnz_budget, flop_budget=problem.flop_budget,
                   formulation=problem.kind, sense=problem.sense)
    return row


def error_rows(job: Job, message: str) -> list[dict]:
    """Rows for a job that produced no results (a crash, or a worker that did not return)."""
    kinds = solver_kinds("joint", job.solvers)
    return [{**_base_row(job), "formulation": "joint", "sense": "maximize", "solver": name,
             "kind": kinds[name], "status": "error", "proven_optimal": False,
             "feasible": False, "verdict": "error", "message": message} for name in job.solvers]


def run_job(job: Job) -> list[dict]:
    """Build the job's instance, cross-check its solvers, return one row dict per solver."""
    problem = job.instance.build()
    df = crosscheck(problem, job.solvers, time_limit=job.time_limit,
                    options=job.options or None)
    results = df.attrs["results"]
    kinds = solver_kinds("joint", job.solvers)
    base = _base_row(job, problem)
    rows = []
    for rec, res in zip(df.to_dict("records"), results, strict=True):
        rows.append({
            **base, **rec, "kind": kinds.get(rec["solver"], "fast"),
            "nnz_used": res.usage.get("nnz", math.nan),
            "flops_used": res.usage.get("flops", math.nan),
            "backend": res.backend, "backend_version": res.backend_version,
        })
    return rows


def _job_budget(job: Job) -> float:
    # each solver: its limit, HiGHS's outside guard (≤ limit/4 + 5 s), model building; plus slack
    return len(job.solvers) * (2.0 * job.time_limit + 30.0) + 60.0


def run_study(jobs: list[Job], *, progress: bool = True, workers: int | None = None
              ) -> pd.DataFrame:
    """Run every job; return the rows (one per instance × solver) in job order.

    ``workers`` > 1 runs jobs in a pool of spawned processes (default: 2, or fewer CPUs; largest
    first, so that the long jobs do not end up alone at the tail); a job that raises becomes
    ``error`` rows; if no job finishes for longer than any job may take, the jobs still out are
    recorded as ``error`` rows and their workers ended.
    """
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    workers = max(1, min(int(workers), len(jobs) or 1))
    done: dict[int, list[dict]] = {}
    bar = tqdm(total=len(jobs), desc="gap report", unit="instance", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)

    def finish(i: int, rows: list[dict]) -> None:
        done[i] = rows
        bar.set_postfix_str(jobs[i].instance.id, refresh=False)
        bar.update(1)

    try:
        if jobs:
            run_guarded(jobs, run_job, workers=workers, finish=finish, error_rows=error_rows,
                        stall=max(_job_budget(j) for j in jobs),
                        order=sorted(range(len(jobs)), key=lambda i: -jobs[i].p))
    finally:
        bar.close()
    rows = [row for i in range(len(jobs)) for row in done.get(i, [])]
    df = pd.DataFrame(rows)
    for col in ROW_COLUMNS:
        if col not in df.columns:
            df[col] = math.nan
    return add_best_bound_gaps(df[ROW_COLUMNS])


def _rel_gap(ref: float, z: float) -> float:
    if not (math.isfinite(ref) and math.isfinite(z)):
        return math.nan
    scale = max(abs(ref), abs(z))
    return 0.0 if scale == 0.0 else abs(ref - z) / max(scale, 1e-300)


def add_best_bound_gaps(rows: pd.DataFrame) -> pd.DataFrame:
    """Set ``best_bound``, ``best_bound_source`` and ``gap_to_best_bound`` on every row.

    Per instance, the best bound is the bound of the best solver that proved optimality (feasible,
    verdict ``ok``); without one, the tightest finite bound of a row whose bound no feasible
    selection beats (no ``bound-below-feasible`` flag). A row's gap to it is
    |best bound − objective| / max(|best bound|, |objective|); NaN for a row without a feasible x.
    """
    rows = rows.copy()
    rows["best_bound"] = rows["best_bound"].astype("float64")
    rows["gap_to_best_bound"] = rows["gap_to_best_bound"].astype("float64")
    rows["best_bound_source"] = rows["best_bound_source"].astype("object")
    for _, idx in rows.groupby("instance", sort=False).groups.items():
        sub = rows.loc[idx]
        maximize = (sub["sense"].iloc[0] if isinstance(sub["sense"].iloc[0], str)
                    else "maximize") == "maximize"
        verdict = sub["verdict"].astype(str)
        proven = sub[(sub["proven_optimal"] == True) & (sub["feasible"] == True)  # noqa: E712
                     & (verdict == "ok")]
        ref, source = math.nan, "none"
        if len(proven):
            best = proven.sort_values("objective", ascending=not maximize).iloc[0]
            ref, source = float(best["bound"]), f"proven optimum ({best['solver']})"
        else:
            valid = sub[np.isfinite(sub["bound"].astype(float))
                        & ~verdict.str.contains("bound-below-feasible")]
            if len(valid):
                best = valid.sort_values("bound", ascending=maximize).iloc[0]
                ref, source = float(best["bound"]), f"tightest bound ({best['solver']})"
        rows.loc[idx, "best_bound"] = ref
        rows.loc[idx, "best_bound_source"] = source
        rows.loc[idx, "gap_to_best_bound"] = [
            _rel_gap(ref, float(z)) if f is True or f == 1 else math.nan
            for z, f in zip(sub["objective"], sub["feasible"], strict=True)]
    return rows


def as_sweep_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The joint study's rows in the sweep's column names, for the one rows file."""
    if not len(rows):
        return rows
    out = rows.copy()
    out.insert(0, "job_kind", "instance")
    out.insert(0, "job_id", rows["instance"])
    out["budget"], out["seed"], out["size"] = rows["keep_flops"], rows["instance_seed"], rows["p"]
    return out


__all__ = ["BUDGETS", "InstanceSpec", "Job", "LARGE_ITEMS", "ROW_COLUMNS", "TIME_LIMIT",
           "TIME_LIMIT_LARGE", "add_best_bound_gaps", "as_sweep_rows", "build_study",
           "error_rows", "run_job", "run_study"]
