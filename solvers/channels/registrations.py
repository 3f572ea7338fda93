"""Registration of every solver of the structured channel-selection formulation.

| name                  | kind      | what it is                                            |
|-----------------------|-----------|-------------------------------------------------------|
| pyomo-highs           | exact     | P1, the layered-graph MILP in Pyomo, HiGHS, zero gap  |
| pyomo-highs-mccormick | exact     | P1′, integer counts, McCormick products, zero gap     |
| cpsat                 | exact     | CP-SAT on integer counts, integerised values          |
| pyomo-scip            | exact     | P1 (or P1′, ``form=``) through SCIP ([scip] extra)    |
| dp                    | exact     | budgeted Pareto DP along a chain (chains only)        |
| exact                 | exact     | dp on a chain; count windows + branch and bound on the |
|                       |           | Lagrangian box bound; P1′ on HiGHS in the windows;    |
|                       |           | where the count DP cuts edges: CP-SAT, then P1 / P1′  |
| fast                  | fast      | Lagrangian relaxation, count DPs: certified bound     |
| uniform               | heuristic | one keep ratio for every group, largest that fits     |
| global-threshold      | heuristic | one threshold on mean-normalised scores (Torch-Pruning) |

**What is exact.** The MILP and CP solvers are exact up to their tolerances; their answers go
through :func:`~pruneopt.solvers.result.finalize` (objective recomputed in float64 from the
returned z), and an answer of a floating-point MILP is challenged by exchange moves on the
counts: a better neighbour refutes its "optimal". ``dp`` is exact in float64 (its pruning bound
is a Lagrangian one, valid by weak duality). ``fast`` proves optimality only when its certified
Lagrangian bound meets its objective; the baselines carry the trivial bound Σ_g V_g(n_g).

Numerics (DESIGN §7): MAC coefficients are divided by their gcd when they are integers (exact),
never normalised to fractions; values are scaled by σ = 1 / (the median over groups of the last
kept score of the Lagrangian solution), which puts the scores the solver must decide between at
order one (a HiGHS "error" is retried once at σ = 1 / the smallest positive score). HiGHS runs
with ``mip_feasibility_tolerance`` 1e-9: at its default 1e-6 a count 1e-6 off an integer moved
P1′'s value cuts enough that its bound missed the recomputed objective by 1e-7. CP-SAT's value
scale is set by the fast Lagrangian bound U (σ = 2^50 / U, counts worth more than U removed),
so that a small optimum stays resolved (:mod:`pruneopt.formulations.channels.cpsat_model`).

Time limits hold (:mod:`pruneopt.solvers.deadline`): the fast Lagrangian that seeds the exact
solvers gets a share of the time left (:data:`SEED_SHARE`; ``exact``: :data:`EXACT_SEED_SHARE`),
the backend the rest; Pyomo models of more than :data:`GUARD_VARIABLES` variables are built and
solved in a worker ended at the deadline; the exchange moves that challenge an answer stop at
the deadline; a backend without an answer gives way to the seed's counts and bound.
"""

from __future__ import annotations

import math

import numpy as np

from pruneopt.formulations.channels.problem import ChannelProblem
from pruneopt.solvers.backends.common import numpy_version, unscale
from pruneopt.solvers.constants import Status
from pruneopt.solvers.registry import register_table
from pruneopt.solvers.result import finalize

CHANNELS = ChannelProblem.kind
# At HiGHS's default 1e-6 a count may sit 1e-6 off an integer, which moves P1′'s value cuts by
# that much: the reported bound then misses the recomputed objective by ~1e-7 (measured).
HIGHS_TOLERANCES = {"mip_feasibility_tolerance": 1e-9}
# With a time limit, Pyomo models with more variables than this run in a worker ended at the
# limit (+ grace): HiGHS can overrun its own limit (DESIGN §7).
GUARD_VARIABLES = 20_000
# exact: P1 (layered) when it has at most this many variables, else P1′ (McCormick)
LAYERED_MAX = 200_000
# exact: the numpy branch and bound runs inside windows of at most 10^this many count vectors
# (beyond, a short run still improves the incumbent, which narrows the windows for the MILP)
BNB_MAX_LOG10 = 4.0
# exact: the share of the time left that P1 gets over the windows before P1′ is tried
LAYERED_SHARE = 0.8
MAX_SCALED = 1e10
SEED_SHARE = 0.3  # of the time left: the fast Lagrangian that seeds an exact backend
EXACT_SEED_SHARE = 0.5  # ... that may prove ``exact``'s answer on its own
# ... when the count DP cuts edges: its bound is then loose, the incumbent is what it gives
EXACT_CUT_SEED_SHARE = 0.15
# exact without count windows: CP-SAT's share of the time left before P1 / P1′ on HiGHS
CPSAT_SHARE = 0.7


