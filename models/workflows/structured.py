"""``pruneopt prune --method autobot|fair|relaxation``: a structured pruner end to end.

1. open the model and its data (as for FALCON: :mod:`.loading`);
2. trace its channel groups (:func:`~pruneopt.models.channels.build_channel_graph`);
3. run the method on the training split — AutoBot towards ``keep_flops``, FAIR-Pruner with its
   tolerance α, the continuous relaxation with ``keep_flops`` as its penalty target — which
   returns a :class:`~pruneopt.models.structured_decision.StructuredDecision`;
4. remove the channels physically and measure MACs with ``FlopCounterMode``
   (:func:`.common.shrink_and_measure`; a collapsed residual branch cannot be shrunk to zero
   channels in PyTorch, so such a model stays the method's masked model), NNZ and accuracy;
5. optionally fine-tune the shrunk model a few epochs (SGD, cosine;
   :mod:`pruneopt.models.finetune`);
6. the gap measures against exact programs (:mod:`pruneopt.models.method_gaps`) on a
   calibration batch of the training split.

The record has the keys of FALCON's record (:func:`.common.pruned_record`: ``macs_*``,
``nnz_*``, ``accuracy_*``, ``budgets_met``, ...) plus ``gaps`` (a list of ``{measure,
method_value, exact_value, gap, ...}``), ``kept_fractions`` per group, ``accuracy_finetuned``
and the method's own ``method_info``.

Budgets: AutoBot aims at its target with a bisection that stops within ``tolerance_macs``
— when it can: MACs are a step function of the threshold, and after its 50 halvings the last cut
tested may lie one step above the target (the reference's ResNet-50 run ended 522,112 FLOPs off).
``flop_budget`` is the target plus that tolerance and ``budgets_met`` says whether it was met; a
miss is recorded, not hidden (the G0 gap shows the best cut), and :func:`save_structured` refuses
to write such a model. The relaxation and FAIR-Pruner have no hard FLOP budget — their budget is
what the penalty or the tolerance gives — so ``budgets_met`` is true and ``flop_budget`` null.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from pruneopt.formulations.checks import fraction
from pruneopt.models.defaults import DEFAULT_TOLERANCE, STRUCTURED_METHODS

GAP_CALIBRATION = 256  # samples on which the true-loss gap is enumerated


@dataclass
class StructuredSettings:
    """What ``pruneopt prune`` passes to a structured method."""

    method: str
    keep_flops: float | None = None
    tolerance: float | None = None
    seed: int = 0
    finetune_epochs: int = 0
    finetune_lr: float = 0.01
    gaps: bool = True
    gap_calibration: int = GAP_CALIBRATION
    max_combinations: int | None = None
    time_limit: float = 60.0
    options: dict = field(default_factory=dict)

    def validate(self) -> None:
        if self.method not in STRUCTURED_METHODS:
            raise ValueError(f"method: unknown structured method '{self.method}' "
                             f"(known: {', '.join(STRUCTURED_METHODS)})")
        if self.method == "fair":
            if self.keep_flops is not None:
                raise ValueError("flops: FAIR-Pruner has no FLOP target (its budget is what "
                                 "the tolerance gives); use --tolerance")
            if self.tolerance is None:
                self.tolerance = DEFAULT_TOLERANCE
            if not 0.0 <= float(self.tolerance) <= 1.0:
                raise ValueError(f"tolerance: must be in [0, 1], got {self.tolerance}")
        else:
            if self.tolerance is not None:
                raise ValueError(f"tolerance: only FAIR-Pruner takes --tolerance; {self.method} "
                                 "takes --flops")
            if self.keep_flops is None and self.method == "autobot":
                raise ValueError("flops: AutoBot needs a FLOP target (--flops)")
            if self.keep_flops is not None:
                fraction(self.keep_flops, "flops", what="a fraction kept", got=f"{self.keep_flops}")
        if self.finetune_epochs < 0:
            raise ValueError(f"finetune_epochs: must be >= 0, got {self.finetune_epochs}")
        if self.gap_calibration < 1:
            raise ValueError(f"gap_calibration: must be >= 1, got {self.gap_calibration}")


def run_method(model, graph, X, y, settings: StructuredSettings, progress=None):
    """Run the named structured method; returns its StructuredDecision."""
    opts = dict(settings.options)
    if settings.method == "autobot":
        from pruneopt.models.autobot import autobot

        return autobot(model, graph, X, y, keep_flops=settings.keep_flops, seed=settings.seed,
                       progress=progress, **opts)
    if settings.method == "fair":
        from pruneopt.models.fair_pruner import fair_pruner

        return fair_pruner(model, graph, X, y, tolerance=settings.tolerance,
                           seed=settings.seed, progress=progress, **opts)
    from pruneopt.models.relaxation import continuous_relaxation

    if settings.keep_flops is not None:
        opts["keep_flops"] = settings.keep_flops
    return continuous_relaxation(model, graph, X, y, seed=settings.seed, progress=progress,
                                 **opts)


def progress_callback(bar):
    """Methods report progress as a dict (step, steps, loss, ...) or a line of text."""
    def report(msg) -> None:
        if isinstance(msg, dict):
            if msg.get("steps"):
                bar.total = int(msg["steps"])
            if "step" in msg:
                bar.n = int(msg["step"])
            shown = {k: f"{v:.4g}" for k, v in msg.items()
                     if k in ("loss", "ce", "macs", "epoch") and isinstance(v, int | float)}
            bar.set_postfix(shown, refresh=False)
            bar.refresh()
        else:
            bar.set_postfix_str(str(msg)[:70])
    return report


def _budget(decision, settings: StructuredSettings) -> tuple[float | None, bool]:
    """(flop_budget, met) in the method's own terms (see the module docstring)."""
    if settings.method == "autobot":
        tol = float(decision.info.get("tolerance_macs", 0.0))
        budget = float(decision.target_macs) + tol
        return budget, decision.achieved_macs <= budget
    return None, True


