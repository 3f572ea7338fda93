"""Canonical small problems of every formulation, their brute-force optima, and instance builders
shared by the solver tests (tests/test_solver_contract.py runs every registered solver on them).

* builders: ``J`` (joint, from conftest), ``A`` (allocation, per-layer lists), ``make_channels``,
  ``make_qp`` (a random joint-qp instance);
* oracles: ``optimum(problem)`` — the exact optimum by enumeration (None when no decision is
  feasible), dispatching to ``brute_force`` (joint, conftest), ``brute_force_allocation``,
  ``brute_counts`` (channels) and ``brute_force_qp``;
* ``CANONICAL[kind]`` — tiny instances with known optima, edge cases included (zero budget,
  everything fits, ties, infeasible where the formulation can be infeasible); ``MID[kind]`` — a
  generated instance beyond brute force; ``LIMITED[kind]`` — an instance a 0.01 s time limit
  interrupts, with ``REFERENCE[kind]`` the fast solver whose bound and objective bracket it;
* ``DECISION[kind]`` — the dtype and the size attribute of a decision x.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import cache

import numpy as np
from conftest import J, brute_force

from pruneopt.formulations.allocation.generate import generate_allocation
from pruneopt.formulations.allocation.problem import AllocationProblem
from pruneopt.formulations.channels.generate import generate_channels
from pruneopt.formulations.channels.problem import ChannelProblem
from pruneopt.formulations.joint.generate import generate_joint
from pruneopt.formulations.joint_qp.problem import JointQuadraticProblem

KINDS = ("joint", "joint-qp", "allocation", "channels")


# ------------------------------------------------------------------------------------ builders
def A(losses, nnz, flops, K=None, F=None, **kw) -> AllocationProblem:
    """An allocation problem from per-layer lists."""
    return AllocationProblem.from_layers(
        [np.asarray(v, dtype=float) for v in losses], [np.asarray(v) for v in nnz],
        [np.asarray(v, dtype=float) for v in flops], K, F, **kw)


def make_channels(sizes, scores=None, edges=(), coef=(), b=None, c0=0.0, F=1e9, min_keep=None,
                  blocks=None, names=None) -> ChannelProblem:
    """A channel problem from group sizes (scores default to N, N−1, .., 1)."""
    sizes = list(sizes)
    N = sum(sizes)
    scores = np.arange(N, 0, -1, dtype=float) if scores is None else np.asarray(scores, float)
    return ChannelProblem(
        scores=scores, channel_ptr=np.concatenate(([0], np.cumsum(sizes))).astype(np.int64),
        edges=np.array(edges, dtype=np.int64).reshape(-1, 2), edge_coef=np.array(coef, float),
        linear_coef=np.zeros(len(sizes)) if b is None else np.asarray(b, float), const=c0,
        flop_budget=F, min_keep=min_keep, blocks=blocks, names=names)


def random_qp(p: int = 500, n: int = 128, layers: int = 10, seed: int = 0):
    """A random joint MIQP where a 1 s limit binds for the exact solvers (tests/test_time_limits.py
    and benchmarks/time_limits.py)."""
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, p), layers - 1, replace=False))
    sizes = np.diff(np.concatenate(([0], cuts, [p]))).astype(np.int64)
    costs = rng.choice([1.0, 16.0, 64.0, 256.0], layers)
    return JointQuadraticProblem(
        X=rng.standard_normal((n, p)) * 0.5, w_bar=rng.standard_normal(p) * 0.3, ridge=0.05,
        group_ptr=np.concatenate(([0], np.cumsum(sizes))), flop_cost=costs,
        nnz_budget=int(0.5 * p), flop_budget=0.4 * float(sizes @ costs))


def make_qp(*, p=10, n=6, layers=3, blocks=1, seed=0, ridge=0.05, linear=0.0,
            keep_nnz=0.5, keep_flops=0.4, zeros=0) -> JointQuadraticProblem:
    """A random joint-qp instance: layer sizes ≥ 1, CNN-like MAC costs, optional blocks and a."""
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, p), layers - 1, replace=False)) if layers > 1 else []
    sizes = np.diff(np.concatenate(([0], cuts, [p]))).astype(np.int64)
    costs = rng.choice([1.0, 16.0, 64.0, 256.0], layers)
    w = rng.standard_normal(p) * 0.3
    if zeros:
        w[rng.choice(p, zeros, replace=False)] = 0.0
    bp = None
    if blocks > 1:
        bcuts = np.sort(rng.choice(np.arange(1, p), blocks - 1, replace=False))
        bp = np.concatenate(([0], bcuts, [p])).astype(np.int64)
    return JointQuadraticProblem(
        X=rng.standard_normal((n, p)) * 0.5, w_bar=w, ridge=ridge,
        linear=linear * rng.standard_normal(p),
        group_ptr=np.concatenate(([0], np.cumsum(sizes))), flop_cost=costs,
        nnz_budget=int(keep_nnz * p), flop_budget=keep_flops * float(sizes @ costs),
        block_ptr=bp)


# ------------------------------------------------------------------------------------ oracles
@dataclass(frozen=True)
class BruteForceAllocation:
    optimum: float | None  # None: no choice meets the budgets
    choice: np.ndarray | None
    n_feasible: int


def brute_force_allocation(p: AllocationProblem) -> BruteForceAllocation:
    """Every combination of one option per layer (strict budgets: the data are exact)."""
    combos = np.array(list(itertools.product(*[range(s) for s in p.option_counts.tolist()])),
                      dtype=np.int64)
    idx = combos + p.option_ptr[:-1]
    E = p.loss[idx].sum(axis=1)
    N = p.nnz[idx].sum(axis=1)
    Fl = p.flops[idx].sum(axis=1)
    ok = (N <= p.nnz_limit) & (Fl <= p.flop_limit)
    if not ok.any():
        return BruteForceAllocation(None, None, 0)
    best = int(np.argmin(np.where(ok, E, np.inf)))
    return BruteForceAllocation(float(E[best]), combos[best], int(ok.sum()))


def brute_counts(p: ChannelProblem):
    """(optimum, counts) over every allowed count vector, or (None, None) when infeasible."""
    grid = np.array(list(itertools.product(*[p.allowed_counts(g) for g in
                                            range(p.num_groups)])), dtype=np.int64)
    ok = p.counts_feasible(grid)
    if not ok.any():
        return None, None
    vals = np.where(ok, p.value_of_counts(grid), -np.inf)
    j = int(np.argmax(vals))
    return float(vals[j]), grid[j]


def dense_hessian(problem: JointQuadraticProblem) -> np.ndarray:
    """blockdiag(X_bᵀX_b) + λI, built independently of the solvers (a block mask on XᵀX)."""
    p = problem.num_items
    block_of = np.searchsorted(problem.blocks, np.arange(p), side="right")
    same = block_of[:, None] == block_of[None, :]
    return (problem.X.T @ problem.X) * same + problem.ridge * np.eye(p)


def brute_force_qp(problem: JointQuadraticProblem):
    """min over ALL 2^p supports meeting both budgets of the restricted optimum (dense solve);
    returns (optimum, its w, number of feasible supports)."""
    p, H, a, wb = problem.num_items, dense_hessian(problem), problem.linear, problem.w_bar
    K, F = problem.nnz_budget, problem.flop_budget
    cost = problem.item_cost
    best, best_w, feasible = math.inf, None, 0
    for code in range(1 << p):
        s = ((code >> np.arange(p)) & 1).astype(bool)
        if s.sum() > K or cost[s].sum() > F + 1e-9 * max(1.0, F):
            continue
        feasible += 1
        d = -wb.copy()
        d[s] = 0.0
        if s.any():
            rhs = -(H[np.ix_(s, ~s)] @ d[~s]) - a[s]
            d[s] = np.linalg.solve(H[np.ix_(s, s)], rhs)
        q = 0.5 * d @ H @ d + a @ d
        if q < best:
            best, best_w = q, wb + d
    return best, best_w, feasible


def optimum(problem) -> float | None:
    """The exact optimum of a tiny problem of any formulation (None when infeasible)."""
    if problem.kind == "joint":
        return brute_force(problem).optimum
    if problem.kind == "allocation":
        return brute_force_allocation(problem).optimum
    if problem.kind == "channels":
        return brute_counts(problem)[0]
    if problem.kind == "joint-qp":
        return brute_force_qp(problem)[0]
    raise ValueError(f"no brute force for {problem.kind}")


def scale_of(problem) -> float:
    """A magnitude for relative tolerances: the objective's natural scale (at least 1)."""
    if problem.kind == "joint":
        return max(1.0, float(np.sum(problem.scores)))
    if problem.kind == "allocation":
        return max(1.0, float(np.sum(np.abs(problem.loss))))
    if problem.kind == "channels":
        return max(1.0, float(np.sum(problem.scores)))
    return max(1.0, abs(problem.objective(np.zeros(problem.num_items))))  # Q at w = 0


