"""The full joint problem (a') — a mixed-integer QP on the local quadratic model of the loss.

With d = w − w̄ (the change from the dense weights w̄):

    minimize    Q(w) = ½ Σ_b ‖X_b d_b‖² + (λ/2)‖d‖² + aᵀd
    subject to  ‖w‖₀                      ≤ K        (NNZ budget)
                Σ_i c_{g(i)} 1[w_i ≠ 0]   ≤ F        (FLOP budget, in MACs per sample)
                w ∈ ℝ^p

X (n × p) stacks n per-sample gradients (XᵀX/n is the empirical Fisher); blocks b are the
contiguous index ranges ``block_ptr[b]:block_ptr[b+1]`` (default one block [0, p]: the full
Fisher; several blocks make it block-diagonal as in FALCON's code); λ > 0 is a ridge and a
the first-order term (default 0). Items are grouped in layers by ``group_ptr`` and every item
of layer g costs ``flop_cost[g]`` MACs, exactly as in
:class:`~pruneopt.formulations.joint.problem.JointBudgetProblem`.

The decision x is the weight vector w itself (float64[p]); its support 1[w ≠ 0] is what the
budgets count. Q is strictly convex (Hessian H = blockdiag(X_bᵀX_b) + λI ⪰ λI), so for a fixed
support the optimum is a closed-form ridge solve ("backsolve"), and because adding an index to
a support can only lower the restricted optimum, an optimal w lives on a *maximal* feasible
support. w = 0 always meets both budgets (K, F ≥ 0), so the problem is never infeasible.

Big-M bounds (:meth:`JointQuadraticProblem.big_m`) make the MIQP a finite mixed-integer
program; their derivation is in that method's docstring.

Exchange format (one ``.npz``, no pickles), ``formulation`` = "joint-qp":
``X`` float64[n, p], ``w_bar`` float64[p], ``ridge`` float scalar > 0, ``linear`` float64[p],
``group_ptr`` int64[L+1], ``flop_cost`` float64[L] > 0, ``nnz_budget`` integer scalar,
``flop_budget`` float scalar, optional ``block_ptr`` int64[B+1] (absent = one block), optional
``names`` str[L] (one name per layer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from pruneopt.formulations.base import Formulation, datum
from pruneopt.formulations.common import Evaluation
from pruneopt.formulations.joint.problem import JointBudgetProblem, LayerBudgets

_EPS = np.finfo(np.float64).eps


@dataclass(frozen=True, eq=False)
class JointQuadraticProblem(LayerBudgets, Formulation):
    """Problem data of the full joint MIQP (a') (see the module docstring for the program)."""

    X: np.ndarray = datum("real", 2, axes="n samples × p weights")
    w_bar: np.ndarray = datum("real")
    ridge: float = datum("real", 0, bound="> 0")
    linear: np.ndarray | None = datum("real", per="weight",
                                      fill=lambda problem: np.zeros(problem.num_items))
    # required, but after fields with defaults (so None until checked: "field: is required")
    group_ptr: np.ndarray = datum("int", default=None)
    flop_cost: np.ndarray = datum("real", per="layer", bound="> 0", default=None)
    nnz_budget: int = datum("int", 0, bound=">= 0", default=None)
    flop_budget: float = datum("real", 0, bound=">= 0", default=None)
    block_ptr: np.ndarray | None = datum("int", optional=True)
    names: tuple[str, ...] | None = datum("names", per="layer", optional=True)
    _item_cost: np.ndarray = field(init=False, repr=False, compare=False)
    _block_starts: np.ndarray = field(init=False, repr=False, compare=False)

    kind: ClassVar[str] = "joint-qp"
    sense: ClassVar[str] = "minimize"
    requires_tag: ClassVar[bool] = True
    item_noun: ClassVar[str] = "weights"

    def _derive(self) -> None:
        super()._derive()
        bp = self.blocks
        starts = bp[:-1][np.diff(bp) > 0]  # non-empty blocks only (reduceat needs them)
        starts.setflags(write=False)
        object.__setattr__(self, "_block_starts", starts)

    # ----------------------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise ``ValueError`` ("field: message") if the data do not define a problem."""
        X, p = self.X, self.num_items
        if X.shape[1] != p:
            raise ValueError(f"X: must have one column per weight (p={p}), has {X.shape[1]}")
        self.check_values()
        self.check_layers()
        self.check_lengths()
        bp = self.block_ptr
        if bp is not None:
            if bp.size < 2:
                raise ValueError("block_ptr: must have B+1 >= 2 entries")
            if bp[0] != 0 or bp[-1] != p:
                raise ValueError(
                    f"block_ptr: must partition 0..p (start at 0, end at p={p}), "
                    f"got {int(bp[0])}..{int(bp[-1])}")
            if np.any(np.diff(bp) < 0):
                raise ValueError("block_ptr: must be non-decreasing")

    def dimensions(self) -> dict[str, tuple[str, int]]:
        return {**super().dimensions(), "weight": ("p", self.num_items)}

    # ----------------------------------------------------------------------------- shape
    @property
    def num_items(self) -> int:
        return int(self.w_bar.size)

    @property
    def num_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def blocks(self) -> np.ndarray:
        """The block boundaries (int64[B+1]); ``[0, p]`` when ``block_ptr`` is None."""
        if self.block_ptr is None:
            out = np.array([0, self.num_items], dtype=np.int64)
            out.setflags(write=False)
            return out
        return self.block_ptr

    # ----------------------------------------------------------------------------- the model
    def residuals(self, w) -> np.ndarray:
        """r_{jb} = Σ_{i∈b} X_ji (w_i − w̄_i): float64[n, B'] over the non-empty blocks."""
        d = self._delta(w)
        if self._block_starts.size <= 1:
            return (self.X @ d)[:, None]
        # one pass: scale the columns by d, then sum each block's columns
        return np.add.reduceat(self.X * d, self._block_starts, axis=1)

    def objective(self, w) -> float:
        """Q(w) = ½ Σ_b ‖X_b d_b‖² + (λ/2)‖d‖² + aᵀd in float64 (no feasibility check)."""
        w = self._vector(w)
        if w.size == 0:
            return 0.0
        d = w - self.w_bar
        r = self.residuals(w) if self.num_samples else np.zeros((0, 1))
        return float(0.5 * np.sum(r * r) + 0.5 * self.ridge * (d @ d) + self.linear @ d)

    def gradient(self, w) -> np.ndarray:
        """∇Q(w) = blockdiag(X_bᵀX_b) d + λ d + a (float64[p])."""
        d = self._delta(w)
        g = self.ridge * d + self.linear
        if self.num_samples and d.size:
            r = self.residuals(w)  # n × B'
            # column i of X meets the residual of its own block
            blk = np.repeat(np.arange(self._block_starts.size),
                            np.diff(np.append(self._block_starts, d.size)))
            g += np.einsum("ji,ji->i", self.X, r[:, blk])
        return g

    # ----------------------------------------------------------------------------- evaluation
    def support(self, w) -> np.ndarray:
        """1[w_i ≠ 0] as bool[p]."""
        return self._vector(w) != 0.0

    def evaluate(self, w) -> Evaluation:
        """Q(w) and the budget usage of the support of w, recomputed in float64."""
        w = self._vector(w)
        return self.budget_evaluation(self.objective(w), w != 0.0)

    def canonical(self, w) -> np.ndarray:
        """A float64 copy of w (``ValueError`` on a wrong length or a non-finite entry)."""
        arr = np.asarray(w)
        if arr.ndim != 1 or arr.size != self.num_items:
            raise ValueError(f"x: must be 1-D with {self.num_items} entries, got shape {arr.shape}")
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"x: must be real numbers, got dtype {arr.dtype}")
        out = np.array(arr, dtype=np.float64)
        if not np.all(np.isfinite(out)):
            raise ValueError("x: contains NaN or inf")
        return out

    def fits(self, support, tol: float = 1e-9) -> bool:
        """True when a support (bool[p]) meets both budgets (the tolerance of ``is_feasible``)."""
        nnz, flops = self.usage_of_support(support)
        F = self.flop_budget
        return nnz <= self.nnz_budget and flops <= F + tol * max(1.0, abs(F))

    def extend_support(self, support, priority=None, tol: float = 1e-9) -> np.ndarray:
        """Grow a feasible support to a maximal one (adding an index never raises the optimum).

        Candidates are tried in decreasing ``priority`` (default: decreasing |w̄_i|); each one
        is added when both budgets still hold. The result is maximal: every index left out
        would break a budget (the loop visits each candidate once; supports are small here).
        """
        s = np.array(support, dtype=bool)
        if not self.fits(s, tol):
            raise ValueError("support: does not meet the budgets")
        nnz, flops = self.usage_of_support(s)
        F = self.flop_budget + tol * max(1.0, abs(self.flop_budget))
        prio = np.abs(self.w_bar) if priority is None else np.asarray(priority, dtype=np.float64)
        cost = self._item_cost
        for i in np.argsort(-prio, kind="stable").tolist():
            if nnz >= self.nnz_budget:
                break
            if not s[i] and flops + cost[i] <= F:
                s[i] = True
                nnz += 1
                flops += float(cost[i])
        return s

    # ----------------------------------------------------------------------------- bounds
    def unconstrained_minimum(self) -> tuple[np.ndarray, float, float]:
        """(d^u, Q*, err): the unconstrained minimiser d^u = −H⁻¹a, Q* = ½ aᵀd^u = min Q, and a
        bound on ‖computed d^u − d^u‖₂ (``inf`` when H is too ill-conditioned to bound it).

        Q* ≤ Q(w) for every w, so it is a valid (weak) lower bound of the MIQP.
        """
        p = self.num_items
        du = np.zeros(p)
        if not np.any(self.linear):
            return du, 0.0, 0.0
        err2 = 0.0
        for a, b, _diag, solve, eb in self._block_inverses():
            du[a:b] = -solve(self.linear[a:b])
            err2 += (eb * float(np.linalg.norm(self.linear[a:b]))) ** 2
        return du, 0.5 * float(self.linear @ du), math.sqrt(err2)

    def lower_bound(self) -> float:
        """A valid lower bound on the optimum (on Q over all of ℝ^p).

        Q* = min Q, with its floating-point error subtracted; never below the cruder
        −‖a‖²/(2λ) (drop the Fisher term and minimise (λ/2)‖d‖² + aᵀd), which needs no solve.
        """
        na = float(np.linalg.norm(self.linear))
        crude = -(na * na) / (2.0 * self.ridge) * (1.0 + 1e-12)
        if na == 0.0:
            return 0.0
        _du, q_star, err = self.unconstrained_minimum()
        if not math.isfinite(err):
            return crude
        return max(crude, q_star - 0.5 * na * err - 1e-12 * abs(q_star))

    def big_m(self, incumbent=None) -> np.ndarray:
        """Rigorous bounds M (float64[p]) with |w_i| ≤ M_i for every w at least as good as the
        best of w = 0 and ``incumbent`` — so for every optimal w.

        Let U = min(Q(0), Q(incumbent)) (w = 0 is always feasible; the incumbent is used only
        when it meets the budgets), and d = w − w̄. Any w with Q(w) ≤ U satisfies:

        1. (ball) The Fisher term is ≥ 0 and aᵀd ≥ −‖a‖‖d‖, so
           (λ/2)‖d‖² − ‖a‖‖d‖ ≤ Q(w) ≤ U, a quadratic inequality in t = ‖d‖ whose larger root
           gives ‖d‖ ≤ R = (‖a‖ + √(‖a‖² + 2λU)) / λ. Hence |w_i| ≤ |w̄_i| + R.
        2. (ellipsoid) Q(w) = Q* + ½ (d − d^u)ᵀ H (d − d^u) with H = blockdiag(X_bᵀX_b) + λI
           and d^u = −H⁻¹a, Q* = ½ aᵀd^u. So (d − d^u)ᵀH(d − d^u) ≤ 2(U − Q*) =: ρ², and the
           largest |e_iᵀ(d − d^u)| over that ellipsoid is ρ √[H⁻¹]_ii. Hence
           |w_i| ≤ |w̄_i + d^u_i| + ρ √[H⁻¹]_ii. [H⁻¹]_ii ≤ 1/λ, and it is much smaller for
           weights the data pin down (small λ): this is the bound that keeps M tight.

        M_i is the smaller of the two, with floating-point errors accounted for: [H⁻¹]_ii and
        d^u come from a Cholesky factorisation (see ``_block_inverses``) whose absolute error
        on H_b⁻¹ is at most e_b; [H⁻¹]_ii is raised by e_b (and capped at 1/λ), d^u_i widened
        by its error bound, U raised and Q* lowered by theirs; where e_b cannot be bounded the
        ball alone is used. Finally M is inflated by 1e-7 relative (a larger M never cuts off
        a solution; it only loosens the relaxation).
        """
        p = self.num_items
        if p == 0:
            return np.zeros(0)
        lam = self.ridge
        U = self.objective(np.zeros(p))
        if incumbent is not None:
            inc = self.canonical(incumbent)
            if self.is_feasible(inc):
                U = min(U, self.objective(inc))
        U_hi = U + 1e-12 * (abs(U) + self._objective_scale())
        na = float(np.linalg.norm(self.linear))
        R = (na + math.sqrt(max(na * na + 2.0 * lam * U_hi, 0.0))) / lam
        m_ball = np.abs(self.w_bar) + R

        m_ell = np.full(p, np.inf)
        du, q_star, err_du = self.unconstrained_minimum()
        if math.isfinite(err_du):
            inv_diag = np.full(p, 1.0 / lam)
            for a, b, diag, _solve, eb in self._block_inverses():
                if math.isfinite(eb):
                    inv_diag[a:b] = np.minimum(diag + eb, 1.0 / lam)
            q_lo = q_star - 0.5 * na * err_du - 1e-12 * abs(q_star)
            rho2 = max(2.0 * (U_hi - q_lo), 0.0)
            m_ell = np.abs(self.w_bar + du) + err_du + np.sqrt(rho2 * inv_diag)
        M = np.minimum(m_ball, m_ell)
        return M * (1.0 + 1e-7)

    def _objective_scale(self) -> float:
        """A magnitude of the terms summed in Q(0) (for absolute rounding-error margins)."""
        r0 = self.X @ self.w_bar if self.num_samples else np.zeros(0)
        return float(0.5 * r0 @ r0 + 0.5 * self.ridge * self.w_bar @ self.w_bar
                     + np.abs(self.linear) @ np.abs(self.w_bar))

    # Blocks up to this size are inverted directly (p_b × p_b Cholesky); larger ones by Woodbury.
    DIRECT_BLOCK = 2000

    def _block_inverses(self):
        """Per non-empty block: (a, b, diag of H_b⁻¹, v ↦ H_b⁻¹v, e_b), H_b = X_bᵀX_b + λI.

        e_b bounds the absolute error of every computed entry of H_b⁻¹ (and ‖δ(H_b⁻¹)‖₂).
        Each Cholesky solve is backward stable, (H + δH)y = v with ‖δH‖ ≤ c·m·ε‖H‖, so
        ‖δy‖ ≤ c·m·ε·κ·‖H⁻¹‖‖v‖ with κ = (‖X_b‖_F² + λ)/λ ≥ cond(H_b) and ‖H_b⁻¹‖ ≤ 1/λ;
        e_b = 16·m·κ·ε/λ (m the order of the factorised matrix; 16 is generous), valid while
        it is below 1/(2λ) (else ``inf``). Blocks above ``DIRECT_BLOCK`` use the n × n
        Woodbury form H_b⁻¹ = (I − X_bᵀC⁻¹X_b)/λ, C = λI + X_bX_bᵀ, whose diagonal loses
        a further factor κ (e_b = 16·n·κ²·ε/λ).
        """
        from scipy import linalg

        lam = self.ridge
        X = self.X
        n = X.shape[0]
        bp = self.blocks.tolist()
        for a, b in zip(bp[:-1], bp[1:]):
            if b <= a:
                continue
            Xb = X[:, a:b]
            pb = b - a
            kappa = (float(np.sum(Xb * Xb)) + lam) / lam
            if n == 0:
                yield a, b, np.full(pb, 1.0 / lam), (lambda v: v / lam), 0.0
            elif pb <= max(n, self.DIRECT_BLOCK):
                eb = 16.0 * pb * kappa * _EPS / lam
                Hb = Xb.T @ Xb
                Hb[np.diag_indices_from(Hb)] += lam
                cf = linalg.cho_factor(Hb, lower=True, check_finite=False)
                diag = np.diag(linalg.cho_solve(cf, np.eye(pb), check_finite=False)).copy()
                yield (a, b, diag, (lambda v, cf=cf: linalg.cho_solve(cf, v, check_finite=False)),
                       eb if eb < 0.5 / lam else math.inf)
            else:
                eb = 16.0 * n * kappa * kappa * _EPS / lam
                C = Xb @ Xb.T
                C[np.diag_indices_from(C)] += lam
                cf = linalg.cho_factor(C, lower=True, check_finite=False)
                CiX = linalg.cho_solve(cf, Xb, check_finite=False)  # C⁻¹X_b, n × p_b
                diag = (1.0 - np.einsum("ji,ji->i", Xb, CiX)) / lam

                def solve(v, Xb=Xb, CiX=CiX):
                    return (v - CiX.T @ (Xb @ v)) / lam

                yield a, b, diag, solve, eb if eb < 0.5 / lam else math.inf

    # ----------------------------------------------------------------------------- related problems
    def joint_ilp(self, scores) -> JointBudgetProblem:
        """The joint ILP (a) on the same layers and budgets with the given scores (with scores
        u², it is the Euclidean projection of u onto the feasible set)."""
        return JointBudgetProblem(scores=scores, group_ptr=self.group_ptr,
                                  flop_cost=self.flop_cost, nnz_budget=self.nnz_budget,
                                  flop_budget=self.flop_budget, names=self.names)

    # ----------------------------------------------------------------------------- declarations
    def to_pyomo(self, big_m=None, incumbent=None, objective_scale: float = 1.0):
        """The MIQP as a Pyomo ``ConcreteModel`` that reads like the program (see
        :mod:`pruneopt.formulations.joint_qp.pyomo_model`).

        ``big_m`` (float64[p]) overrides the bounds; by default they are
        ``self.big_m(incumbent)``, rigorous (a user-supplied M is the user's claim). The
        objective is multiplied by ``objective_scale`` (solvers scale it to order one).
        """
        from pruneopt.formulations.joint_qp.pyomo_model import build_pyomo

        if big_m is None:
            M = self.big_m(incumbent)
        else:
            M = np.asarray(big_m, dtype=np.float64)
            if M.shape != (self.num_items,) or not np.all(np.isfinite(M)) or np.any(M < 0):
                raise ValueError(f"big_m: must be finite, >= 0, with {self.num_items} entries")
        return build_pyomo(self, M, objective_scale=objective_scale)

    # ----------------------------------------------------------------------------- helpers
    def _vector(self, w) -> np.ndarray:
        if isinstance(w, np.ndarray) and w.dtype == np.float64 and w.shape == (self.num_items,):
            if not np.all(np.isfinite(w)):
                raise ValueError("x: contains NaN or inf")
            return w
        return self.canonical(w)

    def _delta(self, w) -> np.ndarray:
        return self._vector(w) - self.w_bar

    def __repr__(self) -> str:
        return (
            f"JointQuadraticProblem(n={self.num_samples}, p={self.num_items}, "
            f"L={self.num_groups}, B={self.blocks.size - 1}, ridge={self.ridge:.6g}, "
            f"nnz_budget={self.nnz_budget}, flop_budget={self.flop_budget:.6g})"
        )
