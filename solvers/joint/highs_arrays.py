"""HiGHS through highspy, built from arrays in one ``passModel`` (no modelling layer).

The model is the per-item ILP of :mod:`pruneopt.formulations.joint.problem`, over the items of
each layer in decreasing score order (a permutation within layers, so the same program):

    maximize σ Σ s_i x_i   s.t.   Σ x_i ≤ K',   Σ (c_g / u) x_i ≤ F' / u,   x ∈ {0,1}

HiGHS runs at zero relative and absolute gap. Two measured facts shape the call:

* On 1e5 binaries HiGHS 1.13.1 does not finish even the root LP of this two-row model within
  60 s (its dual simplex slows down superlinearly with the number of boxed columns). So by
  default (``fixing=True``) the items that reduced-cost fixing settles (see
  :mod:`pruneopt.solvers.joint.reduced_cost`, against the exact LP dual and FALCON's selection) are
  fixed before the model is built; K' and F' are what they leave, and HiGHS proves the core.
  Every solution better than the incumbent respects the fixings, so the optimum is
  max(incumbent, fixed part + core optimum). ``fixing=False`` passes the whole model.
* Scores are scaled to order one around the LP threshold and integer costs divided by their gcd
  (:mod:`pruneopt.solvers.scaling`).

HiGHS gets the time left when the core is built (the clock of the solve: presort, LP dual and
fixing count). With a time limit, cores above ``GUARD_ITEMS`` items are solved in a worker
process that is ended shortly after the deadline (:mod:`pruneopt.solvers.deadline`); the
incumbent (FALCON's selection, improved by exchange moves) and the LP bound are then returned
with status ``time_limit``.

HiGHS may pick a non-prefix set inside a layer (ties, or an equally good choice); its per-layer
counts are turned back into the best prefix, which is never worse.
"""

from __future__ import annotations

import math

import numpy as np

from pruneopt.solvers.backends import highspy as highspy_adapter
from pruneopt.solvers.backends.common import unscale
from pruneopt.solvers.constants import Status
from pruneopt.solvers.deadline import Clock, call_guarded
from pruneopt.solvers.fast.joint.falcon import greedy_fill
from pruneopt.solvers.fast.joint.lagrangian import solve_dual
from pruneopt.solvers.fast.joint.sorted_layers import SortedLayers
from pruneopt.solvers.joint.polish import improve_counts
from pruneopt.solvers.joint.reduced_cost import fixing_windows, full_windows
from pruneopt.solvers.scaling import integer_cost_divisor, score_scale_at_threshold

# Cores above this many items run in a guarded worker process when a time limit is set: on the
# core of 18,499 items left by a ResNet-20 instance, HiGHS 1.13.1 spent 6.5 s in the root's cut
# separation under a 2 s limit without looking at the clock (measured, issue 15).
GUARD_ITEMS = 2000


def solve_core(values: list[np.ndarray], costs: np.ndarray, K: int, F: float, *, score_scale: float,
               cost_unit: float, time_limit: float | None, threads: int | None,
               seed: int) -> dict:
    """Solve max Σ σ v x over per-layer item lists ``values`` with HiGHS at zero gap.

    Returns a dict with ``counts`` (items kept per layer, or None), ``bound`` (on Σ v x, unscaled),
    ``status`` (a finalize status word), ``nodes`` and ``message``.
    """
    import highspy

    sizes = np.array([v.size for v in values], dtype=np.int64)
    n = int(sizes.sum())
    if n == 0:
        return {"counts": np.zeros(len(values), dtype=np.int64), "bound": 0.0,
                "status": Status.OPTIMAL, "nodes": 0, "message": "empty core"}
    obj = np.concatenate(values) * score_scale
    col_cost = np.repeat(costs / cost_unit, sizes)

    lp = highspy.HighsLp()
    lp.num_col_ = n
    lp.num_row_ = 2
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.col_cost_ = obj
    lp.col_lower_ = np.zeros(n)
    lp.col_upper_ = np.ones(n)
    lp.row_lower_ = np.full(2, -highspy.kHighsInf)
    lp.row_upper_ = np.array([float(K), F / cost_unit])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.arange(0, 2 * n + 1, 2, dtype=np.int32)
    lp.a_matrix_.index_ = np.tile(np.array([0, 1], dtype=np.int32), n)
    coef = np.empty(2 * n)
    coef[0::2] = 1.0
    coef[1::2] = col_cost
    lp.a_matrix_.value_ = coef
    lp.integrality_ = [highspy.HighsVarType.kInteger] * n
    run = highspy_adapter.run(lp, time_limit=time_limit, threads=threads, seed=seed)
    counts = None
    if run.has_solution:
        col = run.values > 0.5
        csum = np.concatenate(([0], np.cumsum(col, dtype=np.int64)))
        ptr = np.concatenate(([0], np.cumsum(sizes)))
        counts = csum[ptr[1:]] - csum[ptr[:-1]]
    return _core_answer(run, counts, score_scale)


