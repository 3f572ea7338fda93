"""A certified dual bound for the full joint MIQP (a'), computed outside any MILP solver.

The problem (``JointQuadraticProblem``, d = w − w̄):

    minimize  Q(w) = ½ Σ_b ‖X_b d_b‖² + (λ/2)‖d‖² + aᵀd     s.t.  ‖w‖₀ ≤ K,  Σ_i c_i 1[w_i ≠ 0] ≤ F.

**Minorant.** Every block's Fisher is split as X_bᵀX_b ⪰ R_bᵀR_b + diag(s_b) with s_b ≥ 0 (the
"diagonal shift", see :class:`Minorant`; without it R_b = X_b and s_b = 0). With the per-item
ridge λ_i = λ + s_i, y_b = R_b w̄_b, b_i = a_i − λ_i w̄_i and C = Σ_i (λ_i/2) w̄_i² − aᵀw̄,

    Q(w) ≥ Q'(w) = C + ½ Σ_b ‖y_b − R_b w_b‖² + Σ_i ((λ_i/2) w_i² + b_i w_i)      for every w.

**Fenchel dual of a support.** ½‖y_b − R_b w_b‖² = max_α αᵀ(y_b − R_b w_b) − ½‖α‖², and the
minimum over w_i of (λ_i/2)w_i² + (b_i − r_iᵀα_b) w_i is −v_i(α), so for every support S

    min_{supp w ⊆ S} Q'(w) = C + max_α { Σ_b [α_bᵀy_b − ½‖α_b‖²] − Σ_{i∈S} v_i(α) },
    v_i(α) = (r_iᵀα_{b(i)} − b_i)² / (2λ_i) ≥ 0,

r_i the column of item i in its block's factor. Exchanging min over S and max over α (weak
duality) and bounding max_S Σ_{i∈S} v_i over the feasible supports by the LP dual of the
two-row knapsack gives, for ANY α and ANY μ, ν ≥ 0,

    OPT ≥ LB(α, μ, ν) = C + Σ_b [α_bᵀy_b − ½‖α_b‖²] − [μK + νF + Σ_i (v_i(α) − μ − νc_i)_+].

LB is jointly concave. At a branch-and-bound node with items forced in (I) and out (O) the same
argument on the node's supports gives

    LB_node = C + g(α) − Σ_{i∈I} v_i − [μK' + νF' + Σ_{i free} (v_i − μ − νc_i)_+],
    K' = K − |I|,  F' = F − Σ_{i∈I} c_i  (a node with K' < 0 or F' < 0 is empty).

Forcing a free item i in (out) raises LB_node by at least (t_i − v_i)_+ ((v_i − t_i)_+),
t_i = μ + νc_i — the reduced-cost fixing of :mod:`~pruneopt.solvers.fast.joint_qp.branch_and_bound`.

**The integer bracket.** The LP bracket is only an upper bound of V*(α) = max Σ_{i∈S} v_i over
the node's integral supports; weak duality needs no more than V* itself, so

    LB_node^int = C + g(α) − Σ_{i∈I} v_i − V*(α)        (≥ LB_node for the same α)

is valid too. V* is a knapsack in count space (both rows count weights per cost class), solved
exactly by :mod:`~pruneopt.solvers.fast.joint_qp.count_knapsack` with a certified upper bound.
Measured on the digits CNN (p = 1,000, n = 64): once the ten highest-leverage weights are
fixed, the LP bracket leaves a gap of 1.4e-3, the integer one 2e-5 — the LP's fraction of one
weight traded to fill the FLOP budget exactly was the larger part of the root gap.
:func:`certify` returns both bounds: ``lb`` (the better) prunes, ``lb_lp`` is the base of the
reduced-cost gains (those are LP gains: LB_lp + gain ≤ the LP bound of the flipped node ≤ its
integer bound). With ``integer`` that LP is the count search's root box, which leaves out the
weights dearer than the whole budget left — still an LP over the node's supports, so the gains
hold, and never looser than the plain one.

**Which α.** The best α is the dual of the perspective relaxation min_{z ∈ H} φ(z),
φ(z) = C + max_α [g(α) − Σ_i z_i v_i(α)], H the convex hull of the node's integral supports
(``bracket="hull"``; the knapsack polytope P ⊇ H otherwise); φ is convex with ∂φ/∂z_i =
−v_i(α(z)), and α(z) is the residual of a ridge with per-item weights λ_i/z_i (one n × n —
or r_b × r_b — solve per block). :func:`frank_wolfe` minimises φ by Frank–Wolfe: the linear
step over H is V*'s maximiser (over P, the knapsack LP), the step length a bisection on φ'
along the segment (each trial a small solve, the big products are updated by the direction
only). Every iterate's α gives a certified LB; started at an integral support S, α(S) is the
residual of the backsolve on S, which makes the bound exact when the relaxation is tight. A
warm start from the parent's point with the branched weight set to 1 can lie outside the
node's budgets (then φ(z) is below the bound and says nothing): it is first mixed with a
vertex until it fits. The iteration ends when the certified LB meets the cut-off, when the
Frank–Wolfe gap φ − LB is small, or after a number of iterations.

**Rounding.** The certificate is evaluated in float64 with explicit error bounds (u = 2⁻⁵³,
γ_k = ku/(1 − ku), and |fl(xᵀy) − xᵀy| ≤ γ_k |x|ᵀ|y| for a k-term dot product):
q_i = r_iᵀα − b_i is bracketed by ±γ_{r+3}(|r_i|ᵀ|α| + |a_i| + λ_i|w̄_i|) and v_i is replaced by
the square of the upper end (rounded up); y_b = R_b w̄_b carries ±γ_{p_b}|R_b||w̄_b|; g, C,
the knapsack bracket (LP or integer, see :mod:`~pruneopt.solvers.fast.joint_qp.count_knapsack`)
and the sums over I are each lowered (or raised) by γ_k times the sum of the absolute values of
their terms. The bound is therefore a rigorous lower bound of the
exact-arithmetic LB, which is a lower bound of OPT; nothing depends on a solver tolerance.
The shift s_b is certified the same way (see :class:`Minorant`).

Everything is vectorised: blocks are stored as one zero-padded tensor (B × r × m), so the
products over all blocks are single batched matrix products; loops run over Frank–Wolfe
iterations and bisection steps only.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from pruneopt.solvers.fast.joint_qp.count_knapsack import integer_max
from pruneopt.solvers.fast.joint_qp.knapsack_lp import U, gamma, lp_bracket

SHIFTS = ("none", "eig", "scaled")
FEAS_REL = 1e-9  # the FLOP budget's tolerance in problem.fits / finalize


# ============================================================================== the minorant
class Minorant:
    """Q'(w) ≤ Q(w) in the form of the module docstring, stored as padded block tensors.

    ``shift`` picks the diagonal shift of blocks with p_b ≤ n (blocks with more weights than
    samples keep R_b = X_b: their Fisher is singular and no positive shift exists):

    * ``"none"``   — R_b = X_b, s = 0;
    * ``"eig"``    — s = μ_b·1 with μ_b (just below) the smallest eigenvalue of G = X_bᵀX_b;
    * ``"scaled"`` — s_i = τ_b·G_ii with τ_b (just below) the smallest eigenvalue of the
      correlation matrix diag(G)^{-½} G diag(G)^{-½} over the items with G_ii > 0 (the
      largest multiple of diag(G) below G; it follows an uneven diagonal, and an item with
      a zero gradient column no longer forces the shift of its whole block to 0).

    Measured (root gaps, digits instances): the shift applies only where a block has at most n
    weights *and* is well conditioned; on the MLP's blocks (dead inputs, near-collinear
    pixels) no block could be shifted, on the CNN's 64-weight blocks every block was, but
    the root gap moved only from 6.38 % to 6.36 % — the curvature that matters is in the
    coupling between blocks' kept and pruned weights, not on the diagonal.

    Then G − diag(s) = LLᵀ by Cholesky and R_b = Lᵀ (p_b rows). Certification: the computed
    G differs from X_bᵀX_b by at most γ_n·tr G in 2-norm, forming G − diag(s) adds u·tr G and
    Cholesky's backward error is at most γ_{p_b+1}·tr G (|E| ≤ γ|L||Lᵀ|, (|L||Lᵀ|)_ij ≤
    √(G_ii G_jj)); so with e_b = 2·(γ_n + γ_{p_b+1} + u)·tr G,
    X_bᵀX_b ⪰ LLᵀ + diag(s) − e_b I, and λ_i = (λ + s_i − e_b)(1 − 4u) makes Q' ≤ Q. A block
    whose shift would not beat its error, or whose Cholesky fails, keeps R_b = X_b.
    """

    def __init__(self, problem, shift: str = "scaled"):
        if shift not in SHIFTS:
            raise ValueError(f"shift: one of {', '.join(SHIFTS)}, got {shift!r}")
        self.problem = problem
        self.shift = shift
        X, wb, a = problem.X, problem.w_bar, problem.linear
        n, p = X.shape
        lam0 = float(problem.ridge)
        self.p, self.n = p, n
        bp = problem.blocks.tolist()
        spans = [(s, e) for s, e in zip(bp[:-1], bp[1:]) if e > s]
        factors, lam = [], np.full(p, lam0)
        self.shifted_blocks = 0
        for s, e in spans:
            Xb = X[:, s:e]
            R = Xb
            pb = e - s
            if shift != "none" and 0 < pb <= n and n > 0:
                out = _shifted_factor(Xb, shift)
                if out is not None and float(np.min(lam0 + out[1])) > 0.5 * lam0:
                    R, sh = out
                    lam[s:e] = (lam0 + sh) * (1.0 - 4 * U)
                    self.shifted_blocks += 1
            factors.append(R)
        self.lam = lam
        B = len(spans)
        self.B = B
        r = max([f.shape[0] for f in factors], default=0)
        m = max([e - s for s, e in spans], default=0)
        self.r, self.m = r, m
        Rt = np.zeros((B, r, m))
        item_of = np.full((B, m), -1, dtype=np.int64)
        for k, ((s, e), f) in enumerate(zip(spans, factors)):
            Rt[k, :f.shape[0], :e - s] = f
            item_of[k, :e - s] = np.arange(s, e)
        self.Rt = Rt
        self.absRt = np.abs(Rt)
        self.valid = item_of >= 0
        self.item_of = item_of
        # r_iᵀr_i / λ_i: how much one weight can absorb of the residual (branching order)
        self.lam_pad = np.ones((B, m))
        self.lam_pad[self.valid] = lam
        self.leverage = self.to_items(np.einsum("brm,brm->bm", Rt, Rt)) / lam
        self.block_of = np.repeat(np.arange(B), [e - s for s, e in spans]).astype(np.int64)
        # y_b = R_b w̄_b and its error bound
        wpad = self.to_pad(wb)
        self.Y = np.einsum("brm,bm->br", Rt, wpad)
        self.EY = gamma(m + 1) * np.einsum("brm,bm->br", self.absRt, np.abs(wpad))
        self.bvec = a - lam * wb
        self.bpad = self.to_pad(self.bvec)
        self.babs = np.abs(a) + lam * np.abs(wb)  # bounds |b_i| and its rounding
        C = 0.5 * float(np.dot(lam * wb, wb)) - float(np.dot(a, wb))
        C_abs = 0.5 * float(np.dot(lam * wb, wb)) + float(np.dot(np.abs(a), np.abs(wb)))
        self.C_lo = C - gamma(p + 3) * C_abs
        # budgets and classes (items of equal cost merged)
        self.cost = np.asarray(problem.item_cost, dtype=np.float64)
        self.K = int(problem.nnz_budget)
        F = float(problem.flop_budget)
        self.F = F + FEAS_REL * max(1.0, abs(F))  # the budget that problem.fits accepts
        ucost, cls = np.unique(self.cost, return_inverse=True)
        self.class_cost = ucost
        self.cls = cls.reshape(-1).astype(np.int64)
        self.D = ucost.size
        self.perm = np.argsort(self.cls, kind="stable")  # items in class order
        self.cls_perm = self.cls[self.perm]

    # ------------------------------------------------------------------ layout helpers
    def to_pad(self, vec: np.ndarray) -> np.ndarray:
        out = np.zeros((self.B, self.m))
        out[self.valid] = vec
        return out

    def to_items(self, pad: np.ndarray) -> np.ndarray:
        return pad[self.valid]

    # ------------------------------------------------------------------ the dual pieces
    def q(self, A: np.ndarray) -> np.ndarray:
        """q_i = r_iᵀα_{b(i)} − b_i (float64[p], not certified)."""
        return self.to_items(_rows_times(A, self.Rt) - self.bpad)

    def v(self, A: np.ndarray) -> np.ndarray:
        q = self.q(A)
        return q * q / (2.0 * self.lam)

    def v_upper(self, A: np.ndarray) -> np.ndarray:
        """Certified upper bounds of v_i(α) (see the module docstring)."""
        q = self.q(A)
        e = gamma(self.r + 4) * (self.to_items(_rows_times(np.abs(A), self.absRt))
                                 + self.babs)
        t = np.abs(q) + e
        return (t * t) / (2.0 * self.lam) * (1.0 + 8 * U)

    def g(self, A: np.ndarray) -> float:
        return float(np.sum(A * self.Y) - 0.5 * np.sum(A * A))

    def g_lower(self, A: np.ndarray) -> float:
        absA = np.abs(A)
        s1 = float(np.sum(absA * np.abs(self.Y)))
        s2 = 0.5 * float(np.sum(A * A))
        err = gamma(self.B * self.r + 4) * (s1 + s2) + float(np.sum(absA * self.EY))
        return self.g(A) - err

    # ------------------------------------------------------------------ α of a point z
    def system(self, z: np.ndarray):
        """(M, rhs) with M_b = I + R_b diag(z/λ) R_bᵀ, rhs_b = y_b + R_b (z b / λ)."""
        D = self.to_pad(z / self.lam)
        RD = self.Rt * D[:, None, :]
        M = RD @ self.Rt.transpose(0, 2, 1)
        idx = np.arange(self.r)
        M[:, idx, idx] += 1.0
        rhs = self.Y + _times_cols(RD, self.bpad)
        return M, rhs

    def direction_system(self, d: np.ndarray, blocks: np.ndarray):
        """(ΔM, Δrhs) of the given blocks: the change of ``system`` per unit step along d,
        which moves only the blocks holding d's support (with one block, only its columns)."""
        nz = np.flatnonzero(d)
        if self.B == 1 and nz.size < self.m:  # one block: only the columns that move
            Rs = self.Rt[0][:, nz]
            Ds = d[nz] / self.lam[nz]
            RD = Rs * Ds
            return (RD @ Rs.T)[None], (RD @ self.bvec[nz])[None]
        Rb = self.Rt[blocks]
        RD = Rb * self.to_pad(d / self.lam)[blocks][:, None, :]
        return RD @ Rb.transpose(0, 2, 1), _times_cols(RD, self.bpad[blocks])

    def v_of_blocks(self, A_b: np.ndarray, blocks: np.ndarray) -> np.ndarray:
        """v_i(α) of the items of the given blocks, padded (len(blocks) × m, 0 on padding)."""
        q = _rows_times(A_b, self.Rt[blocks]) - self.bpad[blocks]
        return q * q / (2.0 * self.lam_pad[blocks])

    @staticmethod
    def solve_alpha(M: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        return np.linalg.solve(M, rhs[:, :, None])[:, :, 0]

    def alpha_of(self, z: np.ndarray) -> np.ndarray:
        M, rhs = self.system(z)
        return self.solve_alpha(M, rhs)

    def alpha_of_weights(self, w: np.ndarray) -> np.ndarray:
        """α = y − R w (the residual of a primal point in the minorant's coordinates)."""
        return self.Y - _times_cols(self.Rt, self.to_pad(w))


def _rows_times(A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """(B × r) · (B × r × m) → B × m, batched αᵀR_b (BLAS; einsum does not use it here).
    The error bounds hold for any order of summation."""
    return np.matmul(A[:, None, :], T)[:, 0, :]


def _times_cols(T: np.ndarray, W: np.ndarray) -> np.ndarray:
    """(B × r × m) · (B × m) → B × r, batched R_b w_b."""
    return np.matmul(T, W[:, :, None])[:, :, 0]


def _shifted_factor(Xb: np.ndarray, shift: str):
    """(Lᵀ, net) with X_bᵀX_b ⪰ LLᵀ + diag(net) (see :class:`Minorant`), or None."""
    n, pb = Xb.shape
    G = Xb.T @ Xb
    diag = np.diag(G).copy()
    trace = float(diag.sum())
    if not trace > 0.0:
        return None
    e_b = 2.0 * (gamma(n) + gamma(pb + 1) + U) * trace
    if shift == "eig":
        # eigvalsh is backward stable (error of order u·‖G‖ ≤ u·tr G): stay well below it
        mu = float(np.linalg.eigvalsh(G)[0]) - 64 * pb * U * trace
        s = np.full(pb, (1.0 - 1e-3) * mu)
    else:
        live = diag > 0.0
        d = np.sqrt(diag[live])
        Cm = G[np.ix_(live, live)] / d[:, None] / d[None, :]
        tau = float(np.linalg.eigvalsh(Cm)[0]) - 64 * pb * U * float(np.trace(Cm))
        s = np.zeros(pb)
        s[live] = (1.0 - 1e-3) * tau * diag[live]
    if not float(s.max()) > 2.0 * e_b:
        return None
    s = np.maximum(s, 0.0)
    Gs = G.copy()
    Gs[np.diag_indices_from(Gs)] -= s
    try:
        L = np.linalg.cholesky(Gs)
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(L)):
        return None
    # validity needs only that Cholesky succeeded on the computed G − diag(s): the errors of
    # forming G, of the subtraction and of the factorisation are all inside e_b
    return L.T.copy(), s - e_b


# ============================================================================== node certificate
@dataclass
class Node:
    """Fixings of a branch-and-bound node: ``fix`` int8[p] (1 in, −1 out, 0 free)."""

    fix: np.ndarray
    K: int  # K' = K − |in|
    F: float  # F' = F − c(in), rounded up

    @classmethod
    def of(cls, model: Minorant, fix: np.ndarray) -> Node:
        ins = fix == 1
        Kr = model.K - int(np.count_nonzero(ins))
        used = float(np.sum(model.cost[ins]))
        Fr = model.F - used + gamma(int(np.count_nonzero(ins)) + 1) * used
        return cls(fix=fix, K=Kr, F=Fr)

    @property
    def empty(self) -> bool:
        return self.K < 0 or self.F < 0


@dataclass
class Certificate:
    """A certified lower bound at one α and the data needed to fix and branch."""

    lb: float  # certified LB_node
    A: np.ndarray  # α (B × r)
    mu: float  # NNZ multiplier
    nu: float  # FLOP multiplier
    v: np.ndarray  # certified upper bounds of v_i(α)
    select: np.ndarray  # bool[p]: an integral maximiser (approx.) of Σ v over the node
    value: float  # C + g(α) − Σ_I v − bracket, without margins (for the FW gap)
    lb_lp: float  # certified LB_node with the LP bracket (≤ lb; the base of fixing gains)
    hull: np.ndarray  # float64[p]: Frank–Wolfe's vertex: V*'s maximiser (``integer``) or the LP's


def _fill(v: np.ndarray, c: np.ndarray, sel: np.ndarray, K: int, F: float) -> np.ndarray:
    """Grow a selection within both budgets, per cost class, best v first (loops over the
    distinct costs only)."""
    sel = sel.copy()
    K_left = K - int(np.count_nonzero(sel))
    F_left = F - float(np.sum(c[sel]))
    out = np.flatnonzero(~sel & (v > 0))
    if K_left <= 0 or out.size == 0:
        return sel
    ucost, cls = np.unique(c[out], return_inverse=True)
    order = np.lexsort((-v[out], cls))
    o, cl = out[order], cls[order]
    starts = np.searchsorted(cl, np.arange(ucost.size))
    ends = np.searchsorted(cl, np.arange(ucost.size), side="right")
    for d in np.argsort(-v[o[starts]], kind="stable").tolist():
        if K_left <= 0:
            break
        take = min(int(ends[d] - starts[d]), K_left, int(max(F_left, 0.0) // float(ucost[d])))
        if take > 0:
            sel[o[starts[d]:starts[d] + take]] = True
            K_left -= take
            F_left -= take * float(ucost[d])
    return sel


def _bound(model: Minorant, g_lo: float, s_in_up: float, bracket_up: float):
    """(certified LB, value without margins) for a certified upper bracket."""
    value = model.C_lo + g_lo - s_in_up - bracket_up
    lb = value - gamma(6) * (abs(model.C_lo) + abs(g_lo) + s_in_up + bracket_up)
    return lb, value


def certify(model: Minorant, node: Node, A: np.ndarray, integer: bool = True) -> Certificate:
    """LB_node(α) with the node's knapsack bracket on the certified v: the LP dual (μ*, ν*)
    always (``lb_lp``, which the reduced-cost fixing needs), and with ``integer`` the exact
    integer maximum in count space (:mod:`~pruneopt.solvers.fast.joint_qp.count_knapsack`),
    which is never looser; ``lb`` is the better of the two (see the module docstring)."""
    v = model.v_upper(A)
    fix = node.fix
    ins = fix == 1
    select = ins.copy()
    hull = ins.astype(np.float64)
    if node.empty:
        return Certificate(lb=math.inf, A=A, mu=0.0, nu=0.0, v=v, select=select,
                           value=math.inf, lb_lp=math.inf, hull=hull)
    n_in = int(np.count_nonzero(ins))
    s_in_up = float(np.sum(v[ins])) * (1.0 + gamma(n_in + 1))
    mu = nu = 0.0
    bracket_up = int_up = 0.0
    idx = np.flatnonzero(fix == 0)
    if idx.size and node.K > 0:
        vf, cf = v[idx], model.cost[idx]
        if integer:  # the count search's root box is the node's LP: one LP, not two
            ck = integer_max(vf, model.cls[idx], model.class_cost, node.K, node.F)
            mu, nu = ck.mu, ck.nu
            bracket_up = ck.lp_upper * (1.0 + 4 * U)
            int_up = min(bracket_up, ck.upper * (1.0 + 4 * U))
            select[idx[ck.select]] = True
            hull[idx[ck.select]] = 1.0
        else:
            value, margin, mu, nu, sel_hi, sel_lo, theta = lp_bracket(vf, cf, node.K, node.F)
            bracket_up = int_up = (value + margin) * (1.0 + 4 * U)
            hull[idx] = theta * sel_lo + (1.0 - theta) * sel_hi
            select[idx[_fill(vf, cf, sel_hi, node.K, node.F)]] = True
    g_lo = model.g_lower(A)
    lb_lp, _ = _bound(model, g_lo, s_in_up, bracket_up)
    lb, value = _bound(model, g_lo, s_in_up, int_up)
    return Certificate(lb=lb, A=A, mu=mu, nu=nu, v=v, select=select, value=value,
                       lb_lp=lb_lp, hull=hull)


def fixing_gains(model: Minorant, node: Node, cert: Certificate) -> np.ndarray:
    """Certified increase of LB_node when each free item is forced to the other side
    (forcing in: (t_i − v_i)_+, forcing out: (v_i − t_i)_+; 0 for fixed items), with the
    rounding of the two subtractions taken off."""
    v = cert.v
    t = cert.mu + cert.nu * model.cost
    gain = np.abs(v - t) - gamma(6) * (v + t + abs(cert.lb_lp))
    gain[node.fix != 0] = 0.0
    return np.maximum(gain, 0.0)


# ============================================================================== Frank–Wolfe
@dataclass
class FWResult:
    best: Certificate
    z: np.ndarray
    phi: float  # the relaxation's primal value at z (not certified): an upper estimate
    iterations: int
    solves: int
    stopped: str
    selects: list  # integral knapsack selections met on the way (incumbent candidates)


def frank_wolfe(model: Minorant, node: Node, z0: np.ndarray, *, cutoff: float = math.inf,
                max_iter: int = 30, rel_tol: float = 1e-12, deadline: float | None = None,
                line_steps: int = 6, bracket: str = "hull") -> FWResult:
    """Minimise the perspective relaxation φ over the node's polytope from z0 (see the module
    docstring); every iterate's α is certified and the best certificate is returned.

    Stops when the certified LB reaches ``cutoff`` (the node can be pruned), when the
    Frank–Wolfe gap φ − LB is below ``rel_tol``·|φ| (or stops shrinking), after ``max_iter``
    iterations, or at the deadline.

    ``bracket``: ``"hull"`` subtracts the integer knapsack at every iterate and steps towards
    its maximiser (the relaxation over the hull of the integral supports); ``"end"`` iterates
    on the LP (cheaper with many cost classes) and certifies the integer bracket once, at the
    best α; ``"lp"`` never uses it.
    """
    z = np.array(z0, dtype=np.float64)
    z[node.fix == 1] = 1.0
    z[node.fix == -1] = 0.0
    M, rhs = model.system(z)
    A = model.solve_alpha(M, rhs)
    solves = 1
    # a parent's point with the branched item set to 0 or 1 can break the node's budgets; then
    # φ(z) is no upper estimate and the gap test would stop at once: mix z with a vertex until
    # it fits (the largest share of z that does)
    free = node.fix == 0
    if not node.empty and free.any():
        over_k = float(np.sum(z[free])) - node.K
        over_f = float(np.dot(model.cost[free], z[free])) - node.F
        if over_k > 1e-9 * max(node.K, 1) or over_f > 1e-9 * max(abs(node.F), 1.0):
            h = certify(model, node, A, bracket == "hull").hull
            theta = 1.0
            for over, used in ((over_k, float(np.sum(h[free])) - node.K),
                               (over_f, float(np.dot(model.cost[free], h[free])) - node.F)):
                if over > 0.0:
                    # z − share·(z − h) meets the row: share ≥ over / (over − used), used ≤ 0
                    theta = min(theta, 1.0 - over / (over - min(used, 0.0)))
            theta = max(theta, 0.0)
            z = theta * z + (1.0 - theta) * h
            M, rhs = model.system(z)
            A = model.solve_alpha(M, rhs)
            solves += 1
    best = None
    selects = []
    phi = math.inf
    stopped = "max_iter"
    gaps: list[float] = []
    it = 0
    for it in range(1, max_iter + 1):
        cert = certify(model, node, A, bracket == "hull")
        if best is None or cert.lb > best.lb:
            best = cert
        selects.append(cert.select)
        v = model.v(A)
        phi = model.C_lo + model.g(A) - float(np.dot(z, v))
        if best.lb >= cutoff:
            stopped = "cutoff"
            break
        gap = phi - best.lb
        # a negative gap: z lies outside the node's integral hull (a warm start), so φ(z) says
        # nothing yet; the first full step lands on a vertex
        if gap >= 0.0:
            gaps.append(gap)
            if gap <= rel_tol * max(abs(phi), 1e-300):
                stopped = "converged"
                break
            if len(gaps) > 6 and gap > 0.97 * gaps[-7]:
                stopped = "stalled"
                break
        if deadline is not None and time.perf_counter() > deadline:
            stopped = "deadline"
            break
        d = cert.hull - z
        slope0 = -float(np.dot(d, v))
        if not slope0 < 0.0:
            stopped = "stationary"
            break
        # only the blocks holding d's support move (all of them with one block)
        blocks = np.unique(model.block_of[np.flatnonzero(d)])
        dM, dr = model.direction_system(d, blocks)
        Mb, rb, d_pad = M[blocks], rhs[blocks], model.to_pad(d)[blocks]

        def slope(gm):
            Ab = model.solve_alpha(Mb + gm * dM, rb + gm * dr)
            return -float(np.sum(d_pad * model.v_of_blocks(Ab, blocks))), Ab

        s1, A1 = slope(1.0)
        solves += 1
        if s1 <= 0.0:
            gm, Ab = 1.0, A1
        else:
            # φ is convex along the segment: regula falsi (Illinois) on its slope
            lo, hi, f_lo, f_hi, A_lo, side = 0.0, 1.0, slope0, s1, None, 0
            for _ in range(line_steps):
                mid = lo - f_lo * (hi - lo) / (f_hi - f_lo)
                if not lo < mid < hi:
                    mid = 0.5 * (lo + hi)
                sm, Am = slope(mid)
                solves += 1
                if sm <= 0.0:
                    lo, f_lo, A_lo = mid, sm, Am
                    if side == -1:
                        f_hi *= 0.5
                    side = -1
                else:
                    hi, f_hi = mid, sm
                    if side == 1:
                        f_lo *= 0.5
                    side = 1
                if hi - lo < 1e-3 * hi:
                    break
            if lo > 0.0:
                gm, Ab = lo, A_lo
            else:
                gm = 0.5 * hi
                Ab = slope(gm)[1]
                solves += 1
        z = z + gm * d
        A = A.copy()  # the certificates hold the previous α
        A[blocks] = Ab
        M[blocks] += gm * dM  # M and rhs belong to this loop: updated in place
        rhs[blocks] += gm * dr
    if bracket == "end" and best is not None and best.lb < cutoff:
        final = certify(model, node, best.A, True)
        if final.lb > best.lb:
            best = final
            selects.append(final.select)
    return FWResult(best=best, z=z, phi=phi, iterations=it, solves=solves, stopped=stopped,
                    selects=selects)