# ------------------------------------------------------------------------------- shared pieces
def _infeasible(problem, solver: str, backend: str, version: str, options: dict):
    kmin = problem.min_counts
    return finalize(problem, solver=solver, x=None, bound=-math.inf,
                    backend_status=Status.INFEASIBLE, backend=backend, backend_version=version,
                    options=options,
                    message=(f"even the counts of least FLOPs (blocks collapsed, min-keep "
                             f"elsewhere) cost {problem.flops_of_counts(kmin):.10g} MACs > F = "
                             f"{problem.flop_budget:.10g}"))


def value_scale(problem, k: np.ndarray | None) -> float:
    """σ = 1 / median over groups of the last kept score at k (order one at the threshold)."""
    s = problem.sorted_scores
    ptr = problem.channel_ptr
    top = float(s.max()) if s.size else 0.0
    if top <= 0:
        return 1.0
    level = 0.0
    if k is not None:
        idx = ptr[:-1] + np.asarray(k) - 1
        last = s[idx[np.asarray(k) > 0]]
        last = last[last > 0]
        level = float(np.median(last)) if last.size else 0.0
    if level <= 0:
        pos = s[s > 0]
        level = float(np.median(pos))
    return min(1.0 / level, MAX_SCALED / top)


def alternative_scale(problem, sigma: float) -> float | None:
    """A second value scale, 1 / (the smallest positive score), when it differs from σ by more
    than a factor 10 (for a retry after a backend error)."""
    s = problem.scores[problem.scores > 0]
    if not s.size:
        return None
    alt = min(1.0 / float(s.min()), MAX_SCALED / float(s.max()))
    return alt if abs(math.log10(alt / sigma)) > 1 else None


def cost_divisor(problem) -> float:
    """The gcd of every MAC coefficient when they are all integers (exact), else 1."""
    from pruneopt.solvers.scaling import integer_cost_divisor

    coefs = np.concatenate((problem.linear_coef, problem.pair_coef, problem.self_coef))
    coefs = coefs[coefs > 0]
    return integer_cost_divisor(coefs) if coefs.size else 1.0


def _seed(problem, time_limit=None, share: float = SEED_SHARE):
    """The fast Lagrangian: incumbent, certified bound and multipliers for the exact solvers
    (an empty seed when its DP cannot run on this coupling graph), on ``share`` of the time
    left."""
    from pruneopt.solvers.deadline import Clock
    from pruneopt.solvers.fast.channels.lagrangian import LagrangianResult, lagrangian_channels

    try:
        return lagrangian_channels(problem, time_limit=Clock(time_limit).share(share))
    except ValueError as exc:
        return LagrangianResult(Status.FEASIBLE, None, -math.inf, math.inf, math.nan,
                                {"error": str(exc)})


def _challenge(problem, k: np.ndarray, status: str, message: str, deadline=None):
    """Exchange moves on the counts of a MILP answer: a better feasible neighbour refutes a
    claimed optimum (the solver's tolerances hid it). Past ``deadline`` only the first search
    of each kind runs."""
    from pruneopt.solvers.fast.channels.lagrangian import exchange_search, greedy_fill

    v0 = problem.value_of_counts(k)
    steps = 10 * problem.num_groups + 50
    k2 = exchange_search(problem, greedy_fill(problem, k, max_steps=steps, deadline=deadline),
                         rounds=50, fill_steps=steps, deadline=deadline)
    v2 = problem.value_of_counts(k2)
    if problem.counts_feasible(k2) and v2 > v0 + 1e-12 * max(1.0, abs(v0)):
        message += f"; improved by exchange moves (+{v2 - v0:.3g})"
        if status == Status.OPTIMAL:
            message += ": the solver's tolerances hid better counts; its optimum is refuted"
            status = Status.FEASIBLE
        return k2, status, message
    return k, status, message


