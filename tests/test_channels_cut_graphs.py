"""``exact`` channel selection where the count DP must cut edges (dense concatenations, as in
DenseNet and GoogLeNet): CP-SAT first, then P1 / P1′, against enumeration of every count vector.

The count DP's table limit is lowered for the test so that small, densely coupled instances take
that path (on the real networks the default limit is what forces the cuts)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from solver_test_helpers import brute_counts, make_channels

import pruneopt
from pruneopt.solvers.fast.channels import elimination


@pytest.fixture
def tiny_tables(monkeypatch):
    real = elimination.CountElimination.__init__

    def small(self, problem, max_table=16, deadline=None):
        real(self, problem, 16, deadline)

    monkeypatch.setattr(elimination.CountElimination, "__init__", small)


def dense_instance(seed: int, keep: float):
    """Five groups of 3–5 channels, every pair coupled (a concatenation feeding every later
    group), random scores with ties."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(3, 6, 5).tolist()
    edges = list(itertools.combinations(range(5), 2))
    coef = rng.integers(1, 10, len(edges)).astype(float)
    b = rng.integers(0, 20, 5).astype(float)
    scores = np.round(rng.exponential(1.0, sum(sizes)), 1)
    full = float(np.sum(b * sizes) + sum(c * sizes[g] * sizes[h]
                                         for (g, h), c in zip(edges, coef, strict=True)))
    return make_channels(sizes, scores=scores, edges=edges, coef=coef, b=b, F=keep * full)


# the fixture only lowers a table limit: the same for every example
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), keep=st.floats(0.05, 0.9))
def test_exact_on_cut_graphs_equals_enumeration(tiny_tables, seed, keep):
    problem = dense_instance(seed, keep)
    assert elimination.CountElimination(problem).cuts  # the path under test
    opt, _ = brute_counts(problem)
    r = pruneopt.solve(problem, "exact", time_limit=60)
    if opt is None:
        assert r.status == "infeasible"
        return
    assert r.proven_optimal, r.message
    assert abs(r.objective - opt) <= 1e-9 * max(1.0, abs(opt))
    assert problem.is_feasible(r.x)
