"""Unstructured pruning of a PyTorch network under a FLOP and an NNZ budget at once.

Every method sees the same budgets, in absolute terms over the prunable weights (Conv2d and
Linear weights; DESIGN §2): K = ⌊keep_nnz · p⌋ nonzeros and F = keep_flops · (dense MACs),
where a weight of layer l costs its layer's MACs per weight.

* ``falcon``     — one shot: the quadratic model around the trained weights, FALCON's
                   discrete first-order method with the joint ILP as projection, backsolve.
* ``falcon++``   — T stages on the released cubic schedule of both budgets, from
                   ``base_level`` removed to the target; per-sample gradients recomputed at
                   the current weights in every stage; pruned weights stay pruned; optional
                   fine-tuning between stages (gradual pruning, for users with data).
* ``magnitude``  — global magnitude pruning, cut back to meet the FLOP budget.
* ``chita``      — the quadratic-model method with the NNZ budget only, FLOPs repaired after.
* ``woodfisher`` — OBS saliency selected by the joint ILP, WoodFisher's one-shot update.

Each returns the per-layer masks (the weights are written into the model in place) and a
record of what was solved; :func:`check_budgets` recounts both budgets on the model itself.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from pruneopt.formulations.checks import fraction
from pruneopt.formulations.joint_qp.problem import JointQuadraticProblem
from pruneopt.models.costs import (
    PrunableLayer,
    assign_weights,
    flatten_weights,
    layer_ptr,
    sparse_macs,
    total_macs,
    total_weights,
)
from pruneopt.models.defaults import BASE_LEVEL, DEFAULT_L2, METHODS, STAGES
from pruneopt.models.finetune import apply_masks, fine_tune
from pruneopt.models.fisher import block_pointer, per_sample_gradients


@dataclass
class PruneSettings:
    """Every knob of a pruning run (recorded in its JSON record)."""

    method: str = "falcon"
    keep_flops: float = 1.0
    keep_nnz: float = 1.0
    l2: float = DEFAULT_L2
    first_order: float = 0.0
    block_size: int | None = None
    solver: str = "falcon"  # the joint-ILP solver used as projection
    max_iter: int = 20
    stage_max_iter: int = 3  # FALCON++: iterations in every stage but the last
    stages: int = STAGES
    base_level: float = BASE_LEVEL
    finetune_epochs: int = 0  # per FALCON++ stage (gradual pruning); 0 = one-shot
    finetune_lr: float = 0.01
    seed: int = 0

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method: unknown method '{self.method}' (known: {', '.join(METHODS)})")
        for name in ("keep_flops", "keep_nnz"):
            fraction(getattr(self, name), "flops" if name == "keep_flops" else "nnz",
                     what="a fraction kept")
        if not (math.isfinite(self.l2) and self.l2 > 0):
            raise ValueError(f"l2: must be > 0, got {self.l2}")
        if self.stages < 1:
            raise ValueError(f"stages: must be >= 1, got {self.stages}")
        if not 0 <= self.base_level < 1:
            raise ValueError(f"base_level: must be in [0, 1), got {self.base_level}")
        if self.max_iter < 0 or self.stage_max_iter < 0:
            raise ValueError(f"max_iter: must be >= 0, got {self.max_iter}/{self.stage_max_iter}")


@dataclass
class PruneOutcome:
    masks: list[np.ndarray]
    stages: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def budgets(layers: list[PrunableLayer], keep_flops: float, keep_nnz: float) -> tuple[int, float]:
    """(K, F): the NNZ and MAC budgets in absolute terms."""
    return int(math.floor(keep_nnz * total_weights(layers))), keep_flops * total_macs(layers)


def cubic_schedule(target: float, base: float, stages: int) -> np.ndarray:
    """Fraction removed at each stage: s_t = s_T + (s_0 − s_T)(1 − t/(T−1))³, s_0 = min(base, s_T)."""
    if stages == 1:
        return np.array([target])
    t = np.arange(stages) / (stages - 1)
    s0 = min(base, target)
    return target + (s0 - target) * (1.0 - t) ** 3


def masks_of(layers: list[PrunableLayer]) -> list[np.ndarray]:
    return [layer.weight.detach().cpu().numpy() != 0 for layer in layers]


def _restricted_problem(X, w, alive, layers, nnz_budget, flop_budget, settings):
    """The MIQP over the alive weights only (pruned weights stay pruned)."""
    ptr = layer_ptr(layers)
    alive_counts = np.add.reduceat(alive.astype(np.int64), ptr[:-1]) if alive.size else alive
    alive_counts = np.where(np.diff(ptr) > 0, alive_counts, 0)
    sub_ptr = np.concatenate(([0], np.cumsum(alive_counts))).astype(np.int64)
    blocks = block_pointer(sub_ptr, settings.block_size)
    Xa = X[:, alive] if not alive.all() else X
    n = X.shape[0]
    linear = (settings.first_order * Xa.sum(axis=0) if settings.first_order
              else np.zeros(Xa.shape[1]))
    return JointQuadraticProblem(
        X=Xa, w_bar=w[alive], ridge=settings.l2 * n, linear=linear, group_ptr=sub_ptr,
        flop_cost=np.array([layer.macs_per_weight for layer in layers], dtype=np.float64),
        nnz_budget=nnz_budget, flop_budget=flop_budget, block_ptr=blocks,
        names=tuple(layer.name for layer in layers))


def _solve_stage(problem: JointQuadraticProblem, settings: PruneSettings, max_iter: int,
                 callback=None) -> tuple[np.ndarray, dict]:
    from pruneopt.solvers.fast.joint_qp.baselines import chita_qp, magnitude_qp, woodfisher_qp
    from pruneopt.solvers.fast.joint_qp.falcon import falcon_qp

    method = settings.method
    if method in ("falcon", "falcon++"):
        run = falcon_qp(problem, projection=settings.solver, max_iter=max_iter,
                        callback=callback)
        return run.w, run.summary()
    if method == "magnitude":
        return magnitude_qp(problem)
    if method == "chita":
        return chita_qp(problem, max_iter=max_iter)
    return woodfisher_qp(problem, selection=settings.solver)


def prune_network(model: nn.Module, layers: list[PrunableLayer], calib_inputs: torch.Tensor,
                  calib_targets: torch.Tensor, settings: PruneSettings, *,
                  train_data: tuple[torch.Tensor, torch.Tensor] | None = None,
                  progress=None) -> PruneOutcome:
    """Prune ``model`` in place with ``settings.method``; returns the masks and stage records.

    ``progress`` is an optional tqdm-like object (``update``, ``set_postfix_str``) advanced
    once per stage. ``train_data`` is needed only for fine-tuning between FALCON++ stages.
    """
    settings.validate()
    start = time.perf_counter()
    p = total_weights(layers)
    dense_macs = total_macs(layers)
    K, F = budgets(layers, settings.keep_flops, settings.keep_nnz)
    multi = settings.method == "falcon++"
    if multi:
        nnz_levels = cubic_schedule(1.0 - settings.keep_nnz, settings.base_level, settings.stages)
        flop_levels = cubic_schedule(1.0 - settings.keep_flops, settings.base_level,
                                     settings.stages)
        schedule = [(int(math.floor((1 - s) * p)), (1 - f) * dense_macs)
                    for s, f in zip(nnz_levels, flop_levels)]
        schedule[-1] = (K, F)  # the last stage meets the asked budgets exactly
    else:
        schedule = [(K, F)]
    if settings.finetune_epochs and train_data is None:
        raise ValueError("finetune_epochs: fine-tuning needs training data (a data set)")

    outcome = PruneOutcome(masks=masks_of(layers))
    for t, (k_t, f_t) in enumerate(schedule):
        t0 = time.perf_counter()
        w = flatten_weights(layers)
        alive = np.concatenate([m.ravel() for m in outcome.masks]) if p else np.zeros(0, bool)
        # Magnitude pruning ignores the quadratic model, but its value is reported for all.
        X = per_sample_gradients(model, layers, calib_inputs, calib_targets)
        problem = _restricted_problem(X, w, alive, layers, k_t, f_t, settings)
        last = t == len(schedule) - 1
        w_alive, info = _solve_stage(problem, settings,
                                     settings.max_iter if last else settings.stage_max_iter)
        w_new = np.zeros_like(w)
        w_new[alive] = w_alive
        assign_weights(layers, w_new)
        outcome.masks = masks_of(layers)
        apply_masks(layers, outcome.masks)
        record = {"stage": t, "nnz_budget": k_t, "flop_budget": f_t,
                  "nnz": int(np.count_nonzero(w_new)), "macs": sparse_macs(layers),
                  "quadratic_objective": info.get("objective", math.nan),
                  **{k: v for k, v in info.items()
                                                        if k != "objective"},
                  "seconds": 0.0}
        if multi and settings.finetune_epochs and t < len(schedule) - 1:
            record["finetune_loss"] = fine_tune(
                model, layers, outcome.masks, *train_data, epochs=settings.finetune_epochs,
                lr=settings.finetune_lr, seed=settings.seed + t)
        record["seconds"] = time.perf_counter() - t0
        outcome.stages.append(record)
        if progress is not None:
            progress.update(1)
            progress.set_postfix_str(f"stage {t + 1}/{len(schedule)} nnz {record['nnz']}")
    outcome.seconds = time.perf_counter() - start
    return outcome


def check_budgets(layers: list[PrunableLayer], keep_flops: float, keep_nnz: float) -> dict:
    """Recount NNZ and MACs on the model's weights; ``met`` is False if either is exceeded."""
    K, F = budgets(layers, keep_flops, keep_nnz)
    nnz = sum(int(torch.count_nonzero(layer.weight)) for layer in layers)
    macs = sparse_macs(layers)
    return {"nnz": nnz, "macs": macs, "nnz_budget": K, "flop_budget": F,
            "met": bool(nnz <= K and macs <= F * (1 + 1e-12))}
