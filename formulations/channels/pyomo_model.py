"""Pyomo declarations of structured channel selection: P1 (layered graph) and P1′ (McCormick).

Notation: groups g ∈ G with n_g channels, K_g = the counts group g may take (m_g..n_g, plus 0 in
a collapsible block), V_g(k) = the sum of the k largest scores of g (scaled by σ, ``score_scale``),
coupled pairs p = (g, h) ∈ P (the edges with parallel and reversed ones merged, coefficient a_p),
self-edges folded into a_gg, blocks b ∈ B with member groups G_b. MAC coefficients and the budget
are divided by one common unit u (``cost_unit``), which keeps them integers when u divides them.

**P1 — layered-graph MILP** (:func:`build_layered`):

    maximize    Σ_g Σ_{k∈K_g} V_g(k) y[g,k]                                        (m.value)
    subject to  Σ_{k∈K_g} y[g,k] = 1                          g ∈ G                 (m.one_count)
                Σ_{j∈K_h} e[p,i,j] = y[g,i]                    p = (g,h), i ∈ K_g    (m.edge_left)
                Σ_{i∈K_g} e[p,i,j] = y[h,j]                    p = (g,h), j ∈ K_h    (m.edge_right)
                c₀ + Σ_g Σ_k (b_g k + a_gg k²) y[g,k]
                   + Σ_p a_p Σ_{i,j} i·j·e[p,i,j]  ≤  F                              (m.flops)
                y[g,0] = 1 − u[b]   (y[g,0] ≥ 1 − u[b] when m_g = 0)   g ∈ G_b      (m.collapse)
                y binary, u binary, e ≥ 0 continuous

y[g,k] = 1 says "group g keeps k channels"; e[p,·,·] is a joint distribution of the two counts
with marginals y[g,·] and y[h,·], integral whenever y is, so Σ i·j·e = k_g k_h. The edge
variables may stay continuous. Size: Σ_p |K_g|·|K_h| edge variables — fine for groups of 16–64
channels (ResNet-56: about 1e5), too many for 2048-channel groups (use the fast algorithm).

**P1′ — McCormick form** (:func:`build_mccormick`), with integer counts:

    maximize    Σ_g v[g]                                                             (m.value)
    subject to  v[g] ≤ V_g(j) + (V_g(j+1) − V_g(j))·(k[g] − j)   j = 0..n_g−1         (m.value_cut)
                k[g] = Σ_t 2^t β[g,t]                          g expanded    (m.binary_expansion)
                ρ[p,t] ≤ n_h β[g,t],  ρ[p,t] ≤ k[h],  ρ[p,t] ≥ k[h] − n_h (1 − β[g,t])
                                                               p = (g,h), t          (m.rho_*)
                c₀ + Σ_g b_g k[g] + Σ_p a_p Σ_t 2^t ρ[p,t] ≤ F                       (m.flops)
                m_g u[b] ≤ k[g] ≤ n_g u[b]                    g ∈ G_b               (m.block_*)
                m_g ≤ k[g] ≤ n_g  (bounds)                    g in no block
                k integer, β, u binary, ρ ≥ 0

V_g is concave (scores sorted decreasingly), so at an integer k the cuts give v[g] = V_g(k)
exactly. ρ[p,t] = β[g,t]·k[h] is exact for binary β (McCormick is exact when one factor is
binary), so k_g k_h = Σ_t 2^t ρ[p,t]. Each pair expands the side with fewer bits; a self-edge
(g, g) expands g and multiplies by k[g] itself.
"""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo


def _check(score_scale: float, cost_unit: float) -> None:
    if not (score_scale > 0) or not (cost_unit > 0):
        raise ValueError("score_scale and cost_unit must be > 0")


def _flop_row(flops, m) -> pyo.Constraint:
    """FLOPs(k) ≤ F; a row without variables (no costs) is met or refused here."""
    from pyomo.core.expr.visitor import identify_variables

    if isinstance(flops, int | float) or not any(True for _ in identify_variables(flops)):
        if pyo.value(flops) > pyo.value(m.F):
            raise ValueError("flop_budget: below the constant FLOPs c0: the problem is infeasible")
        return pyo.Constraint(rule=lambda m: pyo.Constraint.Skip, doc="FLOPs(k) ≤ F (no costs)")
    return pyo.Constraint(expr=flops <= m.F, doc="FLOPs(k) ≤ F")


