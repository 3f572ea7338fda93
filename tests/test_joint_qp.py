"""The full joint MIQP (a'): formulation, big-M bounds, and its exact solvers.

* ``enumerate`` against an independent brute force over ALL 2^p supports (hypothesis, p ≤ 10);
* ``oa-highs`` and ``pyomo-scip`` against ``enumerate`` on fixed instances up to p = 14, with
  blocks and a first-order term. Objectives are compared within 1e-7 relative, not 1e-9: the
  objective is a continuous quadratic, which SCIP (and HiGHS in the OA master) handle only to
  their feasibility tolerances (~1e-9 absolute on an order-one scaled objective, measured up
  to ~1e-8 relative on the bound), so two supports whose optima differ by less than that may
  be confused. Bounds must be valid (never above the optimum beyond 1e-9), and a result that
  claims a proof must meet the optimum within the proof tolerance;
* the big-M bounds contain the optimum and every point of the sublevel set they are derived
  from; save/load; bad input; time limits; ``crosscheck`` on a joint-qp problem.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from solver_test_helpers import brute_force_qp as brute_force
from solver_test_helpers import dense_hessian
from solver_test_helpers import make_qp as make_problem

import pruneopt
from pruneopt.formulations.io import load_problem
from pruneopt.formulations.joint.problem import JointBudgetProblem
from pruneopt.formulations.joint_qp.problem import JointQuadraticProblem
from pruneopt.solvers.backends.pyomo_scip import available as scip_available
from pruneopt.solvers.crosscheck import crosscheck
from pruneopt.solvers.fast.joint_qp.backsolve import quadratic_objective, restricted_ridge
from pruneopt.solvers.joint_qp.enumerate import maximal_supports
from pruneopt.solvers.registry import available_solvers, solve, solver_specs

needs_scip = pytest.mark.skipif(not scip_available(), reason="pyscipopt is not installed")

OBJ_RTOL = 1e-7  # MIQP solvers vs enumeration (see the module docstring)


# ------------------------------------------------------------------------------ instances
@st.composite
def tiny_qp_problems(draw, max_items: int = 10) -> JointQuadraticProblem:
    """Tiny instances: empty and one-item layers and blocks, zeros in w̄, n from 0 to 7,
    ridges from 1e-3 to 10, with and without a first-order term, budgets from 0 to beyond."""
    p = draw(st.integers(1, max_items))
    n = draw(st.integers(0, 7))
    L = draw(st.integers(1, 4))
    gcuts = sorted(draw(st.lists(st.integers(0, p), min_size=L - 1, max_size=L - 1)))
    sizes = np.diff([0, *gcuts, p])
    B = draw(st.integers(1, 3))
    bcuts = sorted(draw(st.lists(st.integers(0, p), min_size=B - 1, max_size=B - 1)))
    costs = np.array(draw(st.lists(st.integers(1, 50), min_size=L, max_size=L)), dtype=float)
    seed = draw(st.integers(0, 2**32 - 1))
    ridge = draw(st.sampled_from([1e-3, 0.05, 1.0, 10.0]))
    lin = draw(st.sampled_from([0.0, 0.0, 0.1, 2.0]))
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(p) * draw(st.sampled_from([0.01, 0.3, 3.0]))
    w[rng.random(p) < 0.15] = 0.0
    total = float(sizes @ costs)
    return JointQuadraticProblem(
        X=rng.standard_normal((n, p)) * draw(st.sampled_from([0.1, 1.0])), w_bar=w,
        ridge=ridge, linear=lin * rng.standard_normal(p),
        group_ptr=np.concatenate(([0], np.cumsum(sizes))), flop_cost=costs,
        nnz_budget=draw(st.integers(0, p + 2)),
        flop_budget=draw(st.floats(0.0, total + 10.0, allow_nan=False, allow_subnormal=False)),
        block_ptr=None if B == 1 else np.array([0, *bcuts, p]))


def close(a: float, b: float, rel: float, scale: float = 0.0) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), scale)


# ------------------------------------------------------------------------------ enumeration
@given(tiny_qp_problems())
def test_enumerate_matches_brute_force(problem):
    opt, w_opt, n_feasible = brute_force(problem)
    res = solve(problem, "enumerate")
    scale = problem.objective(np.zeros(problem.num_items))  # the value of w = 0
    assert res.status == "optimal" and res.proven_optimal and res.feasible
    assert res.bound == res.objective
    assert close(res.objective, opt, 1e-9, scale)
    assert problem.is_feasible(res.x)
    assert res.info["feasible_supports"] == n_feasible
    # the returned w is the backsolve on its support
    s = res.x != 0
    np.testing.assert_allclose(res.x, restricted_ridge(problem.X, problem.w_bar, problem.ridge,
                                                       problem.linear, s, problem.block_ptr)
                               * s, atol=1e-12)
    # big-M: the optimum lies inside the bounds, with or without the incumbent
    for inc in (None, res.x):
        M = problem.big_m(inc)
        assert np.all(np.abs(w_opt) <= M) and np.all(np.abs(res.x) <= M)


def test_maximal_supports_are_exactly_the_maximal_ones():
    problem = make_problem(p=9, layers=3, seed=4)
    codes, n_feasible = maximal_supports(problem)
    p = problem.num_items
    feasible = set()
    for code in range(1 << p):
        s = ((code >> np.arange(p)) & 1).astype(bool)
        if problem.fits(s):
            feasible.add(code)
    maximal = {c for c in feasible if all((c | (1 << i)) not in feasible
                                          for i in range(p) if not c >> i & 1)}
    assert n_feasible == len(feasible)
    assert set(codes.tolist()) == maximal


def test_enumerate_refuses_large_p():
    problem = make_problem(p=23, n=4, seed=1)
    with pytest.raises(ValueError, match="max_items"):
        solve(problem, "enumerate")


def test_enumerate_time_limit_returns_a_feasible_point():
    problem = make_problem(p=18, n=6, seed=2)
    res = solve(problem, "enumerate", time_limit=1e-9)
    assert res.status == "time_limit" and res.feasible and not res.proven_optimal
    assert res.bound <= res.objective  # the unconstrained minimum of Q


# ------------------------------------------------------------------------------ MIQP solvers
AGREE_CASES = [
    dict(p=8, n=5, seed=0),
    dict(p=10, n=6, seed=1, linear=0.05),
    dict(p=12, n=8, seed=2, blocks=3),
    dict(p=12, n=16, seed=3, linear=0.05, zeros=2),
    dict(p=14, n=6, seed=5, blocks=4, linear=0.1, ridge=0.5),
]


@pytest.fixture(scope="module")
def agree_instances():
    out = []
    for case in AGREE_CASES:
        problem = make_problem(**case)
        out.append((case, problem, solve(problem, "enumerate")))
    return out


def check_against_enumerate(res, ref, problem):
    opt = ref.objective
    assert res.feasible and problem.is_feasible(res.x)
    assert res.objective >= opt - 1e-9 * abs(opt)  # enumerate's optimum is the optimum
    assert close(res.objective, opt, OBJ_RTOL)
    assert res.bound <= opt + 1e-9 * abs(opt)  # a valid lower bound
    if res.proven_optimal:
        assert close(res.objective, opt, 1e-9) and res.status == "optimal"


@pytest.mark.parametrize("k", range(len(AGREE_CASES)))
def test_oa_highs_agrees_with_enumerate(agree_instances, k):
    case, problem, ref = agree_instances[k]
    res = solve(problem, "oa-highs")
    check_against_enumerate(res, ref, problem)
    # the OA bound is exact up to float64 rounding: it proves
    assert res.proven_optimal, res.message
    assert res.info["iterations"] >= 1 or res.info.get("gap_closed") is None


@needs_scip
@pytest.mark.parametrize("k", range(len(AGREE_CASES)))
def test_pyomo_scip_agrees_with_enumerate(agree_instances, k):
    case, problem, ref = agree_instances[k]
    res = solve(problem, "pyomo-scip", stall_nodes=2000)  # its gap plateaus early (measured)
    check_against_enumerate(res, ref, problem)
    assert res.status in ("optimal", "feasible")
    assert res.gap <= 1e-7, res.message


def test_oa_exact_delegates_by_size():
    """The former ``exact`` dispatcher, kept as ``oa-exact`` (``exact`` is now the branch and
    bound of tests/test_joint_qp_exact.py)."""
    small = make_problem(p=9, seed=7)
    res = solve(small, "oa-exact")
    assert res.solver == "oa-exact" and res.info["delegate"] == "enumerate" and res.proven_optimal
    assert solve(small, "exact").objective == pytest.approx(res.objective, rel=1e-9)


def test_oa_time_limit_returns_feasible_point_and_valid_bound():
    problem = make_problem(p=14, n=6, seed=8)
    ref = solve(problem, "enumerate")
    res = solve(problem, "oa-highs", time_limit=0.05)
    assert res.feasible and res.status in ("time_limit", "optimal")
    assert res.bound <= ref.objective + 1e-9 * abs(ref.objective)


def test_magnitude_backsolve_is_the_backsolve_on_the_magnitude_projection():
    problem = make_problem(p=12, n=6, seed=9, linear=0.05)
    res = solve(problem, "magnitude-backsolve")
    ilp = solve(problem.joint_ilp(problem.w_bar ** 2), "exact")
    w = restricted_ridge(problem.X, problem.w_bar, problem.ridge, problem.linear, ilp.x,
                         problem.block_ptr)
    assert res.feasible and res.status == "feasible" and math.isnan(res.bound)
    assert res.objective == pytest.approx(problem.objective(w), rel=1e-12)
    assert res.objective >= solve(problem, "enumerate").objective * (1 - 1e-12)


def test_no_weights():
    problem = JointQuadraticProblem(X=np.zeros((3, 0)), w_bar=np.zeros(0), ridge=1.0,
                                    group_ptr=[0], flop_cost=[], nnz_budget=0, flop_budget=0.0)
    for spec in solver_specs(problem):
        if not spec.available():
            continue
        res = solve(problem, spec.name)
        assert res.feasible and res.objective == 0.0 and res.x.shape == (0,)
        if spec.exact:
            assert res.proven_optimal


def test_every_exact_solver_is_registered_and_infeasible_never_happens():
    problem = make_problem(p=6, seed=10, keep_nnz=0.0, keep_flops=0.0)  # only w = 0 fits
    names = available_solvers(problem)
    for name in ("enumerate", "oa-highs", "exact", "oa-exact", "magnitude-backsolve"):
        assert name in names
    for name in names:
        res = solve(problem, name)
        assert res.status != "infeasible" and res.feasible
        assert np.all(res.x == 0) and res.objective == pytest.approx(problem.objective(res.x))


# ------------------------------------------------------------------------------ big-M
def test_big_m_contains_the_whole_sublevel_set():
    """Points on the boundary {Q = U} in random directions all lie inside the bounds."""
    for case in (dict(p=12, n=4, seed=11, ridge=1e-3, linear=0.2),
                 dict(p=12, n=20, seed=12, blocks=3, ridge=0.01),
                 dict(p=10, n=0, seed=13, linear=1.0)):
        problem = make_problem(**case)
        inc = solve(problem, "magnitude-backsolve").x
        U = min(problem.objective(inc), problem.objective(np.zeros(problem.num_items)))
        M = problem.big_m(inc)
        H = dense_hessian(problem)
        du = -np.linalg.solve(H, problem.linear)
        q_star = 0.5 * problem.linear @ du
        rng = np.random.default_rng(0)
        Hinv = np.linalg.inv(H)
        # random directions, and ±H⁻¹e_i: the directions in which |w_i| is largest on {Q = U}
        V = np.vstack([rng.standard_normal((2000, problem.num_items)), Hinv, -Hinv])
        # Q(w̄ + d^u + t v) = Q* + ½ t² vᵀHv = U
        t = np.sqrt(2 * (U - q_star) / np.einsum("ki,ij,kj->k", V, H, V))
        W = problem.w_bar + du + t[:, None] * V
        assert np.all(np.abs(W) <= M * (1 + 1e-12))
        # and they are tight: attained (to 1e-6) by the extreme points of the ellipsoid
        assert np.all(M <= np.max(np.abs(W), axis=0) * (1 + 1e-6))


def test_big_m_ignores_an_infeasible_incumbent():
    problem = make_problem(p=8, seed=14)
    assert np.array_equal(problem.big_m(problem.w_bar), problem.big_m())  # w̄ breaks K


# ------------------------------------------------------------------------------ formulation
def test_objective_gradient_and_blocks_match_the_backsolve_module():
    problem = make_problem(p=12, n=5, seed=15, blocks=3, linear=0.3)
    rng = np.random.default_rng(1)
    w = rng.standard_normal(12)
    H = dense_hessian(problem)
    d = w - problem.w_bar
    assert problem.objective(w) == pytest.approx(0.5 * d @ H @ d + problem.linear @ d, rel=1e-12)
    assert problem.objective(w) == pytest.approx(quadratic_objective(
        problem.X, problem.w_bar, problem.ridge, problem.linear, w, problem.block_ptr), rel=1e-13)
    np.testing.assert_allclose(problem.gradient(w), H @ d + problem.linear, rtol=1e-12,
                               atol=1e-12)
    assert problem.objective(problem.w_bar) == 0.0
    full = make_problem(p=12, n=5, seed=15, blocks=1, linear=0.3)
    assert full.objective(w) != pytest.approx(problem.objective(w))  # blocks change Q


def test_evaluate_support_and_joint_ilp():
    problem = make_problem(p=10, seed=16)
    w = np.where(np.arange(10) % 3 == 0, problem.w_bar, 0.0)
    ev = problem.evaluate(w)
    s = problem.support(w)
    assert ev.usage["nnz"] == s.sum() and ev.limits["nnz"] == problem.nnz_budget
    assert ev.usage["flops"] == pytest.approx(problem.item_cost[s].sum())
    assert problem.is_feasible(w) == ev.is_feasible()
    ilp = problem.joint_ilp(problem.w_bar ** 2)
    assert isinstance(ilp, JointBudgetProblem)
    assert ilp.nnz_budget == problem.nnz_budget and ilp.flop_budget == problem.flop_budget
    np.testing.assert_array_equal(ilp.group_ptr, problem.group_ptr)
    assert problem.canonical([0] * 10).dtype == np.float64
    for bad in ([0.0] * 9, [math.nan] * 10, ["a"] * 10):
        with pytest.raises(ValueError, match="x:"):
            problem.canonical(bad)
        assert not problem.is_feasible(bad)


def test_pyomo_model_reads_like_the_program():
    pyo = pytest.importorskip("pyomo.environ")
    problem = make_problem(p=6, n=3, seed=17, blocks=2, linear=0.1)
    m = problem.to_pyomo()
    assert len(m.r) == 2 * 3 and len(m.z) == 6 and len(m.upper) == 6
    # at any w (with z = 1 and the residual definitions met) the objective is Q(w)
    w = np.random.default_rng(0).standard_normal(6) * 0.1
    for i in range(6):
        m.w[i].value, m.z[i].value = float(w[i]), 1.0
    bp = problem.blocks
    for b in range(2):
        r = problem.X[:, bp[b]:bp[b + 1]] @ (w - problem.w_bar)[bp[b]:bp[b + 1]]
        for j in range(3):
            m.r[b, j].value = float(r[j])
    assert pyo.value(m.loss) == pytest.approx(problem.objective(w), rel=1e-12)
    M = problem.big_m()
    assert [pyo.value(m.M[i]) for i in range(6)] == pytest.approx(M.tolist())


def test_save_load_roundtrip(tmp_path):
    problem = make_problem(p=9, n=4, seed=18, blocks=2, linear=0.2)
    named = JointQuadraticProblem(problem.X, problem.w_bar, problem.ridge, problem.linear,
                                  problem.group_ptr, problem.flop_cost, problem.nnz_budget,
                                  problem.flop_budget, problem.block_ptr, names=("a", "b", "c"))
    for prob in (problem, named, make_problem(p=5, seed=19)):
        path = tmp_path / "qp.npz"
        prob.save(path)
        for back in (JointQuadraticProblem.load(path), load_problem(path)):
            assert isinstance(back, JointQuadraticProblem)
            for field in ("X", "w_bar", "linear", "group_ptr", "flop_cost"):
                np.testing.assert_array_equal(getattr(back, field), getattr(prob, field))
            assert back.ridge == prob.ridge and back.nnz_budget == prob.nnz_budget
            assert back.flop_budget == prob.flop_budget and back.names == prob.names
            assert (back.block_ptr is None) == (prob.block_ptr is None)
            np.testing.assert_array_equal(back.blocks, prob.blocks)
    joint = tmp_path / "joint.npz"
    JointBudgetProblem([1.0, 2.0], [0, 2], [1.0], 1, 1.0).save(joint)
    with pytest.raises(ValueError, match="formulation"):
        JointQuadraticProblem.load(joint)
    arrays = dict(np.load(tmp_path / "qp.npz"))
    del arrays["ridge"]
    np.savez(tmp_path / "broken.npz", **arrays)
    with pytest.raises(ValueError, match="ridge: missing"):
        JointQuadraticProblem.load(tmp_path / "broken.npz")


def _base(**changes):
    rng = np.random.default_rng(0)
    kw = dict(X=rng.standard_normal((3, 4)), w_bar=np.ones(4), ridge=0.1, linear=np.zeros(4),
              group_ptr=[0, 2, 4], flop_cost=[1.0, 2.0], nnz_budget=2, flop_budget=3.0)
    kw.update(changes)
    return JointQuadraticProblem(**kw)


@pytest.mark.parametrize("changes, field", [
    (dict(ridge=0.0), "ridge"),
    (dict(ridge=-1.0), "ridge"),
    (dict(ridge=math.inf), "ridge"),
    (dict(X=np.full((3, 4), math.nan)), "X"),
    (dict(X=np.ones((3, 5))), "X"),
    (dict(X=np.ones(4)), "X"),
    (dict(w_bar=np.array([1.0, math.inf, 0.0, 0.0])), "w_bar"),
    (dict(linear=np.ones(3)), "linear"),
    (dict(linear=np.array([0.0, math.nan, 0.0, 0.0])), "linear"),
    (dict(group_ptr=[0, 2, 5]), "group_ptr"),
    (dict(group_ptr=[1, 2, 4]), "group_ptr"),
    (dict(flop_cost=[1.0]), "flop_cost"),
    (dict(flop_cost=[1.0, 0.0]), "flop_cost"),
    (dict(nnz_budget=-1), "nnz_budget"),
    (dict(nnz_budget=1.5), "nnz_budget"),
    (dict(flop_budget=math.nan), "flop_budget"),
    (dict(block_ptr=[0, 3]), "block_ptr"),
    (dict(block_ptr=[0, 3, 2, 4]), "block_ptr"),
    (dict(block_ptr=[4]), "block_ptr"),
    (dict(names=("a",)), "names"),
])
def test_bad_input_names_the_field(changes, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        _base(**changes)


def test_good_input_is_frozen_and_float64():
    problem = _base(X=np.ones((3, 4), dtype=np.float32), block_ptr=[0, 0, 4])
    assert problem.X.dtype == np.float64 and problem.kind == "joint-qp"
    assert problem.sense == "minimize"
    with pytest.raises(ValueError):
        problem.X[0, 0] = 2.0


# ------------------------------------------------------------------------------ crosscheck
def test_crosscheck_on_a_joint_qp_problem_has_no_flags():
    problem = make_problem(p=10, n=6, seed=20, blocks=2, linear=0.05)
    names = ["enumerate", "oa-highs", "exact", "oa-exact", "magnitude-backsolve"]
    if scip_available():
        names.append("pyomo-scip")
    df = crosscheck(problem, names, options={"pyomo-scip": {"stall_nodes": 2000}})
    assert list(df["verdict"]) == ["ok"] * len(names), df[["solver", "verdict", "message"]]
    assert df["feasible"].all()
    assert df.attrs["best_bound"] <= df.attrs["best_feasible"] * (1 + 1e-9)
    assert pruneopt.solve(problem, "enumerate").objective == pytest.approx(
        df.attrs["best_feasible"], rel=1e-12)

