"""OR-Tools CP-SAT declaration of the joint FLOP/NNZ ILP, with integerised data.

    maximize    Σ_i ŝ_i x_i                  ŝ_i = round(σ · s_i)            (integer scores)
    subject to  Σ_i x_i             ≤ K
                Σ_i ĉ_{g(i)} x_i    ≤ F̂     ĉ_g = u · c_g,  F̂ = ⌊u · F⌋     (integer costs)
                x ∈ {0, 1}^p

CP-SAT needs integer coefficients. Costs are MACs, so they are integers already (u = 1) or
decimals made integral by the smallest u = 10^k, k ≤ 6; with integer ĉ the FLOP row is
equivalent to the original one. Scores are scaled by σ = 2^50 / Σ_i s_i (so every objective value
fits comfortably in int64) and rounded; the rounding error per item is
e_i = s_i − ŝ_i/σ, |e_i| ≤ 1/(2σ). For any feasible x,

    Σ_i s_i x_i = Σ_i ŝ_i x_i / σ + Σ_i e_i x_i ≤ B̂/σ + max_{x feasible} Σ_i max(e_i, 0) x_i,

where B̂ is CP-SAT's bound on the integer objective. The last term is bounded by any LP
relaxation of the same budgets with scores max(e, 0) (the solver uses the smaller of the NNZ-row
and FLOP-row relaxations: it is 0 when only the empty selection fits). Since every ŝ_i ≥ 0, an
item with ŝ_i > B̂ is in no feasible x, so only items with ŝ_i ≤ B̂ enter that term (an optimum
of 0 is then proven with a bound of exactly 0). That corrected value is what the solver reports
as its bound, and the true objective is recomputed from x.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

SCORE_RESOLUTION = 2.0**50


@dataclass(frozen=True, eq=False)
class CpsatScaling:
    score_scale: float  # σ
    cost_unit: float  # u
    integer_scores: np.ndarray  # ŝ_i
    rounding_error: np.ndarray  # e_i = s_i − ŝ_i / σ


def integer_cost_unit(costs: np.ndarray, max_digits: int = 6) -> float:
    """Smallest u = 10^k (k ≤ max_digits) making every u·c integral (to 1e-9 relative)."""
    for k in range(max_digits + 1):
        u = 10.0**k
        scaled = costs * u
        if np.all(np.abs(scaled - np.rint(scaled)) <= 1e-9 * np.maximum(1.0, scaled)):
            return u
    raise ValueError(
        "flop_cost: CP-SAT needs integer MAC costs (or decimals with at most "
        f"{max_digits} digits); got e.g. {float(costs[0])!r}"
    )


def build_cpsat(problem, score_scale: float | None = None):
    """Return ``(model, x, scaling)``: the CP-SAT model, its item variables and the scaling."""
    s = problem.scores
    total = float(s.sum())
    sigma = float(score_scale) if score_scale is not None else (
        SCORE_RESOLUTION / total if total > 0 else 1.0
    )
    if not sigma > 0:
        raise ValueError("score_scale must be > 0")
    s_int = np.rint(s * sigma).astype(np.int64)
    err = s - s_int / sigma

    u = integer_cost_unit(problem.flop_cost)
    c_int = np.rint(problem.flop_cost * u).astype(np.int64)
    f_scaled = problem.flop_budget * u
    f_int = int(np.floor(f_scaled + 1e-9 * max(1.0, f_scaled)))
    item_c = np.repeat(c_int, problem.group_sizes)

    model = cp_model.CpModel()
    model.name = "joint FLOP/NNZ selection"
    x = [model.new_bool_var(f"x[{i}]") for i in range(s.size)]
    model.add(cp_model.LinearExpr.sum(x) <= problem.nnz_budget).with_name("nnz")
    model.add(cp_model.LinearExpr.weighted_sum(x, item_c.tolist()) <= f_int).with_name("flops")
    model.maximize(cp_model.LinearExpr.weighted_sum(x, s_int.tolist()))
    return model, x, CpsatScaling(score_scale=sigma, cost_unit=u, integer_scores=s_int,
                                  rounding_error=err)