def build_layered(problem, score_scale: float = 1.0, cost_unit: float = 1.0,
                  bounds=None) -> pyo.ConcreteModel:
    """P1: the layered-graph MILP (see the module docstring). ``bounds = (lo, hi)``: count
    windows, only the counts lo_g..hi_g are declared (a problem without collapsible blocks)."""
    _check(score_scale, cost_unit)
    G = problem.num_groups
    allowed = {g: problem.allowed_counts(g).tolist() for g in range(G)}
    if bounds is not None:
        if problem.num_blocks:
            raise ValueError("bounds: count windows need a problem without collapsible blocks")
        allowed = {g: [k for k in ks if int(bounds[0][g]) <= k <= int(bounds[1][g])]
                   for g, ks in allowed.items()}
    V = {g: (problem.value_table(g) * score_scale).tolist() for g in range(G)}
    b = (problem.linear_coef / cost_unit).tolist()
    aself = (problem.self_coef / cost_unit).tolist()
    pairs = problem.pairs.tolist()
    apair = (problem.pair_coef / cost_unit).tolist()

    m = pyo.ConcreteModel(name="structured channel selection (P1, layered graph)")
    m.G = pyo.RangeSet(0, G - 1, doc="channel groups")
    m.GK = pyo.Set(dimen=2, initialize=[(g, k) for g in range(G) for k in allowed[g]],
                   doc="(group, allowed count)")
    m.PIJ = pyo.Set(dimen=3, initialize=[(p, i, j) for p, (g, h) in enumerate(pairs)
                                         for i in allowed[g] for j in allowed[h]],
                    doc="(pair, count of g, count of h)")
    m.B = pyo.Set(initialize=range(problem.num_blocks), doc="collapsible blocks")
    m.F = pyo.Param(initialize=problem.flop_budget / cost_unit, doc="FLOP budget / cost_unit")
    m.c0 = pyo.Param(initialize=problem.const / cost_unit, doc="constant MACs / cost_unit")

    m.y = pyo.Var(m.GK, within=pyo.Binary, doc="1 = group g keeps k channels")
    m.e = pyo.Var(m.PIJ, within=pyo.NonNegativeReals, bounds=(0, 1),
                  doc="joint count indicator of a coupled pair")
    m.u = pyo.Var(m.B, within=pyo.Binary, doc="1 = keep collapsible block b")

    m.value = pyo.Objective(expr=sum(V[g][k] * m.y[g, k] for (g, k) in m.GK), sense=pyo.maximize,
                            doc="Σ_g V_g(k_g): kept importance")
    m.one_count = pyo.Constraint(m.G, rule=lambda m, g: sum(m.y[g, k] for k in allowed[g]) == 1)

    def edge_left(m, p, i):
        g, h = pairs[p]
        return sum(m.e[p, i, j] for j in allowed[h]) == m.y[g, i]

    def edge_right(m, p, j):
        g, h = pairs[p]
        return sum(m.e[p, i, j] for i in allowed[g]) == m.y[h, j]

    m.edge_left = pyo.Constraint(pyo.Set(dimen=2, initialize=[
        (p, i) for p, (g, _) in enumerate(pairs) for i in allowed[g]]), rule=edge_left)
    m.edge_right = pyo.Constraint(pyo.Set(dimen=2, initialize=[
        (p, j) for p, (_, h) in enumerate(pairs) for j in allowed[h]]), rule=edge_right)

    flops = m.c0 + sum((b[g] * k + aself[g] * k * k) * m.y[g, k] for (g, k) in m.GK
                       if b[g] * k + aself[g] * k * k != 0)
    flops = flops + sum(apair[p] * i * j * m.e[p, i, j] for (p, i, j) in m.PIJ
                        if apair[p] * i * j != 0)
    m.flops = _flop_row(flops, m)

    members = [(int(problem.blocks[g]), g) for g in range(G) if problem.blocks[g] >= 0]

    def collapse(m, bb, g):
        if problem.min_keep[g] > 0:
            return m.y[g, 0] == 1 - m.u[bb]
        return m.y[g, 0] >= 1 - m.u[bb]

    m.collapse = pyo.Constraint(pyo.Set(dimen=2, initialize=members), rule=collapse,
                                doc="u_b = 0 empties the block; u_b = 1 enforces min-keep")
    return m


