"""OR-Tools CP-SAT declaration of the layer budget allocation, with integerised data.

    minimize    Σ_{g,j} ê_{gj} y_{gj}        ê_{gj} = round(σ · (e_{gj} − ē_g)),  ē_g = min_j e_{gj}
    subject to  Σ_j y_{gj} = 1               for each layer g        (add_exactly_one)
                Σ n_{gj} y_{gj}  ≤ K                                  (omitted when K = -1)
                Σ f̂_{gj} y_{gj}  ≤ F̂        f̂ = u · f,  F̂ = ⌊u · F⌋   (omitted when F = inf)
                y ∈ {0, 1}

CP-SAT needs integer coefficients. NNZ are integers already. MACs are integers (u = 1) or
decimals made integral by the smallest u = 10^k, k ≤ 6 (:func:`integer_unit`); with integer
f̂ the FLOP row is equivalent to the original one (⌊·⌋ allows a 1e-12 relative slack for a
budget that float arithmetic put just below an integer, well inside the 1e-9 checker tolerance).

Losses are shifted per layer by ē_g (exact: each layer contributes exactly one option, so the
objective changes by the constant C = Σ_g ē_g) and scaled by σ, the largest power of two with
σ · Σ_g max_j (e_{gj} − ē_g) ≤ 2^50 (every objective value fits comfortably in int64; a power of
two scales every float exactly, so that losses with few significant bits — integers, quarters —
are integerised without any rounding error), then rounded. With the rounding error
r_{gj} = (e_{gj} − ē_g) − ê_{gj}/σ (|r| ≤ 1/(2σ) up to float rounding), every feasible y has

    Σ e y = C + Σ ê y / σ + Σ r y ≥ C + B̂/σ + Σ_g min_j r_{gj},

where B̂ ≤ Σ ê y is CP-SAT's bound on the integer objective. The right-hand side is what the
solver reports as its bound (a valid lower bound: the last sum is the exact minimum of Σ r y over
all one-option-per-layer choices); the true objective is recomputed from y.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

from pruneopt.formulations.allocation.problem import integer_budget, integer_unit

LOSS_RESOLUTION = 2.0**50


@dataclass(frozen=True, eq=False)
class CpsatScaling:
    loss_scale: float  # σ
    loss_offset: float  # C = Σ_g ē_g
    cost_unit: float  # u
    integer_losses: np.ndarray  # ê
    rounding_error: np.ndarray  # r = (e − ē) − ê/σ
    bound_correction: float  # Σ_g min_j r_gj (≤ 0 up to float rounding)


def build_cpsat(problem, loss_scale: float | None = None):
    """Return ``(model, y, scaling)``: the CP-SAT model, its option variables and the scaling."""
    ptr = problem.option_ptr
    base = np.minimum.reduceat(problem.loss, ptr[:-1])
    shifted = problem.loss - np.repeat(base, problem.option_counts)
    spread = float(np.sum(np.maximum.reduceat(shifted, ptr[:-1])))
    sigma = float(loss_scale) if loss_scale is not None else (
        2.0 ** math.floor(math.log2(LOSS_RESOLUTION / spread)) if spread > 0 else 1.0)
    if not sigma > 0 or not math.isfinite(sigma):
        raise ValueError("loss_scale must be a positive finite number")
    e_int = np.rint(shifted * sigma).astype(np.int64)
    err = shifted - e_int / sigma

    u = integer_unit(problem.flops) if problem.has_flop_budget else 1.0
    model = cp_model.CpModel()
    model.name = "layer budget allocation (multiple-choice knapsack)"
    y = [model.new_bool_var(f"y[{g},{j}]") for g, size in enumerate(problem.option_counts.tolist())
         for j in range(size)]
    bounds = ptr.tolist()
    for g in range(problem.num_layers):
        model.add_exactly_one(y[bounds[g]:bounds[g + 1]]).with_name(f"one_option[{g}]")
    if problem.has_nnz_budget:
        model.add(cp_model.LinearExpr.weighted_sum(y, problem.nnz.tolist())
                  <= problem.nnz_budget).with_name("nnz_budget")
    if problem.has_flop_budget:
        f_int = np.rint(problem.flops * u).astype(np.int64)
        model.add(cp_model.LinearExpr.weighted_sum(y, f_int.tolist())
                  <= integer_budget(problem.flop_budget * u)).with_name("flop_budget")
    model.minimize(cp_model.LinearExpr.weighted_sum(y, e_int.tolist()))
    correction = float(np.sum(np.minimum.reduceat(err, ptr[:-1])))
    return model, y, CpsatScaling(loss_scale=sigma, loss_offset=float(np.sum(base)),
                                  cost_unit=u, integer_losses=e_int, rounding_error=err,
                                  bound_correction=correction)
