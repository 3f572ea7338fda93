"""OR-Tools CP-SAT declaration of structured channel selection, over integer counts.

    maximize    Σ_g v[g]
    subject to  v[g] = V̂_g[k[g]]                 (element: V̂_g(k) = round(σ·V_g(k)))
                prod[p] = k[g]·k[h]              p = (g,h) coupled pair   (multiplication equality)
                sq[g]   = k[g]·k[g]              g with a self-edge
                Σ_g b̂_g k[g] + Σ_g â_gg sq[g] + Σ_p â_p prod[p]  ≤  F̂
                m_g u[b] ≤ k[g] ≤ n_g u[b]       g in block b        (collapse)
                k[g] ∈ {m_g..n_g}                g in no block;  k[g] ∈ {0} ∪ {m_g..n_g} in a block

**Integer MACs.** CP-SAT needs integer coefficients. Every MAC coefficient (a, b and c₀) is made
integral by the smallest u = 10^j, j ≤ 6 (u = 1 for MAC counts, which are integers), and the
row is divided by d = gcd of the integral coefficients of the variables (exact):
â = u·a/d, b̂ = u·b/d and F̂ = ⌊(u·F − u·c₀)/d⌋ (with a 1e-9 relative allowance for the float
budget, the tolerance of the feasibility check). Since the left side is an integer, the row is
equivalent to FLOPs(k) ≤ F.

**Integer values.** V_g is integerised as V̂_g(k) = round(σ·V_g(k)) with σ = 2^50 / U, where U
is ``value_cap`` — a proven upper bound on the optimum (the solver passes the fast Lagrangian
bound) — or Σ_g V_g(n_g) without one. A count with V_g(k) > U is in no feasible solution (every
V ≥ 0, so such a solution would be worth more than U), so it is removed from k[g]'s domain; every
table entry left is ≤ 2^50 and every objective value fits in int64. Scaling by U rather than by
the total keeps a small optimum resolved (with σ from the total, an optimum of 1e-6 among scores
summing to 1e2 was off by 4e-7 relative). With the rounding error
ε_g(k) = V_g(k) − V̂_g(k)/σ, |ε| ≤ 1/(2σ), every feasible k satisfies

    Σ_g V_g(k_g) = Σ_g V̂_g(k_g)/σ + Σ_g ε_g(k_g) ≤ B̂/σ + Σ_g max_k max(ε_g(k), 0),

where B̂ is CP-SAT's bound on the integer objective. Every V̂ ≥ 0, so a count with
V̂_g(k) > B̂ is in no feasible solution and only the counts with V̂_g(k) ≤ B̂ enter the last sum
(:meth:`ChannelCpsatScaling.correction`; an optimum of 0 is then proven with a bound of exactly
0). That corrected value is the bound the solver reports; the true objective is recomputed from x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

from pruneopt.formulations.joint.cpsat_model import integer_cost_unit

VALUE_RESOLUTION = 2.0**50


@dataclass(frozen=True, eq=False)
class ChannelCpsatScaling:
    score_scale: float  # σ
    value_cap: float  # U (the counts worth more are removed)
    cost_unit: float  # u (10^j)
    cost_divisor: int  # d (gcd of the integral coefficients)
    flop_rhs: int  # F̂
    value_correction: float  # Σ_g max_k max(ε_g(k), 0) over the allowed counts
    u_vars: tuple = ()  # the block variables u[b]
    integer_values: tuple = ()  # per group: V̂_g over its allowed counts (int64)
    rounding_error: tuple = ()  # per group: ε_g over its allowed counts

    def correction(self, integer_bound: float) -> float:
        """Σ_g max{max(ε_g(k), 0) : k allowed, V̂_g(k) ≤ B̂} (see the module docstring)."""
        cap = np.floor(integer_bound + 1e-6)
        total = 0.0
        for vh, err in zip(self.integer_values, self.rounding_error, strict=True):
            possible = vh <= cap
            if possible.any():
                total += max(float(np.max(np.where(possible, err, 0.0))), 0.0)
        return total


def integer_flop_row(problem) -> tuple[float, int, np.ndarray, np.ndarray, np.ndarray, int]:
    """(u, d, b̂ int64[G], â_pair int64[P], â_self int64[G], F̂): the FLOP row in integers."""
    coefs = np.concatenate((problem.linear_coef, problem.pair_coef, problem.self_coef,
                            [problem.const]))
    u = integer_cost_unit(coefs)
    scaled = np.rint(coefs * u)
    if np.any(scaled > 2.0**62):
        raise ValueError("MAC coefficients too large for CP-SAT's int64")
    ints = scaled.astype(np.int64)
    var_part = ints[:-1]
    nz = var_part[var_part != 0]
    d = math.gcd(*nz.tolist()) if nz.size else 1
    d = max(d, 1)
    G, P = problem.num_groups, problem.pairs.shape[0]
    b_hat = ints[:G] // d
    a_pair = ints[G:G + P] // d
    a_self = ints[G + P:G + P + G] // d
    rhs = (problem.flop_budget * u - float(ints[-1])) / d
    f_hat = math.floor(rhs + 1e-9 * max(1.0, abs(rhs)))
    return u, d, b_hat, a_pair, a_self, f_hat


def build_cpsat(problem, score_scale: float | None = None, value_cap: float | None = None):
    """Return ``(model, k, scaling)``: the CP-SAT model, its count variables and the scaling.

    ``value_cap`` must be a valid upper bound on the optimum (or None)."""
    G = problem.num_groups
    n = problem.group_sizes.tolist()
    total = float(sum(problem.value_table(g)[-1] for g in range(G)))
    cap = total if value_cap is None or not np.isfinite(value_cap) else min(float(value_cap),
                                                                               total)
    sigma = float(score_scale) if score_scale is not None else (
        VALUE_RESOLUTION / cap if cap > 0 else 1.0)
    if not sigma > 0:
        raise ValueError("score_scale must be > 0")
    u, d, b_hat, a_pair, a_self, f_hat = integer_flop_row(problem)

    model = cp_model.CpModel()
    model.name = "structured channel selection (integer counts)"
    k, v, correction, vhs, errs = [], [], 0.0, [], []
    limit = cap * (1.0 + 1e-9)
    for g in range(G):
        table = problem.value_table(g)
        allowed = problem.allowed_counts(g)
        allowed = allowed[table[allowed] <= limit]  # worth more than the cap: infeasible
        if allowed.size == 0:  # every count of g beats the cap: the cap was not a bound
            raise ValueError("value_cap: below the value of every allowed count of a group")
        k.append(model.new_int_var_from_domain(cp_model.Domain.from_values(allowed.tolist()),
                                               f"k[{g}]"))
        v_hat = np.zeros(table.size, dtype=np.int64)
        v_hat[allowed] = np.rint(table[allowed] * sigma).astype(np.int64)
        err = table[allowed] - v_hat[allowed] / sigma
        correction += max(float(err.max()), 0.0)
        vhs.append(v_hat[allowed])
        errs.append(err)
        vg = model.new_int_var(0, int(v_hat.max()), f"v[{g}]")
        model.add_element(k[g], v_hat.tolist(), vg)
        v.append(vg)
    u_vars = []
    for bb in range(problem.num_blocks):
        ub = model.new_bool_var(f"u[{bb}]")
        u_vars.append(ub)
        for g in problem.block_members(bb).tolist():
            model.add(k[g] <= n[g] * ub).with_name(f"block_upper[{bb},{g}]")
            model.add(k[g] >= int(problem.min_keep[g]) * ub).with_name(f"block_lower[{bb},{g}]")
    terms, coefs = [], []
    for g in range(G):
        if b_hat[g]:
            terms.append(k[g])
            coefs.append(int(b_hat[g]))
        if a_self[g]:
            sq = model.new_int_var(0, n[g] * n[g], f"sq[{g}]")
            model.add_multiplication_equality(sq, [k[g], k[g]])
            terms.append(sq)
            coefs.append(int(a_self[g]))
    for p, (g, h) in enumerate(problem.pairs.tolist()):
        if a_pair[p]:
            prod = model.new_int_var(0, n[g] * n[h], f"prod[{g},{h}]")
            model.add_multiplication_equality(prod, [k[g], k[h]])
            terms.append(prod)
            coefs.append(int(a_pair[p]))
    if terms:
        model.add(cp_model.LinearExpr.weighted_sum(terms, coefs) <= f_hat).with_name("flops")
    elif f_hat < 0:
        model.add_bool_or([]).with_name("flops")  # c₀ > F: no decision fits
    model.maximize(cp_model.LinearExpr.sum(v))
    scaling = ChannelCpsatScaling(score_scale=sigma, value_cap=cap, cost_unit=u,
                                  cost_divisor=int(d),
                                  flop_rhs=int(f_hat), value_correction=correction,
                                  u_vars=tuple(u_vars), integer_values=tuple(vhs),
                                  rounding_error=tuple(errs))
    return model, k, scaling
