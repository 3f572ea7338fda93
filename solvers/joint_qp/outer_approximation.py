"""The full joint MIQP (a') by outer approximation on HiGHS (highspy from arrays).

HiGHS 1.13 solves MILPs and (continuous) QPs, not MIQPs, so the convex objective is replaced by
cutting planes in a MILP master and the master is re-solved as cuts accumulate (Duran and
Grossmann's outer approximation). With d = w − w̄ write

    Q(w) = ½ ‖F d‖² + Σ_i (λ_i/2) d_i² + aᵀd       (+ a nonnegative rounding slack, dropped)

where F (R × p, block-diagonal) and λ_i ≥ λ come from :func:`fisher_factor`: a block with more
weights than samples keeps F_b = X_b (λ_i = λ); a block with p_b ≤ n moves (almost) the smallest
eigenvalue μ_b of X_bᵀX_b into the separable part and factors the rest, X_bᵀX_b − μ_b I = LLᵀ,
F_b = Lᵀ (the "diagonal shift": as much curvature as possible goes where the perspective cuts
below are tight). Scale w = M ⊙ u with the rigorous big-M bounds M of
:meth:`~pruneopt.formulations.joint_qp.problem.JointQuadraticProblem.big_m` (every w at least as good
as the incumbent has |w_i| ≤ M_i) and the objective by 1/σ (σ = the incumbent's scale, so that
the master's objective is of order one). The master MILP is

    minimize    Σ_j t_j + Σ_i (λ_i M_i²/2σ) s_i + Σ_i ((a_i − λ_i w̄_i) M_i/σ) u_i + const/σ
    subject to  −z_i ≤ u_i ≤ z_i                                    (big-M rows, scaled)
                Σ_i z_i ≤ K,   Σ_i c_{g(i)} z_i ≤ F                 (budgets)
                r = F (M⊙u − w̄) / √σ                                (residual coordinates)
                t_j ≥ r̂_j r_j − ½ r̂_j²          for each cut point (tangents of ½ r_j²)
                s_i ≥ 2ū_i u_i − ū_i² z_i         for each cut point (perspective cuts)
                z ∈ {0,1}^p, u ∈ [−1,1]^p, s ≥ 0, t ≥ 0, r free.

The Fisher part is linearised *per residual coordinate* (one epigraph t_j of the 1-D parabola
½ r_j² each, R ≤ n·B of them) rather than as one aggregated cut per point: the tangents at r̂
sum to the usual OA cut at that point, so this is never weaker, and a handful of tangents
approximates a 1-D parabola closely — measured on p = 30, n = 16, 3 blocks: proofs in 2 – 19 s
where the aggregated cuts timed out at 30 s. The separable part is kept through its
*perspective*: s_i stands for u_i²/z_i (the convex hull of {(u, z, s): s ≥ u², u = 0 if
z = 0}), whose tangent planes at (ū, 1) are the rows above (valid everywhere:
u²/z − 2ūu + ū²z = (u − ūz)²/z ≥ 0). Every row under-estimates Q on the feasible set, so the
master's optimum (HiGHS at zero gap: ``mip_rel_gap = mip_abs_gap = 0``) is a lower bound LB.

**Iteration.** At the master's solution (z^k, u^k) take its support S = {z^k = 1}, grow it to
a maximal feasible support S' (adding an index never raises the optimum; candidates by
|∇Q|), solve the restricted QP exactly (the backsolve
:func:`~pruneopt.solvers.fast.joint_qp.backsolve.restricted_ridge`) for w_{S'}, update the upper bound
UB = min Q(w_{S'}), and add the tangent and perspective cuts at w_{S'} and at the master's point
w^k = M ⊙ u^k. Because w_{S'} is optimal on S', ∇Q(w_{S'}) vanishes on S', so the cuts at
w_{S'} force the master value ≥ Q(w_{S'}) ≥ UB on every z with support inside S': a support
cannot come back without closing the gap, and there are finitely many supports (finite
convergence). Stop when UB − LB ≤ ``rel_gap``·max(|UB|, |LB|) (default 1e-10, below the 1e-9
proof tolerance of :func:`~pruneopt.solvers.result.finalize`), at the time limit (the best w
and the master's last dual bound are returned), or when a support repeats three times
without closing the gap (HiGHS's tolerances then limit the bound; finalize reports the gap).

The improving solutions HiGHS meets inside a master solve (``mip_improving_solution_save``)
are treated like its optimum (backsolved, grown, cut at): several supports per master solve.

**Numerics.** HiGHS drops matrix coefficients below 1e-9 (DESIGN §7): coefficients below
``_TINY`` are removed here and the row relaxed by their largest possible contribution
(|u_i|, z_i ≤ 1: a residual row becomes a range), tangents at |r̂_j| < ``_TINY`` are skipped,
so every row stays valid. HiGHS runs with primal, dual and MIP feasibility tolerances of 1e-9
on the scaled master (1e-10 was measured to make HiGHS return invalid dual bounds, off by up
to 70%, on 6 of 24 instances; 1e-9 gave none on 80 random (p = 8 – 18) and 12 digits-CNN
instances checked against enumeration).
"""

