"""Registration of every solver of the layer budget allocation (imported lazily by the registry).

| name        | kind      | what it is                                                      |
|-------------|-----------|-----------------------------------------------------------------|
| pyomo-highs | exact     | the readable Pyomo model (losses shifted, scaled), HiGHS, 0 gap |
| highs       | exact     | highspy from arrays, reduced-cost fixing, zero gap              |
| cpsat       | exact     | CP-SAT on integerised losses, bound corrected for rounding      |
| dp          | exact     | DP over integer budgets (1-D, or 2-D when small); else refuses  |
| exact       | exact     | dp when its state space is small, else highs                    |
| fast        | fast      | Lagrangian dual over convex hulls (= LP bound), rounding, moves |
| uniform     | heuristic | the same option in every layer, the densest that fits           |

Every floating-point answer (HiGHS through either route) is checked with improving moves that
recompute losses in float64 (:func:`pruneopt.solvers.fast.allocation.hull.improve`): a move that
improves it refutes the backend's "optimal" (DESIGN §7). Every reported bound is at least the
LP dual value D(λ, ω) of :mod:`pruneopt.solvers.fast.allocation.hull`, which is valid by weak duality;
a backend bound that a returned choice contradicts is replaced by it.
"""

from __future__ import annotations

import math
import time

import numpy as np

from pruneopt.formulations.allocation.problem import AllocationProblem
from pruneopt.solvers.registry import SolverSpec, register
from pruneopt.solvers.result import finalize

ALLOCATION = AllocationProblem.kind
ZERO_GAP = {"mip_rel_gap": 0.0, "mip_abs_gap": 0.0}
MAX_SCALED_LOSS = 1e10  # no scaled loss coefficient may exceed this (HiGHS reads 1e20 as inf)
# ``exact`` runs the DP when it needs at most this many cell updates (about 0.2 s), else HiGHS
EXACT_DP_CELLS = 50_000_000


def _numpy_version() -> str:
    return np.__version__


# ------------------------------------------------------------------------------- shared pieces
def _dual(problem):
    from pruneopt.solvers.fast.allocation.hull import MckpData, reduced_costs, solve_dual

    data = MckpData.from_problem(problem)
    dual = solve_dual(data)
    rc = reduced_costs(data, dual.lam, dual.omega) if dual.feasible else None
    return data, dual, rc


def _incumbent(data, dual, rc):
    """The fast solver's choice (flat indices) from an already solved dual, or None."""
    from pruneopt.solvers.fast.allocation.hull import improve, repair

    best, best_e = None, math.inf
    for cand in dual.candidates[-4:] + dual.candidates[:1]:
        fixed = repair(data, cand)
        if fixed is None:
            continue
        fixed, _ = improve(data, fixed, rc)
        e = float(np.sum(data.loss[fixed]))
        if e < best_e:
            best, best_e = fixed, e
    return best, best_e


def loss_scale_for(shifted: np.ndarray) -> float:
    """σ = 1 / median of the positive per-layer-shifted losses, clamped so that σ·max ≤ 1e10:
    the differences a solver must weigh become order one (DESIGN §7)."""
    pos = shifted[shifted > 0]
    if pos.size == 0:
        return 1.0
    return float(min(1.0 / np.median(pos), MAX_SCALED_LOSS / pos.max()))


def _flop_unit(flops: np.ndarray) -> tuple[float, bool]:
    """(divisor, integral): the gcd of the MACs when all are integers (exact), else (1, False)."""
    from pruneopt.solvers.scaling import integer_cost_divisor

    integral = bool(flops.size == 0 or (np.all(flops == np.rint(flops))
                                        and float(flops.max()) < 2.0**53))
    unit = integer_cost_divisor(flops) if integral else 1.0
    return (unit if unit > 0 else 1.0), integral


EPS = np.finfo(np.float64).eps


