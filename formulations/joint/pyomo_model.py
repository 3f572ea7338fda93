"""Pyomo declaration of the joint FLOP/NNZ ILP.

    maximize    Σ_{i∈I} s_i x_i                              (m.score)
    subject to  Σ_{i∈I} x_i                     ≤ K          (m.nnz)
                Σ_{g∈G} c_g Σ_{i∈I_g} x_i       ≤ F          (m.flops)
                x_i ∈ {0, 1}                    i ∈ I        (m.x)

I = items, G = layers, I_g = the items of layer g. Built with plain Pyomo components so that
``model.pprint()`` and an LP export show the program as written here.
"""

from __future__ import annotations

import pyomo.environ as pyo


def build_pyomo(problem, score_scale: float = 1.0, cost_unit: float = 1.0) -> pyo.ConcreteModel:
    if not (score_scale > 0) or not (cost_unit > 0):
        raise ValueError("score_scale and cost_unit must be > 0")
    p, L = problem.num_items, problem.num_groups
    ptr = problem.group_ptr.tolist()
    s = (problem.scores * score_scale).tolist()
    c = (problem.flop_cost / cost_unit).tolist()

    m = pyo.ConcreteModel(name="joint FLOP/NNZ selection")
    m.I = pyo.RangeSet(0, p - 1, doc="items (prunable weights)")
    m.G = pyo.RangeSet(0, L - 1, doc="layers")
    m.K = pyo.Param(initialize=problem.nnz_budget, doc="NNZ budget")
    m.F = pyo.Param(initialize=problem.flop_budget / cost_unit, doc="FLOP budget (MACs / cost_unit)")

    m.x = pyo.Var(m.I, within=pyo.Binary, doc="1 = keep item i")

    m.score = pyo.Objective(
        expr=sum(s[i] * m.x[i] for i in m.I), sense=pyo.maximize, doc="kept importance"
    )
    if p == 0:  # no items: both rows are trivially met (Pyomo refuses constant constraints)
        m.nnz = pyo.Constraint(rule=lambda m: pyo.Constraint.Feasible)
        m.flops = pyo.Constraint(rule=lambda m: pyo.Constraint.Feasible)
        return m
    m.nnz = pyo.Constraint(expr=sum(m.x[i] for i in m.I) <= m.K)
    m.flops = pyo.Constraint(
        expr=sum(c[g] * sum(m.x[i] for i in range(ptr[g], ptr[g + 1])) for g in m.G) <= m.F
    )
    return m
