"""Registration of the solvers of the full joint MIQP (a') (imported lazily by the registry).

    minimize Q(w) = ½ Σ_b ‖X_b(w_b − w̄_b)‖² + (λ/2)‖w − w̄‖² + aᵀ(w − w̄)
    s.t.     ‖w‖₀ ≤ K,  Σ_i c_{g(i)} 1[w_i ≠ 0] ≤ F

| name                | kind      | what it is                                                  |
|---------------------|-----------|-------------------------------------------------------------|
| enumerate           | exact     | every maximal feasible support, batched backsolves (p ≤ 22)   |
| oa-highs            | exact     | outer approximation, HiGHS MILP master at zero gap            |
| pyomo-scip          | exact     | the Pyomo MIQP, SCIP (``pip install pruneopt[scip]``)         |
| exact               | exact     | branch and bound on a certified Fenchel/knapsack dual bound   |
|                     |           | (fast/joint_qp/branch_and_bound.py, dual_bound.py): no MILP tolerance     |
| oa-exact            | exact     | the former ``exact``: enumerate for p ≤ 16, else oa-highs     |
| magnitude-backsolve | heuristic | joint ILP on w̄² (FALCON's "BS"), then the backsolve; no bound |

Every result goes through :func:`~pruneopt.solvers.result.finalize` (sense "minimize": the
bound is a *lower* bound). x is the weight vector w (float64[p]); its objective is recomputed
by ``problem.evaluate``. Every exact solver returns, as x, the backsolve on its final support
(:func:`~pruneopt.solvers.fast.joint_qp.backsolve.restricted_ridge`), whose Q is never above the
solver's own w on that support.

Status "infeasible" cannot occur: w = 0 meets both budgets (K, F ≥ 0), so every problem has a
feasible point and every solver returns at least that one. Time limits never raise: the best
w found is returned with the best valid lower bound and status ``time_limit`` (for
``enumerate``, whose partial scan proves nothing, the bound is then the unconstrained
minimum of Q).

**Tolerances.** Q is a continuous quadratic: a floating-point MIQP solver (SCIP, or HiGHS in
the OA master) computes it only to its feasibility tolerances (about 1e-9 relative at best),
and two supports whose optima differ by less than that may be confused. The proof is judged
by finalize against the objective recomputed in float64 (1e-9 relative); a solver that stops
with a larger gap is reported ``feasible`` with its honest gap. ``exact`` avoids the issue: its
bound is computed outside any MILP, in float64 with explicit rounding margins
(:mod:`pruneopt.solvers.fast.joint_qp.dual_bound`), so its proofs never stall at a solver tolerance —
they are limited only by the strength of the relaxation (see :mod:`pruneopt.solvers.fast.
branch_and_bound`).
"""

from __future__ import annotations

import math
import time

import numpy as np

from pruneopt.formulations.joint_qp.problem import JointQuadraticProblem
from pruneopt.solvers.backends.common import numpy_version
from pruneopt.solvers.constants import Status
from pruneopt.solvers.registry import SolverSpec, register
from pruneopt.solvers.result import finalize

JOINT_QP = JointQuadraticProblem.kind
ENUMERATE_EXACT_ITEMS = 16  # ``oa-exact`` enumerates up to this p (≈ 0.01 s), then uses OA

# SCIP at zero gap on the MIQP. feastol / dualfeastol as for the joint ILP (EXACT_OPTIONS);
# in addition numerics/epsilon and numerics/sumepsilon are lowered from 1e-9 / 1e-6 to 1e-10:
# at the defaults the dual bound of this continuous objective stalled about 1e-7 (relative)
# below the optimum and never met the primal bound at zero gap (measured, p = 12 – 20).
# Even so the tail stalls at SCIP's own tolerances — measured 2e-9 – 7e-9 (relative) on random
# instances and 3e-8 – 3e-7 on digits-CNN instances, p = 20 – 40 — and at zero gap SCIP would
# then never stop: the stall guard (``limits/stallnodes``) ends the search, and finalize
# reports the remaining gap honestly ("feasible"). The stalled gap was the same after 5000 and
# 20000 stalled nodes, but on hard instances the guard can also end a search whose gap is still
# wide (it counts nodes without a better *primal* solution): raise ``stall_nodes``, or pass
# None with a time limit. Tighter tolerances (feastol 1e-10 / 1e-11, minefficacy 1e-9) did not
# remove the stall and made SoPlex fail ("unresolved numerical troubles in LP").
SCIP_MIQP_OPTIONS = {"numerics/epsilon": 1e-10, "numerics/sumepsilon": 1e-10}
SCIP_STALL_NODES = 20_000