def _check_answer(problem, data, dual, rc, idx, bound, status, message, rounding=0.0):
    """Improving moves on a float solver's answer; keep the bound only while no choice refutes it.

    The bound becomes at least the LP bound D(λ, ω). ``rounding`` is the float error of turning
    the backend's bound back into loss units (a few ulp of the terms added); a bound within it
    of the recomputed objective of a backend-proven optimum is that objective (this matters only
    when the objective is 0, where the relative gap cannot absorb one ulp). A bound above the
    objective by more than that is contradicted and replaced by D.

    Returns (choice flat indices, bound, status, message)."""
    from pruneopt.solvers.fast.allocation.hull import improve

    if idx is None:
        return idx, bound, status, message
    z = float(np.sum(data.loss[idx]))
    better, moves = improve(data, idx, rc)
    zb = float(np.sum(data.loss[better]))
    if moves and zb < z:
        message += (f"; improved by {moves} move(s) ({zb - z:.3g}): the solver's tolerances hid "
                    "small loss differences; its optimum is refuted")
        if status == "optimal":
            status = "feasible"
        idx, z = better, zb
    if dual is not None and dual.feasible:
        from pruneopt.solvers.fast.allocation.hull import dual_rounding

        bound = max(bound, dual.bound) if not math.isnan(bound) else dual.bound
        if z < dual.bound <= z + dual_rounding(data, dual.lam, dual.omega):
            bound = z  # D ≤ optimum ≤ z: D exceeds z only by its own rounding
    if status == "optimal" and abs(bound - z) <= rounding:
        bound = z
    elif bound > z + 1e-12 * abs(z) and dual is not None and dual.feasible:
        bound = dual.bound  # the solver's bound is contradicted; the LP bound is valid
    return idx, bound, status, message


def _choice(problem, idx):
    return None if idx is None else np.asarray(idx, dtype=np.int64) - problem.option_ptr[:-1]