from __future__ import annotations

import math
import time

import numpy as np

from pruneopt.solvers.backends import highspy as highspy_adapter
from pruneopt.solvers.constants import Status
from pruneopt.solvers.fast.joint_qp.backsolve import restricted_ridge
from pruneopt.solvers.scaling import integer_cost_divisor

_TINY = 1e-9 * 8  # coefficients below this are dropped (and accounted for in the rhs)
HIGHS_TOLERANCES = {"primal_feasibility_tolerance": 1e-9, "dual_feasibility_tolerance": 1e-9,
                    "mip_feasibility_tolerance": 1e-9}
# The incumbent is handed to HiGHS, so its sub-MIP heuristics (most of a master's time on small
# masters, measured) are off; every improving solution it finds is kept and cut at.
HIGHS_MASTER_OPTIONS = {"mip_heuristic_run_rins": False, "mip_heuristic_run_rens": False,
                        "mip_heuristic_run_feasibility_jump": False,
                        "mip_heuristic_run_root_reduced_cost": False,
                        "mip_improving_solution_save": True}


# The master's objective is scaled so that the incumbent is worth this much: HiGHS's absolute
# tolerances (1e-9 on a row) then cost about 1e-9 / SCALED_INCUMBENT of the objective, relative.
SCALED_INCUMBENT = 1.0


def greedy_incumbent(problem) -> np.ndarray:
    """A cheap feasible start: the maximal support grown by |w̄|, then the backsolve."""
    s = problem.extend_support(np.zeros(problem.num_items, dtype=bool))
    return restricted_ridge(problem.X, problem.w_bar, problem.ridge, problem.linear, s,
                            problem.block_ptr)


def fisher_factor(problem, blocks) -> tuple[np.ndarray, np.ndarray]:
    """(Fct, lam_item): a block-diagonal factor Fct (R × p) and per-item ridges λ_i with

        ½ Σ_b ‖X_b d_b‖² ≥ ½ ‖Fct d‖² + Σ_i ((λ_i − λ)/2) d_i²     for every d,

    an equality up to the guaranteed rounding slack (so the master stays a relaxation).

    A block with p_b > n keeps Fct_b = X_b (n rows, exact; μ_b = 0). A block with p_b ≤ n
    moves μ'_b = (1 − 1e-3)·μ_b, μ_b the smallest eigenvalue of G = X_bᵀX_b (lowered by
    eigvalsh's error bound), into the separable part — the "diagonal shift", which puts as
    much curvature as possible where the perspective cuts are tight — and factors
    G − μ'_b I = L Lᵀ by Cholesky (Fct_b = Lᵀ, p_b rows). Cholesky's backward error E
    (LLᵀ = G − μ'I + E) is paid for by taking
    λ_i = λ + μ'_b − e_b: then ½dᵀGd − ½‖Lᵀd‖² − ((μ'_b − e_b)/2)‖d‖² = ½dᵀ(e_b I − E)d ≥ 0.
    If that shift is not positive, or Cholesky fails, the block falls back to Fct_b = X_b.

    The error bound: Cholesky gives |E| ≤ γ_{p_b+1}|L||Lᵀ| elementwise, and
    (|L||Lᵀ|)_ij ≤ √(G_ii G_jj), so ‖E‖₂ ≤ ‖E‖_F ≤ γ·tr G; forming G = X_bᵀX_b and the
    diagonal shift add γ_n·tr G and ε·tr G. Hence e_b = 4·(p_b + n + 2)·ε·tr G (a factor ~4
    to spare, with γ_m = mε/(1 − mε)).
    """
    X, n, p = problem.X, problem.num_samples, problem.num_items
    eps = np.finfo(np.float64).eps
    rows, lam_item = [], np.full(p, float(problem.ridge))
    for a, b in blocks:
        Xb = X[:, a:b]
        pb = b - a
        factor = None
        if 0 < pb <= n:
            G = Xb.T @ Xb
            ev = np.linalg.eigvalsh(G)
            trace = float(np.trace(G))
            e_b = 4.0 * (pb + n + 2) * eps * trace
            mu = (1.0 - 1e-3) * (float(ev[0]) - e_b)
            if mu - e_b > 0.0:
                try:
                    L = np.linalg.cholesky(G - mu * np.eye(pb))
                    factor = L.T
                    lam_item[a:b] += mu - e_b
                except np.linalg.LinAlgError:
                    factor = None
        block = np.zeros(((factor.shape[0] if factor is not None else n), p))
        block[:, a:b] = factor if factor is not None else Xb
        rows.append(block)
    Fct = np.vstack(rows) if rows else np.zeros((0, p))
    return Fct, lam_item


