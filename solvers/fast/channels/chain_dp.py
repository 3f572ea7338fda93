"""The exact budgeted DP of channel selection on chains (pure vectorised numpy).

When the coupling graph is a union of paths (:func:`chain_order`), the program itself (with the
FLOP budget) is solved exactly by a DP along the chain whose state is the count of the current
group and whose labels are Pareto fronts of (FLOPs so far, value so far)
(:func:`pareto_chain_dp`). A label is dropped when no completion fits the budget (exact
min-FLOPs of the rest) or when a Lagrangian bound on the best completion cannot beat the
incumbent; the optimum is proven when the DP ends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from pruneopt.solvers.constants import Status

NEG = -np.inf
MAX_CHAIN_GRID = 8_000_000  # the chain DP's candidate grid (labels × counts): ~64 MB per array


def chain_order(problem) -> tuple[list[int] | None, str]:
    """An order of the groups in which every coupled pair is consecutive and every collapsible
    block contiguous, or (None, reason) when the coupling graph is not a union of paths."""
    G = problem.num_groups
    adj: list[list[int]] = [[] for _ in range(G)]
    for g, h in problem.pairs.tolist():
        adj[g].append(h)
        adj[h].append(g)
    if any(len(a) > 2 for a in adj):
        g = next(i for i, a in enumerate(adj) if len(a) > 2)
        return None, f"group {g} is coupled to {len(adj[g])} groups (a chain allows 2)"
    seen = np.zeros(G, dtype=bool)
    paths = []
    for start in [g for g in range(G) if len(adj[g]) <= 1] + list(range(G)):
        if seen[start]:
            continue
        if len(adj[start]) == 2:
            return None, f"the coupling graph has a cycle through group {start}"
        path, prev, cur = [], -1, start
        while cur >= 0 and not seen[cur]:
            seen[cur] = True
            path.append(cur)
            nxt = [h for h in adj[cur] if h != prev]
            prev, cur = cur, (nxt[0] if nxt else -1)
        paths.append(path)
    blk = problem.blocks

    def first_block(path):
        ids = [int(blk[g]) for g in path if blk[g] >= 0]
        return min(ids) if ids else problem.num_blocks

    order = [g for path in sorted(paths, key=first_block) for g in path]
    pos = {g: i for i, g in enumerate(order)}
    for b in range(problem.num_blocks):
        idx = sorted(pos[g] for g in problem.block_members(b).tolist())
        if idx[-1] - idx[0] + 1 != len(idx):
            return None, f"collapsible block {b} is not contiguous along the chain"
    return order, ""


@dataclass(frozen=True)
class ChainDPResult:
    status: str  # "optimal", "infeasible", "time_limit"
    k: np.ndarray | None  # best counts found (None when infeasible)
    value: float  # Σ V_g(k_g) of k
    bound: float  # proven upper bound (= value up to float rounding when optimal)
    labels: int  # labels created
    max_front: int


def pareto_chain_dp(problem, order: list[int], *, incumbent: np.ndarray | None = None,
                    mus: tuple[float, ...] = (), time_limit: float | None = None,
                    max_labels: int = 20_000_000) -> ChainDPResult:
    """Exact optimum on a chain by a DP over (state = count of the current group, labels =
    Pareto fronts of FLOPs-so-far and value-so-far).

    A label (c, v) at a count q is dropped when no completion fits the budget (min FLOPs of the
    rest, exact) or when, for a multiplier μ ≥ 0 in ``mus``, v + μ(F' − c) + H_μ(q) ≤ the
    incumbent value + ε, where H_μ(q) = max over completions of [value − μ·FLOPs] (a backward
    max-plus DP) and F' = F − c₀: then no completion beats the incumbent by more than
    ε = 1e-12·|incumbent|, and the reported bound includes ε.
    """
    from pruneopt.solvers.deadline import Clock

    deadline = Clock(time_limit).deadline  # the solve's clock: started when solve was called
    p = problem
    L = len(order)
    F = p.flop_budget - p.const
    tol = 1e-9 * max(1.0, p.flop_budget)
    n = p.group_sizes
    A = {}
    for (g, h), a in zip(p.pairs.tolist(), p.pair_coef.tolist(), strict=True):
        A[(g, h)] = A[(h, g)] = a
    coup = [0.0] + [A.get((order[i - 1], order[i]), 0.0) for i in range(1, L)]
    blk = [int(p.blocks[g]) for g in order]
    same_block = [False] + [blk[i] >= 0 and blk[i] == blk[i - 1] for i in range(1, L)]

    # states per position: (u, q); u = 1 outside blocks
    states = []
    for i, g in enumerate(order):
        m, ng = int(p.min_keep[g]), int(n[g])
        st = [(1, q) for q in range(m, ng + 1)]
        if blk[i] >= 0:
            st = [(0, 0)] + st
        states.append((np.array([s[0] for s in st]), np.array([s[1] for s in st], dtype=np.int64)))

    def own_cost(i, q):
        g = order[i]
        qf = q.astype(np.float64)
        return p.linear_coef[g] * qf + p.self_coef[g] * qf * qf

    def compatible(i):  # (states at i-1) x (states at i) mask
        u_prev, _ = states[i - 1]
        u_cur, _ = states[i]
        if same_block[i]:
            return u_prev[:, None] == u_cur[None, :]
        return np.ones((u_prev.size, u_cur.size), dtype=bool)

    def step_cost(i):  # (states at i-1) x (states at i): FLOPs added by the group at i
        q_prev = states[i - 1][1].astype(np.float64)
        q = states[i][1]
        return own_cost(i, q)[None, :] + coup[i] * q_prev[:, None] * q.astype(np.float64)[None, :]

    # min FLOPs of positions i+1.. given the state at i (exact, backward)
    minrest = [None] * L
    minrest[L - 1] = np.zeros(states[L - 1][1].size)
    for i in range(L - 1, 0, -1):
        tot = step_cost(i) + minrest[i][None, :]
        tot = np.where(compatible(i), tot, np.inf)
        minrest[i - 1] = tot.min(axis=1)
    # H_μ: max over completions of value − μ FLOPs, given the state at i
    H = []
    for mu in mus:
        h = [None] * L
        h[L - 1] = np.zeros(states[L - 1][1].size)
        for i in range(L - 1, 0, -1):
            vals = p.value_table(order[i])[states[i][1]]
            tot = vals[None, :] - mu * step_cost(i) + h[i][None, :]
            tot = np.where(compatible(i), tot, NEG)
            h[i - 1] = tot.max(axis=1)
        H.append((mu, h))

    best_val, best_k = -np.inf, None
    if incumbent is not None and p.counts_feasible(incumbent):
        best_val, best_k = p.value_of_counts(incumbent), np.asarray(incumbent, dtype=np.int64)
    eps = 1e-12 * abs(best_val) if np.isfinite(best_val) else 0.0

    def prune(i, sidx, cost, val):
        keep = cost + minrest[i][sidx] <= F + tol
        if np.isfinite(best_val):
            for mu, h in H:
                keep &= val + mu * (F - cost) + h[i][sidx] > best_val + eps
        return keep

    # labels at position 0
    q0 = states[0][1]
    c0 = own_cost(0, q0)
    v0 = p.value_table(order[0])[q0]
    sidx = np.arange(q0.size)
    keep = prune(0, sidx, c0, v0)
    fronts = [(sidx[keep], c0[keep], v0[keep], np.full(int(keep.sum()), -1, dtype=np.int64))]
    labels, max_front = int(keep.sum()), int(keep.sum())
    history = [fronts[0]]
    status = Status.OPTIMAL
    for i in range(1, L):
        if deadline is not None and time.perf_counter() > deadline:
            status = Status.TIME_LIMIT
            break
        s_prev, c_prev, v_prev, _ = history[-1]
        if s_prev.size == 0:  # every label pruned: nothing beats the incumbent
            break
        q_prev = states[i - 1][1][s_prev].astype(np.float64)
        u_prev = states[i - 1][0][s_prev]
        u_cur, q_cur = states[i]
        vals = p.value_table(order[i])[q_cur]
        own = own_cost(i, q_cur)
        if s_prev.size * q_cur.size > MAX_CHAIN_GRID:
            # the candidate grid would not fit in memory (measured: a 213,505 × 3,072 grid,
            # 4.9 GB per array, on a ViT's independent groups): stop like the label limit
            status = Status.TIME_LIMIT
            break
        # candidate labels for every (previous label, current state)
        cost = c_prev[:, None] + own[None, :] + coup[i] * q_prev[:, None] * q_cur[None, :]
        val = v_prev[:, None] + vals[None, :]
        ok = np.ones(cost.shape, dtype=bool) if not same_block[i] else (
            u_prev[:, None] == u_cur[None, :])
        sgrid = np.broadcast_to(np.arange(q_cur.size)[None, :], cost.shape)
        ok &= prune(i, sgrid, cost, val)
        li, si = np.nonzero(ok)
        cost, val = cost[li, si], val[li, si]
        # Pareto filter within each state: cost ascending, value strictly increasing. Values
        # become dense integer ranks so that one running maximum serves every state at once.
        orderk = np.lexsort((-val, cost, si))
        li, si, cost, val = li[orderk], si[orderk], cost[orderk], val[orderk]
        uniq, rank = np.unique(val, return_inverse=True)
        key = si.astype(np.int64) * (uniq.size + 1) + rank.reshape(-1)
        run = np.maximum.accumulate(key)
        keep = np.ones(si.size, dtype=bool)
        keep[1:] = (key[1:] > run[:-1]) | (si[1:] != si[:-1])
        li, si, cost, val = li[keep], si[keep], cost[keep], val[keep]
        labels += int(li.size)
        max_front = max(max_front, int(li.size))
        history.append((si, cost, val, li))
        if labels > max_labels:
            status = Status.TIME_LIMIT
            break
    complete = status == Status.OPTIMAL
    if complete and len(history) == L and history[-1][0].size:
        s_last, c_last, v_last, _ = history[-1]
        j = int(np.argmax(v_last))
        if v_last[j] > best_val:
            k = np.zeros(p.num_groups, dtype=np.int64)
            for i in range(L - 1, -1, -1):
                si, _, _, back = history[i]
                k[order[i]] = states[i][1][si[j]]
                j = int(back[j])
            best_val, best_k = p.value_of_counts(k), k
    if complete:
        if best_k is None:
            return ChainDPResult(Status.INFEASIBLE, None, -np.inf, -np.inf, labels, max_front)
        return ChainDPResult(Status.OPTIMAL, best_k, best_val, best_val + eps, labels, max_front)
    return ChainDPResult(Status.TIME_LIMIT, best_k, best_val, np.inf, labels, max_front)
