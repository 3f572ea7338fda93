"""JointBudgetProblem: validation, evaluation, feasibility, and the .npz exchange format."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import brute_force, tiny_joint_problems
from hypothesis import given

import pruneopt
from pruneopt import JointBudgetProblem

BASE = dict(
    scores=np.array([1.0, 2.0, 3.0]),
    group_ptr=np.array([0, 2, 3]),
    flop_cost=np.array([2.0, 1.0]),
    nnz_budget=2,
    flop_budget=3.0,
)


def make(**changes) -> JointBudgetProblem:
    return JointBudgetProblem(**{**BASE, **changes})


# ------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    "changes, field",
    [
        (dict(scores=np.array([1.0, np.nan, 3.0])), "scores"),
        (dict(scores=np.array([1.0, np.inf, 3.0])), "scores"),
        (dict(scores=np.array([1.0, -np.inf, 3.0])), "scores"),
        (dict(scores=np.array([1.0, -0.5, 3.0])), "scores"),
        (dict(scores=np.array([[1.0, 2.0, 3.0]])), "scores"),  # 2-D
        (dict(scores=np.array(["a", "b", "c"])), "scores"),
        (dict(flop_cost=np.array([0.0, 1.0])), "flop_cost"),
        (dict(flop_cost=np.array([2.0, -1.0])), "flop_cost"),
        (dict(flop_cost=np.array([np.nan, 1.0])), "flop_cost"),
        (dict(flop_cost=np.array([np.inf, 1.0])), "flop_cost"),
        (dict(flop_cost=np.array([2.0])), "flop_cost"),  # wrong length (L = 2)
        (dict(flop_cost=np.array([2.0, 1.0, 1.0])), "flop_cost"),
        (dict(nnz_budget=-1), "nnz_budget"),
        (dict(nnz_budget=2.5), "nnz_budget"),
        (dict(nnz_budget=np.float64(0.1)), "nnz_budget"),
        (dict(nnz_budget=float("nan")), "nnz_budget"),
        (dict(nnz_budget=True), "nnz_budget"),
        (dict(nnz_budget=np.bool_(False)), "nnz_budget"),
        (dict(flop_budget=-1.0), "flop_budget"),
        (dict(flop_budget=-1e-12), "flop_budget"),
        (dict(flop_budget=float("nan")), "flop_budget"),
        (dict(flop_budget=float("inf")), "flop_budget"),
        (dict(flop_budget=True), "flop_budget"),
        (dict(flop_budget="lots"), "flop_budget"),
        (dict(group_ptr=np.array([1, 2, 3])), "group_ptr"),  # does not start at 0
        (dict(group_ptr=np.array([0, 3, 2])), "group_ptr"),  # decreasing
        (dict(group_ptr=np.array([0, 2, 4])), "group_ptr"),  # ends past p
        (dict(group_ptr=np.array([0, 1, 2])), "group_ptr"),  # ends before p
        (dict(group_ptr=np.array([0.0, 1.5, 3.0])), "group_ptr"),  # non-integer offsets
        (dict(group_ptr=np.array([[0, 2, 3]])), "group_ptr"),
        (dict(group_ptr=np.array([], dtype=np.int64), flop_cost=np.array([])), "group_ptr"),
        (dict(names=("only-one",)), "names"),
    ],
)
def test_bad_input_raises_naming_the_field(changes, field):
    with pytest.raises(ValueError, match=rf"^{field}:"):
        make(**changes)


def test_valid_inputs_are_coerced():
    p = make(scores=[1, 2, 3], group_ptr=[0.0, 2.0, 3.0], flop_cost=[2, 1], nnz_budget=np.int32(2),
             flop_budget=np.int64(3), names=["a", "b"])
    assert p.scores.dtype == np.float64 and p.flop_cost.dtype == np.float64
    assert p.group_ptr.dtype == np.int64
    assert type(p.nnz_budget) is int and p.nnz_budget == 2
    assert type(p.flop_budget) is float and p.flop_budget == 3.0
    assert p.names == ("a", "b")
    assert make(nnz_budget=2.0).nnz_budget == 2  # an integral float is an integer


def test_problem_does_not_alias_caller_arrays():
    scores = np.array([1.0, 2.0, 3.0])
    cost = np.array([2.0, 1.0])
    p = make(scores=scores, flop_cost=cost)
    scores[0] = 100.0
    cost[0] = 100.0
    assert p.scores[0] == 1.0 and p.flop_cost[0] == 2.0
    with pytest.raises(ValueError):
        p.scores[0] = 5.0  # read-only


def test_derived_quantities(small_problem):
    p = small_problem
    assert p.num_items == 7 and p.num_groups == 3
    np.testing.assert_array_equal(p.group_sizes, [3, 2, 2])
    np.testing.assert_array_equal(p.item_cost, [4, 4, 4, 2, 2, 1, 1])
    assert p.total_flops == 3 * 4 + 2 * 2 + 2 * 1
    np.testing.assert_array_equal(p.group_counts(np.array([1, 0, 1, 1, 1, 0, 0], dtype=bool)),
                                  [2, 2, 0])


# ------------------------------------------------------------------------------------ evaluation
@pytest.mark.parametrize(
    "x, objective, nnz, flops, feasible",
    [
        ([1, 0, 0, 1, 0, 1, 1], 17.0, 4, 8.0, True),  # the optimum
        ([1, 0, 1, 1, 0, 0, 0], 12.0, 3, 10.0, True),  # FLOP budget met with equality
        ([1, 1, 1, 0, 0, 0, 0], 9.0, 3, 12.0, False),  # over the FLOP budget only
        ([1, 0, 0, 1, 1, 1, 1], 17.0, 5, 10.0, False),  # over the NNZ budget only
        ([0, 0, 0, 0, 0, 0, 0], 0.0, 0, 0.0, True),
        ([1, 1, 1, 1, 1, 1, 1], 21.0, 7, 18.0, False),
    ],
)
def test_evaluate_hand_computed(small_problem, x, objective, nnz, flops, feasible):
    for form in (np.array(x, dtype=bool), np.array(x, dtype=np.int64), np.array(x, dtype=float),
                 list(x)):
        ev = small_problem.evaluate(form)
        assert ev.objective == objective
        assert ev.usage == {"nnz": nnz, "flops": flops}
        assert ev.limits == {"nnz": 4.0, "flops": 10.0}
        assert ev.is_feasible() is feasible
        assert small_problem.is_feasible(form) is feasible


def test_evaluate_violations_report_the_excess(small_problem):
    ev = small_problem.evaluate([1, 1, 1, 1, 1, 1, 1])
    assert ev.violations() == {"nnz": 3.0, "flops": 8.0}


@pytest.mark.parametrize("x", [
    [1, 0, 0, 1, 0, 1],  # too short
    [1, 0, 0, 1, 0, 1, 1, 0],  # too long
    [1, 0, 0, 2, 0, 1, 1],  # not 0/1
    [1, 0, 0, 0.5, 0, 1, 1],
    [1, 0, 0, np.nan, 0, 1, 1],
    [[1, 0, 0, 1, 0, 1, 1]],  # 2-D
])
def test_evaluate_rejects_non_selections(small_problem, x):
    with pytest.raises(ValueError, match=r"^x:"):
        small_problem.evaluate(np.array(x))
    assert small_problem.is_feasible(np.array(x)) is False


def test_is_feasible_tolerance_on_fractional_flop_budget():
    p = make(flop_budget=2.9999999)
    assert not p.is_feasible([0, 1, 1])  # costs 2 + 1 = 3 > 2.9999999
    assert p.is_feasible([1, 0, 0])
    assert make(flop_budget=3.0).is_feasible([0, 1, 1])


@given(tiny_joint_problems())
def test_evaluate_matches_direct_sums(problem):
    rng = np.random.default_rng(problem.num_items)
    x = rng.random(problem.num_items) < 0.5
    ev = problem.evaluate(x)
    assert ev.objective == pytest.approx(float(problem.scores @ x), rel=1e-12, abs=1e-12)
    assert ev.usage["nnz"] == int(x.sum())
    # the per-item costs, built independently from group_ptr
    cost = np.zeros(problem.num_items)
    for g in range(problem.num_groups):
        cost[problem.group_ptr[g]:problem.group_ptr[g + 1]] = problem.flop_cost[g]
    assert ev.usage["flops"] == pytest.approx(float(cost @ x), rel=1e-12)
    expected = x.sum() <= problem.nnz_budget and cost @ x <= problem.flop_budget
    assert problem.is_feasible(x) == expected


# ------------------------------------------------------------------------------------ degenerate budgets
@pytest.mark.parametrize("K, F", [(0, 10.0), (4, 0.0), (0, 0.0)])
def test_budgets_that_allow_only_the_empty_selection(small_problem, K, F):
    p = JointBudgetProblem(small_problem.scores, small_problem.group_ptr, small_problem.flop_cost,
                           nnz_budget=K, flop_budget=F)
    assert p.is_feasible(np.zeros(7, dtype=bool))
    for i in range(7):
        x = np.zeros(7, dtype=bool)
        x[i] = True
        assert not p.is_feasible(x)
    bf = brute_force(p)
    assert bf.optimum == 0.0 and bf.n_feasible == 1


def test_budgets_where_everything_fits(small_problem):
    p = JointBudgetProblem(small_problem.scores, small_problem.group_ptr, small_problem.flop_cost,
                           nnz_budget=100, flop_budget=1e6)
    assert p.is_feasible(np.ones(7, dtype=bool))
    assert brute_force(p).optimum == float(small_problem.scores.sum())
    assert brute_force(p).n_feasible == 2**7


def test_empty_layers_and_single_item_layers_are_valid():
    p = JointBudgetProblem([3.0, 1.0, 2.0], [0, 0, 1, 1, 3], [5.0, 2.0, 7.0, 1.0], 2, 4.0)
    np.testing.assert_array_equal(p.item_cost, [2.0, 1.0, 1.0])
    ev = p.evaluate([1, 1, 0])
    assert (ev.objective, ev.usage["flops"]) == (4.0, 3.0)


# ------------------------------------------------------------------------------------ exchange format
def _assert_same(a: JointBudgetProblem, b: JointBudgetProblem) -> None:
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.group_ptr, b.group_ptr)
    np.testing.assert_array_equal(a.flop_cost, b.flop_cost)
    assert a.scores.dtype == b.scores.dtype == np.float64
    assert a.group_ptr.dtype == b.group_ptr.dtype == np.int64
    assert a.nnz_budget == b.nnz_budget and type(b.nnz_budget) is int
    assert a.flop_budget == b.flop_budget and type(b.flop_budget) is float
    assert a.names == b.names


def test_save_load_round_trip_with_names(small_problem, tmp_path):
    path = tmp_path / "instance.npz"
    small_problem.save(path)
    for loaded in (JointBudgetProblem.load(path), pruneopt.load_problem(path),
                   pruneopt.load_problem(str(path))):
        assert isinstance(loaded, JointBudgetProblem)
        _assert_same(small_problem, loaded)
        assert loaded.names == ("conv1", "conv2", "fc")


def test_saved_file_follows_the_exchange_format(small_problem, tmp_path):
    path = tmp_path / "instance.npz"
    small_problem.save(path)
    with np.load(path, allow_pickle=False) as npz:
        assert {"scores", "group_ptr", "flop_cost", "nnz_budget", "flop_budget", "names"} <= set(
            npz.files)
        assert npz["scores"].dtype == np.float64
        assert npz["group_ptr"].dtype == np.int64
        assert npz["flop_cost"].dtype == np.float64
        assert npz["nnz_budget"].dtype.kind in "iu" and npz["nnz_budget"].shape == ()
        assert npz["flop_budget"].dtype.kind == "f" and npz["flop_budget"].shape == ()
        assert npz["names"].dtype.kind == "U"
        assert list(npz["names"]) == ["conv1", "conv2", "fc"]


def test_save_overwrites_and_leaves_no_temporary_files(small_problem, tmp_path):
    path = tmp_path / "instance.npz"
    make().save(path)
    small_problem.save(path)
    _assert_same(small_problem, JointBudgetProblem.load(path))
    assert sorted(f.name for f in tmp_path.iterdir()) == ["instance.npz"]


@given(tiny_joint_problems())
def test_save_load_round_trip_exact(tmp_path_factory, problem):
    path = tmp_path_factory.mktemp("rt") / "p.npz"
    names = tuple(f"layer {g} ü" for g in range(problem.num_groups))
    named = JointBudgetProblem(problem.scores, problem.group_ptr, problem.flop_cost,
                               problem.nnz_budget, problem.flop_budget, names=names)
    for original in (problem, named):
        original.save(path)
        loaded = JointBudgetProblem.load(path)
        _assert_same(original, loaded)
        assert np.array_equal(loaded.scores, original.scores)  # bit-exact floats


GOOD = dict(scores=np.array([1.0, 2.0, 3.0]), group_ptr=np.array([0, 2, 3], dtype=np.int64),
            flop_cost=np.array([2.0, 1.0]), nnz_budget=np.int64(2), flop_budget=np.float64(3.0))


def _write(path, drop=(), **changes):
    arrays = {k: v for k, v in {**GOOD, **changes}.items() if k not in drop}
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("missing", sorted(GOOD))
def test_load_file_missing_a_key(tmp_path, missing):
    path = _write(tmp_path / "f.npz", drop=(missing,))
    for loader in (JointBudgetProblem.load, pruneopt.load_problem):
        with pytest.raises(ValueError, match=rf"^{missing}:"):
            loader(path)


@pytest.mark.parametrize(
    "changes, field",
    [
        (dict(scores=np.array([1, 2, 3])), "scores"),  # int scores
        (dict(scores=np.array([True, False, True])), "scores"),
        (dict(scores=np.array(["1", "2", "3"])), "scores"),
        (dict(group_ptr=np.array([0.0, 2.0, 3.0])), "group_ptr"),  # float group_ptr
        (dict(flop_cost=np.array([2, 1])), "flop_cost"),
        (dict(nnz_budget=np.float64(2.0)), "nnz_budget"),
        (dict(nnz_budget=np.bool_(True)), "nnz_budget"),
        (dict(nnz_budget=np.array([2, 3])), "nnz_budget"),
        (dict(flop_budget=np.array("3")), "flop_budget"),
        (dict(flop_budget=np.array([3.0, 4.0])), "flop_budget"),
        (dict(scores=np.array([1.0, np.nan, 3.0])), "scores"),  # bad values, good dtype
        (dict(scores=np.array([1.0, 2.0, -3.0])), "scores"),
        (dict(group_ptr=np.array([0, 2, 4])), "group_ptr"),
        (dict(nnz_budget=np.int64(-1)), "nnz_budget"),
        (dict(names=np.array([1, 2])), "names"),
        (dict(names=np.array(["a", "b", "c"])), "names"),
        (dict(formulation=np.array("no-such-formulation")), "formulation"),
    ],
)
def test_load_rejects_bad_fields(tmp_path, changes, field):
    path = _write(tmp_path / "f.npz", **changes)
    for loader in (JointBudgetProblem.load, pruneopt.load_problem):
        with pytest.raises(ValueError, match=rf"^{field}:"):
            loader(path)


def test_load_accepts_an_integer_flop_budget_and_untagged_files(tmp_path):
    path = _write(tmp_path / "f.npz", flop_budget=np.int64(3))
    p = pruneopt.load_problem(path)
    assert p.flop_budget == 3.0 and type(p.flop_budget) is float


def test_load_pickle_requiring_object_array(tmp_path):
    path = _write(tmp_path / "f.npz", names=np.array(["a", "b"], dtype=object))
    for loader in (JointBudgetProblem.load, pruneopt.load_problem):
        with pytest.raises(ValueError, match=r"^file:"):
            loader(path)
    path = _write(tmp_path / "g.npz", scores=np.array([1.0, 2.0, 3.0], dtype=object))
    for loader in (JointBudgetProblem.load, pruneopt.load_problem):
        with pytest.raises(ValueError, match=r"^file:"):
            loader(path)


def test_load_text_file(tmp_path):
    path = tmp_path / "f.npz"
    path.write_text("scores,group_ptr\n1,2\n")
    for loader in (JointBudgetProblem.load, pruneopt.load_problem):
        with pytest.raises(ValueError, match=r"^file:"):
            loader(path)


def test_load_npy_file_is_a_value_error(tmp_path):
    """A plain .npy array is not an exchange file: a ValueError naming the file, not a TypeError."""
    path = tmp_path / "scores.npy"
    np.save(path, np.array([1.0, 2.0, 3.0]))
    for loader in (JointBudgetProblem.load, pruneopt.load_problem):
        with pytest.raises(ValueError, match=r"^file:"):
            loader(path)


def test_load_missing_file(tmp_path):
    for loader in (JointBudgetProblem.load, pruneopt.load_problem):
        with pytest.raises(ValueError, match=r"^file:"):
            loader(tmp_path / "nope.npz")