def _finish(problem, *, solver, k, bound, status, message, backend, version, options, seed,
            info=None, deadline=None):
    """Challenge, keep the bound valid, and finalize; a backend that stopped without a solution
    (a time limit) gives way to the seed's counts (and its bound)."""
    if k is None and seed is not None and seed.k is not None and status != Status.INFEASIBLE:
        k = seed.k
        bound = seed.bound if math.isnan(bound) else min(bound, seed.bound)
        message += "; no solution from the backend: the fast selection and its Lagrangian " \
                   "bound are returned"
        if status == Status.OPTIMAL:
            status = Status.FEASIBLE
    if k is not None and not problem.counts_feasible(k):
        from pruneopt.solvers.fast.channels.lagrangian import greedy_repair

        rep = greedy_repair(problem, k)
        message += "; the solver's counts violate a constraint after rounding"
        if rep is not None:
            k, status = rep, (Status.TIME_LIMIT if status == Status.TIME_LIMIT
                              else Status.FEASIBLE)
            message += ", repaired greedily"
    if k is not None and problem.counts_feasible(k):
        k, status, message = _challenge(problem, k, status, message, deadline=deadline)
        z = problem.value_of_counts(k)
        if seed is not None and seed.k is not None and seed.value > z:
            k, z = seed.k, seed.value
            message += "; the fast incumbent is better and is returned"
            if status == Status.OPTIMAL:
                status = Status.FEASIBLE
        if not (bound >= z - 1e-12 * max(1.0, abs(z))):
            if seed is not None and math.isfinite(seed.bound):
                bound = seed.bound
                message += "; the solver's bound is below a feasible value: the Lagrangian " \
                           "bound is reported"
    if seed is not None and math.isfinite(seed.bound) and seed.bound < bound:
        bound = seed.bound  # both are valid: keep the tighter
    x = problem.selection_from_counts(k) if k is not None else None
    return finalize(problem, solver=solver, x=x, bound=bound, backend_status=status,
                    backend=backend, backend_version=version, options=options, message=message,
                    info=info)


# ------------------------------------------------------------------------------- Pyomo backends
def run_declared(problem, *, form: str, backend: str, score_scale: float, cost_unit: float,
                 time_limit=None, threads=None, seed=0, bounds=None) -> dict:
    """Declare P1 / P1′ in Pyomo (over the count windows ``bounds`` = (lo, hi) when given) and
    solve it on ``backend`` ("highs" or "scip"); the raw answer as a dict (picklable inputs and
    output: usable in a worker)."""
    from pruneopt.formulations.channels.pyomo_model import (
        counts_from_layered,
        counts_from_mccormick,
    )
    from pruneopt.solvers.backends import pyomo_highs, pyomo_scip
    from pruneopt.solvers.deadline import Clock

    clock = Clock(time_limit)
    model = problem.to_pyomo(form=form, score_scale=score_scale, cost_unit=cost_unit,
                             bounds=bounds)
    if clock.expired():
        return {"k": None, "bound": math.inf, "status": Status.TIME_LIMIT,
                "message": "the time limit ran out while Pyomo built the model"}
    time_limit = clock.backend_limit()
    if backend == "highs":
        run = pyomo_highs.run(model, time_limit=time_limit, threads=threads, seed=seed,
                              options=HIGHS_TOLERANCES)
        message = f"HiGHS: {run.message}"
    else:
        run = pyomo_scip.run(model, time_limit=time_limit, seed=seed)
        message = f"SCIP: {run.message}"
    k = None
    if run.has_solution:
        k = (counts_from_layered if form == "layered" else counts_from_mccormick)(model, problem)
    return {"k": k, "bound": unscale(run.bound, score_scale), "status": run.status,
            "message": message}


def layered_size(problem, bounds=None) -> int:
    """Number of variables of P1 (one-hot counts and edge variables), over the count windows
    when given."""
    if bounds is not None:
        sizes = np.asarray(bounds[1]) - np.asarray(bounds[0]) + 1
    else:
        sizes = np.array([problem.allowed_counts(g).size for g in range(problem.num_groups)])
    pairs = problem.pairs
    return int(sizes.sum() + (sizes[pairs[:, 0]] * sizes[pairs[:, 1]]).sum())


