"""Pyomo declaration of the full joint MIQP (a').

    minimize    σ [ ½ Σ_{b∈B} Σ_{j∈J} r_{bj}² + (λ/2) Σ_{i∈I} (w_i − w̄_i)²
                    + Σ_{i∈I} a_i (w_i − w̄_i) ]                           (m.loss)
    subject to  r_{bj} = Σ_{i∈I_b} X_{ji} (w_i − w̄_i)       b ∈ B, j ∈ J  (m.residual)
                w_i ≤  M_i z_i                               i ∈ I         (m.upper)
                w_i ≥ −M_i z_i                               i ∈ I         (m.lower)
                Σ_{i∈I} z_i                   ≤ K                          (m.nnz)
                Σ_{g∈G} c_g Σ_{i∈I_g} z_i     ≤ F                          (m.flops)
                z_i ∈ {0, 1},  w_i ∈ [−M_i, M_i],  r_{bj} ∈ ℝ

I = weights, G = layers (I_g the weights of layer g), B = the non-empty blocks of ``block_ptr``
(I_b the weights of block b), J = samples (rows of X); σ > 0 scales the objective (1 by
default; solvers pick it so that the objective is of order one). The residuals r make the
objective a sum of squares (n·B terms instead of a dense p × p Hessian) that a MIQP solver
recognises as convex.

M_i are the rigorous big-M bounds of :meth:`JointQuadraticProblem.big_m`: every w at least as
good as w = 0 (or a given incumbent) satisfies |w_i| ≤ M_i, so the rows cut off no optimum.
z_i = 0 forces w_i = 0, so the budgets on z bound the support of w; z_i = 1 with w_i = 0 is
allowed (and harmless: the support of w is then smaller than z's).
"""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo


def build_pyomo(problem, M: np.ndarray, objective_scale: float = 1.0) -> pyo.ConcreteModel:
    if not (objective_scale > 0) or not np.isfinite(objective_scale):
        raise ValueError("objective_scale must be finite and > 0")
    p, L, n = problem.num_items, problem.num_groups, problem.num_samples
    ptr = problem.group_ptr.tolist()
    bp = problem.blocks.tolist()
    blocks = [(a, b) for a, b in zip(bp[:-1], bp[1:]) if b > a]
    X, wb, a = problem.X, problem.w_bar.tolist(), problem.linear.tolist()
    Ml = np.asarray(M, dtype=np.float64).tolist()
    c = problem.flop_cost.tolist()
    lam = float(problem.ridge)

    m = pyo.ConcreteModel(name="full joint MIQP (a')")
    m.I = pyo.RangeSet(0, p - 1, doc="weights")
    m.G = pyo.RangeSet(0, L - 1, doc="layers")
    m.B = pyo.RangeSet(0, len(blocks) - 1, doc="non-empty Fisher blocks")
    m.J = pyo.RangeSet(0, n - 1, doc="samples (rows of X)")
    m.K = pyo.Param(initialize=problem.nnz_budget, doc="NNZ budget")
    m.F = pyo.Param(initialize=problem.flop_budget, doc="FLOP budget (MACs)")
    m.M = pyo.Param(m.I, initialize=lambda m, i: Ml[i], doc="big-M bound on |w_i|")

    m.z = pyo.Var(m.I, within=pyo.Binary, doc="1 = weight i may be nonzero")
    m.w = pyo.Var(m.I, within=pyo.Reals, bounds=lambda m, i: (-Ml[i], Ml[i]), doc="weights")
    m.r = pyo.Var(m.B, m.J, within=pyo.Reals, doc="block residuals X_b (w_b − w̄_b)")

    def residual(m, b, j):
        lo, hi = blocks[b]
        row = X[j, lo:hi]
        nz = np.flatnonzero(row)
        return m.r[b, j] == sum(float(row[k]) * (m.w[lo + k] - wb[lo + k]) for k in nz.tolist())

    m.residual = pyo.Constraint(m.B, m.J, rule=residual)
    m.loss = pyo.Objective(
        expr=objective_scale * (
            0.5 * sum(m.r[b, j] ** 2 for b in m.B for j in m.J)
            + 0.5 * lam * sum((m.w[i] - wb[i]) ** 2 for i in m.I)
            + sum(a[i] * (m.w[i] - wb[i]) for i in m.I if a[i] != 0.0)
        ),
        sense=pyo.minimize,
        doc="the local quadratic model Q(w), scaled by σ",
    )
    if p == 0:  # nothing to declare: the rows are trivially met (Pyomo refuses constant rows)
        m.nnz = pyo.Constraint(rule=lambda m: pyo.Constraint.Feasible)
        m.flops = pyo.Constraint(rule=lambda m: pyo.Constraint.Feasible)
        return m
    m.upper = pyo.Constraint(m.I, rule=lambda m, i: m.w[i] <= m.M[i] * m.z[i])
    m.lower = pyo.Constraint(m.I, rule=lambda m, i: -m.M[i] * m.z[i] <= m.w[i])
    m.nnz = pyo.Constraint(expr=sum(m.z[i] for i in m.I) <= m.K)
    m.flops = pyo.Constraint(
        expr=sum(c[g] * sum(m.z[i] for i in range(ptr[g], ptr[g + 1])) for g in m.G
                 if ptr[g + 1] > ptr[g]) <= m.F
    )
    return m