def _prunable_weights(model, example) -> int:
    from pruneopt.models.costs import prunable_layers, total_weights

    return total_weights(prunable_layers(model, example))


def _fine_tune_shrunk(model, example, data, settings: StructuredSettings) -> float:
    """Fine-tune every weight of the shrunk model; its accuracy afterwards."""
    from pruneopt.models.costs import prunable_layers
    from pruneopt.models.finetune import fine_tune

    layers = prunable_layers(model, example)
    masks = [np.ones(tuple(layer.weight.shape), dtype=bool) for layer in layers]
    fine_tune(model, layers, masks, data.X_train, data.y_train,
              epochs=settings.finetune_epochs, lr=settings.finetune_lr, seed=settings.seed)
    return data.accuracy(model)


def run_structured(spec: str, settings: StructuredSettings, *, input_shape=None,
                   data_file: str | None = None, progress: bool = False):
    """Prune the named model with a structured method.

    Returns ``(resolved, pruned, decision, record)``: ``resolved.model`` stays the dense model,
    ``pruned`` is the shrunk (or, after a collapse, masked) model, ``decision`` the method's
    :class:`StructuredDecision` and ``record`` the JSON-ready record.
    """
    from pruneopt.models.channels import build_channel_graph
    from pruneopt.models.method_gaps import method_gaps
    from pruneopt.models.workflows.common import (
        progress_bar,
        pruned_record,
        shrink_and_measure,
    )
    from pruneopt.models.workflows.loading import calibration_batch, dataset_for, open_model

    settings.validate()
    start = time.perf_counter()
    resolved = open_model(spec, input_shape=input_shape, seed=settings.seed)
    model, example = resolved.model, resolved.example_input()
    data = dataset_for(resolved, n_train=max(settings.gap_calibration, 512), seed=settings.seed,
                       data_file=data_file)
    resolved.data = data
    graph = build_channel_graph(model, example)
    if not graph.prunable.any():
        raise ValueError(f"model: {spec} has no prunable channel group")
    dense_macs = int(graph.dense_macs)
    nnz_dense = _prunable_weights(model, example)
    acc_before = data.accuracy(model)

    with progress_bar(progress, f"{settings.method} on {spec}") as bar:
        decision = run_method(model, graph, data.X_train, data.y_train, settings,
                              progress=progress_callback(bar) if bar is not None else None)
    t_method = time.perf_counter() - start

    counts = decision.counts
    macs_formula = int(decision.achieved_macs)
    shrunk = bool(np.all(counts[graph.prunable] >= 1))
    if shrunk:
        pruned, macs_measured = shrink_and_measure(decision.model, graph, decision.keep, example)
        nnz_after = _prunable_weights(pruned, example)
    else:  # a collapsed branch: PyTorch has no zero-channel conv, keep the masked model
        pruned, macs_measured = decision.model, macs_formula
        nnz_after = int(round(nnz_dense * macs_formula / max(dense_macs, 1)))
    acc_after = data.accuracy(pruned)
    flop_budget, met = _budget(decision, settings)

    gaps = []
    if settings.gaps:
        n_gap = min(settings.gap_calibration, data.X_train.shape[0])
        Xc, yc = calibration_batch(data, n_gap, settings.seed)
        gaps = method_gaps(decision, Xc, yc, max_combinations=settings.max_combinations,
                           time_limit=settings.time_limit)

    acc_ft = None
    if settings.finetune_epochs > 0 and shrunk:
        acc_ft = _fine_tune_shrunk(pruned, example, data, settings)

    record = pruned_record(
        spec, settings, nnz_asked=None, macs=(dense_macs, dense_macs, int(macs_measured)),
        nnz=(nnz_dense, nnz_dense, int(nnz_after)), flop_budget=flop_budget, nnz_budget=None,
        budgets_met=met, accuracy=(acc_before, acc_after), data=data.kind,
        tolerance=settings.tolerance, macs_predicted=macs_formula,
        macs_target=decision.target_macs, accuracy_finetuned=acc_ft,
        finetune_epochs=settings.finetune_epochs, shrunk=shrunk,
        kept_fractions=decision.kept_fractions,
        kept_counts={graph.names[g]: int(counts[g]) for g in range(graph.num_groups)},
        method_info=decision.info, method_seconds=t_method, gaps=gaps, stages=[], start=start)
    return resolved, pruned, decision, record


def save_structured(pruned, decision, record: dict, out_dir) -> dict:
    """Write ``model.pt`` (the whole pruned module: its shapes differ from the architecture's;
    ``pruneopt prune --model DIR/model.pt --input-shape C,H,W`` loads it again),
    ``record.json``, ``keep.npy`` (the method's 0/1 channel vector) and ``channels.npz`` (the
    channel-selection program on its scores at its achieved MACs), so that

        pruneopt crosscheck DIR/channels.npz --solvers exact,fast --decision METHOD=DIR/keep.npy

    puts the method's decision beside the solvers."""
    from pruneopt.models.method_gaps import value_problem
    from pruneopt.models.workflows.records import npy, refuse_unmet, write_run

    refuse_unmet(record)
    return write_run(out_dir, record, model=pruned, files={
        "keep": ("keep.npy", npy(decision.keep.astype(np.int8))),
        "problem": ("channels.npz", value_problem(decision))})


__all__ = ["StructuredSettings", "progress_callback", "run_method", "run_structured",
           "save_structured"]