def _run_pyomo(problem, *, solver, form, backend, time_limit=None, threads=None, seed=0,
               score_scale=None, lagrangian=None, bounds=None, outside=-math.inf):
    from pruneopt.solvers.backends import pyomo_highs, pyomo_scip
    from pruneopt.solvers.deadline import Clock, call_guarded
    from pruneopt.solvers.fast.channels.lagrangian import is_infeasible

    clock = Clock(time_limit)
    if backend == "highs":
        version = pyomo_highs.version()
        opts = {**pyomo_highs.ZERO_GAP, **HIGHS_TOLERANCES, "threads": threads}
    else:
        version = pyomo_scip.version()
        opts = dict(pyomo_scip.EXACT_OPTIONS)
    opts.update(form=form, seed=seed, time_limit=time_limit)
    if is_infeasible(problem):
        return _infeasible(problem, solver, solver, version, opts)
    seed_res = lagrangian if lagrangian is not None else _seed(problem, time_limit)
    sigma = float(score_scale) if score_scale is not None else value_scale(problem, seed_res.k)
    unit = cost_divisor(problem)
    opts.update(score_scale=sigma, cost_unit=unit)
    kwargs = dict(problem=problem, form=form, backend=backend, score_scale=sigma, cost_unit=unit,
                  time_limit=time_limit, threads=threads, seed=seed, bounds=bounds)
    nvars = (layered_size(problem, bounds) if form == "layered"
             else mccormick_size(problem, bounds))
    guarded = clock.limited and nvars > GUARD_VARIABLES
    raw = call_guarded(run_declared, kwargs, clock, guarded, lambda exc: {
        "k": None, "bound": math.inf, "status": Status.TIME_LIMIT, "message": str(exc)})
    alt = alternative_scale(problem, sigma)
    if (not guarded and raw["status"] == Status.ERROR and score_scale is None and alt is not None
            and not clock.expired()):
        # a floating-point MILP can fail on one scaling and not on another (DESIGN §7)
        first = raw["message"]
        raw = run_declared(**dict(kwargs, score_scale=alt))
        raw["message"] += f" (after {first} at score_scale {sigma:.6g}; retried at {alt:.6g})"
        opts["score_scale"] = alt
    if raw["status"] == Status.INFEASIBLE and bounds is not None:
        # no feasible count vector in the windows: nothing beats the incumbent (≤ outside)
        raw = {"k": seed_res.k, "bound": outside, "status": Status.OPTIMAL,
               "message": raw["message"] + "; no feasible counts in the windows: the incumbent "
                          "is optimal"}
    if raw["status"] == Status.INFEASIBLE:
        return finalize(problem, solver=solver, x=None, bound=-math.inf,
                        backend_status=Status.INFEASIBLE, backend=solver,
                        backend_version=version, options=opts, message=raw["message"])
    bound = raw["bound"]
    if bounds is not None:
        # the MILP's bound covers the count windows; every count outside is ≤ ``outside``
        bound = max(bound, outside)
        opts["windows"] = True
    return _finish(problem, solver=solver, k=raw["k"], bound=bound, status=raw["status"],
                   message=raw["message"], backend=solver, version=version, options=opts,
                   seed=seed_res, info={"layered_variables" if form == "layered"
                                        else "mccormick_binaries": nvars},
                   deadline=clock.deadline)


def _run_pyomo_highs(problem, *, time_limit=None, threads=None, seed=0, score_scale=None):
    return _run_pyomo(problem, solver="pyomo-highs", form="layered", backend="highs",
                      time_limit=time_limit, threads=threads, seed=seed, score_scale=score_scale)


def _run_pyomo_highs_mccormick(problem, *, time_limit=None, threads=None, seed=0,
                               score_scale=None):
    return _run_pyomo(problem, solver="pyomo-highs-mccormick", form="mccormick", backend="highs",
                      time_limit=time_limit, threads=threads, seed=seed, score_scale=score_scale)


def _run_pyomo_scip(problem, *, time_limit=None, seed=0, score_scale=None, form="layered"):
    if form not in ("layered", "mccormick"):
        raise ValueError(f"form: must be 'layered' or 'mccormick', got {form!r}")
    return _run_pyomo(problem, solver="pyomo-scip", form=form, backend="scip",
                      time_limit=time_limit, seed=seed, score_scale=score_scale)


# ------------------------------------------------------------------------------- CP-SAT
def _run_cpsat(problem, *, time_limit=None, workers=None, seed=0, score_scale=None,
               lagrangian=None):
    from pruneopt.solvers.backends import cpsat
    from pruneopt.solvers.deadline import Clock
    from pruneopt.solvers.fast.channels.lagrangian import is_infeasible

    clock = Clock(time_limit)
    version = cpsat.version()
    opts = {**cpsat.ZERO_GAP, "seed": seed, "time_limit": time_limit}
    if is_infeasible(problem):
        return _infeasible(problem, "cpsat", "ortools-cpsat", version, opts)
    # a proven cap on the optimum sets the value scale; and a hint
    lag = lagrangian if lagrangian is not None else _seed(problem, time_limit)
    model, k_vars, scaling = problem.to_cpsat(score_scale=score_scale, value_cap=lag.bound)
    if lag.k is not None:
        for var, val in zip(k_vars, lag.k.tolist(), strict=True):
            model.add_hint(var, int(val))
    run = cpsat.run(model, k_vars, time_limit=clock.backend_limit(), workers=workers, seed=seed)
    k, correction, bound = None, math.nan, math.inf
    if run.has_solution:
        k = run.values
        correction = scaling.correction(run.bound)
        bound = run.bound / scaling.score_scale + correction
    opts.update(num_workers=run.extra["workers"], score_scale=scaling.score_scale,
                value_cap=scaling.value_cap,
                cost_unit=scaling.cost_unit, cost_divisor=scaling.cost_divisor)
    info = {"value_correction": correction, "flop_rhs": scaling.flop_rhs,
            "integer_objective": run.objective, "integer_bound": run.bound}
    if run.status == Status.INFEASIBLE:
        return finalize(problem, solver="cpsat", x=None, bound=-math.inf,
                        backend_status=Status.INFEASIBLE, backend="ortools-cpsat",
                        backend_version=version, options=opts, message=run.message, info=info)
    message = run.message
    if k is None and run.status == Status.TIME_LIMIT and lag.k is not None:
        k, bound = lag.k, lag.bound  # the seed: a feasible answer with a certified bound
        message += "; the fast selection and its Lagrangian bound are returned"
    x = problem.selection_from_counts(k) if k is not None else None
    return finalize(problem, solver="cpsat", x=x, bound=bound, backend_status=run.status,
                    backend="ortools-cpsat", backend_version=version, options=opts,
                    message=message, info=info)


