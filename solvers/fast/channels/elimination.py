"""The Lagrangian subproblem of channel selection, solved exactly by max-plus elimination.

For a multiplier μ ≥ 0,

    L(μ) = max_k  Σ_g U_g(k_g) − μ Σ_{(g,h)∈P} a_gh k_g k_h − μ c₀,
           U_g(k) = V_g(k) − μ (b_g k + a_gg k²),

over the allowed counts (min-keep, collapsible blocks). :class:`CountElimination` solves it by
max-plus *variable elimination* on the coupling graph (groups joined by a conv; each collapsible
block adds a 2-state variable u_b tied to its groups), in the order planned by
:class:`~pruneopt.solvers.fast.channels.elimination_plan.EliminationPlan`. Eliminating a variable
v produces a table over its neighbours' counts:

* a **threshold step** when v is held only by its bilinear edges, its block variable and tables
  over v alone: with f(k) = U_v(k) + (those tables), max_k f(k) − k·t, t = μ Σ_w a_vw k_w, is
  attained at a vertex of the upper concave hull of f (every count when f is concave, as U_v is:
  sorted scores, a concave quadratic), picked by a ``searchsorted`` on the hull's slopes for a
  whole grid of neighbour counts at once. With integer MAC coefficients t/μ takes few distinct
  values g·z, z = Σ_w c_w k_w, so the step is evaluated on those and the table is a strided view;
* a **table step** otherwise: the sum of every table that holds v, maximised over v's axis.

When the plan had to relax the problem (cut edges, split blocks), every evaluation is a valid
upper bound on L(μ); an answer is ``exact`` (its value is L(μ)) when the copies' terms cancel and
it meets the original block rules.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pruneopt.solvers.fast.channels.elimination_plan import (
    DEFAULT_MAX_TABLE,
    EliminationPlan,
    Var,
    clone_var,
)

NEG = -np.inf


class CountElimination(EliminationPlan):
    """Exact max-plus elimination for the Lagrangian subproblem (see the module docstring): the
    plan of :class:`EliminationPlan`, evaluated at a multiplier μ by :meth:`solve`."""

    def __init__(self, problem, max_table: int = DEFAULT_MAX_TABLE,
                 deadline: float | None = None):
        super().__init__(problem, max_table, deadline)
        self._n = problem.group_sizes
        self._m = problem.min_keep
        self._inblock = problem.blocks >= 0
        self._scores = problem.sorted_scores
        self._ptr = problem.channel_ptr
        self._grids: dict = {}  # threshold steps: integer grids of Σ a_w k_w / gcd (μ-free)

    def _unary(self, x: Var, mu: float, lin: float) -> tuple[np.ndarray, np.ndarray]:
        """U(0..n) and the marginal gains d(j) = U(j) − U(j−1), j = 1..n (non-increasing)."""
        n = x.size - 1
        kk = np.arange(n + 1, dtype=np.float64)
        if x.kind == "copy":
            return lin * kk, np.full(n, lin)
        p, g = self.problem, x.group
        j = kk[1:]
        s = self._scores[self._ptr[g]:self._ptr[g + 1]]
        d = s - mu * (p.linear_coef[g] + p.self_coef[g] * (2.0 * j - 1.0)) + lin
        U = p.value_table(g) - mu * (p.linear_coef[g] * kk + p.self_coef[g] * kk * kk) + lin * kk
        return U, d

    def _intervals(self, x: Var, u_state: int | None) -> list[tuple[int, int]]:
        """Allowed counts of a group or copy as intervals; ``u_state`` = its block's state when
        the coupling is applied here (None: the union over both states)."""
        g = x.group
        m, n = int(self._m[g]), int(self._n[g])
        box = self._box
        if box is not None:  # a branch-and-bound box / count window: lo_g ≤ k_g ≤ hi_g
            lo, hi = int(box[0][g]), int(box[1][g])
            out = []
            for a, b in self._intervals_unboxed(g, m, n, u_state):
                a, b = max(a, lo), min(b, hi)
                if a <= b:
                    out.append((a, b))
            return out
        return self._intervals_unboxed(g, m, n, u_state)

    def _intervals_unboxed(self, g: int, m: int, n: int, u_state) -> list[tuple[int, int]]:
        if u_state == 0:
            return [(0, 0)]
        if u_state == 1 or not self._inblock[g] or m == 0:
            return [(m, n)]
        return [(0, 0), (m, n)]

    def _pieces(self, f: np.ndarray, d: np.ndarray | None, intervals) -> list:
        """max_k f(k) − k t over the intervals, prepared for many t: per interval the candidate
        counts, their values and the slopes between them (non-increasing). With d (f concave:
        its marginal gains) every count is a candidate; otherwise the vertices of the upper
        concave hull of f, which hold the maximum of every linear function."""
        out = []
        for lo, hi in intervals:
            if d is not None:
                out.append((np.arange(lo, hi + 1), f[lo:hi + 1], d[lo:hi]))
                continue
            ks = np.arange(lo, hi + 1)
            fv = f[lo:hi + 1]
            fin = np.isfinite(fv)
            if not fin.any():
                continue
            ks, fv = ks[fin], fv[fin]
            hull = _upper_hull(ks.tolist(), fv.tolist())
            hk, hv = ks[hull], fv[hull]
            out.append((hk, hv, np.diff(hv) / np.diff(hk)))
        return out

    @staticmethod
    def _threshold(pieces: list, t: np.ndarray):
        """max over the pieces of f(k) − k t: (value, argmax) for each t."""
        best = bestk = None
        t = np.asarray(t, dtype=np.float64)
        for ks, fv, sl in pieces:
            j = np.searchsorted(-sl, -t, side="left")
            k = ks[j]
            val = fv[j] - k * t
            if best is None:
                best, bestk = val, k
            else:
                better = val > best
                best = np.where(better, val, best)
                bestk = np.where(better, k, bestk)
        if best is None:
            return np.full(t.shape, NEG), np.zeros(t.shape, dtype=np.int64)
        return best, bestk

    def _masked_unary(self, x: Var, U: np.ndarray) -> np.ndarray:
        out = np.full(U.shape, NEG)
        for lo, hi in self._intervals(x, None):
            out[lo:hi + 1] = U[lo:hi + 1]
        return out

    def _coupling(self, x: Var) -> np.ndarray:
        """0 / −inf table over (k_g, u_b): u_b = 0 empties g, u_b = 1 enforces min-keep."""
        out = np.full((x.size, 2), NEG)
        for us in (0, 1):
            for lo, hi in self._intervals(x, us):
                out[lo:hi + 1, us] = 0.0
        return out

    _box = None

    def solve(self, mu: float, lam: np.ndarray | None = None, lo: np.ndarray | None = None,
              hi: np.ndarray | None = None) -> SubproblemAnswer:
        """Maximise the (cut) Lagrangian at μ with cut multipliers λ (default 0), over the counts
        lo ≤ k ≤ hi when given (the value is −inf when the box holds no allowed count)."""
        if lo is not None or hi is not None:
            lo = np.zeros(self.problem.num_groups, np.int64) if lo is None else lo
            hi = self._n if hi is None else hi
            self._box = (np.asarray(lo), np.asarray(hi))
            try:
                return self._solve(mu, lam)
            finally:
                self._box = None
        return self._solve(mu, lam)

    def _solve(self, mu: float, lam: np.ndarray | None = None) -> SubproblemAnswer:
        p = self.problem
        vs = [clone_var(x) for x in self.vars]
        lam = (np.zeros(len(self.cuts)) if lam is None
               else np.asarray(lam, dtype=np.float64).reshape(len(self.cuts)))
        lin = np.zeros(len(vs))  # λ terms: +λ k_src on the group, −λ k_copy on the copy
        for c, cut in enumerate(self.cuts):
            lin[cut.src] += lam[c]
            lin[cut.copy] -= lam[c]
        unary = {v: self._unary(x, mu, lin[v]) for v, x in enumerate(vs)
                 if x.kind in ("group", "copy")}
        tables: list[tuple[tuple, np.ndarray]] = []
        records = []
        for step in self.steps:
            v, scope = step.var, step.scope
            x = vs[v]
            if step.kind == "threshold":
                U, d = unary[v]
                bil = [(w, x.edges[w]) for w in scope if w in x.edges]
                bvar = x.block if x.kind == "group" else -1
                own, keep = [], []
                for sc, tab in tables:
                    (own if v in sc else keep).append((sc, tab))
                tables = keep
                pieces = {}
                for us in ((0, 1) if bvar >= 0 else (None,)):
                    f = U
                    for sc, tab in own:  # tables over (v,) or (v, u_b): f is no longer concave
                        f = f + (tab if len(sc) == 1 else
                                 np.take(tab, us, axis=sc.index(bvar)).reshape(-1))
                    pieces[us] = self._pieces(f, None if own else d, self._intervals(x, us))
                if bvar >= 0:
                    ax = scope.index(bvar)
                    val = np.concatenate([self._threshold_grid(pieces[us], mu, bil, scope, vs,
                                                               bvar) for us in (0, 1)], axis=ax)
                else:
                    val = self._threshold_grid(pieces[None], mu, bil, scope, vs, -1)
                tables.append((scope, val))
                records.append((step, bil, bvar, pieces))
            else:
                parts, keep = [], []
                for sc, tab in tables:
                    (parts if v in sc else keep).append((sc, tab))
                tables = keep
                if x.kind in ("group", "copy"):
                    U, _ = unary[v]
                    if x.kind == "group" and x.block >= 0:
                        parts.append(((x.block, v), self._coupling(x).T + U[None, :]))
                    else:
                        parts.append(((v,), self._masked_unary(x, U)))
                else:  # a block variable: the coupling of the members still present
                    for w in sorted(x.members):
                        parts.append(((v, w), self._coupling(vs[w]).T))
                kv = np.arange(x.size, dtype=np.float64)
                for w, a in x.edges.items():
                    parts.append(((w, v), np.multiply.outer(
                        np.arange(vs[w].size, dtype=np.float64), -(mu * a) * kv)))
                # the axes follow the largest table (no transposed copy of it); v is reduced
                # wherever it lies, and a table already in that layout is summed into in place
                big = max(parts, key=lambda part: np.size(part[1]))[0]
                full = tuple(big) + tuple(w for w in scope + (v,) if w not in big)
                shape = [vs[w].size for w in full]
                acc = None
                for i, (sc, tab) in enumerate(parts):
                    if sc == full and tab.flags.c_contiguous and tab.flags.writeable:
                        acc = parts.pop(i)[1]
                        break
                if acc is None:
                    acc = np.empty(shape)
                    sc, tab = parts.pop(0)
                    acc[...] = _broadcast(tab, sc, full)
                for sc, tab in parts:
                    np.add(acc, _broadcast(tab, sc, full), out=acc)
                ax = full.index(v)
                tables.append((full[:ax] + full[ax + 1:], acc.max(axis=ax)))
                records.append((step, full, -1, acc))
            self.eliminate(vs, v)
        total = float(sum(float(tab) for _, tab in tables)) - mu * p.const
        state = np.zeros(len(vs), dtype=np.int64)
        if not total > NEG:  # an empty box: no allowed count
            G = p.num_groups
            return SubproblemAnswer(value=NEG, k=np.zeros(G, dtype=np.int64),
                                    copies=np.zeros(len(self.cuts), dtype=np.int64), exact=True,
                                    lagrangian_at_k=NEG)
        for step, bil, bvar, parts in reversed(records):
            v = step.var
            if step.kind == "table":
                full = bil
                col = parts[tuple(slice(None) if w == v else int(state[w]) for w in full)]
                state[v] = int(np.argmax(col))
            else:
                t = np.array(mu * sum(a * float(state[w]) for w, a in bil))
                us = int(state[bvar]) if bvar >= 0 else None
                state[v] = int(self._threshold(parts[us], t)[1])
        G = p.num_groups
        k = state[:G].copy()
        copies = np.array([state[c.copy] for c in self.cuts], dtype=np.int64)
        value = self.cut_objective(k, copies, mu, lam)
        plain = p.value_of_counts(k) - mu * p.flops_of_counts(k)
        scale = abs(value) + abs(total) + 1e-300
        exact = plain >= max(value, total) - 1e-12 * scale and (
            not self.splits or p.min_keep_violation(k) == 0)
        return SubproblemAnswer(value=max(value, total), k=k, copies=copies, exact=bool(exact),
                                lagrangian_at_k=plain)

    def _threshold_grid(self, pieces, mu, bil, scope, vs, bvar) -> np.ndarray:
        """The threshold step's table over the neighbours (the block axis, if any, of length 1).

        t = μ Σ_w a_w k_w. When the a_w are integers (MAC counts), t takes the values μ·g·z with
        z = Σ_w c_w k_w ∈ 0..R (c_w = a_w / g, g their gcd): the step is evaluated once on those
        R+1 values, h[z], and the table is the strided view h[Σ_w c_w k_w] (no copy)."""
        shape = [vs[w].size if w != bvar else 1 for w in scope]
        key = (scope, tuple(bil), bvar)
        if key not in self._grids:
            self._grids[key] = _integer_grid(bil, scope, vs, shape)
        grid = self._grids[key]
        if grid is not None:
            g, R, strides = grid
            hz = self._threshold(pieces, (mu * g) * np.arange(R + 1, dtype=np.float64))[0]
            hz = np.ascontiguousarray(hz, dtype=np.float64)
            return np.lib.stride_tricks.as_strided(
                hz, shape=shape, strides=[c * hz.itemsize for c in strides], writeable=False)
        t = np.zeros(shape)
        for w, a in bil:
            sh = [1] * len(scope)
            sh[scope.index(w)] = vs[w].size
            t = t + (mu * a) * np.arange(vs[w].size, dtype=np.float64).reshape(sh)
        return self._threshold(pieces, t)[0]

    def cut_objective(self, k: np.ndarray, copies: np.ndarray, mu: float,
                      lam: np.ndarray) -> float:
        """The cut Lagrangian objective at (k, copies) in float64; it equals the Lagrangian
        objective V(k) − μ FLOPs(k) when every copy equals its group's count."""
        p = self.problem
        kf = k.astype(np.float64)
        val = p.value_of_counts(k) - mu * p.flops_of_counts(k)
        for c, cut in enumerate(self.cuts):
            g, h = cut.src, cut.dst
            val += mu * cut.coef * kf[g] * kf[h] - mu * cut.coef * float(copies[c]) * kf[h]
            val += lam[c] * (kf[g] - float(copies[c]))
        return float(val)


