"""The allocation as highspy arrays, solved at zero gap after reduced-cost fixing.

The model is the multiple-choice knapsack of :mod:`pruneopt.formulations.allocation.problem`
over the options kept (``highs_mckp``), built from arrays (column-wise, one ``passModel``) with
losses shifted per layer and scaled to order one (:func:`pruneopt.solvers.scaling.loss_scale`)
and integer MACs divided by their gcd; it runs on the highspy adapter
(:mod:`pruneopt.solvers.backends.highspy`) with the incumbent as a MIP start.
:func:`highs_allocation` fixes by reduced costs against the LP dual and an incumbent and
proves the core; its answer is checked by :func:`pruneopt.solvers.allocation.polish.check_answer`.
"""

from __future__ import annotations

import math
import time

import numpy as np

from pruneopt.solvers import scaling
from pruneopt.solvers.allocation.polish import (
    EPS,
    check_answer,
    choice_of,
    fast_incumbent,
    lp_dual,
)
from pruneopt.solvers.backends import highspy as highspy_adapter
from pruneopt.solvers.constants import Status


def highs_mckp(problem, keep: np.ndarray, *, time_limit, threads, seed, loss_scale,
               start: np.ndarray | None, rc_row: tuple | None = None) -> dict:
    """min Σ e y over the kept options (bool[n]) with HiGHS at zero gap, built from arrays.

        minimize σ Σ (e − ē_g) y   s.t.  Σ_{j kept} y_gj = 1,  Σ n y ≤ K,  Σ (f/u) y ≤ F/u,
                                         [Σ (r/Δ) y ≤ 1 + 1e-9],  y ∈ {0,1}

    ē_g = the smallest kept loss of layer g; u = gcd of integer MACs (then F/u is floored: exact).
    ``rc_row`` = (r, Δ) adds the reduced-cost row: with D the LP dual value and U an incumbent's
    objective, every choice of objective ≤ U has Σ r y ≤ Σ e y − D ≤ U − D = Δ (see
    :func:`highs_allocation`), so the row removes only choices worse than U (coefficients below
    1e-9 are left out, which only loosens it). It is implied by the objective and the budgets
    together, but as an explicit row HiGHS derives cuts from it (the proof on 100 × 50 ran up to
    2x faster).
    Returns flat chosen indices (or None), the bound on Σ e y, a status word and HiGHS's numbers.
    """
    import highspy

    from pruneopt.formulations.allocation.problem import integer_budget

    cols = np.flatnonzero(keep)
    L = problem.num_layers
    layer = problem.layer_of_option[cols]
    e = problem.loss[cols]
    base = np.full(L, np.inf)
    np.minimum.at(base, layer, e)
    shifted = e - base[layer]
    sigma = float(loss_scale) if loss_scale is not None else scaling.loss_scale(shifted)
    rows_extra = []
    if problem.has_nnz_budget:
        rows_extra.append(("nnz", problem.nnz[cols].astype(np.float64), float(problem.nnz_budget)))
    unit = 1.0
    if problem.has_flop_budget:
        unit, integral = scaling.integer_cost_unit(problem.flops)
        upper = (float(integer_budget(problem.flop_budget / unit)) if integral
                 else problem.flop_budget)
        rows_extra.append(("flops", problem.flops[cols] / unit, upper))
    if rc_row is not None:
        r, delta = rc_row
        coef_r = np.maximum(r[cols], 0.0) / delta
        rows_extra.append(("reduced_cost", np.where(coef_r >= 1e-9, coef_r, 0.0), 1.0 + 1e-9))
    m = cols.size
    # column-wise matrix: each column has its layer row and its nonzero budget coefficients
    coef = [np.ones(m)] + [vals for _, vals, _ in rows_extra]
    rows = [layer.astype(np.int32)] + [np.full(m, L + k, dtype=np.int32)
                                       for k in range(len(rows_extra))]
    coef_m = np.stack(coef, axis=1)
    rows_m = np.stack(rows, axis=1)
    nz = coef_m != 0
    lp = highspy.HighsLp()
    lp.num_col_ = m
    lp.num_row_ = L + len(rows_extra)
    lp.sense_ = highspy.ObjSense.kMinimize
    lp.col_cost_ = shifted * sigma
    lp.col_lower_ = np.zeros(m)
    lp.col_upper_ = np.ones(m)
    lp.row_lower_ = np.concatenate((np.ones(L), np.full(len(rows_extra), -highspy.kHighsInf)))
    lp.row_upper_ = np.concatenate((np.ones(L), [u for _, _, u in rows_extra]))
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.concatenate(([0], np.cumsum(nz.sum(axis=1)))).astype(np.int32)
    lp.a_matrix_.index_ = rows_m[nz].astype(np.int32)
    lp.a_matrix_.value_ = coef_m[nz]
    lp.integrality_ = [highspy.HighsVarType.kInteger] * m
    run = highspy_adapter.run(lp, time_limit=time_limit, threads=threads, seed=seed,
                              options=HIGHS_OPTIONS,
                              start=None if start is None else np.isin(cols, start))
    idx = None
    if run.has_solution:
        val = run.values
        # the largest value of each layer (robust to values like 0.9999999)
        order = np.lexsort((-val, layer))
        first = np.ones(m, dtype=bool)
        first[1:] = layer[order][1:] != layer[order][:-1]
        idx = cols[order[first]]
    raw = run.bound
    offset = float(np.sum(base))
    bound = offset + raw / sigma if math.isfinite(raw) else -math.inf
    rounding = 4 * EPS * (abs(offset) + abs(raw / sigma)) if math.isfinite(raw) else 0.0
    return {"idx": idx, "bound": bound, "rounding": rounding, "status": run.status,
            "nodes": run.nodes, "loss_scale": sigma, "cost_unit": unit, "columns": m,
            "message": run.message}


