"""The steps the pipelines share: a progress bar on stderr, the nonzero count of the prunable
weights, physical shrinking with the MACs measured on the shrunk model, and the record keys
that every pruned-model record has (FALCON & co. and the structured pruners alike).
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from dataclasses import asdict

import torch
from torch import nn

from pruneopt.formulations.files import to_jsonable
from pruneopt.models.costs import PrunableLayer, flop_counter_macs
from pruneopt.models.shrink import shrink_model


@contextmanager
def progress_bar(enabled: bool, desc: str, total: int | None = None):
    """A tqdm bar on stderr (None when disabled), closed however the block ends."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, file=sys.stderr, leave=False)
    try:
        yield bar
    finally:
        bar.close()


def nonzero_weights(layers: list[PrunableLayer]) -> int:
    """Nonzero prunable weights, counted on the model itself."""
    return sum(int(torch.count_nonzero(layer.weight)) for layer in layers)


def shrink_and_measure(model: nn.Module, graph, keep, example: torch.Tensor
                       ) -> tuple[nn.Module, int]:
    """A copy of ``model`` with the channels where ``keep`` is 0 removed, and its MACs as
    ``FlopCounterMode`` counts them (/2) on ``example``."""
    shrunk = shrink_model(model, graph, keep, example_input=example)
    return shrunk, flop_counter_macs(shrunk, example)


def pruned_record(spec: str, settings, *, nnz_asked, macs: tuple[int, int, int],
                  nnz: tuple[int, int, int], flop_budget, nnz_budget, budgets_met: bool,
                  accuracy: tuple[float, float], data: str, stages: list, start: float,
                  **extra) -> dict:
    """The JSON-ready record of a pruned model: ``macs`` and ``nnz`` are (dense, before, after),
    ``accuracy`` (before, after); ``extra`` keys come after ``data``, then the settings, the
    stages and the seconds since ``start``."""
    macs_dense, macs_before, macs_after = macs
    nnz_dense, nnz_before, nnz_after = nnz
    return to_jsonable({
        "method": settings.method,
        "model": spec,
        "flops_asked": settings.keep_flops,
        "nnz_asked": nnz_asked,
        "macs_dense": macs_dense,
        "macs_before": macs_before,
        "macs_after": macs_after,
        "nnz_dense": nnz_dense,
        "nnz_before": nnz_before,
        "nnz_after": nnz_after,
        "flop_budget": flop_budget,
        "nnz_budget": nnz_budget,
        "budgets_met": bool(budgets_met),
        "macs_kept": macs_after / macs_dense,
        "nnz_kept": nnz_after / nnz_dense,
        "accuracy_before": accuracy[0],
        "accuracy_after": accuracy[1],
        "data": data,
        **extra,
        "settings": asdict(settings),
        "stages": stages,
        "seconds": time.perf_counter() - start,
    })


__all__ = ["nonzero_weights", "progress_bar", "pruned_record", "shrink_and_measure"]
