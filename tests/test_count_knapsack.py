"""The integer two-row knapsack in count space (``solvers/fast/joint_qp/count_knapsack.py``)
against brute force over every subset, and its place in the joint MIQP's dual bound.

* hypothesis instances (m ≤ 11 items, 1–4 cost classes, ties, zero values, items dearer than
  the budget, zero budgets): the certified ``upper`` is never below the true maximum, equals it
  (to rounding) when the search closes, and the returned selection is feasible with the value
  it claims;
* a stopped search (``max_boxes``) still returns an upper bound between V* and the LP bound,
  and the default tolerance (1e-3 of the LP's excess over the incumbent) stays within it;
* a hand-computed instance where the LP bound and the integer maximum differ;
* ``certify``'s integer bound is never looser than its LP bound and never above the optimum of
  the node (brute force).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pruneopt.solvers.fast.joint_qp.count_knapsack import integer_max
from pruneopt.solvers.fast.joint_qp.knapsack_lp import lp_dual

COSTS = (0.5, 1.0, 2.0, 3.0, 7.0, 16.0)


def brute_force(v, cost, K, F):
    m = v.size
    best = 0.0
    for code in range(1 << m):
        s = ((code >> np.arange(m)) & 1).astype(bool)
        if s.sum() <= K and cost[s].sum() <= F:
            best = max(best, float(v[s].sum()))
    return best


@st.composite
def knapsacks(draw):
    m = draw(st.integers(0, 11))
    D = draw(st.integers(1, 4))
    class_cost = np.array(draw(st.lists(st.sampled_from(COSTS), min_size=D, max_size=D,
                                        unique=True)))
    cls = np.array(draw(st.lists(st.integers(0, D - 1), min_size=m, max_size=m)),
                   dtype=np.int64)
    pool = st.sampled_from([0.0, 1.0, 2.0, 0.25]) | st.floats(0.0, 10.0)
    v = np.array(draw(st.lists(pool, min_size=m, max_size=m)), dtype=np.float64)
    K = draw(st.integers(0, m + 1))
    total = float(class_cost[cls].sum()) if m else 0.0
    F = draw(st.sampled_from([0.0, 1.0, 2.5, 7.0]) | st.floats(0.0, total + 1.0))
    return v, cls, class_cost, K, F


def solved(data, **options):
    """(item costs, the brute-force maximum, integer_max's answer) of a drawn knapsack."""
    v, cls, class_cost, K, F = data
    cost = class_cost[cls] if v.size else np.zeros(0)
    return cost, brute_force(v, cost, K, F), integer_max(v, cls, class_cost, K, F, **options)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(knapsacks())
def test_integer_max_equals_brute_force(data):
    v, K, F = data[0], data[3], data[4]
    cost, best, r = solved(data, max_boxes=10**6, rel_tol=0.0)
    scale = max(best, float(v.sum()), 1e-300)
    assert r.upper >= best
    assert r.closed
    assert r.upper <= best + 1e-12 * scale
    assert r.select.sum() <= K and cost[r.select].sum() <= F
    assert r.value == pytest.approx(float(v[r.select].sum()), rel=1e-12, abs=1e-300)
    assert r.value == pytest.approx(best, rel=1e-12, abs=1e-300)
    assert r.upper <= r.lp_upper


@settings(max_examples=100, deadline=None, derandomize=True)
@given(knapsacks())
def test_a_stopped_search_still_bounds_from_above(data):
    K, F = data[3], data[4]
    cost, best, r = solved(data, max_boxes=1)
    assert best <= r.upper <= r.lp_upper
    assert r.select.sum() <= K and cost[r.select].sum() <= F


def test_hand_computed_gap_between_lp_and_integer():
    # v = (5, 2), costs (3, 1), K = 2, F = 3: the LP keeps the cheap item and 2/3 of the dear
    # one (2 + 10/3 = 16/3); the best integer choice is the dear item alone (5)
    v = np.array([5.0, 2.0])
    cls = np.array([0, 1])
    class_cost = np.array([3.0, 1.0])
    r = integer_max(v, cls, class_cost, 2, 3.0, rel_tol=0.0)
    assert r.closed
    assert r.upper == pytest.approx(5.0, rel=1e-14)
    assert r.lp_upper == pytest.approx(16.0 / 3.0, rel=1e-14)
    assert r.select.tolist() == [True, False]


def test_large_random_instance_against_a_mip():
    """Hundreds of items in a few classes (the shape of a network's weights): the upper bound
    equals HiGHS's MIP optimum of the item knapsack to 1e-9."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    rng = np.random.default_rng(11)
    for trial in range(6):
        D = 2 + trial % 3
        class_cost = rng.choice([1.0, 9.0, 16.0, 64.0, 144.0], D, replace=False)
        m = 300
        cls = rng.integers(0, D, m)
        v = rng.exponential(1.0, m) ** 2
        cost = class_cost[cls]
        K = int(0.4 * m)
        F = float(0.35 * cost.sum()) + 0.37
        res = milp(-v, constraints=LinearConstraint(np.vstack([np.ones(m), cost]), -np.inf,
                                                    [K, F]),
                   integrality=np.ones(m), bounds=Bounds(0, 1),
                   options={"mip_rel_gap": 0.0, "presolve": True})
        assert res.status == 0
        opt = -res.fun
        r = integer_max(v, cls, class_cost, K, F, max_boxes=10**6, rel_tol=0.0)
        assert r.closed
        assert r.upper == pytest.approx(opt, rel=1e-9)
        assert r.value == pytest.approx(opt, rel=1e-9)
        # the defaults (a small box budget, closing within 1e-3 of the LP's excess) stay
        # between the optimum and the LP bound, and near the optimum when they close
        d = integer_max(v, cls, class_cost, K, F)
        assert d.value <= opt * (1 + 1e-12) and opt * (1 - 1e-12) <= d.upper <= d.lp_upper
        if d.closed:
            assert d.upper <= opt + 1e-3 * (d.lp_upper - d.value) + 1e-12 * opt


def test_lp_dual_when_the_budget_left_is_a_rounding_error():
    """A regression: with F a rounding error above 0 the FLOP multiplier sits at the kink of the
    dearest ratio; a bisection point on the left tangent's own piece is not the minimiser."""
    v = np.array([0.28706561, 0.12725258])
    c = np.array([2.0, 1.0])
    F = 7.8e-15
    mu, nu, sel_r, sel_l, theta = lp_dual(v, c, 2, F)
    dual = mu * 2 + nu * F + float(np.maximum(v - mu - nu * c, 0.0).sum())
    assert dual <= 1e-12
    z = theta * sel_l + (1 - theta) * sel_r
    assert z @ c <= F * (1 + 1e-9) + 1e-15


def test_certify_integer_bound_is_tighter_and_valid():
    from test_joint_qp_exact import random_problem

    from pruneopt.solvers.fast.joint_qp.backsolve import restricted_ridge
    from pruneopt.solvers.fast.joint_qp.dual_bound import Minorant, Node, certify

    rng = np.random.default_rng(5)
    tighter = 0
    for trial in range(8):
        problem = random_problem(rng, p=11, n=4, layers=3, keep_nnz=0.45, keep_flops=0.33)
        model = Minorant(problem)
        fix = np.zeros(11, dtype=np.int8)
        if trial % 2:
            fix[[1, 4]] = [1, -1]
        node = Node.of(model, fix)
        best = math.inf
        for code in range(1 << 11):
            s = ((code >> np.arange(11)) & 1).astype(bool)
            if (fix == 1)[s].sum() < (fix == 1).sum() or np.any(s[fix == -1]) \
                    or not problem.fits(s):
                continue
            w = restricted_ridge(problem.X, problem.w_bar, problem.ridge, problem.linear, s,
                                 problem.block_ptr)
            best = min(best, problem.objective(w))
        for _ in range(4):
            A = model.alpha_of(rng.random(11))
            cert = certify(model, node, A)
            assert cert.lb_lp <= cert.lb <= best + 1e-12 * abs(best)
            # the LP-only certificate: its LP keeps the weights dearer than the whole budget
            # (at a fraction), the count search's root LP leaves them out — never looser
            lp_only = certify(model, node, A, integer=False).lb
            assert lp_only <= cert.lb_lp + 1e-12 * abs(best)
            tighter += cert.lb > cert.lb_lp + 1e-12 * abs(best)
    assert tighter > 0  # the integer bracket must matter somewhere on these instances