# Measured on 100 layers × 50 options (HiGHS 1.13.1, the core after fixing, an incumbent given):
# restarts and the root heuristics (feasibility jump, RINS, RENS) cost 0.1-1 s per solve and find
# nothing better than the start; without them the proofs ran 2-4x faster. They do not affect
# exactness (zero gap either way).
HIGHS_OPTIONS = {"mip_allow_restart": False, "mip_heuristic_effort": 0.0,
                 "mip_heuristic_run_feasibility_jump": False, "mip_heuristic_run_rins": False,
                 "mip_heuristic_run_rens": False}


# Before the proof, HiGHS solves the cores of these fractions of the gap U − D: each is small and
# fast and often improves the incumbent, which shrinks the core that the proof must search.
LADDER = (0.05, 0.25)


def highs_allocation(problem, *, time_limit=None, fixing=True, threads=None, seed=0,
                     loss_scale=None):
    """Solve with HiGHS at zero gap; returns (choice, bound, status, message, info).

    With ``fixing`` (the default) the LP dual D = D(λ, ω) and an incumbent of value U fix every
    option with D + r_gj > U (+ 1e-12 of the dual's magnitude) to 0, r being the reduced costs of
    :func:`~pruneopt.solvers.fast.allocation.hull.reduced_costs`: any choice using such an option
    costs at least D + r_gj > U. The optimum is then min(U, the optimum over the remaining core),
    and min(U, HiGHS's bound on the core) bounds it. The incumbent is the fast solver's choice,
    improved first by HiGHS on the (heuristic) cores r ≤ t·(U − D) for t in ``LADDER``.
    """
    start_time = time.perf_counter()

    def left():
        return None if time_limit is None else max(
            time_limit - (time.perf_counter() - start_time), 1e-3)

    data, dual, rc = lp_dual(problem)
    if not dual.feasible:
        return None, math.inf, Status.INFEASIBLE, "the LP relaxation is infeasible", {
            "lp_bound": math.inf}
    inc, z_inc = fast_incumbent(data, dual, rc)
    info = {"lp_bound": dual.bound, "fast_objective": z_inc, "options": problem.num_options,
            "stages": []}
    if inc is not None and dual.bound >= z_inc:
        info.update(core_options=0, nodes=0)
        inc, bound, status, msg = check_answer(
            data, dual, None, inc, dual.bound, Status.OPTIMAL,
            "the LP bound meets the incumbent: no search needed")
        return choice_of(problem, inc), bound, status, msg, info
    keep = np.ones(problem.num_options, dtype=bool)
    fixed = bool(fixing and inc is not None)
    if fixed:
        magnitude = (float(np.sum(np.abs(np.minimum.reduceat(
            data.loss + dual.lam * data.nnz + dual.omega * data.flops, data.start))))
            + (dual.lam * data.K if dual.lam > 0 else 0.0)
            + (dual.omega * data.F if dual.omega > 0 else 0.0))
        slack = 1e-12 * magnitude
        for t in LADDER:
            trial = dual.bound + rc <= dual.bound + t * (z_inc - dual.bound)
            trial[inc] = True
            if trial.sum() >= (dual.bound + rc <= z_inc + slack).sum():
                break  # as large as the proof's core: go straight to the proof
            stage = highs_mckp(problem, trial, time_limit=left(), threads=threads, seed=seed,
                               loss_scale=loss_scale, start=inc)
            info["stages"].append({"fraction": t, "options": int(trial.sum()),
                                   "nodes": stage["nodes"]})
            if stage["idx"] is not None:
                zs = float(np.sum(data.loss[stage["idx"]]))
                _, N, Fu = data.usage(stage["idx"])
                if data.fits(N, Fu) and zs < z_inc:
                    inc, z_inc = stage["idx"], zs
            if dual.bound >= z_inc:
                break
        keep = dual.bound + rc <= z_inc + slack
        keep[inc] = True
    rc_row = None
    if fixed and z_inc - dual.bound > 1e-9 * max(abs(z_inc), abs(dual.bound)):
        rc_row = (rc, z_inc - dual.bound + 2 * slack)
    core = highs_mckp(problem, keep, time_limit=left(), threads=threads, seed=seed,
                      loss_scale=loss_scale, start=inc, rc_row=rc_row)
    info.update(incumbent=z_inc, core_options=int(keep.sum()), nodes=core["nodes"],
                loss_scale=core["loss_scale"], cost_unit=core["cost_unit"],
                highs_status=core["message"])
    status = core["status"]
    if status == Status.INFEASIBLE:
        if not fixed:
            return None, math.inf, Status.INFEASIBLE, f"HiGHS: {core['message']}", info
        # nothing in the core respects the fixings, so nothing beats the incumbent
        status, core["bound"], core["idx"], core["rounding"] = Status.OPTIMAL, z_inc, None, 0.0
    idx, z = inc, z_inc
    if core["idx"] is not None:
        zc = float(np.sum(data.loss[core["idx"]]))
        _, N, Fu = data.usage(core["idx"])
        if data.fits(N, Fu) and zc < z:
            idx, z = core["idx"], zc
    bound = min(z_inc, core["bound"]) if fixed else core["bound"]
    scope = (f"core of {int(keep.sum())} of {problem.num_options} options after reduced-cost "
             "fixing" if fixed else f"all {problem.num_options} options")
    msg = f"{scope}; HiGHS: {core['message']}, {core['nodes']} nodes"
    idx, bound, status, msg = check_answer(data, dual, rc, idx, bound, status, msg,
                                           rounding=core.get("rounding", 0.0))
    return choice_of(problem, idx), bound, status, msg, info