def _backsolve(problem, support) -> np.ndarray:
    from pruneopt.solvers.fast.joint_qp.backsolve import restricted_ridge

    return restricted_ridge(problem.X, problem.w_bar, problem.ridge, problem.linear,
                            np.asarray(support, dtype=bool), problem.block_ptr)


def magnitude_support(problem, projector: str = "exact"):
    """The joint ILP (a) on scores w̄² — magnitude pruning under both budgets — solved by the
    joint ``projector`` solver; returns (support bool[p], its SolveResult)."""
    from pruneopt.solvers.registry import solve

    res = solve(problem.joint_ilp(problem.w_bar * problem.w_bar), projector)
    if res.x is None or not res.feasible:
        raise RuntimeError(f"the joint '{projector}' projection failed: {res.message}")
    return np.asarray(res.x, dtype=bool), res


def swap_search(problem, support, *, candidates: int = 10, max_rounds: int = 30) -> np.ndarray:
    """Best-improvement 1-swap local search on supports (each move backsolved and grown to a
    maximal support): drop any kept weight, add one of the ``candidates`` pruned weights with
    the largest |∇Q|, when both budgets still hold. Returns the best w found."""
    s = problem.extend_support(np.asarray(support, dtype=bool))
    w = _backsolve(problem, s)
    q = problem.objective(w)
    cost = problem.item_cost
    for _ in range(max_rounds):
        g = np.abs(problem.gradient(w))
        outside = np.flatnonzero(~s)
        add = outside[np.argsort(-g[outside], kind="stable")[:candidates]]
        _nnz, flops = problem.usage_of_support(s)
        room = problem.flop_budget * (1 + 1e-9) + 1e-9 - flops
        best = None
        for i in np.flatnonzero(s).tolist():
            for j in add.tolist():
                if cost[j] - cost[i] > room:
                    continue
                t = s.copy()
                t[i], t[j] = False, True
                t = problem.extend_support(t, priority=g)
                wt = _backsolve(problem, t)
                qt = problem.objective(wt)
                if qt < q - 1e-12 * abs(q) and (best is None or qt < best[0]):
                    best = (qt, t, wt)
        if best is None:
            break
        q, s, w = best
    return w


def incumbent(problem) -> np.ndarray:
    """A good feasible start for the exact solvers (it sets their big-M and first cutoff): the
    magnitude support and the greedy |w̄| support, each backsolved and improved by
    :func:`swap_search`; the better one."""
    from pruneopt.solvers.joint_qp.outer_approximation import greedy_incumbent

    starts = [greedy_incumbent(problem) != 0.0]
    try:
        starts.append(magnitude_support(problem)[0])
    except RuntimeError:
        pass
    best, best_q = np.zeros(problem.num_items), problem.objective(np.zeros(problem.num_items))
    for s0 in starts:
        w = swap_search(problem, s0)
        q = problem.objective(w)
        if q < best_q:
            best, best_q = w, q
    return best


# ------------------------------------------------------------------------------- exact backends
def _run_enumerate(problem, *, time_limit=None, max_items=None):
    from pruneopt.solvers.joint_qp.enumerate import MAX_ITEMS, solve_enumerate

    limit = MAX_ITEMS if max_items is None else int(max_items)
    raw = solve_enumerate(problem, max_items=limit, time_limit=time_limit)
    return finalize(problem, solver="enumerate", x=raw["x"], bound=raw["bound"],
                    backend_status=raw["status"], backend="numpy",
                    backend_version=numpy_version(),
                    options={"max_items": limit, "time_limit": time_limit},
                    message=raw["message"], info=raw["info"])


def _run_oa(problem, *, time_limit=None, rel_gap=1e-10, threads=None, seed=0, max_iter=100_000):
    from pruneopt.solvers.backends import highspy as highspy_adapter
    from pruneopt.solvers.joint_qp.outer_approximation import HIGHS_TOLERANCES, solve_oa

    start = time.perf_counter()
    inc = incumbent(problem) if problem.num_items else None
    remaining = None if time_limit is None else max(time_limit - (time.perf_counter() - start),
                                                    1e-3)
    raw = solve_oa(problem, time_limit=remaining, incumbent=inc, rel_gap=float(rel_gap),
                   threads=threads, seed=seed, max_iter=int(max_iter))
    opts = {**highspy_adapter.ZERO_GAP, **HIGHS_TOLERANCES,
            "rel_gap": float(rel_gap), "threads": threads, "seed": seed,
            "max_iter": int(max_iter), "time_limit": time_limit}
    return finalize(problem, solver="oa-highs", x=raw["x"], bound=raw["bound"],
                    backend_status=raw["status"], backend="highspy",
                    backend_version=highspy_adapter.version(), options=opts,
                    message=raw["message"],
                    info=raw["info"])


