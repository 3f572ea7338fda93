"""``pruneopt prune`` with FALCON, FALCON++, magnitude, CHITA or WoodFisher, end to end: open the
model and its data (:mod:`.loading`), prune it in place under both budgets
(:func:`pruneopt.models.pruning.prune_network`), recount the budgets on the pruned model, record.

The record (JSON) holds at least: method, model, flops_asked, nnz_asked (fractions kept),
macs_before, macs_after, nnz_before, nnz_after, accuracy_before, accuracy_after, seconds, and the
per-stage solver summaries (:func:`.common.pruned_record`). Budgets are recounted on the pruned
model itself; a run that violates them raises, and a checkpoint that would violate them is never
written (:func:`save_prune`).
"""

from __future__ import annotations

import os
import time

from pruneopt.models.costs import prunable_layers, sparse_macs, total_macs, total_weights
from pruneopt.models.defaults import DEFAULT_CALIBRATION
from pruneopt.models.pruning import PruneSettings, check_budgets, prune_network
from pruneopt.models.workflows.common import nonzero_weights, progress_bar, pruned_record
from pruneopt.models.workflows.loading import ResolvedModel, gradient_data, open_model
from pruneopt.models.workflows.records import checkpoint, refuse_unmet, write_run


def run_prune(spec: str, settings: PruneSettings, *, input_shape=None, n_calibration: int =
              DEFAULT_CALIBRATION, data_file: str | None = None,
              progress: bool = False) -> tuple[ResolvedModel, dict]:
    """Prune the named model; returns it (pruned in place) and the JSON-ready record."""
    settings.validate()
    start = time.perf_counter()
    resolved = open_model(spec, input_shape=input_shape, seed=settings.seed)
    model = resolved.model
    layers = prunable_layers(model, resolved.example_input())
    p = total_weights(layers)
    data, calib_X, calib_y = gradient_data(resolved, p, n_calibration, settings.seed,
                                           data_file=data_file)
    macs_before, nnz_before = sparse_macs(layers), nonzero_weights(layers)
    acc_before = data.accuracy(model)

    total = settings.stages if settings.method == "falcon++" else 1
    with progress_bar(progress, f"{settings.method} on {spec}", total) as bar:
        outcome = prune_network(model, layers, calib_X, calib_y, settings,
                                train_data=(data.X_train, data.y_train), progress=bar)
    check = check_budgets(layers, settings.keep_flops, settings.keep_nnz)
    record = pruned_record(
        spec, settings, nnz_asked=settings.keep_nnz,
        macs=(total_macs(layers), macs_before, check["macs"]), nnz=(p, nnz_before, check["nnz"]),
        flop_budget=check["flop_budget"], nnz_budget=check["nnz_budget"],
        budgets_met=check["met"], accuracy=(acc_before, data.accuracy(model)), data=data.kind,
        n_calibration=n_calibration, stages=outcome.stages, start=start)
    if not check["met"]:
        raise RuntimeError(f"budgets: the pruned model violates its budgets ({check}); "
                           "nothing written")
    return resolved, record


def save_prune(resolved: ResolvedModel, record: dict, out_dir: str | os.PathLike) -> dict:
    """Write DIR/model.pt (a ``pruneopt-checkpoint-v1``: architecture name + state_dict) and
    DIR/record.json; returns their paths (keys ``checkpoint``, ``record``)."""
    refuse_unmet(record)
    return write_run(out_dir, record, model=checkpoint(resolved, record))


__all__ = ["run_prune", "save_prune"]
