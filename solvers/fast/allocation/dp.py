"""Exact dynamic programs for the layer budget allocation (multiple-choice knapsack).

**Integer resources.** A budget row Σ w y ≤ B enters a DP only when its coefficients are
integers: NNZ always are; MACs are when every f (times the smallest u = 10^k, k ≤ 6) is integral.
Each row is then reduced without changing the feasible set:

* per-layer shift — exactly one option per layer is chosen, so with w̲_g = min_j w_gj the row
  reads Σ (w − w̲_g) y ≤ B − Σ_g w̲_g;
* common divisor — with d = gcd of all shifted w, Σ (w/d) y ≤ ⌊(B − Σ w̲)/d⌋ (integers);
* cap — B is lowered to Σ_g max_j w_gj when it exceeds it; the row is *redundant* (dropped)
  when that sum fits, and the program is infeasible when B − Σ w̲ < 0.

The state space of a row is S = B + 1 (after the reductions); ⌊·⌋ of the scaled budget allows a
1e-12 relative slack (see :func:`pruneopt.formulations.allocation.problem.integer_budget`).

**One active row** (the other absent or redundant): with T_0(c) = 0 for c = 0..B,

    T_g(c) = min_j T_{g−1}(c − w_gj) + e_gj      (c ≥ w_gj; +inf otherwise)

is the least loss of layers 0..g with resource use ≤ c, and T_L(B) is the optimum (+inf:
infeasible). Each layer is one pass over its options, each a vectorised operation over all S
states (no Python loop over states); the argmin of every layer and state is kept (int16/int32,
L × S) to read the choice back. Options dominated within their layer (no less resource, no
smaller loss) are dropped first. Work: Σ_g |J_g| · S cell updates.

**Two active rows**: the same recursion over the product space (c_A, c_B), S_A × S_B states,
when that is small enough (``max_cells``/``max_table_bytes``).

**When it refuses.** :class:`DpRefused` (a ``ValueError`` starting "dp: ") is raised, before any
work, when an active (non-redundant) row has non-integer coefficients, or when the work
Σ_g |J_g| · Π S exceeds ``max_cells`` (default 2e9) or the argmin table L · Π S exceeds
``max_table_bytes`` (default 1 GiB). With real layer sizes (10^5..10^7 weights) the NNZ row
alone has millions of states and both rows together far too many: the ``exact`` solver then
uses HiGHS. There is no inexact fallback: whenever the DP answers, the answer is proven.

The result is exact: the returned choice attains T_L(B) and nothing better exists. Its bound is
T_L(B), which differs from the objective recomputed by ``evaluate`` only by the order of a
floating-point summation; when the two agree to 1e-12 of Σ|e| over the choice the recomputed
value is reported (the DP has proven this choice optimal).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from pruneopt.formulations.allocation.problem import integer_budget, integer_unit
from pruneopt.solvers.constants import Status

MAX_CELLS = 2_000_000_000  # Σ_g |J_g| · (states): beyond this the DP refuses
MAX_TABLE_BYTES = 1 << 30  # the argmin table (L × states) may use at most this much memory
SLAB_STATES = 1 << 22  # states relaxed between two readings of the clock (about 0.02 s)


class DpRefused(ValueError):
    """The DP cannot solve this instance exactly within its limits (the message says why)."""


@dataclass(frozen=True, eq=False)
class IntegerRow:
    """One budget row in DP units: Σ_j w_gj y_gj ≤ B, w ≥ 0 integers with min_j w_gj = 0."""

    name: str
    w: np.ndarray  # int64[n]
    B: int  # -1: infeasible on its own
    unit: float  # u (MACs multiplied by it are integers)
    divisor: int  # d
    redundant: bool

    @property
    def states(self) -> int:
        return self.B + 1


def integer_row(name: str, values: np.ndarray, budget: float, ptr: np.ndarray,
                layer: np.ndarray) -> IntegerRow | None:
    """The row in DP units, or None when its coefficients are not integers (see the module)."""
    if values.dtype.kind in "iu":
        u, v = 1.0, values.astype(np.int64)
    else:
        try:
            u = integer_unit(values)
        except ValueError:
            return None
        v = np.rint(values * u).astype(np.int64)
    base = np.minimum.reduceat(v, ptr[:-1])
    w = v - base[layer]
    rest = integer_budget(budget * u) - int(base.sum())
    if rest < 0:
        return IntegerRow(name, w, -1, u, 1, False)
    d = int(np.gcd.reduce(w)) if w.size else 0
    if d == 0:  # every option of every layer uses the same amount: the row always holds
        return IntegerRow(name, w, 0, u, 1, True)
    w = w // d
    B = rest // d
    top = int(np.maximum.reduceat(w, ptr[:-1]).sum())
    return IntegerRow(name, w, min(B, top), u, d, top <= B)


@dataclass(frozen=True, eq=False)
class DpPlan:
    """What the DP would do on an instance: ``kind`` is "free" (no active row), "1d", "2d",
    "infeasible" (a row cannot hold even at each layer's minimum) or "refuse"."""

    kind: str
    rows: tuple  # the active IntegerRow(s)
    cells: int  # Σ_g |J_g| · states (an upper estimate of the work)
    table_bytes: int
    reason: str


def plan_dp(problem, max_cells: int = MAX_CELLS, max_table_bytes: int = MAX_TABLE_BYTES) -> DpPlan:
    """Decide how (and whether) the DP solves ``problem`` exactly."""
    ptr, layer = problem.option_ptr, problem.layer_of_option
    rows, notes = [], []
    for name, present, values, budget in (
            ("nnz", problem.has_nnz_budget, problem.nnz, problem.nnz_limit),
            ("flops", problem.has_flop_budget, problem.flops, problem.flop_limit)):
        if not present or float(np.sum(np.maximum.reduceat(values, ptr[:-1]))) <= budget:
            continue  # absent, or met by every choice
        row = integer_row(name, values, budget, ptr, layer)
        if row is None:
            notes.append(f"the {name} coefficients are not integers (even times 10^6)")
            rows.append(None)
            continue
        if row.B < 0:
            return DpPlan("infeasible", (row,), 0, 0,
                          f"the {name} budget is below the sum of each layer's smallest option")
        if not row.redundant:
            rows.append(row)
    if any(r is None for r in rows):
        return DpPlan("refuse", (), 0, 0, "; ".join(notes) + ": no exact DP over that row")
    n, L = problem.num_options, problem.num_layers
    if not rows:
        return DpPlan("free", (), n, 0, "no active budget")
    states = math.prod(r.states for r in rows)
    cells = n * states
    itemsize = 2 if int(problem.option_counts.max()) < 2**15 else 4
    table = L * states * itemsize
    kind = "1d" if len(rows) == 1 else "2d"
    shape = " × ".join(f"{r.states} ({r.name})" for r in rows)
    if cells > max_cells or table > max_table_bytes:
        return DpPlan("refuse", tuple(rows), cells, table,
                      f"the state space {shape} = {states:.3g} states needs {cells:.3g} cell "
                      f"updates and a {table / 2**20:.3g} MiB table (limits: max_cells="
                      f"{max_cells:.3g}, max_table_bytes={max_table_bytes / 2**20:.3g} MiB)")
    return DpPlan(kind, tuple(rows), cells, table, f"{kind} DP over {shape} states")


PARETO_MATRIX = 2048  # two-row dominance compares all pairs of a layer: skipped above this


def _pareto(e: np.ndarray, ws: list[np.ndarray]) -> np.ndarray:
    """Local indices of the options of one layer that no other option dominates (no more of any
    resource and no more loss, strictly better in one; of identical options the first)."""
    m = e.size
    if m == 1:
        return np.zeros(1, dtype=np.int64)
    if len(ws) == 1:  # by resource then loss: keep a loss below every loss to its left
        order = np.lexsort((e, ws[0]))
        es = e[order]
        run = np.minimum.accumulate(es)
        keep = np.ones(m, dtype=bool)
        keep[1:] = es[1:] < run[:-1]
        return np.sort(order[keep])
    if m > PARETO_MATRIX:
        return np.arange(m)
    le = e[:, None] <= e[None, :]  # le[a, b]: a is no worse than b in loss
    lt = e[:, None] < e[None, :]
    for w in ws:
        le &= w[:, None] <= w[None, :]
        lt |= w[:, None] < w[None, :]
    idx = np.arange(m)
    dominated = (le & (lt | (idx[:, None] < idx[None, :]))).any(axis=0)
    return np.flatnonzero(~dominated)


@dataclass(frozen=True, eq=False)
class DpResult:
    status: str  # "optimal", "infeasible" or "time_limit"
    choice: np.ndarray | None
    value: float  # T_L(B) (+inf when infeasible)
    info: dict


def solve_dp(problem, plan: DpPlan | None = None, *, time_limit: float | None = None,
             max_cells: int = MAX_CELLS, max_table_bytes: int = MAX_TABLE_BYTES) -> DpResult:
    """Run the DP of ``plan`` (computed when not given); raises :class:`DpRefused` when the
    plan refuses."""
    from pruneopt.solvers.deadline import Clock

    deadline = Clock(time_limit).deadline  # the solve's clock: started when solve was called
    plan = plan or plan_dp(problem, max_cells, max_table_bytes)
    info = {"dp": plan.kind, "cells": plan.cells, "table_bytes": plan.table_bytes,
            "plan": plan.reason}
    if plan.kind == "refuse":
        raise DpRefused(f"dp: {plan.reason}; use 'highs' or 'exact'")
    L = problem.num_layers
    e_all = problem.loss
    ptr = problem.option_ptr.tolist()
    if plan.kind == "infeasible":
        return DpResult(Status.INFEASIBLE, None, math.inf, info)
    if plan.kind == "free":
        from pruneopt.solvers.fast.allocation.hull import MckpData, layer_argmin

        data = MckpData.from_problem(problem)
        m, idx = layer_argmin(e_all, data)
        return DpResult(Status.OPTIMAL, idx - data.start, float(np.sum(m)), info)

    rows = plan.rows
    shape = tuple(r.states for r in rows)
    dtype = np.int16 if int(problem.option_counts.max()) < 2**15 else np.int32
    table = np.zeros((L,) + shape, dtype=dtype)
    T = np.zeros(shape)
    slab = max(1, SLAB_STATES // max(1, math.prod(shape[1:])))  # first-row states per slab
    for g in range(L):
        if deadline is not None and time.perf_counter() > deadline:
            info["layers_done"] = g
            return DpResult(Status.TIME_LIMIT, None, math.nan, info)
        a, b = ptr[g], ptr[g + 1]
        e = e_all[a:b]
        ws = [r.w[a:b] for r in rows]
        new = np.full(shape, np.inf)
        arg = table[g]
        for j in _pareto(e, ws).tolist():
            shift = tuple(int(w[j]) for w in ws)
            if any(s >= S for s, S in zip(shift, shape)):
                continue
            inner_src = tuple(slice(0, S - s) for s, S in zip(shift[1:], shape[1:]))
            inner_dst = tuple(slice(s, S) for s, S in zip(shift[1:], shape[1:]))
            # in slabs along the first row, the clock read between them: one pass over 1e8
            # states takes seconds (an allocation DP ran 14.7 s under a 10 s limit, measured)
            for lo in range(shift[0], shape[0], slab):
                if deadline is not None and time.perf_counter() > deadline:
                    info["layers_done"] = g
                    return DpResult(Status.TIME_LIMIT, None, math.nan, info)
                hi = min(lo + slab, shape[0])
                src = (slice(lo - shift[0], hi - shift[0]),) + inner_src
                dst = (slice(lo, hi),) + inner_dst
                cand = T[src] + e[j]
                view = new[dst]
                better = cand < view
                np.copyto(view, cand, where=better)
                np.copyto(arg[dst], j, where=better)
        T = new
    top = tuple(S - 1 for S in shape)
    value = float(T[top])
    if not math.isfinite(value):
        return DpResult(Status.INFEASIBLE, None, math.inf, info)
    choice = np.empty(L, dtype=np.int64)
    c = list(top)
    for g in range(L - 1, -1, -1):
        j = int(table[g][tuple(c)])
        choice[g] = j
        for k, r in enumerate(rows):
            c[k] -= int(r.w[ptr[g] + j])
    return DpResult(Status.OPTIMAL, choice, value, info)
