"""Fast structured channel selection: a Lagrangian relaxation of the FLOP budget with a certified
bound, greedy repair and improvement, and the two baselines users reach for (pure numpy).

**Lagrangian.** For μ ≥ 0 and every feasible k,

    Σ_g V_g(k_g) ≤ Σ_g V_g(k_g) − μ (FLOPs(k) − F) ≤ L(μ) + μ F =: D(μ),

where L(μ) = max_k Σ_g V_g(k_g) − μ FLOPs(k) over the counts allowed by min-keep and collapse
(no budget). L(μ) is computed exactly by the count DP of
:class:`~pruneopt.solvers.fast.channels.elimination.CountElimination` (chains, CIFAR ResNets,
ResNet-50 groups: exact; a coupling graph whose elimination needs a table above ``max_table``
entries gets cut edges, and every evaluation is then a valid upper bound that may exceed L(μ):
see :mod:`~pruneopt.solvers.fast.channels.elimination_plan`). D is convex in μ; the search
keeps a bracket [μ_lo, μ_hi] with FLOPs(k(μ_lo)) > F ≥ FLOPs(k(μ_hi)) and steps to the
intersection of the two supporting lines (with bisection as a safeguard), stopping when that
intersection — a lower bound on min D when both ends are exact — is within ``rel_tol`` of the
best D (with cut evaluations: when the bracket is 1e-9 narrow, or after ``max_evals``). The cut
multipliers λ = −μ a k̄ are set by bisection on the linearisation point k̄ (the cut dual's slope
in k̄ has the sign of k_copy − k_group). The certified bound is the smallest D evaluated (plus
1e-12 relative for float rounding in the DP).

The Lagrangian dual of this non-convex problem can leave a duality gap: the bound is certified,
not necessarily tight. The primal is the best feasible k met during the search (every k(μ_hi)
is feasible), improved by: greedy fill (add the channel with the best value per added MAC while
it fits), greedy repair of the infeasible k(μ_lo) (drop the channel with the least value per
saved MAC until it fits, then fill), and exchange moves (drop one channel, add one elsewhere)
while they gain. Nothing here proves optimality except a bound that meets the objective.

**Baselines** (both keep min-keep and never collapse a block unless nothing else fits):

* ``uniform_counts`` — the same keep ratio r in every group, k_g = max(m_g, ⌊r·n_g⌋), the
  largest r (among the breakpoints j/n_g) meeting F;
* ``global_threshold_counts`` — one global threshold τ on scores normalised per group by the
  group's mean score (as Torch-Pruning's global pruning does with its default ``normalizer=
  'mean'``): keep the channels with s/mean_g ≥ τ (and at least m_g per group), the lowest τ
  meeting F (cuts only between distinct normalised values, so ties are kept or dropped together).

Their bound is the trivial Σ_g V_g(n_g) (keep everything): they carry no certificate.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from pruneopt.solvers.constants import Status
from pruneopt.solvers.fast.channels.elimination import DEFAULT_MAX_TABLE, CountElimination

ROUNDING_SLACK = 1e-12  # relative allowance added to every Lagrangian bound for float rounding


def _tol(problem) -> float:
    return 1e-9 * max(1.0, problem.flop_budget)


def total_value(problem) -> float:
    return float(sum(problem.value_table(g)[-1] for g in range(problem.num_groups)))


def is_infeasible(problem) -> bool:
    """True when even the counts of least FLOPs (blocks collapsed, min-keep elsewhere) exceed F."""
    return problem.flops_of_counts(problem.min_counts) > problem.flop_budget + _tol(problem)


# ===================================================================== greedy moves on counts
class _Moves:
    """Marginal values and MAC changes of ±1 moves (vectorised over the groups)."""

    def __init__(self, problem):
        p = self.p = problem
        self.n = p.group_sizes
        self.m = p.min_keep
        self.ptr = p.channel_ptr
        self.sorted = p.sorted_scores
        self.blk = p.blocks
        self.pg, self.ph = p.pairs[:, 0], p.pairs[:, 1]
        self.pa = p.pair_coef
        self.G = p.num_groups
        self.F = p.flop_budget + _tol(p)
        # a +1 on a collapsed block's group is valid alone when it alone meets the block's
        # min-keep: m_g ≤ 1 and every other member has m = 0
        self.block_need = np.zeros(p.num_blocks, dtype=np.int64)
        if p.num_blocks:
            np.add.at(self.block_need, self.blk[self.blk >= 0], self.m[self.blk >= 0])

    def neighbour_sum(self, k: np.ndarray) -> np.ndarray:
        kf = k.astype(np.float64)
        return (np.bincount(self.pg, weights=self.pa * kf[self.ph], minlength=self.G)
                + np.bincount(self.ph, weights=self.pa * kf[self.pg], minlength=self.G))

    def add_cost(self, k: np.ndarray) -> np.ndarray:
        p = self.p
        return p.linear_coef + p.self_coef * (2.0 * k + 1.0) + self.neighbour_sum(k)

    def remove_saving(self, k: np.ndarray) -> np.ndarray:
        p = self.p
        return p.linear_coef + p.self_coef * (2.0 * k - 1.0) + self.neighbour_sum(k)

    def next_score(self, k: np.ndarray) -> np.ndarray:
        idx = np.minimum(self.ptr[:-1] + k, self.ptr[1:] - 1)
        return np.where(k < self.n, self.sorted[idx], -np.inf)

    def last_score(self, k: np.ndarray) -> np.ndarray:
        idx = np.maximum(self.ptr[:-1] + k - 1, self.ptr[:-1])
        return np.where(k > 0, self.sorted[idx], np.inf)

    def block_open(self, k: np.ndarray) -> np.ndarray:
        if not self.p.num_blocks:
            return np.zeros(0, dtype=bool)
        inb = self.blk >= 0
        return np.bincount(self.blk[inb], weights=(k[inb] > 0).astype(np.float64),
                           minlength=self.p.num_blocks) > 0

    def can_add(self, k: np.ndarray) -> np.ndarray:
        ok = k < self.n
        if self.p.num_blocks:
            inb = self.blk >= 0
            opened = self.block_open(k)
            b = np.where(inb, self.blk, 0)
            alone = (self.block_need[b] - self.m == 0) & (self.m <= 1)
            ok &= ~inb | opened[b] | alone
        return ok

    def can_remove(self, k: np.ndarray) -> np.ndarray:
        ok = k - 1 >= self.m
        if self.p.num_blocks:  # k_g = m_g = 0... or the last channel of a block whose need is 0
            inb = self.blk >= 0
            ok |= inb & (k == 1) & (self.m <= 1) & (self._others_zero(k))
        return ok & (k > 0)

    def _others_zero(self, k: np.ndarray) -> np.ndarray:
        inb = self.blk >= 0
        b = np.where(inb, self.blk, 0)
        total = np.bincount(self.blk[inb], weights=k[inb].astype(np.float64),
                            minlength=self.p.num_blocks)
        need_others = self.block_need[b] - self.m
        return inb & (total[b] - k == 0) & (need_others == 0)


def fix_blocks(problem, k: np.ndarray) -> np.ndarray:
    """Counts that meet every block's all-or-nothing rule: a block with some groups emptied and
    others kept is opened (its empty groups raised to min-keep) when that fits the budget, else
    collapsed. (Answers of a relaxed DP — split blocks — may break the rule.)"""
    k = np.asarray(k, dtype=np.int64)
    if not problem.num_blocks:
        return k
    k = k.copy()
    m = problem.min_keep
    for b in range(problem.num_blocks):
        mem = problem.block_members(b)
        kb = k[mem]
        if np.any(kb > 0) and np.any(kb < m[mem]):
            opened = k.copy()
            opened[mem] = np.maximum(kb, m[mem])
            if problem.flops_of_counts(opened) <= problem.flop_budget + _tol(problem):
                k = opened
            else:
                k[mem] = 0
    return k


def greedy_fill(problem, k: np.ndarray, moves: _Moves | None = None,
                max_steps: int | None = None) -> np.ndarray:
    """Add channels by best value per added MAC while the budget holds (opening a collapsed
    block whole counts as one move)."""
    mv = moves or _Moves(problem)
    k = np.asarray(k, dtype=np.int64).copy()
    f = problem.flops_of_counts(k)
    steps = max_steps if max_steps is not None else problem.num_channels + problem.num_blocks + 1
    for _ in range(steps):
        slack = mv.F - f
        gain = mv.next_score(k)
        delta = mv.add_cost(k)
        valid = mv.can_add(k) & (gain > 0) & (delta <= slack)
        ratio = np.where(valid, gain / np.maximum(delta, 1e-300), -np.inf)
        best_ratio, best = -np.inf, None
        if valid.any():
            g = int(np.argmax(ratio))
            best_ratio, best = float(ratio[g]), ("add", g)
        if problem.num_blocks:
            opened = mv.block_open(k)
            for b in np.flatnonzero(~opened).tolist():
                mem = problem.block_members(b)
                k2 = k.copy()
                k2[mem] = np.maximum(mv.m[mem], 1)
                df = problem.flops_of_counts(k2) - f
                dv = problem.value_of_counts(k2) - problem.value_of_counts(k)
                if df <= slack and dv > 0:
                    r = dv / max(df, 1e-300)
                    if r > best_ratio:
                        best_ratio, best = r, ("open", b)
        if best is None:
            break
        if best[0] == "add":
            k[best[1]] += 1
        else:
            mem = problem.block_members(best[1])
            k[mem] = np.maximum(mv.m[mem], 1)
        f = problem.flops_of_counts(k)
    return k


def greedy_repair(problem, k: np.ndarray, moves: _Moves | None = None,
                  max_steps: int | None = None) -> np.ndarray | None:
    """Drop channels by least value per saved MAC (or collapse a block whole) until the budget
    holds; None when no move is left (or after ``max_steps``)."""
    mv = moves or _Moves(problem)
    k = fix_blocks(problem, k).copy()
    f = problem.flops_of_counts(k)
    steps = max_steps if max_steps is not None else problem.num_channels + problem.num_blocks + 1
    for _ in range(steps):
        if f <= mv.F:
            return k
        loss = mv.last_score(k)
        save = mv.remove_saving(k)
        valid = mv.can_remove(k) & (save > 0)
        ratio = np.where(valid, loss / np.maximum(save, 1e-300), np.inf)
        best_ratio, best = np.inf, None
        if valid.any():
            g = int(np.argmin(ratio))
            best_ratio, best = float(ratio[g]), ("remove", g)
        if problem.num_blocks:
            opened = mv.block_open(k)
            for b in np.flatnonzero(opened).tolist():
                mem = problem.block_members(b)
                k2 = k.copy()
                k2[mem] = 0
                df = f - problem.flops_of_counts(k2)
                dv = problem.value_of_counts(k) - problem.value_of_counts(k2)
                if df > 0:
                    r = dv / df
                    if r < best_ratio:
                        best_ratio, best = r, ("collapse", b)
        if best is None:
            return None
        if best[0] == "remove":
            k[best[1]] -= 1
        else:
            k[problem.block_members(best[1])] = 0
        f = problem.flops_of_counts(k)
    return k if f <= mv.F else None


def exchange_search(problem, k: np.ndarray, moves: _Moves | None = None,
                    rounds: int = 200, max_groups: int = 2000,
                    fill_steps: int | None = None) -> np.ndarray:
    """Apply the best improving 'drop one channel of g, add one of h' move (then fill) while one
    exists, at most ``rounds`` times. Skipped for more than ``max_groups`` groups."""
    mv = moves or _Moves(problem)
    G = problem.num_groups
    if G < 2 or G > max_groups:
        return k
    A = np.zeros((G, G))
    np.add.at(A, (mv.pg, mv.ph), mv.pa)
    np.add.at(A, (mv.ph, mv.pg), mv.pa)
    k = np.asarray(k, dtype=np.int64).copy()
    scale = total_value(problem)
    for _ in range(rounds):
        f = problem.flops_of_counts(k)
        dm = mv.remove_saving(k)
        dp = mv.add_cost(k)
        loss = np.where(mv.can_remove(k), mv.last_score(k), np.inf)
        gain = np.where(mv.can_add(k), mv.next_score(k), -np.inf)
        change = -dm[:, None] + dp[None, :] - A  # FLOPs change of (−g, +h)
        better = gain[None, :] - loss[:, None]
        ok = (f + change <= mv.F) & (better > 1e-12 * scale)
        np.fill_diagonal(ok, False)
        if not ok.any():
            break
        score = np.where(ok, better, -np.inf)
        g, h = np.unravel_index(int(np.argmax(score)), score.shape)
        k2 = k.copy()
        k2[g] -= 1
        k2[h] += 1
        if not problem.counts_feasible(k2):  # a block constraint the simple masks missed
            break
        k = greedy_fill(problem, k2, mv, max_steps=fill_steps)
    return k


# ===================================================================== the Lagrangian search
@dataclass(frozen=True)
class LagrangianResult:
    status: str  # "optimal" (bound met), "feasible", "infeasible"
    k: np.ndarray | None
    value: float
    bound: float
    mu: float
    info: dict = field(default_factory=dict)


def lagrangian_channels(problem, *, max_evals: int = 30, rel_tol: float = 1e-10,
                        time_limit: float | None = None, max_table: int = DEFAULT_MAX_TABLE,
                        improve: bool = True, cut_solves: int = 1,
                        elimination: CountElimination | None = None) -> LagrangianResult:
    """Certified upper bound and a good feasible selection (see the module docstring).

    ``max_evals`` caps the multipliers μ evaluated; ``max_table`` the size of one DP table
    (beyond it edges are cut); ``cut_solves`` is the number of DP solves per μ (updating the cut
    multipliers in between) when edges are cut; ``improve`` runs the exchange moves;
    ``elimination`` reuses a planned :class:`CountElimination` of the same problem. ``info``
    reports the evaluations, the solves, the evaluations that were not exact, the cuts, the
    largest table, the final bracket and the μ of the best bound.
    """
    start = time.perf_counter()
    p = problem
    F = p.flop_budget
    tol = _tol(p)
    if is_infeasible(p):
        return LagrangianResult(Status.INFEASIBLE, None, -math.inf, -math.inf, math.nan,
                                {"evaluations": 0})
    el = elimination or CountElimination(p, max_table=max_table)
    vtot = total_value(p)
    dense = p.dense_flops
    mv = _Moves(p)
    G = p.num_groups
    dst_groups = np.array([c.dst for c in el.cuts], dtype=np.int64)
    src_groups = np.array([c.src for c in el.cuts], dtype=np.int64)
    cut_coef = np.array([c.coef for c in el.cuts])
    n_dst = p.group_sizes[dst_groups].astype(np.float64)
    state = {"kbar": 0.5 * n_dst, "klo": np.zeros_like(n_dst), "khi": n_dst.copy(),
             "evals": 0, "solves": 0,
             "inexact": 0, "bound": math.inf, "best_val": -math.inf, "best_k": None,
             "bound_mu": math.nan}

    def note_primal(k):
        k = fix_blocks(p, k)
        if p.counts_feasible(k):
            v = p.value_of_counts(k)
            if v > state["best_val"]:
                state["best_val"], state["best_k"] = v, k.copy()

    def update_cuts(ans, mu):
        """Bisection on each cut's linearisation point k̄ (λ = −μ a k̄): the cut dual's slope in
        k̄ is μ a (k_copy − k_src), so a copy above its group means k̄ is too high."""
        if mu <= 0:
            return
        kv, kc = ans.k[src_groups], ans.copies
        lo, hi, kbar = state["klo"], state["khi"], state["kbar"]
        hi = np.where(kc > kv, kbar, hi)
        lo = np.where(kc < kv, kbar, lo)
        stuck = (hi - lo < 0.5) & (kc != kv)  # the bracket lost the optimum (μ moved): reopen
        lo, hi = np.where(stuck, 0.0, lo), np.where(stuck, n_dst, hi)
        state["klo"], state["khi"], state["kbar"] = lo, hi, 0.5 * (lo + hi)

    def evaluate(mu):
        """One μ: solve (with the cut fixed point); returns (D, k, FLOPs(k), exact)."""
        state["evals"] += 1
        ans = None
        for _ in range(max(1, cut_solves) if el.cuts else 1):
            lam = -mu * cut_coef * state["kbar"]
            ans = el.solve(mu, lam)
            state["solves"] += 1
            D = ans.value + mu * F + ROUNDING_SLACK * (vtot + mu * dense)
            if D < state["bound"]:
                state["bound"], state["bound_mu"] = D, mu
            note_primal(ans.k)
            if ans.exact or not el.cuts:
                break
            update_cuts(ans, mu)
        if not ans.exact:
            state["inexact"] += 1
        if el.cuts:
            update_cuts(ans, mu)
        return ans.value + mu * F, ans.k, p.flops_of_counts(ans.k), bool(ans.exact)

    def out_of_time():
        return time_limit is not None and time.perf_counter() - start > time_limit

    # μ = 0: keep every channel of positive score; feasible means optimal
    D0, k0, f0, x0 = evaluate(0.0)
    lo = (0.0, D0, F - f0, k0, x0)
    hi = None
    mu = vtot / dense if dense > 0 and vtot > 0 else 1.0
    if f0 > F + tol:
        for _ in range(200):  # find a feasible end: FLOPs(k(μ)) → min FLOPs as μ grows
            D, k, f, ex = evaluate(mu)
            if f <= F + tol:
                hi = (mu, D, F - f, k, ex)
                break
            lo = (mu, D, F - f, k, ex)
            mu *= 8.0
            if out_of_time():
                break
        # shrink the bracket: intersection of the supporting lines, bisection as a safeguard
        last_side, stalls = None, 0
        while hi is not None and state["evals"] < max_evals and not out_of_time():
            (a, Da, sa, _, xa), (b, Db, sb, _, xb) = lo, hi
            if b - a <= 1e-15 * b:
                break
            cand = (Db - Da + sa * a - sb * b) / (sa - sb) if sa < sb else math.nan
            if xa and xb and math.isfinite(cand):
                lower = Da + sa * (cand - a)  # min D ≥ this (supporting lines of a convex D)
                if min(Da, Db) - lower <= rel_tol * max(abs(min(Da, Db)), 1e-300):
                    break
            elif b - a <= 1e-9 * b:  # cut evaluations: no certificate of convergence in μ
                break
            if not (a < cand < b) or stalls >= 2:
                cand = b / 8.0 if a == 0 else (math.sqrt(a * b) if b > 4 * a else 0.5 * (a + b))
                stalls = 0
            D, k, f, ex = evaluate(cand)
            side = "hi" if f <= F + tol else "lo"
            if side == "hi":
                hi = (cand, D, F - f, k, ex)
            else:
                lo = (cand, D, F - f, k, ex)
            stalls = stalls + 1 if side == last_side else 0
            last_side = side

    # primal improvement
    cands = []
    cap = 20 * G + 200  # the ends of a converged bracket are a few moves from the budget
    if state["best_k"] is not None:
        cands.append(greedy_fill(p, state["best_k"], mv, max_steps=cap))
    rep = greedy_repair(p, lo[3], mv, max_steps=cap)
    if rep is not None:
        cands.append(greedy_fill(p, rep, mv, max_steps=cap))
    if state["best_k"] is None:
        cands.append(greedy_fill(p, p.min_counts, mv))
    for c in cands:
        note_primal(c)
    if improve and state["best_k"] is not None:
        note_primal(exchange_search(p, state["best_k"], mv, fill_steps=cap))
    k = state["best_k"]
    value, bound = state["best_val"], state["bound"]
    bound = max(bound, value)  # (never below a feasible value; only float noise could do that)
    status = (Status.OPTIMAL if bound - value <= 1e-9 * max(abs(bound), 1e-300)
              else Status.FEASIBLE)
    info = {"evaluations": state["evals"], "subproblem_solves": state["solves"],
            "inexact_evaluations": state["inexact"], "cuts": len(el.cuts),
            "split_blocks": len(el.splits),
            "max_table": int(el.max_step), "mu_lo": lo[0], "mu_hi": hi[0] if hi else None,
            "bound_mu": state["bound_mu"], "seconds": time.perf_counter() - start}
    return LagrangianResult(status, k, value, bound, hi[0] if hi else lo[0], info)


# ===================================================================== baselines
def _largest_feasible(n_cands: int, counts_at) -> int | None:
    """Largest index i in 0..n_cands-1 with counts_at(i) feasible (monotone), or None."""
    lo, hi = -1, n_cands  # counts_at(lo) feasible (virtual), counts_at(hi) infeasible (virtual)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if counts_at(mid)[1]:
            lo = mid
        else:
            hi = mid
    return lo if lo >= 0 else None


def _fallback(problem):
    k = problem.min_counts.copy()
    return k if problem.counts_feasible(k) else None


def uniform_counts(problem) -> np.ndarray | None:
    """The same keep ratio in every group (see the module docstring); None when infeasible."""
    p = problem
    n, m = p.group_sizes, p.min_keep
    # candidate ratios r = j / n_h as exact fractions, sorted
    num = np.concatenate([np.arange(int(x) + 1) for x in n])
    den = np.concatenate([np.full(int(x) + 1, int(x)) for x in n])
    order = np.argsort(num / den, kind="stable")
    num, den = num[order], den[order]

    def counts_at(i):
        k = np.maximum(m, (int(num[i]) * n) // int(den[i]))
        return k, p.counts_feasible(k)

    i = _largest_feasible(num.size, counts_at)
    return counts_at(i)[0] if i is not None else _fallback(p)


def global_threshold_counts(problem) -> np.ndarray | None:
    """One global threshold on mean-normalised scores (see the module docstring)."""
    p = problem
    G = p.num_groups
    n = p.group_sizes
    group_of = np.repeat(np.arange(G), n)
    means = np.array([p.value_table(g)[-1] for g in range(G)]) / n
    norm = np.where(means[group_of] > 0, p.scores / np.where(means[group_of] > 0,
                                                               means[group_of], 1.0), 0.0)
    order = np.argsort(-norm, kind="stable")
    sn = norm[order]
    # cut positions t (keep order[:t]) only between distinct values: t = 0, boundaries, N
    cuts = np.concatenate(([0], np.flatnonzero(np.diff(sn) != 0) + 1, [sn.size]))
    cuts = np.unique(cuts)

    def counts_at(i):
        t = int(cuts[i])
        k = np.bincount(group_of[order[:t]], minlength=G).astype(np.int64)
        k = np.maximum(k, p.min_keep)
        return k, p.counts_feasible(k)

    i = _largest_feasible(cuts.size, counts_at)
    return counts_at(i)[0] if i is not None else _fallback(p)
