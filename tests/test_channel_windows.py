"""Count windows and the box-bound branch and bound of ``exact`` channel selection
(solvers/fast/channels/windows.py) against enumeration of every count vector: the box bound is
never below the best feasible value in its box, no feasible count vector outside the windows
beats the threshold, and the branch and bound proves the enumerated optimum."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from solver_test_helpers import brute_counts

import pruneopt
from pruneopt.formulations.channels.generate import generate_channels
from pruneopt.solvers.fast.channels.elimination import CountElimination
from pruneopt.solvers.fast.channels.windows import box_bound, box_search, count_windows

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.filter_too_much])


def instance(seed: int, keep: float):
    """A small random channel DAG the count DP solves exactly (no cut edge, no block)."""
    problem = generate_channels("random", seed=seed, groups=4, channels=5, keep_flops=keep,
                                dist="ties" if seed % 3 == 0 else "kaiming")
    assume(not problem.num_blocks)
    el = CountElimination(problem)
    assume(not el.cuts)
    return problem, el


def every_count_vector(problem):
    import itertools

    grid = np.array(list(itertools.product(*[problem.allowed_counts(g)
                                             for g in range(problem.num_groups)])),
                    dtype=np.int64)
    ok = problem.counts_feasible(grid)
    return grid, np.where(ok, problem.value_of_counts(grid), -np.inf)


@SETTINGS
@given(seed=st.integers(0, 5000), keep=st.floats(0.15, 0.95), mu=st.floats(0.0, 5.0),
       box_seed=st.integers(0, 2**31))
def test_box_bound_is_never_below_the_box_optimum(seed, keep, mu, box_seed):
    problem, el = instance(seed, keep)
    grid, vals = every_count_vector(problem)
    rng = np.random.default_rng(box_seed)
    a, b = rng.choice(grid, 2)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    inside = np.all((grid >= lo) & (grid <= hi), axis=1)
    best = vals[inside].max()
    scale = mu / max(problem.flop_budget, 1e-300)  # μ in value per MAC, any μ ≥ 0 is valid
    D = box_bound(problem, el, scale, lo, hi)
    assert D >= best - 1e-9 * max(1.0, abs(best))


@SETTINGS
@given(seed=st.integers(0, 5000), keep=st.floats(0.15, 0.95), below=st.floats(0.0, 0.05))
def test_nothing_outside_the_windows_beats_the_threshold(seed, keep, below):
    problem, el = instance(seed, keep)
    opt, _ = brute_counts(problem)
    assume(opt is not None)
    fast = pruneopt.solve(problem, "fast")
    mu = fast.info.get("bound_mu") or fast.info.get("mu") or 0.0
    threshold = opt - below * max(1.0, abs(opt))  # a threshold some counts may beat
    w = count_windows(problem, el, float(mu), threshold)
    grid, vals = every_count_vector(problem)
    outside = ~np.all((grid >= w.lo) & (grid <= w.hi), axis=1)
    if w.empty:
        outside[:] = True
    assert np.all(vals[outside] <= threshold + 1e-9 * max(1.0, abs(threshold)))


@SETTINGS
@given(seed=st.integers(0, 5000), keep=st.floats(0.15, 0.95))
def test_branch_and_bound_proves_the_enumerated_optimum(seed, keep):
    problem, el = instance(seed, keep)
    opt, _ = brute_counts(problem)
    assume(opt is not None)
    fast = pruneopt.solve(problem, "fast")
    mu = fast.info.get("bound_mu") or fast.info.get("mu") or 0.0
    lo = np.array([problem.allowed_counts(g).min() for g in range(problem.num_groups)])
    hi = np.array([problem.allowed_counts(g).max() for g in range(problem.num_groups)])
    # no incumbent: the search must find the optimum itself (the fast one is often optimal
    # already on instances this small, which would hide a search that prunes too much)
    r = box_search(problem, el, float(mu), lo, hi)
    assert r.proven and r.k is not None
    assert problem.counts_feasible(r.k)
    assert abs(r.value - opt) <= 1e-9 * max(1.0, abs(opt))
    assert abs(float(problem.value_of_counts(r.k)) - opt) <= 1e-9 * max(1.0, abs(opt))