class _Master:
    """The master MILP in highspy, grown by cuts (see the module docstring).

    Columns: u (p), z (p), s (p), r (R), t (R); r = Fct(M⊙u − w̄)/√σ are the residual
    coordinates and t_j ≥ ½ r_j² their epigraphs.
    """

    def __init__(self, problem, M: np.ndarray, sigma: float, *, threads, seed):
        import highspy

        self.problem, self.M, self.sigma = problem, M, sigma
        p = problem.num_items
        self.p = p
        bp = problem.blocks.tolist()
        blocks = [(a, b) for a, b in zip(bp[:-1], bp[1:]) if b > a]
        Fct, lam = fisher_factor(problem, blocks)
        self.Fct, self.lam_item = Fct, lam
        R = Fct.shape[0]
        self.R = R
        self.n_col = 3 * p + 2 * R
        wb, a = problem.w_bar, problem.linear
        root = math.sqrt(sigma)
        inf = highspy.kHighsInf
        cost = np.zeros(self.n_col)
        cost[:p] = (a - lam * wb) * M / sigma
        cost[2 * p:3 * p] = 0.5 * lam * M * M / sigma
        cost[3 * p + R:] = 1.0
        lo = np.concatenate([-np.ones(p), np.zeros(2 * p), np.full(R, -inf), np.zeros(R)])
        hi = np.concatenate([np.ones(2 * p), np.full(p + 2 * R, inf)])

        # rows: u_i − z_i ≤ 0, −u_i − z_i ≤ 0, Σz ≤ K, Σ (c/unit) z ≤ F/unit, and the
        # residual rows r_j − Σ_i C_ji u_i = −(Fct w̄)_j/√σ with C = Fct·diag(M)/√σ (CSR)
        unit = integer_cost_divisor(problem.flop_cost)
        idx = np.arange(p, dtype=np.int32)
        starts, index, value = [], [], []
        nz = 0
        for sign in (1.0, -1.0):
            for i in range(p):
                starts.append(nz)
                index += [i, p + i]
                value += [sign, -1.0]
                nz += 2
        starts += [nz, nz + p]
        nz += 2 * p
        index += (p + idx).tolist() * 2
        value += [1.0] * p + (problem.item_cost / unit).tolist()
        row_lo = [-inf] * (2 * p + 2)
        row_hi = [0.0] * (2 * p) + [float(problem.nnz_budget), problem.flop_budget / unit]
        C = Fct * (M / root)
        rhs = -(Fct @ wb) / root
        for j in range(R):
            keep = np.abs(C[j]) >= _TINY
            # a dropped coefficient moves the row by at most |C_ji| (|u_i| ≤ 1): a range row
            slack = float(np.sum(np.abs(C[j][~keep])))
            cols = np.flatnonzero(keep)
            starts.append(nz)
            index += [3 * p + j] + cols.tolist()
            value += [1.0] + (-C[j][keep]).tolist()
            nz += 1 + cols.size
            row_lo.append(float(rhs[j]) - slack)
            row_hi.append(float(rhs[j]) + slack)

        lp = highspy.HighsLp()
        lp.num_col_ = self.n_col
        lp.num_row_ = len(row_lo)
        lp.sense_ = highspy.ObjSense.kMinimize
        lp.offset_ = float(0.5 * (lam * wb) @ wb - a @ wb) / sigma
        lp.col_cost_ = cost
        lp.col_lower_ = lo
        lp.col_upper_ = hi
        lp.row_lower_ = np.array(row_lo, dtype=np.float64)
        lp.row_upper_ = np.array(row_hi, dtype=np.float64)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.start_ = np.array(starts + [len(index)], dtype=np.int32)
        lp.a_matrix_.index_ = np.array(index, dtype=np.int32)
        lp.a_matrix_.value_ = np.array(value, dtype=np.float64)
        integrality = [highspy.HighsVarType.kContinuous] * self.n_col
        for i in range(p, 2 * p):
            integrality[i] = highspy.HighsVarType.kInteger
        lp.integrality_ = integrality

        self.h = highspy_adapter.configure(lp, seed=seed, threads=threads,
                                           options={**HIGHS_TOLERANCES, **HIGHS_MASTER_OPTIONS})
        self.n_cuts = 0

    def coords(self, w: np.ndarray) -> np.ndarray:
        """The residual coordinates r = Fct(w − w̄)/√σ of a point."""
        return self.Fct @ (w - self.problem.w_bar) / math.sqrt(self.sigma)

    # ------------------------------------------------------------------ cuts
    def add_cuts(self, w: np.ndarray, on: np.ndarray | None = None) -> None:
        """Tangents of every ½ r_j² at r(w), and perspective cuts at ū = w/M where ``on``
        (default w ≠ 0)."""
        import highspy

        p, R, M = self.p, self.R, self.M
        starts, index, value, lo = [], [], [], []
        nz = 0
        rh = self.coords(w)
        # t_j − r̂_j r_j ≥ −½ r̂_j²   (r̂_j ≈ 0 adds nothing beyond t_j ≥ 0)
        for j in np.flatnonzero(np.abs(rh) >= _TINY).tolist():
            starts.append(nz)
            index += [3 * p + R + j, 3 * p + j]
            value += [1.0, -float(rh[j])]
            lo.append(-0.5 * float(rh[j]) ** 2)
            nz += 2
        ubar = np.divide(w, M, out=np.zeros(p), where=M > 0)
        sel = (w != 0.0) if on is None else on
        sel = sel & (np.abs(2.0 * ubar) >= _TINY)
        for i in np.flatnonzero(sel).tolist():
            ub = float(ubar[i])
            # s_i − 2ū u_i + ū² z_i ≥ 0; a tiny ū² is dropped: −ū² z_i ≥ −ū² (z ≤ 1)
            if ub * ub >= _TINY:
                starts.append(nz)
                index += [2 * p + i, i, p + i]
                value += [1.0, -2.0 * ub, ub * ub]
                lo.append(0.0)
                nz += 3
            else:
                starts.append(nz)
                index += [2 * p + i, i]
                value += [1.0, -2.0 * ub]
                lo.append(-ub * ub)
                nz += 2
        if not starts:
            return
        n = len(starts)
        self.h.addRows(n, np.array(lo, dtype=np.float64), np.full(n, highspy.kHighsInf), nz,
                       np.array(starts, dtype=np.int32), np.array(index, dtype=np.int32),
                       np.array(value, dtype=np.float64))
        self.n_cuts += n

    def start_from(self, w: np.ndarray, support: np.ndarray) -> None:
        """Hand HiGHS a feasible master point built from a feasible w (its incumbent)."""
        p, M = self.p, self.M
        u = np.clip(np.divide(w, M, out=np.zeros(p), where=M > 0), -1.0, 1.0)
        z = support.astype(np.float64)
        r = self.Fct @ (M * u - self.problem.w_bar) / math.sqrt(self.sigma)
        col = np.concatenate([u, z, u * u, r, 0.5 * r * r * (1 + 1e-12)])
        self.h.setSolution(self.n_col, np.arange(self.n_col, dtype=np.int32), col)

    def solve(self, time_limit: float | None):
        """Run the master; returns (the adapter's run, the improving solutions HiGHS saved)."""
        run = highspy_adapter.solve(self.h, time_limit=time_limit)
        try:
            pool = [np.asarray(sol.col_value) for sol in self.h.getSavedMipSolutions()]
        except (AttributeError, RuntimeError):  # pragma: no cover - older highspy
            pool = []
        return run, pool


