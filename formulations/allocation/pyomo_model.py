"""Pyomo declaration of the layer budget allocation (multiple-choice knapsack).

    minimize    σ Σ_{(g,j)∈O} e_{gj} y_{gj}                                  (m.loss)
    subject to  Σ_{j∈J_g} y_{gj} = 1              g ∈ G                      (m.one_option)
                Σ_{(g,j)∈O} n_{gj} y_{gj} ≤ K                                (m.nnz_budget)
                Σ_{(g,j)∈O} (f_{gj}/u) y_{gj} ≤ F/u                          (m.flop_budget)
                y_{gj} ∈ {0, 1}                   (g,j) ∈ O                  (m.y)

G = layers, J_g = the options of layer g, O = {(g, j)} all options. σ (``loss_scale``) rescales
the objective for floating-point solvers and u (``cost_unit``) divides MACs by a common factor
(exact when it divides them all). With ``shift_losses`` the objective is written as
σ Σ_g ē_g + σ Σ (e_{gj} − ē_g) y_{gj}, ē_g = min_j e_{gj}: the same function on every feasible y
(each layer contributes exactly one option), with coefficients that measure differences between
a layer's options. An absent budget (K = -1 or F = inf) is declared as a skipped constraint.
Built with plain Pyomo components so that ``model.pprint()`` and an LP export read as above.
"""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo


def build_pyomo(problem, loss_scale: float = 1.0, cost_unit: float = 1.0,
                shift_losses: bool = False) -> pyo.ConcreteModel:
    if not (loss_scale > 0) or not (cost_unit > 0):
        raise ValueError("loss_scale and cost_unit must be > 0")
    L = problem.num_layers
    ptr = problem.option_ptr
    sizes = problem.option_counts.tolist()
    pairs = [(g, j) for g in range(L) for j in range(sizes[g])]
    base = (np.minimum.reduceat(problem.loss, ptr[:-1]) if shift_losses
            else np.zeros(L))
    shifted = problem.loss - np.repeat(base, problem.option_counts)
    e = dict(zip(pairs, (shifted * loss_scale).tolist()))
    n = dict(zip(pairs, problem.nnz.tolist()))
    f = dict(zip(pairs, (problem.flops / cost_unit).tolist()))

    m = pyo.ConcreteModel(name="layer budget allocation (multiple-choice knapsack)")
    m.G = pyo.RangeSet(0, L - 1, doc="layers")
    m.O = pyo.Set(initialize=pairs, dimen=2, ordered=True, doc="options (g, j)")
    m.K = pyo.Param(initialize=problem.nnz_budget, doc="NNZ budget (-1: none)")
    m.F = pyo.Param(initialize=problem.flop_budget / cost_unit,
                    doc="FLOP budget (MACs / cost_unit; inf: none)")

    m.y = pyo.Var(m.O, within=pyo.Binary, doc="1 = layer g takes option j")

    constant = float(loss_scale * np.sum(base))
    m.loss = pyo.Objective(
        expr=constant + sum(e[g, j] * m.y[g, j] for (g, j) in m.O), sense=pyo.minimize,
        doc="estimated loss increase (times loss_scale)",
    )
    m.one_option = pyo.Constraint(
        m.G, rule=lambda m, g: sum(m.y[g, j] for j in range(sizes[g])) == 1,
        doc="exactly one option per layer",
    )
    def budget_row(coef: dict, limit, present: bool):
        def rule(m):
            if not present:
                return pyo.Constraint.Skip
            terms = [(c, m.y[gj]) for gj, c in coef.items() if c != 0]
            if not terms:  # all coefficients 0: met by every y (Pyomo refuses constant rows)
                return pyo.Constraint.Feasible
            return sum(c * v for c, v in terms) <= limit
        return rule

    m.nnz_budget = pyo.Constraint(rule=budget_row(n, m.K, problem.has_nnz_budget),
                                  doc="weights kept <= K")
    m.flop_budget = pyo.Constraint(rule=budget_row(f, m.F, problem.has_flop_budget),
                                   doc="MACs kept <= F")
    return m