def scip_miqp(problem, *, time_limit=None, seed=0, stall_nodes=SCIP_STALL_NODES,
              start=None) -> dict:
    """Declare the MIQP in Pyomo (big-M from the incumbent ``start``) and run SCIP.

    Returns ``{"x", "bound", "status", "message", "info"}``; x is the backsolve on SCIP's
    support (grown to a maximal one), or ``start`` if that is better.
    """
    from pruneopt.solvers.backends import pyomo_scip

    p = problem.num_items
    if stall_nodes is None and time_limit is None:
        raise ValueError("stall_nodes: None (no stall guard) needs a time limit: at zero gap "
                         "SCIP may never stop on this continuous objective")
    best = np.zeros(p) if start is None else problem.canonical(start)
    if not problem.is_feasible(best):
        best = np.zeros(p)
    ub = problem.objective(best)
    lb0 = problem.lower_bound()
    sigma = max(abs(ub), ub - lb0, 1e-300)  # the objective is of order one at the incumbent
    model = problem.to_pyomo(incumbent=best, objective_scale=1.0 / sigma)
    for i in range(p):  # MIP start: SCIP completes the continuous part itself
        model.z[i].value = 1.0 if best[i] != 0.0 else 0.0
    options = dict(SCIP_MIQP_OPTIONS)
    if stall_nodes is not None:
        options["limits/stallnodes"] = int(stall_nodes)
    run = pyomo_scip.run_miqp(model, time_limit=time_limit, seed=seed, options=options)
    if run.status == Status.ERROR:  # e.g. "SCIP: error in LP solver!" at tight tolerances
        return {"x": best, "bound": lb0, "status": Status.ERROR,
                "message": f"SCIP failed ({run.message}); the incumbent is returned",
                "info": {"objective_scale": 1.0 / sigma}}
    message = f"SCIP: {run.message}"
    if run.message == "iterationLimit":
        message += f" (stall guard: {stall_nodes} nodes without a better solution)"
    if run.has_solution:
        z = np.array([model.z[i].value or 0.0 for i in range(p)]) > 0.5
        if problem.fits(z):
            w = _backsolve(problem, z)
            s = problem.extend_support(z, priority=np.abs(problem.gradient(w)))
            for cand in (w, _backsolve(problem, s)):
                q = problem.objective(cand)
                if q < ub:
                    best, ub = cand, q
        else:
            message += "; SCIP's support breaks a budget beyond tolerance: ignored"
    raw_bound = run.bound
    bound = (raw_bound * sigma if raw_bound is not None and math.isfinite(raw_bound)
             else lb0)
    bound = max(bound, lb0)
    status = run.status
    inc_obj = run.objective
    info = {"nodes": run.nodes, "objective_scale": 1.0 / sigma, "termination": run.message,
            "scip_primal": (inc_obj * sigma if inc_obj is not None and math.isfinite(inc_obj)
                            else math.nan),
            "scip_dual": raw_bound * sigma if raw_bound is not None else math.nan}
    return {"x": best, "bound": bound, "status": status, "message": message, "info": info}


def _run_pyomo_scip(problem, *, time_limit=None, seed=0, stall_nodes=SCIP_STALL_NODES):
    from pruneopt.solvers.backends import pyomo_scip

    start = time.perf_counter()
    version = pyomo_scip.version()
    opts = dict(pyomo_scip.EXACT_OPTIONS, **SCIP_MIQP_OPTIONS)
    opts.update(seed=seed, stall_nodes=stall_nodes, time_limit=time_limit)
    if problem.num_items == 0:
        raw = {"x": np.zeros(0), "bound": 0.0, "status": Status.OPTIMAL, "message": "no weights",
               "info": {}}
    else:
        inc = incumbent(problem)
        remaining = (None if time_limit is None
                     else max(time_limit - (time.perf_counter() - start), 1e-3))
        raw = scip_miqp(problem, time_limit=remaining, seed=seed, stall_nodes=stall_nodes,
                        start=inc)
    return finalize(problem, solver="pyomo-scip", x=raw["x"], bound=raw["bound"],
                    backend_status=raw["status"], backend="pyomo-scip", backend_version=version,
                    options=opts, message=raw["message"], info=raw["info"])