# ------------------------------------------------------------------------------- DP and exact
def _run_dp(problem, *, time_limit=None, max_labels=20_000_000, lagrangian=None):
    from pruneopt.solvers.fast.channels.chain_dp import chain_order, pareto_chain_dp
    from pruneopt.solvers.fast.channels.lagrangian import is_infeasible

    opts = {"time_limit": time_limit, "max_labels": int(max_labels)}
    order, why = chain_order(problem)
    if order is None:
        raise ValueError(f"solver: 'dp' is exact on chains only, and this coupling graph is not "
                         f"one ({why}); use 'exact' or 'pyomo-highs'")
    if is_infeasible(problem):
        return _infeasible(problem, "dp", "numpy", numpy_version(), opts)
    lag = lagrangian if lagrangian is not None else _seed(problem, time_limit)
    mus = tuple(m for m in (lag.info.get("mu_lo"), lag.info.get("mu_hi"),
                            lag.info.get("bound_mu")) if m is not None and math.isfinite(m))
    res = pareto_chain_dp(problem, order, incumbent=lag.k, mus=mus, time_limit=time_limit,
                          max_labels=max_labels)
    info = {"labels": res.labels, "max_front": res.max_front, "chain": order}
    if res.status == Status.INFEASIBLE:
        return finalize(problem, solver="dp", x=None, bound=-math.inf,
                        backend_status=Status.INFEASIBLE, backend="numpy",
                        backend_version=numpy_version(), options=opts,
                        message="no count vector meets the budget", info=info)
    bound = res.bound if res.status == Status.OPTIMAL else lag.bound
    x = problem.selection_from_counts(res.k) if res.k is not None else None
    msg = (f"Pareto DP along the chain: {res.labels} labels (largest front {res.max_front})"
           if res.status == Status.OPTIMAL else
           f"stopped at the label/time limit after {res.labels} labels; Lagrangian bound")
    return finalize(problem, solver="dp", x=x, bound=min(bound, lag.bound) if res.status ==
                    Status.OPTIMAL else bound, backend_status=res.status, backend="numpy",
                    backend_version=numpy_version(), options=opts, message=msg, info=info)


def mccormick_size(problem, bounds=None) -> int:
    """Number of binaries and products of P1′ (over the count windows when given)."""
    n = problem.group_sizes if bounds is None else np.asarray(bounds[1]) - np.asarray(bounds[0])
    bits = np.array([max(int(v).bit_length(), 0 if bounds is not None else 1) for v in n])
    pairs = problem.pairs
    prod_bits = np.minimum(bits[pairs[:, 0]], bits[pairs[:, 1]]).sum() if pairs.size else 0
    return int(bits.sum() + prod_bits + bits[problem.self_coef > 0].sum())


