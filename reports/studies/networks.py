"""Network jobs: a pruning method on a zoo network at one budget, run through the pipelines of
:mod:`pruneopt.models.study_jobs` and recorded as one row.

A network job is dispatched by :data:`NETWORK_RUNNERS` (method → callable ``(job) -> dict`` of
row fields); a method not listed there runs :func:`run_prune_network` (``run_prune``). Torch
(``pruneopt.models.study_jobs``) is imported only inside the runners, when a network job runs,
so that a config is checked and instance jobs run without it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from pruneopt.models import defaults
from pruneopt.reports.studies.jobs import SweepJob, job_fields

#: The record fields a network row keeps (besides ``kept_fractions`` and ``gaps``).
PRUNE_FIELDS = ("accuracy_before", "accuracy_after", "macs_kept", "nnz_kept", "budgets_met",
                "data", "seconds")
STRUCTURED_FIELDS = ("accuracy_before", "accuracy_after", "accuracy_finetuned", "macs_kept",
                     "nnz_kept", "budgets_met", "data", "seconds")


def run_prune_network(job: SweepJob) -> dict:
    """The default network runner: ``run_prune`` on a zoo model, with the per-layer kept
    fractions of the pruned weights as JSON."""
    from pruneopt.models.study_jobs import prune_zoo_network  # torch: only for network jobs

    record = prune_zoo_network(job.model, method=job.method, keep_flops=job.budget,
                               keep_nnz=job.param("nnz", 1.0), seed=job.seed,
                               stages=job.param("stages", defaults.STAGES),
                               n_calibration=job.param("calibration", 128))
    out = {k: record.get(k) for k in PRUNE_FIELDS}
    out["kept_fractions"] = json.dumps(record["kept_fractions"])
    return out


def run_structured_network(job: SweepJob) -> dict:
    """AutoBot, FAIR-Pruner and the relaxation: ``run_structured``, with the per-group kept
    fractions and the gap measures as JSON."""
    from pruneopt.models.study_jobs import structured_zoo_network  # torch: only for network jobs

    fair = job.method == "fair"
    record = structured_zoo_network(
        job.model, method=job.method, keep_flops=None if fair else job.budget,
        tolerance=job.param("tolerance") if fair else None, seed=job.seed,
        finetune_epochs=job.param("finetune_epochs", 0),
        gap_calibration=job.param("calibration", 128),
        max_combinations=job.param("max_combinations"))
    out = {k: record.get(k) for k in STRUCTURED_FIELDS}
    out["kept_fractions"] = json.dumps(record["kept_fractions"])
    out["gaps"] = json.dumps(record["gaps"], allow_nan=True)
    return out


#: The single dispatch point of network jobs: method → callable(job) -> dict of row fields
#: (accuracy_before, accuracy_after, macs_kept, nnz_kept, seconds, ...). Methods not listed run
#: :func:`run_prune_network`. Entries added here are accepted as methods by the config.
NETWORK_RUNNERS: dict[str, Callable[[SweepJob], dict]] = {
    "autobot": run_structured_network, "fair": run_structured_network,
    "relaxation": run_structured_network}


def known_methods() -> tuple[str, ...]:
    """The methods a network job can run: ``run_prune``'s (``models.defaults.METHODS``, read at
    call time) and those with an entry in :data:`NETWORK_RUNNERS`."""
    methods = defaults.METHODS
    return tuple(methods) + tuple(m for m in NETWORK_RUNNERS if m not in methods)


def run_network_job(job: SweepJob) -> list[dict]:
    """Run a network job through its runner: one row."""
    start = time.perf_counter()
    fields = NETWORK_RUNNERS.get(job.method, run_prune_network)(job)
    row = {**job_fields(job), "job_status": "ok", "job_rows": 1, "status": "ok",
           "seconds": time.perf_counter() - start, **fields}
    return [row]


__all__ = ["NETWORK_RUNNERS", "known_methods", "run_network_job", "run_prune_network",
           "run_structured_network"]
