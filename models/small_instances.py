"""Small instances of the full joint problem (a') cut out of a real trained network.

The exact MIQP solvers handle a few dozen weights; to measure FALCON against a proven optimum on
data that look like pruning, we take the trained digits CNN, draw ``p`` weights spread over
``layers`` of its prunable layers (each drawn weight keeps its layer's MAC cost), and build the
quadratic model of those weights only — the other weights fixed at their trained values — from
the per-sample gradients of ``n`` calibration samples.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pruneopt.formulations.joint_qp.problem import JointQuadraticProblem
from pruneopt.models.costs import flatten_weights, layer_ptr, prunable_layers
from pruneopt.models.defaults import DEFAULT_L2
from pruneopt.models.digits import load_digits_split, trained_model
from pruneopt.models.fisher import per_sample_gradients

_CACHE: dict = {}


def _gradients(model_name: str, n: int, seed: int):
    key = (model_name, n, seed)
    if key not in _CACHE:
        model = trained_model(model_name)
        data = load_digits_split(seed=0)
        idx = torch.randperm(data.X_train.shape[0],
                             generator=torch.Generator().manual_seed(seed))[:n]
        layers = prunable_layers(model, data.X_train[:1])
        X = per_sample_gradients(model, layers, data.X_train[idx], data.y_train[idx])
        _CACHE[key] = (X, flatten_weights(layers), layer_ptr(layers),
                       np.array([layer.macs_per_weight for layer in layers], dtype=np.float64),
                       [layer.name for layer in layers])
    return _CACHE[key]


def sampled_problem(*, p: int, n: int = 16, seed: int = 0, layers: int = 3,
                    keep_nnz: float = 0.5, keep_flops: float = 0.4,
                    model_name: str = "digits-cnn", l2: float = DEFAULT_L2) -> JointQuadraticProblem:
    """A ``JointQuadraticProblem`` over ``p`` weights of ``layers`` layers of a trained model."""
    X, w, ptr, cost, names = _gradients(model_name, n, seed)
    rng = np.random.default_rng(seed)
    L = ptr.size - 1
    chosen = np.sort(rng.choice(L, size=min(layers, L), replace=False))
    per_layer = np.full(chosen.size, p // chosen.size)
    per_layer[: p - per_layer.sum()] += 1
    items = np.concatenate([np.sort(rng.choice(np.arange(ptr[g], ptr[g + 1]),
                                               size=min(k, ptr[g + 1] - ptr[g]), replace=False))
                            for g, k in zip(chosen, per_layer)])
    sizes = np.array([np.count_nonzero((items >= ptr[g]) & (items < ptr[g + 1]))
                      for g in chosen])
    group_ptr = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    flop_cost = cost[chosen]
    return JointQuadraticProblem(
        X=X[:, items], w_bar=w[items], ridge=l2 * n, linear=np.zeros(items.size),
        group_ptr=group_ptr, flop_cost=flop_cost,
        nnz_budget=int(math.floor(keep_nnz * items.size)),
        flop_budget=keep_flops * float(sizes @ flop_cost),
        names=tuple(names[g] for g in chosen))