def _windows_and_search(problem, lag, el, *, deadline):
    """Count windows around the Lagrangian bound, then branch and bound inside them, repeated
    while the incumbent improves (:mod:`pruneopt.solvers.fast.channels.windows`).

    Returns ``(k, value, proven, lo, hi, threshold, info)``: every feasible k outside the final
    windows [lo, hi] has value ≤ ``threshold`` (≤ value)."""
    import time

    from pruneopt.solvers.fast.channels.windows import box_search, count_windows

    mu = lag.info.get("bound_mu")
    if mu is None or not math.isfinite(mu):
        mu = lag.mu
    k, value = lag.k.copy(), float(lag.value)
    info = {"window_rounds": 0, "window_evaluations": 0, "bnb_nodes": 0, "bnb_evaluations": 0}
    lo = hi = None
    for _ in range(6):
        threshold = value
        w = count_windows(problem, el, mu, threshold, lo=lo, hi=hi, deadline=deadline)
        info["window_rounds"] += w.rounds
        info["window_evaluations"] += w.evaluations
        lo, hi = w.lo, w.hi
        width = (hi - lo + 1).astype(np.float64)
        info["window_log10_combinations"] = float(np.log10(width).sum())
        info["window_widths"] = [int(v) for v in (hi - lo + 1)]
        if w.empty:
            return k, value, True, lo, hi, threshold, info
        if not w.complete or (info["window_log10_combinations"] > BNB_MAX_LOG10
                              and info["bnb_nodes"]):
            # many count vectors left: after one short search for a better incumbent, the MILP
            # over the windows closes these faster
            return k, value, False, lo, hi, threshold, info
        left = deadline - time.perf_counter()
        r = box_search(problem, el, mu, lo, hi, incumbent_k=k, incumbent_value=value,
                       deadline=time.perf_counter() + max(min(0.15 * left, 15.0), 1e-3),
                       max_nodes=3_000)
        info["bnb_nodes"] += r.nodes
        info["bnb_evaluations"] += r.evaluations
        improved = r.k is not None and r.value > value
        if improved:
            k, value = r.k.copy(), float(r.value)
        if r.proven:
            return k, value, True, lo, hi, threshold, info
        if not improved or time.perf_counter() > deadline:
            break
    return k, value, False, lo, hi, threshold, info