# ------------------------------------------------------------------------------------ instances
@dataclass(frozen=True)
class Case:
    name: str
    problem: object
    must_accept: bool = True  # False: a solver may refuse it (ValueError), e.g. dp off a chain


_CHANNEL_HAND = dict(sizes=[2, 3, 2], scores=[3.0, 1.0, 2.0, 2.0, 5.0, 4.0, 0.0],
                     edges=[(0, 1), (1, 2), (2, 2)], coef=[4.0, 2.0, 1.0], b=[10.0, 0.0, 3.0],
                     c0=7.0, F=60.0)
_COLLAPSE = dict(scores=[5.0, 4.0, 0.2, 0.1], edges=[(0, 1), (1, 0)], coef=[10.0, 10.0],
                 b=[1.0, 0.0], F=10.0, min_keep=[1, 2], blocks=[-1, 0])


def _separable_ties_qp() -> JointQuadraticProblem:
    """No data (n = 0): Q = ½‖w − w̄‖², so the optimum keeps the largest |w̄| — here tied."""
    return JointQuadraticProblem(X=np.zeros((0, 5)), w_bar=np.array([1.0, -1.0, 1.0, 0.5, 0.0]),
                                 ridge=1.0, group_ptr=[0, 2, 5], flop_cost=[1.0, 1.0],
                                 nnz_budget=2, flop_budget=10.0)


