"""Loss tables for layer budget allocation (DESIGN §2b) from a network's quadratic model.

For layer ℓ and keep fraction r, the option keeps the k = round(r·n_ℓ) largest |w̄| of the layer
and re-fits them by the backsolve of the layer's own block of the quadratic model (the other
layers unchanged, d = 0 there):

    e_{ℓ,r} = min { ½‖X_ℓ d_ℓ‖² + (λ/2)‖d_ℓ‖² + a_ℓᵀd_ℓ : (w̄_ℓ + d_ℓ)_i = 0 off the top-k },

with n_{ℓ,r} = k and f_{ℓ,r} = k · (MACs per weight of ℓ). The losses are additive across
layers exactly when the Fisher is block-diagonal by layer — the assumption of every layer-wise
allocation method (OBC, layer-wise OBS); the allocation then picks one option per layer.
"""

from __future__ import annotations

import numpy as np

from pruneopt.formulations.allocation.problem import AllocationProblem
from pruneopt.formulations.joint_qp.problem import JointQuadraticProblem
from pruneopt.solvers.fast.joint_qp.backsolve import quadratic_objective, restricted_ridge

DEFAULT_FRACTIONS = tuple(np.round(np.linspace(0.1, 1.0, 10), 10))


def layer_masks(w_layer: np.ndarray, k: int) -> np.ndarray:
    """The k largest |w| of one layer (ties broken by index, reproducibly)."""
    keep = np.zeros(w_layer.size, dtype=bool)
    if k > 0:
        keep[np.argsort(-np.abs(w_layer), kind="stable")[:k]] = True
    return keep


def allocation_table(problem: JointQuadraticProblem, fractions=DEFAULT_FRACTIONS,
                     *, keep_nnz: float | None = None, keep_flops: float | None = None
                     ) -> AllocationProblem:
    """The allocation problem over ``fractions`` per layer, budgets as fractions of the dense."""
    fr = np.unique(np.asarray(fractions, dtype=np.float64))
    if fr.size == 0 or fr[0] < 0 or fr[-1] > 1:
        raise ValueError(f"fractions: must lie in [0, 1], got {fractions!r}")
    ptr = problem.group_ptr
    losses, nnzs, flops, labels = [], [], [], []
    for g in range(problem.num_groups):
        a, b = int(ptr[g]), int(ptr[g + 1])
        X, wb, lin = problem.X[:, a:b], problem.w_bar[a:b], problem.linear[a:b]
        ks = np.unique(np.rint(fr * (b - a)).astype(np.int64))
        row = []
        for k in ks:
            w = restricted_ridge(X, wb, problem.ridge, lin, layer_masks(wb, int(k)))
            row.append(quadratic_objective(X, wb, problem.ridge, lin, w))
        losses.append(np.array(row))
        nnzs.append(ks)
        flops.append(ks * problem.flop_cost[g])
        labels.append(ks / max(b - a, 1))
    dense_nnz = int(problem.num_items)
    dense_flops = float(problem.total_flops)
    return AllocationProblem.from_layers(
        losses, nnzs, flops,
        nnz_budget=None if keep_nnz is None else int(np.floor(keep_nnz * dense_nnz)),
        flop_budget=None if keep_flops is None else keep_flops * dense_flops,
        names=problem.names, option_labels=labels)


def apply_allocation(problem: JointQuadraticProblem, allocation: AllocationProblem,
                     choice: np.ndarray) -> np.ndarray:
    """The weights (float64[p]) that the chosen options give: per layer top-k and backsolve."""
    ptr, opt_ptr = problem.group_ptr, allocation.option_ptr
    w = np.zeros(problem.num_items)
    for g in range(problem.num_groups):
        a, b = int(ptr[g]), int(ptr[g + 1])
        k = int(allocation.nnz[opt_ptr[g] + int(choice[g])])
        X, wb, lin = problem.X[:, a:b], problem.w_bar[a:b], problem.linear[a:b]
        w[a:b] = restricted_ridge(X, wb, problem.ridge, lin, layer_masks(wb, k))
    return w