def _run_exact(problem, *, time_limit=None, threads=None, seed=0):
    """Exact channel selection (see the module docstring's table):

    1. the fast Lagrangian (incumbent, certified bound, best multiplier μ*); proven when its
       bound meets its value;
    2. on a chain, the Pareto DP;
    3. when the count DP is exact (no cut edge, no collapsible block): count windows — every
       count outside them is refuted by the Lagrangian bound of the box beside it — and a
       depth-first branch and bound over the counts inside, with the Lagrangian box bound at
       each node (numpy, float64 margins); repeated while the incumbent improves;
    4. what is still open goes to P1′ (McCormick) on HiGHS at zero gap over the windows only,
       seeded and challenged as every MILP answer is. Its bound covers the windows; the
       windows' threshold covers the rest;
    5. when step 3 does not apply (the count DP cuts edges: DenseNet's and GoogLeNet's
       concatenations couple many groups pairwise): CP-SAT over integer counts, seeded with the
       Lagrangian incumbent and capped by its bound, then P1 / P1′ over all counts with the
       time left; the better selection and the tighter bound are returned.
    """
    import time

    from pruneopt.solvers.deadline import Clock
    from pruneopt.solvers.fast.channels.chain_dp import chain_order
    from pruneopt.solvers.fast.channels.elimination import CountElimination
    from pruneopt.solvers.fast.channels.lagrangian import is_infeasible, lagrangian_channels

    clock = Clock(time_limit)
    opts = {"time_limit": time_limit, "threads": threads, "seed": seed}
    if is_infeasible(problem):
        return _infeasible(problem, "exact", "numpy", numpy_version(), opts)
    el = None
    try:
        el = CountElimination(problem)
        share = EXACT_CUT_SEED_SHARE if el.cuts else EXACT_SEED_SHARE
        lag = lagrangian_channels(problem, time_limit=clock.share(share), elimination=el)
    except ValueError:
        lag = _seed(problem, time_limit, share=EXACT_SEED_SHARE)

    def left():
        return clock.backend_limit()

    def until(fraction):  # a deadline at ``fraction`` of the time left (inf without a limit)
        return time.perf_counter() + fraction * left() if clock.limited else math.inf

    def relabel(r, how):
        return r.replace(solver="exact", options={**r.options, **opts, "method": how},
                         message=f"{how}: {r.message}" if r.message else how)

    if lag.k is not None and lag.bound - lag.value <= 1e-9 * max(abs(lag.bound), 1e-300):
        x = problem.selection_from_counts(lag.k)
        r = finalize(problem, solver="exact", x=x, bound=lag.bound, backend_status=Status.OPTIMAL,
                     backend="numpy", backend_version=numpy_version(), options=opts,
                     message="the Lagrangian bound meets the fast objective", info=lag.info)
        if r.proven_optimal:
            return relabel(r, "lagrangian")
    order, _ = chain_order(problem)
    if order is not None:
        r = _run_dp(problem, time_limit=left(), lagrangian=lag)
        if r.proven_optimal or r.status == Status.INFEASIBLE:
            return relabel(r, "dp")
    bounds, threshold, winfo = None, -math.inf, {}
    if el is not None and not el.cuts and not problem.num_blocks and lag.k is not None:
        deadline = until(0.6)
        k, value, proven, lo, hi, threshold, winfo = _windows_and_search(problem, lag, el,
                                                                         deadline=deadline)
        if proven:
            x = problem.selection_from_counts(k)
            r = finalize(problem, solver="exact", x=x, bound=value, backend_status="optimal",
                         backend="numpy", backend_version=numpy_version(), options=opts,
                         message=(f"count windows ({winfo['window_evaluations']} box bounds) "
                                  f"and branch and bound ({winfo['bnb_nodes']} nodes) over "
                                  "10^%.1f count vectors" % winfo["window_log10_combinations"]),
                         info={**lag.info, **winfo})
            if r.proven_optimal:
                return relabel(r, "windows")
        if k is not None and problem.value_of_counts(k) > lag.value:
            from pruneopt.solvers.fast.channels.lagrangian import LagrangianResult

            lag = LagrangianResult("feasible", k, float(problem.value_of_counts(k)), lag.bound,
                                   lag.mu, lag.info)
        bounds = (lo, hi)
    if bounds is None:
        # CP-SAT first: on the cut graphs of DenseNet-121 and GoogLeNet (3×64×64, 30 % / 50 %
        # MACs) it proved the optimum in 18–43 s, where P1′ on HiGHS was still 3e-4 – 2.5e-3
        # short at 120 s (measured)
        r = relabel(_run_cpsat(problem, time_limit=left() * CPSAT_SHARE if clock.limited
                               else None, seed=seed, lagrangian=lag), "cpsat")
        if r.proven_optimal or r.status == Status.INFEASIBLE:
            return r
        results = [r]
        if r.x is not None and r.feasible and r.objective > (lag.value if lag.k is not None
                                                             else -math.inf):
            from pruneopt.solvers.fast.channels.lagrangian import LagrangianResult

            lag = LagrangianResult("feasible", problem.counts(r.x), float(r.objective),
                                   min(lag.bound, r.bound), lag.mu, lag.info)
        form = "layered" if layered_size(problem) <= LAYERED_MAX else "mccormick"
        r = _run_pyomo(problem, solver="exact", form=form, backend="highs", time_limit=left(),
                       threads=threads, seed=seed, lagrangian=lag)
        results.append(relabel(r, f"pyomo-highs ({'P1' if form == 'layered' else 'P1′'})"))
        if results[-1].proven_optimal or results[-1].status == Status.INFEASIBLE:
            return results[-1]
        return _best_of(problem, results, clock, "CP-SAT and the MILP")
    # Over the windows neither MILP dominates (measured: ConvNeXt-T's windows, P1 open after
    # 116 s, P1′ proven in 8 s; ResNet-50's at 30 %, P1′ open after 70 s, P1 proven in ~50 s):
    # P1 (the convex hull of each coupled pair's counts) first, when it is of moderate size, with
    # part of the time, then P1′ (integer counts, few binaries); both bounds are valid, the
    # tighter one and the better selection are returned.
    forms = (["layered"] if layered_size(problem, bounds) <= LAYERED_MAX else []) + ["mccormick"]
    results = []
    for i, form in enumerate(forms):
        share = None if not clock.limited else (
            left() * (LAYERED_SHARE if i == 0 and len(forms) > 1 else 1.0))
        if results and results[-1].x is not None and results[-1].feasible \
                and results[-1].objective > threshold:
            # the first MILP found a better selection: narrower windows for the second
            from pruneopt.solvers.fast.channels.lagrangian import LagrangianResult
            from pruneopt.solvers.fast.channels.windows import count_windows

            kb = problem.counts(results[-1].x)
            vb = float(problem.value_of_counts(kb))
            mu = lag.info.get("bound_mu") if math.isfinite(lag.info.get("bound_mu") or
                                                            math.nan) else lag.mu
            w = count_windows(problem, el, mu, vb, lo=bounds[0], hi=bounds[1],
                              deadline=until(0.3))
            lag = LagrangianResult("feasible", kb, vb, lag.bound, lag.mu, lag.info)
            if w.empty:
                r = finalize(problem, solver="exact", x=results[-1].x, bound=vb,
                             backend_status="optimal", backend="numpy",
                             backend_version=numpy_version(), options=opts,
                             message="count windows around the MILP's selection are empty",
                             info={**lag.info, **winfo})
                if r.proven_optimal:
                    return relabel(r, "windows")
            else:
                bounds, threshold = (w.lo, w.hi), vb
                winfo["window_widths"] = [int(v) for v in (w.hi - w.lo + 1)]
                share = None if not clock.limited else left()
        r = _run_pyomo(problem, solver="exact", form=form, backend="highs", time_limit=share,
                       threads=threads, seed=seed, lagrangian=lag, bounds=bounds,
                       outside=threshold)
        r = relabel(r.replace(info={**(r.info or {}), **winfo}),
                    f"pyomo-highs ({'P1' if form == 'layered' else 'P1′'} in count windows)")
        results.append(r)
        if r.proven_optimal or r.status == "infeasible":
            return r
    return _best_of(problem, results, clock, "P1′ and P1 over the windows")