def _integer_grid(bil, scope, vs, shape):
    """(g, R, c per axis) when t/μ = g·Σ_w c_w k_w with integers c_w and R+1 = the number of
    values of the sum is at most twice the table size; else None."""
    size = int(np.prod(shape)) if shape else 1
    coefs = np.array([a for _, a in bil], dtype=np.float64)
    if not (coefs.size and np.all(coefs == np.rint(coefs)) and np.all(coefs < 2.0**40)):
        return None
    ints = np.rint(coefs).astype(np.int64)
    g = int(np.gcd.reduce(ints))
    c = dict(zip([w for w, _ in bil], (ints // g).tolist(), strict=True))
    R = int(sum(ci * (vs[w].size - 1) for w, ci in c.items()))
    if R + 1 > 2 * size:
        return None
    return g, R, [c.get(w, 0) for w in scope]


def _upper_hull(ks: list, fv: list) -> list:
    """Indices of the upper concave hull of the points (ks[i], fv[i]), ks increasing."""
    hull: list[int] = []
    for i in range(len(ks)):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # b is not above the segment a -> i: it never maximises a linear function alone
            if (fv[b] - fv[a]) * (ks[i] - ks[a]) <= (fv[i] - fv[a]) * (ks[b] - ks[a]):
                hull.pop()
            else:
                break
        hull.append(i)
    return hull


def _broadcast(tab: np.ndarray, scope: tuple, full: tuple) -> np.ndarray:
    """A table over ``scope`` arranged on the axes of ``full`` (missing axes of length 1)."""
    tab = np.asarray(tab)
    if not scope:
        return tab
    order = sorted(range(len(scope)), key=lambda i: full.index(scope[i]))
    arr = np.transpose(tab, order)
    shape = [1] * len(full)
    for i in order:
        shape[full.index(scope[i])] = tab.shape[i]
    return arr.reshape(shape)


@dataclass(frozen=True)
class SubproblemAnswer:
    value: float  # max of the (cut) Lagrangian objective: L(μ) when there is no cut
    k: np.ndarray  # the maximising counts
    copies: np.ndarray  # counts of the cut copies
    exact: bool  # True when the value equals L(μ) (no cut, or the copies' terms cancel)
    lagrangian_at_k: float  # V(k) − μ FLOPs(k) (a lower bound on L(μ))