def expanded_side(problem, span=None) -> list[tuple[int, int]]:
    """For each coupled pair (g, h): (expanded group, multiplied group), fewer bits expanded
    (bits of n_g, or of the window width hi_g − lo_g when ``span`` is given)."""
    n = problem.group_sizes if span is None else span
    out = []
    for g, h in problem.pairs.tolist():
        out.append((g, h) if int(n[g]).bit_length() <= int(n[h]).bit_length() else (h, g))
    return out


def build_mccormick(problem, score_scale: float = 1.0, cost_unit: float = 1.0,
                    bounds=None) -> pyo.ConcreteModel:
    """P1′: integer counts with binary expansions and McCormick products (module docstring).

    ``bounds = (lo, hi)``: count windows lo_g ≤ k_g ≤ hi_g (a problem without collapsible
    blocks). The expansion is then of k_g − lo_g (bits of hi_g − lo_g), k_g k_h = lo_g k_h +
    Σ_t 2^t ρ[p,t], and the McCormick rows use lo_h, hi_h — exact for binary β as before; only
    the value cuts j = lo_g..hi_g − 1 are declared (the others hold at every count in the
    window)."""
    _check(score_scale, cost_unit)
    G = problem.num_groups
    n = problem.group_sizes.tolist()
    mk = problem.min_keep.tolist()
    blk = problem.blocks.tolist()
    if bounds is not None:
        if problem.num_blocks:
            raise ValueError("bounds: count windows need a problem without collapsible blocks")
        lo = [int(v) for v in bounds[0]]
        hi = [int(v) for v in bounds[1]]
        if any(a < m_ or a > b or b > nn for a, b, m_, nn in zip(lo, hi, mk, n, strict=True)):
            raise ValueError("bounds: need min_keep <= lo <= hi <= n per group")
    else:
        lo, hi = [0] * G, list(n)
    span = [b - a for a, b in zip(lo, hi, strict=True)]
    V = {g: (problem.value_table(g) * score_scale).tolist() for g in range(G)}
    b = (problem.linear_coef / cost_unit).tolist()
    # products: coupled pairs (expanded, multiplied) and self-edges (g, g)
    prods = expanded_side(problem, None if bounds is None else np.asarray(span))
    pcoef = (problem.pair_coef / cost_unit).tolist()
    for g in np.flatnonzero(problem.self_coef > 0).tolist():
        prods.append((g, g))
        pcoef.append(float(problem.self_coef[g]) / cost_unit)
    if bounds is None:
        bits = {g: max(int(n[g]).bit_length(), 1) for g in range(G)}
    else:
        bits = {g: int(span[g]).bit_length() for g in range(G)}
    expanded = sorted({g for g, _ in prods if bits[g] > 0})

    def pieces(g):
        if bounds is None:
            return range(n[g])
        first = min(lo[g], n[g] - 1)
        return range(first, max(first + 1, hi[g]))

    m = pyo.ConcreteModel(name="structured channel selection (P1', McCormick)")
    m.G = pyo.RangeSet(0, G - 1, doc="channel groups")
    m.B = pyo.Set(initialize=range(problem.num_blocks), doc="collapsible blocks")
    m.GT = pyo.Set(dimen=2, initialize=[(g, t) for g in expanded for t in range(bits[g])],
                   doc="(expanded group, bit)")
    m.PT = pyo.Set(dimen=2, initialize=[(p, t) for p, (g, _) in enumerate(prods)
                                        for t in range(bits[g])], doc="(product, bit)")
    m.GJ = pyo.Set(dimen=2, initialize=[(g, j) for g in range(G) for j in pieces(g)],
                   doc="(group, linear piece of V_g)")
    m.F = pyo.Param(initialize=problem.flop_budget / cost_unit, doc="FLOP budget / cost_unit")
    m.c0 = pyo.Param(initialize=problem.const / cost_unit, doc="constant MACs / cost_unit")

    def k_bounds(m, g):
        if bounds is not None:
            return (lo[g], hi[g])
        return (0 if blk[g] >= 0 else mk[g], n[g])

    m.k = pyo.Var(m.G, within=pyo.NonNegativeIntegers, bounds=k_bounds, doc="kept channels")
    m.v = pyo.Var(m.G, within=pyo.Reals, bounds=lambda m, g: (0, V[g][n[g]]),
                  doc="V_g(k_g), scaled")
    m.u = pyo.Var(m.B, within=pyo.Binary, doc="1 = keep collapsible block b")
    m.beta = pyo.Var(m.GT, within=pyo.Binary, doc="bit t of k_g − lo_g")
    m.rho = pyo.Var(m.PT, within=pyo.NonNegativeReals, doc="β[g,t]·k[h]")

    m.value = pyo.Objective(expr=sum(m.v[g] for g in m.G), sense=pyo.maximize,
                            doc="Σ_g V_g(k_g): kept importance")
    m.value_cut = pyo.Constraint(m.GJ, rule=lambda m, g, j: m.v[g] <= V[g][j] + (
        V[g][j + 1] - V[g][j]) * (m.k[g] - j), doc="V_g is concave: v ≤ each linear piece")
    m.binary_expansion = pyo.Constraint(
        expanded, rule=lambda m, g: m.k[g] == lo[g] + sum(2**t * m.beta[g, t]
                                                          for t in range(bits[g])))

    def rho_le_beta(m, p, t):
        g, h = prods[p]
        return m.rho[p, t] <= hi[h] * m.beta[g, t]

    def rho_le_k(m, p, t):
        g, h = prods[p]
        return m.rho[p, t] <= m.k[h] - lo[h] * (1 - m.beta[g, t])

    def rho_ge(m, p, t):
        g, h = prods[p]
        return m.rho[p, t] >= m.k[h] - hi[h] * (1 - m.beta[g, t])

    def rho_ge_lo(m, p, t):
        g, h = prods[p]
        if lo[h] == 0:
            return pyo.Constraint.Skip
        return m.rho[p, t] >= lo[h] * m.beta[g, t]

    m.rho_le_beta = pyo.Constraint(m.PT, rule=rho_le_beta)
    m.rho_le_k = pyo.Constraint(m.PT, rule=rho_le_k)
    m.rho_ge = pyo.Constraint(m.PT, rule=rho_ge)
    m.rho_ge_lo = pyo.Constraint(m.PT, rule=rho_ge_lo)

    flops = m.c0 + sum(b[g] * m.k[g] for g in m.G if b[g] != 0)
    flops = flops + sum(pcoef[p] * lo[prods[p][0]] * m.k[prods[p][1]]
                        for p in range(len(prods)) if pcoef[p] != 0 and lo[prods[p][0]])
    flops = flops + sum(pcoef[p] * 2**t * m.rho[p, t] for (p, t) in m.PT if pcoef[p] != 0)
    m.flops = _flop_row(flops, m)

    members = [(blk[g], g) for g in range(G) if blk[g] >= 0]
    m.block_upper = pyo.Constraint(pyo.Set(dimen=2, initialize=members),
                                   rule=lambda m, bb, g: m.k[g] <= n[g] * m.u[bb])
    m.block_lower = pyo.Constraint(pyo.Set(dimen=2, initialize=members),
                                   rule=lambda m, bb, g: m.k[g] >= mk[g] * m.u[bb])
    return m


def counts_from_layered(model, problem) -> np.ndarray:
    """k_g read from a solved layered model (the count with the largest y[g,·])."""
    k = np.zeros(problem.num_groups, dtype=np.int64)
    best = np.full(problem.num_groups, -2.0)
    for g, c in model.GK:  # the declared counts (all allowed ones, or the windows)
        val = model.y[g, c].value
        val = -1.0 if val is None else float(val)
        if val > best[g]:
            best[g], k[g] = val, c
    return k


def counts_from_mccormick(model, problem) -> np.ndarray:
    """k_g read from a solved McCormick model (rounded)."""
    vals = [model.k[g].value for g in range(problem.num_groups)]
    return np.array([0 if v is None else int(round(float(v))) for v in vals], dtype=np.int64)