def _core_answer(run, counts, score_scale: float) -> dict:
    return {"counts": counts, "bound": unscale(run.bound, score_scale), "status": run.status,
            "nodes": run.nodes, "message": run.message}


def solve_core_counts(values: list[np.ndarray], costs: np.ndarray, K: int, F: float, *,
                      score_scale: float, cost_unit: float, time_limit: float | None,
                      threads: int | None, seed: int) -> dict:
    """The same core in count space: one integer count per layer, profits by tangent rows.

        maximize    Σ_g y_g
        subject to  Σ_g t_g ≤ K',   Σ_g (c_g/u) t_g ≤ F'/u,
                    y_g ≤ Q_g(j) + v_{g,j+1} (t_g − j)     for j = 0 .. w_g − 1
                    t_g ∈ {0, .., w_g} integer

    with v_{g,j} the j-th best (σ-scaled) value of layer g's window and Q_g(j) their prefix sums.
    Q_g is concave, so at an integer t_g the tightest tangent row gives y_g = Q_g(t_g) exactly; the
    LP relaxation equals the per-item one, but branching splits a count instead of choosing among
    near-identical items (the per-item core of 316 items did not close a 3e-8 gap in 60 s).
    """
    import highspy

    keep = [g for g, v in enumerate(values) if v.size]
    L = len(values)
    if not keep:
        return {"counts": np.zeros(L, dtype=np.int64), "bound": 0.0, "status": Status.OPTIMAL,
                "nodes": 0, "message": "empty core"}
    m = len(keep)
    w = np.array([values[g].size for g in keep], dtype=np.int64)
    v = np.concatenate([values[g] for g in keep]) * score_scale  # slopes, layer by layer
    q = np.concatenate([np.concatenate(([0.0], np.cumsum(values[g][:-1] * score_scale)))
                        for g in keep])  # Q_g(j) for j = 0 .. w_g − 1
    j = np.concatenate([np.arange(n, dtype=np.float64) for n in w.tolist()])
    layer_of_row = np.repeat(np.arange(m), w)
    n_tan = int(w.sum())

    # columns: t_0..t_{m-1}, then y_0..y_{m-1}; rows: nnz, flops, then the tangent rows (CSR)
    lp = highspy.HighsLp()
    lp.num_col_ = 2 * m
    lp.num_row_ = 2 + n_tan
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.col_cost_ = np.concatenate((np.zeros(m), np.ones(m)))
    lp.col_lower_ = np.zeros(2 * m)
    lp.col_upper_ = np.concatenate((w.astype(np.float64), np.full(m, highspy.kHighsInf)))
    lp.row_lower_ = np.full(2 + n_tan, -highspy.kHighsInf)
    lp.row_upper_ = np.concatenate(([float(K), F / cost_unit], q - v * j))
    start = np.concatenate(([0, m, 2 * m], 2 * m + 2 * np.arange(1, n_tan + 1)))
    index = np.empty(2 * m + 2 * n_tan, dtype=np.int32)
    value = np.empty(2 * m + 2 * n_tan)
    index[:m], value[:m] = np.arange(m), 1.0
    index[m:2 * m], value[m:2 * m] = np.arange(m), costs[keep] / cost_unit
    index[2 * m::2], value[2 * m::2] = layer_of_row, -v  # −v t_g
    index[2 * m + 1::2], value[2 * m + 1::2] = m + layer_of_row, 1.0  # + y_g
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.start_ = start.astype(np.int32)
    lp.a_matrix_.index_ = index
    lp.a_matrix_.value_ = value
    lp.integrality_ = ([highspy.HighsVarType.kInteger] * m
                       + [highspy.HighsVarType.kContinuous] * m)
    run = highspy_adapter.run(lp, time_limit=time_limit, threads=threads, seed=seed)
    counts = None
    if run.has_solution:
        t = np.rint(run.values[:m]).astype(np.int64)
        counts = np.zeros(L, dtype=np.int64)
        counts[keep] = np.clip(t, 0, w)
    return _core_answer(run, counts, score_scale)