# ------------------------------------------------------------------------------- highs (arrays)
def _highs_mckp(problem, keep: np.ndarray, *, time_limit, threads, seed, loss_scale,
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
    sigma = float(loss_scale) if loss_scale is not None else loss_scale_for(shifted)
    rows_extra = []
    if problem.has_nnz_budget:
        rows_extra.append(("nnz", problem.nnz[cols].astype(np.float64), float(problem.nnz_budget)))
    unit = 1.0
    if problem.has_flop_budget:
        unit, integral = _flop_unit(problem.flops)
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
    h, info, status = _run_highs_lp(lp, cols, start, time_limit=time_limit, threads=threads,
                                    seed=seed)
    idx = None
    if info.primal_solution_status == 2:
        val = np.asarray(h.getSolution().col_value)
        # the largest value of each layer (robust to values like 0.9999999)
        order = np.lexsort((-val, layer))
        first = np.ones(m, dtype=bool)
        first[1:] = layer[order][1:] != layer[order][:-1]
        idx = cols[order[first]]
    raw = info.mip_dual_bound
    offset = float(np.sum(base))
    bound = offset + raw / sigma if math.isfinite(raw) else -math.inf
    rounding = 4 * EPS * (abs(offset) + abs(raw / sigma)) if math.isfinite(raw) else 0.0
    return {"idx": idx, "bound": bound, "rounding": rounding, "status": status,
            "nodes": int(info.mip_node_count),
            "loss_scale": sigma, "cost_unit": unit, "columns": m,
            "message": h.modelStatusToString(h.getModelStatus())}


# Measured on 100 layers × 50 options (HiGHS 1.13.1, the core after fixing, an incumbent given):
# restarts and the root heuristics (feasibility jump, RINS, RENS) cost 0.1-1 s per solve and find
# nothing better than the start; without them the proofs ran 2-4x faster. They do not affect
# exactness (zero gap either way).
HIGHS_OPTIONS = {"mip_allow_restart": False, "mip_heuristic_effort": 0.0,
                 "mip_heuristic_run_feasibility_jump": False, "mip_heuristic_run_rins": False,
                 "mip_heuristic_run_rens": False}


def _run_highs_lp(lp, cols, start, *, time_limit, threads, seed):
    """passModel, zero gap, HIGHS_OPTIONS, the incumbent as a MIP start, run.

    Returns (highs, info, finalize status word)."""
    import highspy

    from pruneopt.solvers.joint.highs_arrays import _status_word

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.passModel(lp)
    for key, value in {**ZERO_GAP, **HIGHS_OPTIONS}.items():
        h.setOptionValue(key, value)
    h.setOptionValue("random_seed", int(seed))
    if time_limit is not None:
        h.setOptionValue("time_limit", float(max(time_limit, 1e-3)))
    if threads is not None:
        h.setOptionValue("threads", int(threads))
    if start is not None:
        sol = highspy.HighsSolution()
        sol.col_value = np.isin(cols, start).astype(np.float64).tolist()
        h.setSolution(sol)
    h.run()
    info = h.getInfo()
    return h, info, _status_word(h.getModelStatus(), info.primal_solution_status == 2)


# Before the proof, HiGHS solves the cores of these fractions of the gap U − D: each is small and
# fast and often improves the incumbent, which shrinks the core that the proof must search.
LADDER = (0.05, 0.25)


def highs_allocation(problem, *, time_limit=None, fixing=True, threads=None, seed=0,
                     loss_scale=None):
    """Solve with HiGHS at zero gap; returns (choice, bound, status, message, info).

    With ``fixing`` (the default) the LP dual D = D(λ, ω) and an incumbent of value U fix every
    option with D + r_gj > U (+ 1e-12 of the dual's magnitude) to 0, r being the reduced costs of
    :func:`~pruneopt.solvers.fast.allocation.hull.reduced_costs`: any choice using such an option costs
    at least D + r_gj > U. The optimum is then min(U, the optimum over the remaining core), and
    min(U, HiGHS's bound on the core) bounds it. The incumbent is the fast solver's choice,
    improved first by HiGHS on the (heuristic) cores r ≤ t·(U − D) for t in ``LADDER``.
    """
    start_time = time.perf_counter()

    def left():
        return None if time_limit is None else max(
            time_limit - (time.perf_counter() - start_time), 1e-3)

    data, dual, rc = _dual(problem)
    if not dual.feasible:
        return None, math.inf, "infeasible", "the LP relaxation is infeasible", {
            "lp_bound": math.inf}
    inc, z_inc = _incumbent(data, dual, rc)
    info = {"lp_bound": dual.bound, "fast_objective": z_inc, "options": problem.num_options,
            "stages": []}
    if inc is not None and dual.bound >= z_inc:
        info.update(core_options=0, nodes=0)
        inc, bound, status, msg = _check_answer(
            problem, data, dual, None, inc, dual.bound, "optimal",
            "the LP bound meets the incumbent: no search needed")
        return _choice(problem, inc), bound, status, msg, info
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
            stage = _highs_mckp(problem, trial, time_limit=left(), threads=threads, seed=seed,
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
    core = _highs_mckp(problem, keep, time_limit=left(), threads=threads, seed=seed,
                       loss_scale=loss_scale, start=inc, rc_row=rc_row)
    info.update(incumbent=z_inc, core_options=int(keep.sum()), nodes=core["nodes"],
                loss_scale=core["loss_scale"], cost_unit=core["cost_unit"],
                highs_status=core["message"])
    status = core["status"]
    if status == "infeasible":
        if not fixed:
            return None, math.inf, "infeasible", f"HiGHS: {core['message']}", info
        # nothing in the core respects the fixings, so nothing beats the incumbent
        status, core["bound"], core["idx"], core["rounding"] = "optimal", z_inc, None, 0.0
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
    idx, bound, status, msg = _check_answer(problem, data, dual, rc, idx, bound, status, msg,
                                            rounding=core.get("rounding", 0.0))
    return _choice(problem, idx), bound, status, msg, info


def _run_highs(problem, *, time_limit=None, fixing=True, threads=None, seed=0, loss_scale=None):
    from pruneopt.solvers.joint.highs_arrays import highs_version

    x, bound, status, msg, info = highs_allocation(
        problem, time_limit=time_limit, fixing=bool(fixing), threads=threads, seed=seed,
        loss_scale=loss_scale)
    opts = {**ZERO_GAP, "fixing": bool(fixing), "threads": threads, "seed": seed,
            "loss_scale": info.get("loss_scale"), "cost_unit": info.get("cost_unit"),
            "time_limit": time_limit}
    return finalize(problem, solver="highs", x=x, bound=bound, backend_status=status,
                    backend="highspy", backend_version=highs_version(), options=opts,
                    message=msg, info=info)


# ------------------------------------------------------------------------------- pyomo-highs
def _pyomo_highs_solve(model, sizes, *, time_limit, threads, seed) -> dict:
    """Run HiGHS on the declared model (new Pyomo interface, no exception on a limit)."""
    from pyomo.contrib.solver.common.factory import SolverFactory
    from pyomo.contrib.solver.common.results import SolutionStatus, TerminationCondition

    opt = SolverFactory("highs")
    kwargs = dict(load_solutions=False, raise_exception_on_nonoptimal_result=False,
                  rel_gap=0.0, abs_gap=0.0, solver_options={"random_seed": int(seed)})
    if time_limit is not None:
        kwargs["time_limit"] = float(time_limit)
    if threads is not None:
        kwargs["threads"] = int(threads)
    res = opt.solve(model, **kwargs)
    tc = res.termination_condition
    has_solution = res.solution_status in (SolutionStatus.feasible, SolutionStatus.optimal)
    choice = None
    if has_solution:
        res.solution_loader.load_vars()
        choice = np.array([max(range(sizes[g]), key=lambda j: model.y[g, j].value or 0.0)
                           for g in range(len(sizes))], dtype=np.int64)
    if tc == TerminationCondition.convergenceCriteriaSatisfied:
        status = "optimal"
    elif tc in (TerminationCondition.provenInfeasible, TerminationCondition.locallyInfeasible):
        status = "infeasible"
    elif tc in (TerminationCondition.maxTimeLimit, TerminationCondition.iterationLimit,
                TerminationCondition.interrupted):
        status = "time_limit"
    else:
        status = "feasible" if has_solution else "error"
    bound = res.objective_bound
    return {"choice": choice, "bound": bound if bound is not None else -math.inf,
            "status": status, "message": str(tc.name)}


def _run_pyomo_highs(problem, *, time_limit=None, threads=None, seed=0, loss_scale=None):
    from pruneopt.solvers.joint.highs_arrays import highs_version
    from pruneopt.solvers.backends.pyomo_runner import pyomo_version

    data, dual, rc = _dual(problem)
    base = np.minimum.reduceat(problem.loss, problem.option_ptr[:-1])
    shifted = problem.loss - np.repeat(base, problem.option_counts)
    sigma = float(loss_scale) if loss_scale is not None else loss_scale_for(shifted)
    unit = _flop_unit(problem.flops)[0] if problem.has_flop_budget else 1.0
    opts = {**ZERO_GAP, "threads": threads, "seed": seed, "loss_scale": sigma,
            "cost_unit": unit, "shift_losses": True, "time_limit": time_limit}
    version = f"pyomo {pyomo_version()}, highs {highs_version()}"
    model = problem.to_pyomo(loss_scale=sigma, cost_unit=unit, shift_losses=True)
    raw = _pyomo_highs_solve(model, problem.option_counts.tolist(), time_limit=time_limit,
                             threads=threads, seed=seed)
    bound = raw["bound"] / sigma if math.isfinite(raw["bound"]) else raw["bound"]
    rounding = (4 * EPS * (abs(float(np.sum(base))) + abs(bound))
                if math.isfinite(bound) else 0.0)
    status, msg = raw["status"], raw["message"]
    idx = None if raw["choice"] is None else problem.option_ptr[:-1] + raw["choice"]
    if status == "infeasible":
        bound = math.inf
    else:
        idx, bound, status, msg = _check_answer(problem, data, dual, rc, idx, bound, status, msg,
                                                rounding=rounding)
    return finalize(problem, solver="pyomo-highs", x=_choice(problem, idx), bound=bound,
                    backend_status=status, backend="pyomo-highs", backend_version=version,
                    options=opts, message=msg, info={"lp_bound": dual.bound})


# ------------------------------------------------------------------------------- cpsat
def _run_cpsat(problem, *, time_limit=None, workers=None, seed=0, loss_scale=None):
    import os

    from ortools.sat.python import cp_model

    from pruneopt.solvers.backends.cpsat import ortools_version

    model, y, scaling = problem.to_cpsat(loss_scale=loss_scale)
    solver = cp_model.CpSolver()
    params = solver.parameters
    params.relative_gap_limit = 0.0
    params.absolute_gap_limit = 0.0
    params.random_seed = int(seed)
    params.num_workers = (int(workers) if workers is not None
                          else max(1, min(8, os.cpu_count() or 1)))
    if time_limit is not None:
        params.max_time_in_seconds = float(time_limit)
    code = solver.solve(model)
    has_solution = code in (cp_model.OPTIMAL, cp_model.FEASIBLE)
    x = None
    if has_solution:
        yb = np.array([solver.boolean_value(v) for v in y], dtype=bool)
        x = problem.canonical(yb)
    if code == cp_model.OPTIMAL:
        status = "optimal"
    elif code == cp_model.INFEASIBLE:
        status = "infeasible"
    elif code in (cp_model.FEASIBLE, cp_model.UNKNOWN):
        status = "time_limit" if time_limit is not None else ("feasible" if has_solution
                                                              else "error")
    else:
        status = "error"
    # Σ e y ≥ C + B̂/σ + Σ_g min_j r_gj (see allocation_cpsat); B̂ means something only once
    # CP-SAT has a solution
    if status == "infeasible":
        bound = math.inf
    elif has_solution:
        bound = (scaling.loss_offset + solver.best_objective_bound / scaling.loss_scale
                 + scaling.bound_correction)
    else:
        bound = -math.inf
    msg = solver.status_name(code)
    if status != "infeasible":  # the same answer check as for HiGHS (and the LP bound)
        data, dual, rc = _dual(problem)
        idx = None if x is None else problem.option_ptr[:-1] + x
        rounding = (4 * EPS * (abs(scaling.loss_offset) + abs(bound - scaling.loss_offset))
                    if math.isfinite(bound) else 0.0)
        idx, bound, status, msg = _check_answer(problem, data, dual, rc, idx, bound, status, msg,
                                                rounding=rounding)
        x = _choice(problem, idx)
    info = {"loss_scale": scaling.loss_scale, "loss_offset": scaling.loss_offset,
            "cost_unit": scaling.cost_unit, "bound_correction": scaling.bound_correction,
            "integer_objective": solver.objective_value if has_solution else None,
            "integer_bound": solver.best_objective_bound, "workers": params.num_workers}
    opts = {"relative_gap_limit": 0.0, "absolute_gap_limit": 0.0, "seed": seed,
            "num_workers": params.num_workers, "loss_scale": scaling.loss_scale,
            "cost_unit": scaling.cost_unit, "time_limit": time_limit}
    return finalize(problem, solver="cpsat", x=x, bound=bound, backend_status=status,
                    backend="ortools-cpsat", backend_version=ortools_version(), options=opts,
                    message=msg, info=info)


# ------------------------------------------------------------------------------- dp
def _dp_result(problem, solver: str, res, *, time_limit, options):
    """finalize a DpResult; on a time limit the fast solver's choice and bound are returned."""
    x, bound, status, msg = res.choice, res.value, res.status, res.info["plan"]
    if status == "optimal":
        z = problem.evaluate(x).objective
        chosen = problem.loss[problem.flat_index(x)]
        if abs(bound - z) <= 1e-12 * float(np.sum(np.abs(chosen))):
            bound = z  # the same sum in another order: the DP proved this choice optimal
    elif status == "infeasible":
        bound = math.inf
    elif status == "time_limit":
        from pruneopt.solvers.fast.allocation.hull import lagrangian_allocation

        fast = lagrangian_allocation(problem)
        x, bound = fast.choice, fast.bound
        msg += f"; stopped after {res.info.get('layers_done', 0)} layers: the fast solver's answer"
    return finalize(problem, solver=solver, x=x, bound=bound, backend_status=status,
                    backend="numpy", backend_version=_numpy_version(),
                    options={**options, "time_limit": time_limit}, message=msg, info=res.info)


def _run_dp(problem, *, time_limit=None, max_cells=None, max_table_bytes=None):
    from pruneopt.solvers.fast.allocation.dp import MAX_CELLS, MAX_TABLE_BYTES, solve_dp

    max_cells = int(max_cells) if max_cells is not None else MAX_CELLS
    max_table_bytes = int(max_table_bytes) if max_table_bytes is not None else MAX_TABLE_BYTES
    res = solve_dp(problem, time_limit=time_limit, max_cells=max_cells,
                   max_table_bytes=max_table_bytes)
    return _dp_result(problem, "dp", res, time_limit=time_limit,
                      options={"max_cells": max_cells, "max_table_bytes": max_table_bytes})


# ------------------------------------------------------------------------------- exact
def _run_exact(problem, *, time_limit=None, threads=None, seed=0):
    from pruneopt.solvers.fast.allocation.dp import plan_dp, solve_dp
    from pruneopt.solvers.joint.highs_arrays import highs_version

    plan = plan_dp(problem)
    if plan.kind in ("free", "infeasible") or (plan.kind in ("1d", "2d")
                                               and plan.cells <= EXACT_DP_CELLS):
        res = solve_dp(problem, plan, time_limit=time_limit)
        r = _dp_result(problem, "exact", res, time_limit=time_limit,
                       options={"method": "dp", "threads": threads, "seed": seed})
        return r.replace(message=f"dp: {r.message}")
    x, bound, status, msg, info = highs_allocation(problem, time_limit=time_limit,
                                                   threads=threads, seed=seed)
    if plan.kind in ("1d", "2d") or plan.cells:
        why = f"dp would need {plan.cells:.3g} cell updates"
    else:
        why = f"dp: {plan.reason}"
    opts = {**ZERO_GAP, "method": "highs", "fixing": True, "threads": threads, "seed": seed,
            "time_limit": time_limit}
    return finalize(problem, solver="exact", x=x, bound=bound, backend_status=status,
                    backend="highspy", backend_version=highs_version(), options=opts,
                    message=f"highs ({why}): {msg}", info=info)


# ------------------------------------------------------------------------------- fast, uniform
def _run_fast(problem, *, time_limit=None, pair_k=4):
    from pruneopt.solvers.fast.allocation.hull import lagrangian_allocation

    res = lagrangian_allocation(problem, pair_k=int(pair_k))
    msg = {"feasible": "LP dual bound over the convex hulls; rounded, repaired and improved choice",
           "infeasible": "the LP relaxation is infeasible: no choice meets the budgets",
           "error": res.info.get("message", "")}[res.status]
    return finalize(problem, solver="fast", x=res.choice, bound=res.bound,
                    backend_status=res.status, backend="numpy",
                    backend_version=_numpy_version(),
                    options={"pair_k": int(pair_k), "time_limit": time_limit}, message=msg,
                    info=res.info)


def single_row_bound(problem) -> float:
    """max(LP with the NNZ row only, LP with the FLOP row only): a valid lower bound
    (Σ_g min_j e_gj without budgets; +inf when one of them is infeasible)."""
    from pruneopt.solvers.fast.allocation.hull import MckpData, hull_lp

    data = MckpData.from_problem(problem)
    bound = float(np.sum(np.minimum.reduceat(data.loss, data.start)))
    for w, cap in ((data.nnz, data.K), (data.flops, data.F)):
        if math.isfinite(cap):
            lp = hull_lp(data.loss, w, cap, data)
            bound = max(bound, lp.value)
    return bound


def uniform_choice(problem) -> np.ndarray | None:
    """The same option in every layer — the same ``option_labels`` value, or the same index
    when the problem has no labels — the densest (most NNZ, then least loss) that meets both
    budgets; None when no such choice fits."""
    ptr, L = problem.option_ptr, problem.num_layers
    local = np.arange(problem.num_options) - np.repeat(ptr[:-1], problem.option_counts)
    key = problem.option_labels if problem.option_labels is not None else local.astype(float)
    best, best_key = None, None
    common = set(key[ptr[0]:ptr[1]].tolist())
    for g in range(1, L):
        common &= set(key[ptr[g]:ptr[g + 1]].tolist())
    for v in sorted(common):
        hit = np.flatnonzero(key == v)
        layer = problem.layer_of_option[hit]
        first = np.ones(hit.size, dtype=bool)
        first[1:] = layer[1:] != layer[:-1]
        choice = local[hit[first]]
        if not problem.is_feasible(choice):
            continue
        ev = problem.evaluate(choice)
        k = (ev.usage["nnz"], -ev.objective)
        if best_key is None or k > best_key:
            best, best_key = choice, k
    return best


def _run_uniform(problem, *, time_limit=None):
    x = uniform_choice(problem)
    bound = single_row_bound(problem)
    status = "feasible" if x is not None else ("infeasible" if math.isinf(bound) else "error")
    msg = ("heuristic; bound from single-row LP relaxations" if x is not None else
           "no uniform choice meets the budgets")
    return finalize(problem, solver="uniform", x=x, bound=bound, backend_status=status,
                    backend="numpy", backend_version=_numpy_version(),
                    options={"time_limit": time_limit}, message=msg)


def _register_all() -> None:
    register(SolverSpec("pyomo-highs", ALLOCATION, _run_pyomo_highs, exact=True,
                        description="Pyomo model, HiGHS at zero gap",
                        options=("threads", "seed", "loss_scale")))
    register(SolverSpec("highs", ALLOCATION, _run_highs, exact=True,
                        description="highspy from arrays, reduced-cost fixing, zero gap",
                        options=("fixing", "threads", "seed", "loss_scale")))
    register(SolverSpec("cpsat", ALLOCATION, _run_cpsat, exact=True,
                        description="OR-Tools CP-SAT on integerised losses, zero gap",
                        options=("workers", "seed", "loss_scale")))
    register(SolverSpec("dp", ALLOCATION, _run_dp, exact=True,
                        description="dynamic program over integer budgets; refuses when too large",
                        options=("max_cells", "max_table_bytes")))
    register(SolverSpec("exact", ALLOCATION, _run_exact, exact=True,
                        description="dp when its state space is small, else highs",
                        options=("threads", "seed")))
    register(SolverSpec("fast", ALLOCATION, _run_fast, exact=False,
                        description="Lagrangian dual over convex hulls (LP bound), rounding, moves",
                        options=("pair_k",)))
    register(SolverSpec("uniform", ALLOCATION, _run_uniform, exact=False,
                        description="the same option in every layer, the densest that fits"))


_register_all()