def _best_of(problem, results, clock, what: str):
    """The best selection of several unproven exact runs with the tightest of their (valid)
    bounds."""
    best = max((r for r in results if r.x is not None and r.feasible),
               key=lambda r: r.objective, default=results[-1])
    bound = min(r.bound for r in results)
    if bound < best.bound:
        best = finalize(problem, solver="exact", x=best.x, bound=bound,
                        backend_status=Status.TIME_LIMIT if clock.limited else Status.FEASIBLE,
                        backend=best.backend, backend_version=best.backend_version,
                        options=best.options, message=f"{best.message}; the tighter bound of "
                        f"{what}", info=best.info)
    return best


# ------------------------------------------------------------------------------- fast, baselines
def _run_fast(problem, *, time_limit=None, max_evals=30, max_table=None, improve=True):
    from pruneopt.solvers.fast.channels.elimination_plan import DEFAULT_MAX_TABLE
    from pruneopt.solvers.fast.channels.lagrangian import lagrangian_channels

    opts = {"time_limit": time_limit, "max_evals": int(max_evals),
            "max_table": int(max_table or DEFAULT_MAX_TABLE), "improve": bool(improve)}
    res = lagrangian_channels(problem, max_evals=int(max_evals), time_limit=time_limit,
                              max_table=int(max_table or DEFAULT_MAX_TABLE),
                              improve=bool(improve))
    if res.status == Status.INFEASIBLE:
        return _infeasible(problem, "fast", "numpy", numpy_version(), opts)
    cut = res.info.get("cuts", 0)
    msg = ("Lagrangian bound (exact count DP" + (f"; {cut} edge(s) cut, still a valid bound)"
                                                 if cut else ")") + ", greedy primal")
    status = Status.FEASIBLE
    if res.info.get("stopped") == "time_limit":
        status = Status.TIME_LIMIT
        msg = res.info.get("message", msg) + "; stopped at the time limit"
    return finalize(problem, solver="fast", x=problem.selection_from_counts(res.k),
                    bound=res.bound, backend_status=status, backend="numpy",
                    backend_version=numpy_version(), options=opts, message=msg, info=res.info)


def _baseline(name: str, select):
    def run(problem, *, time_limit=None):
        from pruneopt.solvers.fast.channels.lagrangian import total_value

        opts = {"time_limit": time_limit}
        k = select(problem)
        if k is None:
            return _infeasible(problem, name, "numpy", numpy_version(), opts)
        return finalize(problem, solver=name, x=problem.selection_from_counts(k),
                        bound=total_value(problem), backend_status=Status.FEASIBLE, backend="numpy",
                        backend_version=numpy_version(), options=opts,
                        message="heuristic; trivial bound Σ_g V_g(n_g)")

    return run


def _register_all() -> None:
    from pruneopt.solvers.backends import pyomo_scip
    from pruneopt.solvers.fast.channels.lagrangian import (
        global_threshold_counts,
        uniform_counts,
    )

    scale = "score_scale"
    register_table(CHANNELS, [
        ("pyomo-highs", _run_pyomo_highs, True, ("threads", "seed", scale),
         "P1 layered-graph MILP in Pyomo, HiGHS at zero gap"),
        ("pyomo-highs-mccormick", _run_pyomo_highs_mccormick, True, ("threads", "seed", scale),
         "P1' McCormick MILP in Pyomo, HiGHS at zero gap"),
        ("cpsat", _run_cpsat, True, ("workers", "seed", scale),
         "CP-SAT over integer counts, integerised values, zero gap"),
        ("pyomo-scip", _run_pyomo_scip, True, ("seed", scale, "form"),
         "P1 (or P1', form=) through SCIP; needs the [scip] extra", pyomo_scip.available),
        ("dp", _run_dp, True, ("max_labels",),
         "budgeted Pareto DP along a chain (chains only)"),
        ("exact", _run_exact, True, ("threads", "seed"),
         "dp on chains; count windows + branch and bound; P1/P1' on HiGHS in the windows; "
         "else CP-SAT, then P1/P1'"),
        ("fast", _run_fast, False, ("max_evals", "max_table", "improve"),
         "Lagrangian relaxation with count DPs: certified bound"),
        ("uniform", _baseline("uniform", uniform_counts), False, (),
         "one keep ratio in every group, largest meeting the budget"),
        ("global-threshold", _baseline("global-threshold", global_threshold_counts), False, (),
         "one threshold on mean-normalised scores (Torch-Pruning)"),
    ])


_register_all()
