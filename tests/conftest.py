"""Shared fixtures and hypothesis strategies for the pruneopt test suite.

* ``tiny_joint_problems()`` — a hypothesis strategy for tiny joint FLOP/NNZ instances
  (p <= 14 items, 1-4 layers, layers of one item and empty layers included, scores with ties and
  zeros, integer MAC costs 1..50, budgets from 0 to beyond the totals);
* ``brute_force(problem)`` — the exact optimum by enumerating all 2^p selections in numpy.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from pruneopt import JointBudgetProblem

MAX_ITEMS = 14

# "ci" (the default) replays the same examples on every run so that the suite is deterministic;
# HYPOTHESIS_PROFILE=explore draws fresh random examples (and more of them) to hunt for new bugs.
settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "explore",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# ------------------------------------------------------------------------------------ strategy
# Scores: a small pool of values so that ties and zeros are frequent, mixed with arbitrary floats.
_tie_scores = st.sampled_from([0.0, 0.0, 1.0, 1.0, 2.0, 3.0, 0.5, 7.25])
_free_scores = st.floats(min_value=1e-6, max_value=100.0, allow_nan=False, allow_infinity=False,
                         allow_subnormal=False)
score_values = st.one_of(_tie_scores, _free_scores)


@st.composite
def tiny_joint_problems(draw, min_items: int = 1, max_items: int = MAX_ITEMS,
                        max_layers: int = 4) -> JointBudgetProblem:
    """A tiny joint instance; group sizes may be 0 (empty layers) or 1."""
    n_layers = draw(st.integers(1, max_layers))
    p = draw(st.integers(min_items, max_items))
    # layer boundaries: equal cut points make empty layers, adjacent ones single-item layers
    cuts = sorted(draw(st.lists(st.integers(0, p), min_size=n_layers - 1, max_size=n_layers - 1)))
    sizes = np.diff([0, *cuts, p]).tolist()
    scores = draw(st.lists(score_values, min_size=p, max_size=p))
    costs = draw(st.lists(st.integers(1, 50), min_size=n_layers, max_size=n_layers))
    total_flops = int(np.dot(sizes, costs))
    nnz_budget = draw(st.integers(0, p + 3))
    flop_budget = draw(st.one_of(
        st.integers(0, total_flops + 60).map(float),
        st.floats(0.0, total_flops + 60.0, allow_nan=False, allow_infinity=False,
                  allow_subnormal=False),
    ))
    return JointBudgetProblem(
        scores=np.array(scores, dtype=np.float64),
        group_ptr=np.concatenate(([0], np.cumsum(sizes))).astype(np.int64),
        flop_cost=np.array(costs, dtype=np.float64),
        nnz_budget=nnz_budget,
        flop_budget=flop_budget,
    )


# ------------------------------------------------------------------------------------ brute force
@dataclass(frozen=True)
class BruteForce:
    optimum: float
    x: np.ndarray  # one optimal selection (bool[p])
    n_feasible: int


def all_selections(p: int) -> np.ndarray:
    """Every 0/1 vector of length p as the rows of a bool (2^p, p) matrix."""
    codes = np.arange(2**p, dtype=np.int64)[:, None]
    return ((codes >> np.arange(p, dtype=np.int64)) & 1).astype(bool)


def brute_force(problem: JointBudgetProblem) -> BruteForce:
    """The exact optimum of a joint problem by enumeration (vectorised over all 2^p subsets)."""
    p = problem.num_items
    if p > 20:
        raise ValueError("brute force is for tiny instances only")
    m = all_selections(p)
    mf = m.astype(np.float64)
    obj = mf @ problem.scores
    nnz = m.sum(axis=1)
    flops = mf @ problem.item_cost
    feasible = (nnz <= problem.nnz_budget) & (
        flops <= problem.flop_budget + 1e-9 * max(1.0, problem.flop_budget))
    # the empty selection always meets both budgets (K, F >= 0)
    assert feasible[0]
    obj = np.where(feasible, obj, -np.inf)
    best = int(np.argmax(obj))
    return BruteForce(optimum=float(obj[best]), x=m[best].copy(), n_feasible=int(feasible.sum()))


def scale_of(problem: JointBudgetProblem) -> float:
    """A magnitude for relative tolerances: the sum of the scores (at least 1)."""
    return max(1.0, float(np.sum(problem.scores)))


def rel_close(a: float, b: float, rel: float = 1e-9, scale: float = 1.0) -> bool:
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= rel * max(abs(a), abs(b), scale)


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture
def small_problem() -> JointBudgetProblem:
    """A hand-sized instance: three layers, budgets that both bind."""
    return JointBudgetProblem(
        scores=np.array([5.0, 1.0, 3.0, 4.0, 0.0, 2.0, 6.0]),
        group_ptr=np.array([0, 3, 5, 7]),
        flop_cost=np.array([4.0, 2.0, 1.0]),
        nnz_budget=4,
        flop_budget=10.0,
        names=("conv1", "conv2", "fc"),
    )


# ------------------------------------------------------------------------------ known hard cases
def J(scores, sizes, costs, K, F) -> JointBudgetProblem:
    return JointBudgetProblem(np.asarray(scores, dtype=float),
                              np.concatenate(([0], np.cumsum(sizes))).astype(np.int64),
                              np.asarray(costs, dtype=float), K, F)


# Instances that once exposed bugs (each fixed); both solver test files run every one of them.
KNOWN_HARD = [
    J([0.9], [1], [3.0], 1, 0.0),
    # λ_max·c rounds below the top score: the dual's "feasible" end is over the FLOP budget
    J([0.9, 0.1], [1, 1], [3.0, 1.0], 1, 2.0),
    J([0.9, 0.1, 0.05], [1, 2], [3.0, 1.0], 2, 2.5),
    J([2.0, 1e-9, 0.0, 7.966351022744702, 2.0, 61.80733757863367], [6], [6.0], 3, 0.0),
    J([0.1, 0.7, 0.3], [3], [1.0], 1, 0.0),
    J([21.792871343611015, 0.0, 51.93257595015448, 22.31781892874611, 0.0, 2.0, 1e-05, 1e-06,
       0.5, 1.1, 39.362056968966144, 1e-06], [2, 0, 10, 0], [41.0, 36.0, 1.0, 28.0], 9, 32.0),
    J([0.0, 11.0, 11.0, 1e-6], [4], [1.0], 3, 3.0),
    J([2.0, 2.0], [2], [6.0], 1, 0.0),
    J([1.0, 1.0, 1.0, 0.0], [1, 3], [2.0, 2.0], 2, 3.0),
    J([1.0, 1e-21], [2], [1.0], 5, 1.5),
    # one-item layers, empty layers, all-zero layers
    J([3.0, 0.0, 0.0, 2.0, 5.0], [1, 0, 2, 1, 0, 1], [2.0, 9.0, 1.0, 2.0, 4.0, 3.0], 2, 5.0),
    J([0.0, 0.0, 0.0], [1, 2], [1.0, 2.0], 3, 10.0),
    # a non-integer FLOP budget and non-integer costs
    J([4.0, 3.0, 2.5, 1.0, 0.5], [2, 3], [1.5, 0.7], 4, 3.6),
]


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test (pytest -n 2 already uses both cores), restored after."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def trained_digits_cnn():
    """(model, channel graph, data split) of the digits CNN trained with seed 0."""
    from pruneopt.models.channels import build_channel_graph
    from pruneopt.models.digits import load_digits_split, trained_model

    model = trained_model("digits-cnn", seed=0)
    data = load_digits_split(0)
    return model, build_channel_graph(model, data.X_train[:1]), data
