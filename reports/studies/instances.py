"""Instance jobs: the generated problem of a :class:`~pruneopt.reports.studies.jobs.SweepJob`
(rebuilt from its spec wherever the job runs: same job, same instance) and the run of its
solvers, cross-checked together, as one row per solver.

The sizes each formulation accepts are documented in :mod:`pruneopt.reports.studies.config`.
``joint-qp`` instances come from :func:`random_joint_qp` (numpy alone) or, for a network name,
from :func:`~pruneopt.models.joint_qp_instances.network_problem` (torch, imported only then).
"""

from __future__ import annotations

import math

import numpy as np

from pruneopt.formulations.allocation.generate import generate_allocation
from pruneopt.formulations.channels.generate import generate_channels
from pruneopt.formulations.joint.generate import generate_joint
from pruneopt.formulations.joint_qp.problem import JointQuadraticProblem
from pruneopt.reports.studies.jobs import FORMULATIONS, SweepJob, job_fields, solver_kinds
from pruneopt.solvers.crosscheck import crosscheck


def random_joint_qp(*, p: int, keep_flops: float, keep_nnz: float = 1.0, seed: int = 0,
                    samples: int = 16, layers: int | None = None) -> JointQuadraticProblem:
    """A random full joint problem (a') from numpy alone: ``samples`` rows of X ~ N(0, 0.5²),
    w̄ ~ N(0, 0.3²), ridge 0.05, min(3, p) layers (or ``layers``) with MAC costs drawn from
    {1, 16, 64, 256}."""
    rng = np.random.default_rng(seed)
    L = max(1, min(3 if layers is None else layers, p))
    cuts = np.sort(rng.choice(np.arange(1, p), L - 1, replace=False)) if L > 1 else []
    sizes = np.diff(np.concatenate(([0], cuts, [p]))).astype(np.int64)
    costs = rng.choice([1.0, 16.0, 64.0, 256.0], L)
    return JointQuadraticProblem(
        X=rng.standard_normal((samples, p)) * 0.5, w_bar=rng.standard_normal(p) * 0.3,
        ridge=0.05, group_ptr=np.concatenate(([0], np.cumsum(sizes))), flop_cost=costs,
        nnz_budget=int(math.floor(keep_nnz * p)),
        flop_budget=keep_flops * float(sizes @ costs), names=[f"layer{g}" for g in range(L)])


def build_instance(job: SweepJob):
    """The problem of an instance job, rebuilt from its spec (same job → same instance)."""
    f, size, budget, seed = job.formulation, job.size, job.budget, job.seed
    if f == "joint":
        if isinstance(size, str):
            return generate_joint(shape=size, dist=job.param("dist", "kaiming"),
                                  keep_nnz=job.param("keep_nnz", 1.0), keep_flops=budget,
                                  seed=seed)
        layers = job.param("layers", int(np.clip(round(math.sqrt(size)), 1, 20)))
        return generate_joint(layers=min(layers, size), items=size,
                              dist=job.param("dist", "kaiming"),
                              keep_nnz=job.param("keep_nnz", 1.0), keep_flops=budget, seed=seed)
    if f == "joint-qp" and isinstance(size, str):
        # a whole trained network: torch is imported only when a study asks for one
        from pruneopt.models.joint_qp_instances import network_problem

        return network_problem(size, calibration=job.param("samples", 128),
                               block_size=job.param("block_size"), keep_nnz=job.param(
                                   "keep_nnz", 1.0), keep_flops=budget, seed=seed)
    if f == "joint-qp":
        return random_joint_qp(p=size, keep_flops=budget, keep_nnz=job.param("keep_nnz", 1.0),
                               seed=seed, samples=job.param("samples", 16),
                               layers=job.param("layers"))
    if f == "allocation":
        shape = size if isinstance(size, str) else "random"
        return generate_allocation(layers=size if isinstance(size, int) else 20,
                                   options=job.param("options", 10), seed=seed,
                                   keep_nnz=job.param("keep_nnz"), keep_flops=budget, shape=shape)
    if f == "channels":
        shape = size if isinstance(size, str) else "random"
        return generate_channels(shape=shape, seed=seed, keep_flops=budget,
                                 dist=job.param("dist", "kaiming"),
                                 groups=size if isinstance(size, int) else 6,
                                 channels=job.param("channels", 16))
    raise ValueError(f"formulation: unknown formulation {f!r} (known: {', '.join(FORMULATIONS)})")


def problem_items(problem) -> int:
    """The length of the decision: items (joint, joint-qp), channels, or options (allocation)."""
    for attr in ("num_items", "num_options"):
        if hasattr(problem, attr):
            return int(getattr(problem, attr))
    return 0


def run_instance_job(job: SweepJob) -> list[dict]:
    """Build the instance and cross-check its solvers: one row per solver."""
    problem = build_instance(job)
    df = crosscheck(problem, job.solvers, time_limit=job.time_limit)
    kinds = solver_kinds(job.formulation, job.solvers)
    nnz_budget = getattr(problem, "nnz_budget", None)
    if nnz_budget is not None and nnz_budget < 0:  # allocation: -1 = no NNZ budget
        nnz_budget = None
    flop_budget = getattr(problem, "flop_budget", None)
    if flop_budget is not None and not math.isfinite(flop_budget):
        flop_budget = None
    base = {**job_fields(job), "job_status": "ok", "job_rows": len(df),
            "p": problem_items(problem), "sense": problem.sense,
            "nnz_budget": nnz_budget, "flop_budget": flop_budget}
    return [{**base, **rec, "kind": kinds.get(rec["solver"], "fast")}
            for rec in df.to_dict("records")]


__all__ = ["build_instance", "problem_items", "random_joint_qp", "run_instance_job"]
