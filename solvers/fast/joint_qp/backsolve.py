"""The local quadratic model of the loss and its restricted minimiser ("backsolve").

With d = w − w̄ (the change from the dense weights w̄) the model is

    Q(w) = ½ Σ_b ‖X_b d_b‖² + (λ/2)‖d‖² + aᵀd

X (n × p) stacks n per-sample gradients, so XᵀX is n times the empirical Fisher; blocks b
(``block_ptr``, contiguous index ranges) make the Fisher block-diagonal as in FALCON's code
(one block = the full Fisher); λ > 0 is a ridge and a an optional first-order term.

**Backsolve.** For a support S (w_i = 0 off S, i.e. d_i = −w̄_i there), Q is a strictly convex
quadratic in d_S. Per block, with r = X_b,C d_b,C = −X_b,C w̄_b,C the fixed residual of the
pruned columns C, the stationarity condition is

    (X_Sᵀ X_S + λ I) d_S = −(X_Sᵀ r + a_S).

When |S| ≤ n it is solved by Cholesky on the |S| × |S| matrix; otherwise by the Woodbury
identity (λI + UᵀU)⁻¹v = (v − Uᵀ(λI_n + UUᵀ)⁻¹Uv)/λ with U = X_S, an n × n solve — the
regime of pruning, where n (a few hundred samples) is far below the support (10⁵ weights).

Everything is float64; loops run over blocks (a few hundred), never over weights.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg


def block_ranges(p: int, block_ptr) -> list[tuple[int, int]]:
    """The non-empty blocks [a, b) of ``block_ptr`` over p weights (one block when None)."""
    if block_ptr is None:
        return [(0, p)]
    ptr = np.asarray(block_ptr, dtype=np.int64)
    return [(int(a), int(b)) for a, b in zip(ptr[:-1], ptr[1:]) if b > a]


def quadratic_objective(X, w_bar, ridge, linear, w, block_ptr=None) -> float:
    """Q(w) = ½ Σ_b ‖X_b(w_b − w̄_b)‖² + (λ/2)‖w − w̄‖² + aᵀ(w − w̄), in float64."""
    d = np.asarray(w, dtype=np.float64) - w_bar
    fit = 0.0
    for a, b in block_ranges(d.size, block_ptr):
        r = X[:, a:b] @ d[a:b]
        fit += float(r @ r)
    lin = 0.0 if linear is None else float(np.dot(linear, d))
    return 0.5 * fit + 0.5 * ridge * float(d @ d) + lin


def quadratic_gradient(X, w_bar, ridge, linear, w, block_ptr=None) -> np.ndarray:
    """∇Q(w) = Σ_b X_bᵀX_b d_b + λ d + a, in float64."""
    d = np.asarray(w, dtype=np.float64) - w_bar
    g = ridge * d
    for a, b in block_ranges(d.size, block_ptr):
        g[a:b] += X[:, a:b].T @ (X[:, a:b] @ d[a:b])
    if linear is not None:
        g += linear
    return g


def hessian_norm(X, ridge, block_ptr=None) -> float:
    """The largest eigenvalue of the model's Hessian: max_b σ_max(X_b)² + λ (the step 1/L)."""
    top = 0.0
    for a, b in block_ranges(X.shape[1], block_ptr):
        Xb = X[:, a:b]
        # The n × n Gram matrix has the same nonzero spectrum as X_bᵀX_b and is small.
        gram = Xb @ Xb.T if Xb.shape[0] <= Xb.shape[1] else Xb.T @ Xb
        if gram.size:
            top = max(top, float(linalg.eigvalsh(gram, subset_by_index=[gram.shape[0] - 1] * 2)[0]))
    return top + float(ridge)


def _solve_shifted_gram(U: np.ndarray, ridge: float, v: np.ndarray) -> np.ndarray:
    """(UᵀU + λI)⁻¹ v for U of shape n × k, by whichever of k × k and n × n is smaller."""
    n, k = U.shape
    if k == 0:
        return np.zeros(0)
    if k <= n:
        A = U.T @ U
        A[np.diag_indices_from(A)] += ridge
        return linalg.cho_solve(linalg.cho_factor(A, lower=True, check_finite=False), v,
                                check_finite=False)
    M = U @ U.T
    M[np.diag_indices_from(M)] += ridge
    inner = linalg.cho_solve(linalg.cho_factor(M, lower=True, check_finite=False), U @ v,
                             check_finite=False)
    return (v - U.T @ inner) / ridge


def restricted_ridge(X, w_bar, ridge, linear, support, block_ptr=None) -> np.ndarray:
    """The minimiser of Q(w) subject to w_i = 0 for every i outside ``support`` (bool[p])."""
    w_bar = np.asarray(w_bar, dtype=np.float64)
    support = np.asarray(support, dtype=bool)
    if support.shape != w_bar.shape:
        raise ValueError(f"support: must have {w_bar.size} entries, has {support.size}")
    if not ridge > 0:
        raise ValueError(f"ridge: must be > 0 for the backsolve, got {ridge}")
    w = np.zeros_like(w_bar)
    for a, b in block_ranges(w_bar.size, block_ptr):
        keep = support[a:b]
        if not keep.any():
            continue
        Xb = X[:, a:b]
        wb = w_bar[a:b]
        dropped = ~keep
        r = -(Xb[:, dropped] @ wb[dropped]) if dropped.any() else np.zeros(X.shape[0])
        U = Xb[:, keep]
        rhs = -(U.T @ r)
        if linear is not None:
            rhs -= np.asarray(linear, dtype=np.float64)[a:b][keep]
        w[a:b][keep] = wb[keep] + _solve_shifted_gram(U, float(ridge), rhs)
    return w
