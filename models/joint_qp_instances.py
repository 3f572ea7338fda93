"""Instances of the full joint problem (a') built from the trained digits networks.

:func:`network_problem` builds a :class:`~pruneopt.formulations.joint_qp.problem.JointQuadraticProblem`
from the trained digits MLP or CNN (:func:`~pruneopt.models.digits.trained_model`):

* ``layers``       — the prunable layers used (names or indices; ``None`` = the whole network);
* ``items``        — how many of their weights become items (``None`` = all of them); a sample is
                     drawn uniformly without replacement from the chosen layers' weights (so the
                     layers keep their proportions), the other weights stay at their trained
                     values;
* ``calibration``  — n, the number of training samples whose per-sample gradients form X
                     (drawn with ``seed``);
* ``block_size``   — FALCON's block-diagonal Fisher: the weights of each layer are cut into
                     consecutive blocks of ``block_size`` weights of the *whole* layer (as in the
                     official code), and the sampled items of one such block form one block of
                     the problem, so cross-block products are dropped exactly as they would be on
                     the full layer; ``None`` keeps the full Fisher;
* ``keep_nnz``, ``keep_flops`` — the budgets as fractions kept: K = ⌊keep_nnz·p⌋ items and
                     F = keep_flops·(MACs of the items), a weight costing its layer's MACs per
                     weight (H_out·W_out for a conv weight, 1 for a linear weight);
* ``l2``, ``first_order`` — the ridge λ = l2·n and a = first_order·Σ_j g_j, as in
                     :func:`~pruneopt.models.fisher.quadratic_problem`.

Everything is deterministic for a given ``seed`` (the trained weights depend on ``model_seed``
only). The gradients of a (model, n, seed, model_seed) are cached in memory for the session.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import torch

from pruneopt.formulations.checks import fraction
from pruneopt.formulations.joint_qp.problem import JointQuadraticProblem
from pruneopt.models.costs import flatten_weights, layer_ptr, prunable_layers
from pruneopt.models.defaults import DEFAULT_L2
from pruneopt.models.digits import DIGITS_MODELS, load_digits_split, trained_model
from pruneopt.models.fisher import per_sample_gradients

_CACHE: dict = {}


def _network(model_name: str, calibration: int, seed: int, model_seed: int):
    key = (model_name, calibration, seed, model_seed)
    if key not in _CACHE:
        model = trained_model(model_name, seed=model_seed)
        data = load_digits_split(seed=model_seed)
        N = data.X_train.shape[0]
        if calibration > N:
            raise ValueError(f"calibration: at most {N} training samples, got {calibration}")
        idx = torch.randperm(N, generator=torch.Generator().manual_seed(seed))[:calibration]
        layers = prunable_layers(model, data.X_train[:1])
        X = per_sample_gradients(model, layers, data.X_train[idx], data.y_train[idx])
        _CACHE[key] = (X, flatten_weights(layers), layer_ptr(layers),
                       np.array([layer.macs_per_weight for layer in layers], dtype=np.float64),
                       tuple(layer.name for layer in layers))
    return _CACHE[key]


def _layer_indices(names: tuple[str, ...], layers) -> list[int]:
    if layers is None:
        return list(range(len(names)))
    if isinstance(layers, str | int):
        layers = [layers]
    out = []
    for item in layers:
        if isinstance(item, bool | np.bool_):
            raise ValueError(f"layers: expected names or indices, got {item!r}")
        if isinstance(item, int | np.integer):
            if not 0 <= int(item) < len(names):
                raise ValueError(f"layers: index {item} out of range 0..{len(names) - 1}")
            out.append(int(item))
        elif isinstance(item, str):
            if item not in names:
                raise ValueError(f"layers: unknown layer {item!r} (known: {', '.join(names)})")
            out.append(names.index(item))
        else:
            raise ValueError(f"layers: expected names or indices, got {item!r}")
    if not out:
        raise ValueError("layers: at least one layer is needed")
    if len(set(out)) != len(out):
        raise ValueError("layers: a layer is named twice")
    return sorted(out)


def network_problem(model: str = "digits-cnn", *, layers: Sequence[str | int] | None = None,
                    items: int | None = None, calibration: int = 128,
                    block_size: int | None = None, keep_nnz: float = 0.5,
                    keep_flops: float = 0.4, seed: int = 0, l2: float = DEFAULT_L2,
                    first_order: float = 0.0, model_seed: int = 0) -> JointQuadraticProblem:
    """The joint MIQP (a') of a trained digits network (see the module docstring)."""
    if model not in DIGITS_MODELS:
        raise ValueError(f"model: one of {', '.join(DIGITS_MODELS)}, got {model!r}")
    if isinstance(calibration, bool) or int(calibration) != calibration or calibration < 1:
        raise ValueError(f"calibration: must be a positive integer, got {calibration!r}")
    if block_size is not None and (isinstance(block_size, bool) or int(block_size) != block_size
                                   or block_size < 1):
        raise ValueError(f"block_size: must be a positive integer or None, got {block_size!r}")
    if not (math.isfinite(l2) and l2 > 0):
        raise ValueError(f"l2: must be a positive ridge, got {l2!r}")
    if not math.isfinite(first_order):
        raise ValueError(f"first_order: must be finite, got {first_order!r}")
    # the decimal as written (0.4 of 10 MACs is 4, not 3.9999...)
    f_nnz = Fraction(repr(fraction(keep_nnz, "keep_nnz", low_open=False)))
    f_flops = Fraction(repr(fraction(keep_flops, "keep_flops", low_open=False)))
    X, w, ptr, cost, names = _network(model, int(calibration), int(seed), int(model_seed))
    chosen = _layer_indices(names, layers)
    pool = np.concatenate([np.arange(ptr[g], ptr[g + 1]) for g in chosen])
    if items is None:
        idx = pool
    else:
        if isinstance(items, bool) or int(items) != items or not 1 <= items <= pool.size:
            raise ValueError(f"items: must be an integer in 1..{pool.size} (the weights of the "
                             f"chosen layers), got {items!r}")
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(pool, size=int(items), replace=False))
    layer_of = np.searchsorted(ptr, idx, side="right") - 1  # non-decreasing (idx sorted)
    used = np.unique(layer_of)
    sizes = np.array([np.count_nonzero(layer_of == g) for g in used], dtype=np.int64)
    group_ptr = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    flop_cost = cost[used]
    block_ptr = None
    if block_size is not None:
        # block id of a weight: (its layer, its offset in the layer // block_size)
        bid = layer_of * (int(ptr[-1]) + 1) + (idx - ptr[layer_of]) // int(block_size)
        starts = np.flatnonzero(np.concatenate(([True], bid[1:] != bid[:-1])))
        block_ptr = np.concatenate((starts, [idx.size])).astype(np.int64)
    n = X.shape[0]
    Xs = X[:, idx]
    p = idx.size
    return JointQuadraticProblem(
        X=Xs, w_bar=w[idx], ridge=l2 * n,
        linear=(first_order * Xs.sum(axis=0)) if first_order else np.zeros(p),
        group_ptr=group_ptr, flop_cost=flop_cost,
        nnz_budget=math.floor(f_nnz * p),
        flop_budget=float(f_flops * Fraction(float(sizes @ flop_cost))),
        block_ptr=block_ptr, names=tuple(names[g] for g in used))