@cache
def canonical(kind: str) -> tuple[Case, ...]:
    """The canonical tiny instances of a formulation (built once)."""
    if kind == "joint":
        hand = ([5.0, 1.0, 3.0, 4.0, 0.0, 2.0, 6.0], [3, 2, 2], [4.0, 2.0, 1.0])
        return (
            Case("hand", J(*hand, 4, 10.0)),  # optimum 17
            Case("zero-nnz-budget", J(*hand, 0, 1e6)),
            Case("zero-flop-budget", J(*hand, 100, 0.0)),
            Case("everything-fits", J(*hand, 100, 1e6)),  # optimum 21
            Case("ties", J([2.0, 2.0, 2.0, 1.0, 1.0, 1.0], [3, 3], [2.0, 1.0], 3, 4.0)),
            Case("empty-and-single-layers",
                 J([3.0, 0.0, 0.0, 2.0, 5.0], [1, 0, 2, 1, 0, 1], [2.0, 9.0, 1.0, 2.0, 4.0, 3.0],
                   2, 5.0)),
            Case("fractional-costs", J([4.0, 3.0, 2.5, 1.0, 0.5], [2, 3], [1.5, 0.7], 4, 3.6)),
            Case("no-items", J([], [0], [3.0], 0, 0.0)),
        )
    if kind == "allocation":
        return (
            Case("hand", A([[5.0, 2.0, 0.0], [4.0, 1.0], [3.0, 0.5, 0.0]],
                           [[1, 2, 4], [2, 5], [1, 3, 6]], [[4, 8, 16], [2, 5], [9, 27, 54]],
                           K=9, F=40.0)),  # optimum 6
            Case("zero-budgets", A([[1.0, 2.0], [0.0, -3.0]], [[0, 0], [0, 0]],
                                   [[0, 0], [0, 0]], K=0, F=0.0)),
            Case("everything-fits", A([[3.0, 1.0, 0.0], [2.0, 0.0]], [[1, 2, 3], [1, 2]],
                                      [[1, 2, 3], [1, 2]])),  # no budgets
            Case("ties", A([[0.0, 0.0, 0.0], [1.0, 1.0]], [[1, 1, 1], [2, 2]],
                           [[1, 2, 3], [1, 1]], K=3, F=2.0)),
            Case("negatives", A([[-1.0, -2.0], [4.0, -5.0]], [[1, 3], [2, 4]], [[1, 3], [2, 4]],
                                K=5, F=5.0)),
            Case("infeasible", A([[1.0, 0.0], [2.0, 1.0]], [[3, 4], [2, 5]], [[1, 1], [1, 1]],
                                 K=4, F=100.0)),
        )
    if kind == "channels":
        hand = make_channels(**_CHANNEL_HAND)
        least = make_channels([2, 2], edges=[(0, 1)], coef=[3.0], b=[2.0, 0.0], c0=5.0, F=10.0)
        return (
            Case("hand", hand),
            Case("everything-fits", hand.replace(flop_budget=1e9)),
            Case("ties", make_channels([3, 2, 2], scores=[1.0, 1.0, 1.0, 2.0, 2.0, 0.0, 0.0],
                                       edges=[(0, 1), (1, 2)], coef=[1.0, 1.0], F=9.0)),
            Case("collapse", make_channels([2, 2], **_COLLAPSE)),  # optimum 9, branch collapsed
            # the budget is exactly the least FLOPs: c₀ + min-keep 1 everywhere = 5 + 2 + 3
            Case("budget-at-least-flops", least),
            Case("infeasible", least.replace(flop_budget=9.0)),
            Case("triangle", make_channels([2, 2, 2], edges=[(0, 1), (1, 2), (2, 0)],
                                           coef=[1.0, 1.0, 1.0], F=8.0), must_accept=False),
        )
    if kind == "joint-qp":
        return (
            Case("small", make_qp(p=7, n=5, seed=1)),
            Case("blocks-and-linear", make_qp(p=8, n=4, seed=2, blocks=3, linear=0.1)),
            Case("zero-budget", make_qp(p=6, seed=10, keep_nnz=0.0, keep_flops=0.0)),
            Case("everything-fits", make_qp(p=6, seed=3, keep_nnz=1.0, keep_flops=1.0)),
            Case("separable-ties", _separable_ties_qp()),
            Case("no-weights", JointQuadraticProblem(
                X=np.zeros((3, 0)), w_bar=np.zeros(0), ridge=1.0, group_ptr=[0], flop_cost=[],
                nnz_budget=0, flop_budget=0.0)),
        )
    raise ValueError(kind)