def solve_oa(problem, *, time_limit: float | None = None, incumbent=None, rel_gap: float = 1e-10,
             max_iter: int = 100_000, threads: int | None = None, seed: int = 0) -> dict:
    """Outer approximation; returns ``{"x", "bound", "status", "message", "info"}``."""
    start = time.perf_counter()
    p = problem.num_items
    if p == 0:
        return {"x": np.zeros(0), "bound": 0.0, "status": Status.OPTIMAL, "message": "no weights",
                "info": {"iterations": 0}}

    def left():
        return None if time_limit is None else time_limit - (time.perf_counter() - start)

    def backsolve(support):
        return restricted_ridge(problem.X, problem.w_bar, problem.ridge, problem.linear,
                                support, problem.block_ptr)

    w0 = greedy_incumbent(problem)
    best_w, ub = w0, problem.objective(w0)
    if incumbent is not None:
        inc = problem.canonical(incumbent)
        if problem.is_feasible(inc):
            # the backsolve on the incumbent's (grown) support can only improve it
            s = problem.extend_support(inc != 0.0, priority=np.abs(problem.gradient(inc)))
            for cand in (inc, backsolve(s)):
                q = problem.objective(cand)
                if q < ub:
                    best_w, ub = cand, q
    lb = problem.lower_bound()
    info = {"iterations": 0, "cuts": 0, "nodes": 0, "supports": 0}

    def closed() -> bool:
        return ub - lb <= rel_gap * max(abs(ub), abs(lb))

    if closed():
        return {"x": best_w, "bound": lb, "status": Status.OPTIMAL,
                "message": "the incumbent meets the unconstrained minimum", "info": info}
    M = problem.big_m(best_w)
    sigma = max(abs(ub), ub - lb, 1e-300) / SCALED_INCUMBENT
    master = _Master(problem, M, sigma, threads=threads, seed=seed)
    master.add_cuts(np.zeros(p), on=np.zeros(p, dtype=bool))
    master.add_cuts(problem.w_bar.copy())
    master.add_cuts(best_w)
    master.start_from(best_w, best_w != 0.0)

    seen: dict[bytes, int] = {}
    status_word, message = Status.FEASIBLE, ""
    while True:
        if info["iterations"] >= max_iter:
            message = f"iteration limit {max_iter}"
            break
        remaining = left()
        if remaining is not None and remaining <= 0:
            status_word, message = Status.TIME_LIMIT, "time limit between master solves"
            break
        run, pool = master.solve(remaining)
        col = run.values
        info["iterations"] += 1
        info["nodes"] += run.nodes
        if math.isfinite(run.bound):
            lb = max(lb, run.bound * sigma)
        if run.status == Status.TIME_LIMIT:
            status_word, message = Status.TIME_LIMIT, "time limit in the master MILP"
            break
        if run.status != Status.OPTIMAL or col is None:
            status_word = Status.ERROR
            message = f"master MILP: {run.message}"
            break
        if closed():
            status_word = Status.OPTIMAL
            break
        z = col[p:2 * p] > 0.5
        if not problem.fits(z):
            status_word = Status.ERROR
            message = "the master's support breaks a budget (tolerances)"
            break
        # the master's optimum first, then the other improving solutions HiGHS met on the way
        came_back = False
        for k, c in enumerate([col] + pool[::-1]):
            zc = c[p:2 * p] > 0.5
            if k and not problem.fits(zc):
                continue
            w_master = np.where(zc, M * np.clip(c[:p], -1.0, 1.0), 0.0)
            w_s = backsolve(zc)
            s_max = problem.extend_support(zc, priority=np.abs(problem.gradient(w_s)))
            w_max = backsolve(s_max) if s_max.sum() > zc.sum() else w_s
            for cand in (w_s, w_max):
                q = problem.objective(cand)
                if q < ub:
                    best_w, ub = cand, q
            key = np.packbits(s_max).tobytes()
            repeat = key in seen
            seen[key] = seen.get(key, 0) + 1
            if k == 0:
                came_back = seen[key] > 3
                master.add_cuts(w_master)
            if not repeat:
                master.add_cuts(w_max, on=s_max)
        info["supports"] = len(seen)
        if closed():
            status_word = Status.OPTIMAL
            break
        if came_back:
            message = ("a support came back 3 times without closing the gap: HiGHS's tolerances "
                       "limit the bound")
            break
        master.start_from(best_w, best_w != 0.0)
    info["cuts"] = master.n_cuts
    info["seconds"] = time.perf_counter() - start
    info["sigma"] = sigma
    info["gap_closed"] = bool(closed())
    msg = (f"{info['iterations']} master MILPs, {master.n_cuts} cuts, {len(seen)} supports"
           + (f"; {message}" if message else ""))
    return {"x": best_w, "bound": lb, "status": status_word, "message": msg, "info": info}
