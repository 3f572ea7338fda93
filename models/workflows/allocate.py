"""``pruneopt allocate``: per-layer budgets under one global FLOP/NNZ budget (DESIGN §2b).

Two sources of the multiple-choice knapsack:

* a loss table (CSV: layer, option, loss, nnz, flops), solved as it is — torch is not needed
  (this module imports it only for a model);
* a model: the table comes from the network's quadratic model (one option per layer and keep
  fraction: top-|w| mask + backsolve of the layer's block,
  :mod:`pruneopt.models.allocation_tables`), the chosen options are applied to the model and its
  NNZ, MACs and accuracy recounted on it.

Budgets are fractions of the densest choice. The record holds the budgets asked, the solve
(solver, status, objective, bound, gap, ...), the option chosen for every layer and, for a
model, the counts and accuracies; :func:`save_allocate` writes ``problem.npz``,
``record.json`` and, for a model that meets its budgets, ``model.pt`` (a checkpoint as
``pruneopt prune`` writes it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pruneopt.formulations.files import to_jsonable
from pruneopt.models.defaults import DEFAULT_CALIBRATION

SUMMARY_KEYS = ("solver", "status", "objective", "bound", "gap", "proven_optimal", "seconds",
                "message", "nnz_used", "flops_used")


@dataclass
class AllocateSettings:
    """Budgets (fractions kept; ``keep_nnz`` None = no NNZ budget), the solver, and for a model
    the keep fractions offered per layer and the calibration samples."""

    keep_flops: float
    keep_nnz: float | None = None
    solver: str = "exact"
    time_limit: float | None = None
    fractions: tuple[float, ...] | None = None  # None: allocation_tables.DEFAULT_FRACTIONS
    calibration: int = DEFAULT_CALIBRATION
    seed: int = 0


@dataclass
class AllocateRun:
    problem: object
    result: object
    record: dict
    resolved: object = None  # the model (options applied) when the table came from one


def _layers(problem, x) -> list[dict]:
    """The chosen option of every layer."""
    labels = problem.option_labels
    names = problem.names or [str(g) for g in range(problem.num_layers)]
    chosen = problem.option_ptr[:-1] + x
    return [{"name": names[g], "option": int(x[g]),
             "keep": None if labels is None else float(labels[chosen[g]]),
             "nnz": int(problem.nnz[chosen[g]]), "flops": float(problem.flops[chosen[g]])}
            for g in range(problem.num_layers)]


def run_allocate(settings: AllocateSettings, *, table: str | None = None,
                 model: str | None = None, input_shape=None) -> AllocateRun:
    """Solve the allocation of a loss ``table`` (a CSV path) or of a ``model`` (as for
    ``pruneopt prune``); exactly one of the two."""
    from pruneopt.solvers import solve

    if (table is None) == (model is None):
        raise ValueError("table: give a loss table or a model, not both or neither")
    record: dict = {"command": "allocate", "flops_asked": settings.keep_flops,
                    "nnz_asked": settings.keep_nnz}
    if table is not None:
        from pruneopt.formulations.allocation.problem import AllocationProblem

        problem = AllocationProblem.from_csv(table, keep_flops=settings.keep_flops,
                                             keep_nnz=settings.keep_nnz)
        result = solve(problem, settings.solver, time_limit=settings.time_limit)
        record["table"] = table
        resolved = None
    else:
        problem, result, resolved, measured = _from_model(model, settings, input_shape)
        record.update(measured)
    summary = result.summary()
    record.update({k: v for k, v in summary.items() if k in SUMMARY_KEYS})
    if result.x is not None:
        record["layers"] = _layers(problem, result.x)
    return AllocateRun(problem, result, to_jsonable(record), resolved)


def _from_model(spec: str, settings: AllocateSettings, input_shape):
    """The table from the model's quadratic model, solved; the choice applied to the model."""
    from pruneopt.models.allocation_tables import (
        DEFAULT_FRACTIONS,
        allocation_table,
        apply_allocation,
    )
    from pruneopt.models.costs import assign_weights, prunable_layers, sparse_macs, total_weights
    from pruneopt.models.fisher import quadratic_problem
    from pruneopt.models.workflows.common import nonzero_weights
    from pruneopt.models.workflows.loading import gradient_data, open_model
    from pruneopt.solvers import solve

    resolved = open_model(spec, input_shape=input_shape, seed=settings.seed)
    model = resolved.model
    layers = prunable_layers(model, resolved.example_input())
    data, X, y = gradient_data(resolved, total_weights(layers), settings.calibration,
                               settings.seed)
    qp = quadratic_problem(model, layers, X, y, nnz_budget=total_weights(layers),
                           flop_budget=float(sum(layer.macs for layer in layers)))
    problem = allocation_table(qp, settings.fractions or DEFAULT_FRACTIONS,
                               keep_nnz=settings.keep_nnz, keep_flops=settings.keep_flops)
    result = solve(problem, settings.solver, time_limit=settings.time_limit)
    measured = {"model": spec, "accuracy_before": data.accuracy(model)}
    if result.x is not None and result.feasible:
        assign_weights(layers, apply_allocation(qp, problem, result.x))
        nnz, macs = nonzero_weights(layers), sparse_macs(layers)
        measured.update(nnz_after=nnz, macs_after=macs, nnz_dense=total_weights(layers),
                        macs_dense=int(qp.total_flops),
                        budgets_met=bool(nnz <= problem.nnz_limit and macs <= problem.flop_limit),
                        accuracy_after=data.accuracy(model), data=data.kind)
    return problem, result, resolved, measured


def save_allocate(run: AllocateRun, out_dir: str | os.PathLike) -> dict:
    """Write DIR/problem.npz and DIR/record.json, and DIR/model.pt for a model that meets its
    budgets; returns the paths (the record does not list them)."""
    from pruneopt.models.workflows.records import checkpoint, write_run

    model = None
    if run.resolved is not None and run.record.get("budgets_met"):
        model = checkpoint(run.resolved, run.record)
    return write_run(out_dir, run.record, model=model,
                     files={"problem": ("problem.npz", run.problem)})


__all__ = ["AllocateRun", "AllocateSettings", "run_allocate", "save_allocate"]