@cache
def mid(kind: str):
    """A generated instance beyond brute force (its exact solvers must agree)."""
    return {
        "joint": lambda: generate_joint(layers=6, items=150, dist="exponential", keep_nnz=0.4,
                                        keep_flops=0.35, seed=11),
        "allocation": lambda: generate_allocation(30, 8, 2),
        "channels": lambda: generate_channels("random", seed=4, groups=5, channels=5,
                                              keep_flops=0.4, collapse=True),
        "joint-qp": lambda: make_qp(p=12, n=6, seed=9, blocks=2, linear=0.05),
    }[kind]()


@cache
def limited(kind: str):
    """An instance that a 0.01 s time limit interrupts in the exact solvers."""
    return {
        "joint": lambda: generate_joint(layers=8, items=3000, dist="uniform", keep_nnz=0.4,
                                        keep_flops=0.3, seed=1),
        "allocation": lambda: generate_allocation(40, 12, 5),
        "channels": lambda: generate_channels("chain", seed=3, groups=8, channels=16,
                                              keep_flops=0.35, dist="exponential"),
        "joint-qp": lambda: make_qp(p=18, n=6, seed=2),
    }[kind]()


# the fast solver whose certified bound and feasible objective bracket the optimum of LIMITED
REFERENCE = {"joint": "falcon", "allocation": "fast", "channels": "fast", "joint-qp": "falcon"}

# dtype of a decision x and the problem attribute that is its length
DECISION = {"joint": (np.bool_, "num_items"), "channels": (np.bool_, "num_channels"),
            "allocation": (np.int64, "num_layers"), "joint-qp": (np.float64, "num_items")}


def better_or_equal(problem, a: float, b: float, tol: float) -> bool:
    """a is at least as good as b (up to tol) in the problem's sense."""
    return a >= b - tol if problem.sense == "maximize" else a <= b + tol
