"""The pruning runs of a study's network jobs (``pruneopt sweep``, ``pruneopt report``): one
call per job, returning the JSON-ready record of the pipeline with what the study's rows need
counted on the pruned network itself.

The study side (:mod:`pruneopt.reports.studies.networks`) imports this module only when a
network job runs, so that configs are validated and instance jobs run without torch.
"""

from __future__ import annotations

import torch

from pruneopt.models.costs import prunable_layers
from pruneopt.models.pruning import PruneSettings
from pruneopt.models.workflows.loading import ResolvedModel
from pruneopt.models.workflows.prune import run_prune
from pruneopt.models.workflows.structured import StructuredSettings, run_structured


def kept_weight_fractions(resolved: ResolvedModel) -> dict[str, float]:
    """Per prunable layer (in forward order): nonzero weights / weights."""
    layers = prunable_layers(resolved.model, resolved.example_input())
    return {layer.name: int(torch.count_nonzero(layer.weight)) / layer.numel for layer in layers}


def prune_zoo_network(model: str, *, method: str, keep_flops: float, keep_nnz: float, seed: int,
                      stages: int, n_calibration: int) -> dict:
    """:func:`~pruneopt.models.workflows.prune.run_prune` on a zoo model; its record, with
    ``kept_fractions`` (:func:`kept_weight_fractions` of the pruned model) added."""
    settings = PruneSettings(method=method, keep_flops=keep_flops, keep_nnz=keep_nnz, seed=seed,
                             stages=stages)
    resolved, record = run_prune(model, settings, n_calibration=n_calibration)
    return {**record, "kept_fractions": kept_weight_fractions(resolved)}


def structured_zoo_network(model: str, *, method: str, keep_flops: float | None,
                           tolerance: float | None, seed: int, finetune_epochs: int,
                           gap_calibration: int, max_combinations: int | None) -> dict:
    """:func:`~pruneopt.models.workflows.structured.run_structured` on a zoo model; its record
    (``kept_fractions`` per channel group and the ``gaps`` measures included)."""
    settings = StructuredSettings(method=method, keep_flops=keep_flops, tolerance=tolerance,
                                  seed=seed, finetune_epochs=finetune_epochs,
                                  gap_calibration=gap_calibration,
                                  max_combinations=max_combinations)
    *_, record = run_structured(model, settings)
    return record


__all__ = ["kept_weight_fractions", "prune_zoo_network", "structured_zoo_network"]
