"""Job definitions of the sweep: :class:`SweepJob` with its stable ``job_id``, the seeds of
generated instances, which solvers are practical at a size, and the row fields every job's rows
carry (its identity, and the rows recorded when it fails).

``job_id`` is the first 12 hex digits of the SHA-256 of the job's canonical spec (JSON, sorted
keys, :meth:`SweepJob.spec`): the same config always gives the same ids. An instance's seed is
:func:`instance_seed` of the study seed and the instance's own key, so a size or budget added
later leaves the other instances unchanged.

Nothing here imports torch; the jobs are run by :mod:`pruneopt.reports.studies.runner`.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, field

import numpy as np

from pruneopt.solvers.registry import solver_specs

FORMULATIONS = ("joint", "joint-qp", "allocation", "channels")
DEFAULT_TIME_LIMIT = 10.0

#: Largest instance (items) on which each solver is run by default; solvers not listed run at
#: any size, except exact solvers registered later, which default to
#: :data:`DEFAULT_EXACT_MAX_ITEMS`.
SOLVER_MAX_ITEMS: dict[str, int] = {
    "pyomo-highs": 10_000,  # the Pyomo build is slow beyond ~1e4 items
    "highs": 300_000,  # highspy from arrays, reduced-cost fixing
    "cpsat": 2_000,
    "pyomo-scip": 1_000,
    "exact": 100_000_000,  # count-space branch and bound: proven at network scale
}
DEFAULT_EXACT_MAX_ITEMS = 2_000


def instance_seed(study_seed: int, key: str) -> int:
    """A per-instance seed that depends only on the study seed and the instance's own key."""
    return int(np.random.SeedSequence([int(study_seed), zlib.crc32(key.encode())])
               .generate_state(1)[0])


def is_practical(spec, items: int, max_items: dict[str, int] | None = None) -> bool:
    """Whether the solver ``spec`` is run on an instance of ``items`` items (its size cap)."""
    limits = SOLVER_MAX_ITEMS if max_items is None else max_items
    cap = limits.get(spec.name, DEFAULT_EXACT_MAX_ITEMS if spec.exact else None)
    return cap is None or items <= cap


def practical_solvers(problem, max_items: dict[str, int] | None = None) -> tuple[str, ...]:
    """The available solvers of ``problem`` that are practical at its size."""
    return tuple(spec.name for spec in solver_specs(problem)
                 if spec.available() and is_practical(spec, problem.num_items, max_items))


def solver_kinds(formulation: str, names) -> dict[str, str]:
    """``exact`` or ``fast`` for each solver name of the formulation (unknown names: fast)."""
    exact = {s.name: s.exact for s in solver_specs(formulation)}
    return {n: ("exact" if exact.get(n) else "fast") for n in names}


@dataclass(frozen=True)
class SweepJob:
    """One unit of a sweep; ``job_id`` is a hash of everything else (see the module docstring).

    ``kind`` "instance": ``formulation``, ``size``, ``budget`` (kept FLOP fraction), ``seed``,
    ``solvers``, ``time_limit`` and ``params`` (generator keys, sorted (key, value) pairs).
    ``kind`` "network": ``model``, ``method``, ``budget`` (= flops kept), ``seed`` and ``params``
    (nnz, calibration).
    """

    kind: str
    budget: float
    seed: int
    formulation: str = ""
    size: int | str = 0
    solvers: tuple[str, ...] = ()
    time_limit: float = DEFAULT_TIME_LIMIT
    model: str = ""
    method: str = ""
    params: tuple[tuple[str, object], ...] = ()
    replicate: int = 0
    job_id: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "job_id", hashlib.sha256(
            json.dumps(self.spec(), sort_keys=True).encode()).hexdigest()[:12])

    def spec(self) -> dict:
        """The canonical spec (JSON-ready); ``job_id`` hashes it."""
        base = {"kind": self.kind, "budget": float(self.budget), "seed": int(self.seed),
                "params": {k: v for k, v in self.params}}
        if self.kind == "instance":
            base.update(formulation=self.formulation, size=self.size,
                        solvers=list(self.solvers), time_limit=float(self.time_limit))
        else:
            base.update(model=self.model, method=self.method)
        return base

    @property
    def label(self) -> str:
        if self.kind == "instance":
            return f"{self.formulation}/{self.size}/F{self.budget:g}/#{self.replicate}"
        return f"{self.model}/{self.method}/F{self.budget:g}/#{self.replicate}"

    def param(self, key: str, default=None):
        return dict(self.params).get(key, default)


def job_fields(job: SweepJob) -> dict:
    """The fields that identify a job on each of its rows."""
    row = {"job_id": job.job_id, "job_key": job.label, "job_kind": job.kind, "budget": job.budget,
           "seed": job.seed}
    if job.kind == "instance":
        row.update(formulation=job.formulation, size=job.size, time_limit=job.time_limit,
                   keep_nnz=job.param("keep_nnz"))
    else:
        row.update(model=job.model, method=job.method, nnz=job.param("nnz"))
        if job.method == "fair":  # its "budget" is the tolerance α
            row.update(tolerance=job.param("tolerance"), flops=None)
        else:
            row.update(flops=job.budget)
    return row


def error_rows(job: SweepJob, message: str) -> list[dict]:
    """The rows recorded for a job that raised (or whose worker never returned)."""
    message = " ".join(str(message).split())
    base = {**job_fields(job), "job_status": "error", "status": "error", "verdict": "error",
            "message": message}
    if job.kind == "instance":
        kinds = solver_kinds(job.formulation, job.solvers)
        return [{**base, "job_rows": len(job.solvers), "solver": s, "kind": kinds[s],
                 "proven_optimal": False, "feasible": False} for s in job.solvers]
    return [{**base, "job_rows": 1}]


__all__ = ["DEFAULT_EXACT_MAX_ITEMS", "DEFAULT_TIME_LIMIT", "FORMULATIONS", "SOLVER_MAX_ITEMS",
           "SweepJob", "error_rows", "instance_seed", "is_practical", "job_fields",
           "practical_solvers", "solver_kinds"]