def _run_bnb(problem, *, time_limit=None, rel_gap=None, shift="scaled", use_falcon=True,
             max_nodes=None):
    """The purpose-built branch and bound (:mod:`pruneopt.solvers.fast.joint_qp.branch_and_bound`)."""
    from pruneopt.solvers.fast.joint_qp.branch_and_bound import DEFAULT_REL_GAP, solve_bnb

    rel = DEFAULT_REL_GAP if rel_gap is None else float(rel_gap)
    if not (math.isfinite(rel) and rel >= 0.0):
        raise ValueError(f"rel_gap: must be a finite number >= 0, got {rel_gap!r}")
    raw = solve_bnb(problem, time_limit=time_limit, rel_gap=rel, shift=shift,
                    use_falcon=bool(use_falcon),
                    max_nodes=None if max_nodes is None else int(max_nodes))
    opts = {"rel_gap": rel, "shift": shift, "use_falcon": bool(use_falcon),
            "max_nodes": max_nodes, "time_limit": time_limit,
            "proof": "certified float64 dual bound (explicit rounding margins), no MILP"}
    return finalize(problem, solver="exact", x=raw["x"], bound=raw["bound"],
                    backend_status=raw["status"], backend="numpy",
                    backend_version=numpy_version(), options=opts, message=raw["message"],
                    info=raw["info"])


def _run_oa_exact(problem, *, time_limit=None):
    """Enumeration for p ≤ ``ENUMERATE_EXACT_ITEMS``, else outer approximation.

    OA comes before SCIP (measured on digits-CNN instances, p = 16 – 40): OA proved the
    optimum to ~1e-14 in 0.1 – 1 s, while SCIP's dual bound stalled 1e-7 – 1e-6 below it
    (its feasibility tolerances on the continuous objective), so SCIP almost never meets the
    1e-9 proof tolerance; ``pyomo-scip`` stays available on its own, for cross-checks.
    """
    if problem.num_items <= ENUMERATE_EXACT_ITEMS:
        res, chosen = _run_enumerate(problem, time_limit=time_limit), "enumerate"
    else:
        res, chosen = _run_oa(problem, time_limit=time_limit), "oa-highs"
    msg = f"via {chosen}" + (f": {res.message}" if res.message else "")
    return res.replace(solver="oa-exact", message=msg, info={**res.info, "delegate": chosen})


# ------------------------------------------------------------------------------- heuristic
def _run_magnitude_backsolve(problem, *, time_limit=None, projector="exact"):
    """FALCON's released "BS" algorithm: support = the joint ILP on w̄², then the backsolve."""
    if problem.num_items == 0:
        w, ilp = np.zeros(0), None
    else:
        s, ilp = magnitude_support(problem, projector)
        w = _backsolve(problem, s)
    info = {} if ilp is None else {"projector": projector, "projection_status": ilp.status,
                                   "projection_proven": ilp.proven_optimal}
    return finalize(problem, solver="magnitude-backsolve", x=w, bound=math.nan,
                    backend_status=Status.FEASIBLE, backend="numpy",
                    backend_version=numpy_version(),
                    options={"projector": projector, "time_limit": time_limit},
                    message="heuristic: joint ILP on w̄², then the backsolve; no bound",
                    info=info)


def _register_all() -> None:
    from pruneopt.solvers.backends import pyomo_scip

    register(SolverSpec("enumerate", JOINT_QP, _run_enumerate, exact=True,
                        description="every maximal feasible support, batched backsolves "
                                    "(p <= 22 by default)",
                        options=("max_items",)))
    register(SolverSpec("oa-highs", JOINT_QP, _run_oa, exact=True,
                        description="outer approximation with perspective cuts, HiGHS MILP "
                                    "master at zero gap",
                        options=("rel_gap", "threads", "seed", "max_iter")))
    register(SolverSpec("pyomo-scip", JOINT_QP, _run_pyomo_scip, exact=True,
                        description="the Pyomo MIQP, SCIP at zero gap; needs the [scip] extra "
                                    "(pyscipopt)",
                        available=pyomo_scip.available, options=("seed", "stall_nodes")))
    register(SolverSpec("exact", JOINT_QP, _run_bnb, exact=True,
                        description="branch and bound on a certified dual bound (Fenchel "
                                    "dual of the backsolve + knapsack LP dual, float64 "
                                    "rounding margins)",
                        options=("rel_gap", "shift", "use_falcon", "max_nodes")))
    register(SolverSpec("oa-exact", JOINT_QP, _run_oa_exact, exact=True,
                        description=f"enumerate for p <= {ENUMERATE_EXACT_ITEMS}, else "
                                    "oa-highs"))
    register(SolverSpec("magnitude-backsolve", JOINT_QP, _run_magnitude_backsolve, exact=False,
                        description="joint ILP on w̄² (magnitude under both budgets), then the "
                                    "backsolve; no bound",
                        options=("projector",)))

    # ---------------------------------------------------------------- fast solvers
    # The fast and heuristic solvers (falcon, chita, woodfisher, magnitude) register in
    # solvers/joint_qp/heuristics.py. A further one can go here:
    # register(SolverSpec("falcon", JOINT_QP, <run>, exact=False, description=...))
    # ------------------------------------------------------------------------------------


_register_all()
