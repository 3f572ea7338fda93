"""Baselines for the full joint problem (a'), run under the same two budgets as FALCON.

* ``magnitude_qp``  — global magnitude pruning: the kept set is the top-K of |w̄| cut back
  until the FLOP budget holds (the joint ``magnitude`` rule), weights left unchanged.
* ``chita_qp``      — CHITA: the same discrete first-order method as FALCON but with the NNZ
  budget only (its projection is plain top-K), then the FLOP budget repaired by the released
  code's rule (keep the longest prefix of the support by |w_i|/c_i that fits in F) and a
  final backsolve on the repaired support. It shows what ignoring FLOPs in the projection costs.
* ``woodfisher_qp`` — WoodFisher/OBS: per block the inverse Hessian H_b⁻¹ = (X_bᵀX_b + λI)⁻¹
  by Woodbury, the OBS saliency ρ_i = w̄_i² / (2[H⁻¹]_ii), the kept set by the joint ILP on ρ
  (FLOP-aware), and WoodFisher's one-shot update for the pruned set P,
  δ = −H⁻¹ Σ_{q∈P} (w̄_q / [H⁻¹]_qq) e_q, after which the pruned weights are set to zero.
  (Exact multi-weight OBS would be the backsolve; the sum of single-weight updates is what
  WoodFisher ships.) The first-order term is ignored, as OBS assumes a stationary point.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
from scipy import linalg

from pruneopt.solvers.fast.joint.greedy import prefix_selection
from pruneopt.solvers.fast.joint_qp.backsolve import (
    block_ranges,
    quadratic_objective,
    restricted_ridge,
)
from pruneopt.solvers.fast.joint_qp.falcon import FalconRun, falcon_qp, projection_problem


def _select(problem, scores: np.ndarray, solver: str) -> np.ndarray:
    from pruneopt.solvers.registry import solve

    res = solve(projection_problem(problem, scores), solver)
    if res.x is None or not res.feasible:
        raise RuntimeError(f"selection: solver '{solver}' returned no feasible selection "
                           f"({res.status}: {res.message})")
    return np.asarray(res.x, dtype=bool)


def _objective(problem, w: np.ndarray) -> float:
    return quadratic_objective(problem.X, problem.w_bar, problem.ridge, problem.linear, w,
                               problem.block_ptr)


def magnitude_qp(problem) -> tuple[np.ndarray, dict]:
    z = _select(problem, problem.w_bar ** 2, "magnitude")
    w = np.where(z, problem.w_bar, 0.0)
    return w, {"objective": _objective(problem, w)}


def flop_repair(problem, w: np.ndarray) -> np.ndarray:
    """The support of w cut to the longest prefix by |w_i|/c_i that meets both budgets."""
    scores = np.where(w != 0, w * w, 0.0)
    ilp = projection_problem(problem, scores)
    return prefix_selection(ilp, np.abs(w) / ilp.item_cost)


def chita_qp(problem, *, max_iter: int = 20, time_limit: float | None = None
             ) -> tuple[np.ndarray, dict]:
    total = float(np.diff(problem.group_ptr) @ problem.flop_cost)
    nnz_only = SimpleNamespace(**{k: getattr(problem, k) for k in (
        "X", "w_bar", "ridge", "linear", "block_ptr", "group_ptr", "flop_cost", "nnz_budget")},
        flop_budget=total)
    run: FalconRun = falcon_qp(nnz_only, projection="magnitude", max_iter=max_iter,
                               time_limit=time_limit)
    z = flop_repair(problem, run.w)
    repaired = int(np.count_nonzero(run.w)) - int(np.count_nonzero(z))
    w = restricted_ridge(problem.X, problem.w_bar, problem.ridge, problem.linear, z,
                         problem.block_ptr)
    return w, {"objective": _objective(problem, w), "objective_nnz_only": run.objective,
               "removed_by_flop_repair": repaired, "iterations": run.iterations,
               "stopped": run.stopped}


def _woodbury_factors(X: np.ndarray, lam: float, blocks):
    out = []
    for a, b in blocks:
        Xb = X[:, a:b]
        M = Xb @ Xb.T
        M[np.diag_indices_from(M)] += lam
        out.append(linalg.cho_factor(M, lower=True, check_finite=False))
    return out


def _inverse_hessian_diag(X, lam, blocks, factors) -> np.ndarray:
    diag = np.empty(X.shape[1])
    for (a, b), fac in zip(blocks, factors):
        Xb = X[:, a:b]
        MX = linalg.cho_solve(fac, Xb, check_finite=False)
        diag[a:b] = (1.0 - np.einsum("ij,ij->j", Xb, MX)) / lam
    return diag


def _inverse_hessian_times(X, lam, blocks, factors, v) -> np.ndarray:
    out = np.empty_like(v)
    for (a, b), fac in zip(blocks, factors):
        Xb = X[:, a:b]
        inner = linalg.cho_solve(fac, Xb @ v[a:b], check_finite=False)
        out[a:b] = (v[a:b] - Xb.T @ inner) / lam
    return out


def woodfisher_qp(problem, *, selection: str = "falcon") -> tuple[np.ndarray, dict]:
    X, lam, w_bar = problem.X, float(problem.ridge), problem.w_bar
    blocks = block_ranges(w_bar.size, problem.block_ptr)
    factors = _woodbury_factors(X, lam, blocks)
    hinv_diag = _inverse_hessian_diag(X, lam, blocks, factors)
    # [H⁻¹]_ii ∈ (0, 1/λ]; rounding can leave it a hair above 0 only, never below.
    hinv_diag = np.maximum(hinv_diag, np.finfo(float).tiny)
    saliency = w_bar ** 2 / (2.0 * hinv_diag)
    z = _select(problem, saliency, selection)
    v = np.where(z, 0.0, w_bar / hinv_diag)
    w = w_bar - _inverse_hessian_times(X, lam, blocks, factors, v)
    w[~z] = 0.0
    obj = _objective(problem, w)
    return w, {"objective": obj if math.isfinite(obj) else math.nan}