def highs_joint(problem, *, time_limit=None, fixing=True, model="counts", threads=None, seed=0,
                score_scale=None):
    """Solve the joint ILP with HiGHS at zero gap; returns (x, bound, status, info)."""
    clock = Clock(time_limit)
    layers = SortedLayers(problem.scores, problem.group_ptr, problem.flop_cost)
    K, F = problem.nnz_budget, problem.flop_budget
    dual = solve_dual(layers, K, F)
    k_inc = greedy_fill(layers, dual.counts, dual.lam, K, F)
    # a better incumbent shrinks the dual gap and with it the core left by the fixing
    k_inc, _ = improve_counts(layers, k_inc, K, F, deadline=clock.deadline)
    z_inc = float(np.sum(layers.prefix(k_inc)))
    win = (fixing_windows(layers, dual.lam, dual.omega, K, F, z_inc) if fixing
           else full_windows(layers))
    fixed_value = float(np.sum(layers.prefix(win.lo)))
    K_core = K - int(win.lo.sum())
    F_core = F - float(win.lo @ layers.cost)
    values = [-layers.neg[a + lo:a + hi] for a, lo, hi in
              zip(layers.start.tolist(), win.lo.tolist(), win.hi.tolist())]

    sigma = float(score_scale) if score_scale is not None else score_scale_at_threshold(
        layers, dual.lam, dual.omega, mask=win.hi > win.lo)
    unit = integer_cost_divisor(layers.cost)
    if model not in ("counts", "items"):
        raise ValueError(f"model: must be 'counts' or 'items', got {model!r}")
    core_solver = solve_core_counts if model == "counts" else solve_core
    if K_core < 0 or F_core < -1e-9 * max(1.0, F):
        core = {"counts": None, "bound": -math.inf, "status": Status.INFEASIBLE, "nodes": 0,
                "message": "the fixed items alone exceed a budget"}
    else:
        kwargs = dict(values=values, costs=layers.cost, K=K_core, F=max(F_core, 0.0),
                      score_scale=sigma, cost_unit=unit, time_limit=clock.backend_limit(),
                      threads=threads, seed=seed)
        # large models can overrun HiGHS's own time limit: guard it from outside
        core = call_guarded(core_solver, kwargs, clock, win.core_size > GUARD_ITEMS,
                            lambda exc: {"counts": None, "bound": math.inf,
                                         "status": Status.TIME_LIMIT, "nodes": -1,
                                         "message": str(exc)})
    status = core["status"]
    if status == Status.INFEASIBLE:
        # No selection respects the fixings, so none beats the incumbent: it is optimal.
        status, core["bound"] = Status.OPTIMAL, -math.inf

    k_best, z_best = k_inc, z_inc
    if core["counts"] is not None:
        k_core = win.lo + core["counts"]
        z_core = float(np.sum(layers.prefix(k_core)))
        feasible = k_core.sum() <= K and float(k_core @ layers.cost) <= F * (1 + 1e-12)
        if feasible and z_core > z_best:
            k_best, z_best = k_core, z_core
    # the optimum is max(incumbent, fixed part + core optimum), so this bounds it
    bound = max(z_inc, fixed_value + core["bound"]) if fixing else core["bound"]
    bound = min(bound, dual.bound) if math.isfinite(dual.bound) else bound
    refuted = ""
    k_pol, moves = improve_counts(layers, k_best, K, F, deadline=clock.deadline)
    z_pol = float(np.sum(layers.prefix(k_pol)))
    if moves and z_pol > z_best:
        refuted = (f"HiGHS's answer was improved by {moves} exchange move(s) "
                   f"(+{z_pol - z_best:.3g}): its tolerances hid small scores; not proven")
        k_best, z_best = k_pol, z_pol
        status = Status.FEASIBLE if status == Status.OPTIMAL else status
    if bound < z_best - 1e-12 * abs(z_best):
        bound = dual.bound  # HiGHS's bound is contradicted; the exact LP bound is valid
    info = {"model": model, "core_items": win.core_size, "fixed_to_one": int(win.lo.sum()),
            "items": problem.num_items, "nodes": core["nodes"], "score_scale": sigma,
            "cost_unit": unit,
            "highs_status": core["message"] + (f"; {refuted}" if refuted else "")}
    x = layers.select(problem.scores, k_best)
    return x, bound, status, info
