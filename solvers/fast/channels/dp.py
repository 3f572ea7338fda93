"""Dynamic programs over channel counts (pure vectorised numpy).

Two programs live here.

**1. The Lagrangian subproblem** (:class:`CountElimination`). For a multiplier μ ≥ 0,

    L(μ) = max_k  Σ_g U_g(k_g) − μ Σ_{(g,h)∈P} a_gh k_g k_h − μ c₀,
           U_g(k) = V_g(k) − μ (b_g k + a_gg k²),

over the allowed counts (min-keep, collapsible blocks). It is solved exactly by max-plus
*variable elimination* on the coupling graph (groups joined by a conv; each collapsible block
adds a 2-state variable u_b tied to its groups). Eliminating a variable v produces a table over its
neighbours' counts:

* a **threshold step** when v is held only by its bilinear edges, its block variable and tables
  over v alone: with f(k) = U_v(k) + (those tables), max_k f(k) − k·t, t = μ Σ_w a_vw k_w, is
  attained at a vertex of the upper concave hull of f (every count when f is concave, as U_v is:
  sorted scores, a concave quadratic), picked by a ``searchsorted`` on the hull's slopes for a
  whole grid of neighbour counts at once. With integer MAC coefficients t/μ takes few distinct
  values g·z, z = Σ_w c_w k_w, so the step is evaluated on those and the table is a strided view;
* a **table step** otherwise: the sum of every table that holds v, maximised over v's axis.

The elimination order is planned once per problem (greedy on the table sizes; when that needs
a table above ``max_table`` entries, a greedy with one step of lookahead, which holds back a step
that would leave only expensive steps around it). On trees (chains, CIFAR ResNets with stage
streams tied) and on ResNet-50's coupling graph (a triangle per bottleneck, a 4-cycle per
downsample: the streams are eliminated by hull steps in a sweep) every table stays small
(ResNet-50: at most 2049 × 513) and L(μ) is exact.

When no order fits ``max_table``, the problem is **relaxed** — every relaxation enlarges the
set maximised over, so each evaluation stays a valid upper bound on L(μ):

* a bilinear edge (v, w) of the variable to eliminate is *cut* by duplicating v: the edge term
  becomes −μ a k_v′ k_w with a copy v′ attached to w, and the multiplier term λ (k_v − k_v′) is
  added (setting v′ = v recovers the original for every λ);
* when no edge is left to cut, a collapsible block is *split*: each member gets its own u_b, so
  min-keep and collapse hold per group rather than for the block as a whole;
* when even that fails (a graph of large treewidth), the planner falls back to a spanning-forest
  relaxation: every coupled pair off a maximum spanning forest (weight a·n_g·n_h) is cut and
  every block split up front, which leaves only small tables.

The planner keeps the order with the fewest relaxations. An answer is ``exact`` (its value is
L(μ)) when the copies' terms cancel and it meets the original block rules.

**2. The exact budgeted DP for chains** (:func:`pareto_chain_dp`). When the coupling graph is a
union of paths, the program itself (with the FLOP budget) is solved exactly by a DP along the
chain whose state is the count of the current group and whose labels are Pareto fronts of
(FLOPs so far, value so far). A label is dropped when no completion fits the budget (exact
min-FLOPs of the rest) or when a Lagrangian bound on the best completion cannot beat the
incumbent; the optimum is proven when the DP ends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

NEG = -np.inf
DEFAULT_MAX_TABLE = 1 << 22
HARD_MAX_TABLE = 1 << 27  # 1 GiB of float64: refuse rather than exhaust memory
MAX_CHAIN_GRID = 8_000_000  # the chain DP's candidate grid (labels × counts): ~64 MB per array


# ===================================================================== variables of the elimination
@dataclass
class _Var:
    kind: str  # "group", "block" (u_b), "copy" (a duplicated group on a cut edge)
    size: int  # number of states
    group: int = -1  # the group (for "group" and "copy")
    block: int = -1  # for "block": its id; for "group": the block var id or -1
    edges: dict = field(default_factory=dict)  # intact bilinear edges: var id -> a
    fadj: set = field(default_factory=set)  # variables sharing a generated table
    members: set = field(default_factory=set)  # for "block": member group vars still present
    multi: int = 0  # live generated tables holding this variable and others (besides its u_b)


@dataclass(frozen=True)
class Cut:
    """A cut edge: group ``src`` duplicated as var ``copy`` on its edge to var ``dst``."""

    src: int  # var id of the duplicated group
    dst: int  # var id of the other end (a group var)
    copy: int  # var id of the copy
    coef: float  # a of the edge


@dataclass(frozen=True)
class Step:
    var: int
    kind: str  # "threshold" or "table"
    scope: tuple  # the neighbours, the axes of the produced table


class CountElimination:
    """Exact max-plus elimination for the Lagrangian subproblem (see the module docstring)."""

    def __init__(self, problem, max_table: int = DEFAULT_MAX_TABLE):
        self.problem = problem
        self.max_table = int(max_table)
        G = problem.num_groups
        self._n = problem.group_sizes
        self._m = problem.min_keep
        self._inblock = problem.blocks >= 0
        self._scores = problem.sorted_scores
        self._ptr = problem.channel_ptr
        self.vars: list[_Var] = [_Var("group", int(self._n[g]) + 1, group=g) for g in range(G)]
        for bb in range(problem.num_blocks):
            vid = len(self.vars)
            self.vars.append(_Var("block", 2, block=bb))
            for g in problem.block_members(bb).tolist():
                self.vars[g].block = vid
                self.vars[vid].members.add(g)
        for (g, h), a in zip(problem.pairs.tolist(), problem.pair_coef.tolist(), strict=True):
            if a > 0:
                self.vars[g].edges[h] = a
                self.vars[h].edges[g] = a
        self.cuts: list[Cut] = []
        self.steps: list[Step] = []
        self._grids: dict = {}  # threshold steps: integer grids of Σ a_w k_w / gcd (μ-free)
        self._plan()

    # ------------------------------------------------------------------------------ planning
    @staticmethod
    def _neighbours(vs: list[_Var], v: int) -> set:
        x = vs[v]
        out = set(x.fadj) | set(x.edges)
        if x.kind == "group" and x.block >= 0:
            out.add(x.block)
        if x.kind == "block":
            out |= x.members
        return out

    @staticmethod
    def _own(vs: list[_Var], w: int) -> set:
        y = vs[w]
        return {w, y.block} if y.kind == "group" and y.block >= 0 else {w}

    @staticmethod
    def _threshold_ok(vs: list[_Var], v: int) -> bool:
        """A threshold step needs v's tables to be over v alone (or v and its u_b)."""
        return vs[v].kind in ("group", "copy") and vs[v].multi == 0

    def _cost(self, vs: list[_Var], v: int) -> int:
        if vs[v].kind == "block" and any(self._threshold_ok(vs, w) for w in vs[v].members):
            return 1 << 62  # eliminating u_b first would cost its members their threshold step
        c = 1
        for w in self._neighbours(vs, v):
            c *= vs[w].size
        return c if self._threshold_ok(vs, v) else c * vs[v].size

    def _eliminate_structure(self, vs: list[_Var], v: int, scopes: list | None = None) -> tuple:
        """Remove v from the structure; ``scopes`` (planning only) tracks the live tables."""
        # block variables first: a table with a u_b axis is two contiguous slabs
        scope = tuple(sorted(self._neighbours(vs, v), key=lambda w: (vs[w].kind != "block", w)))
        if scopes is not None:
            for sc in [sc for sc in scopes if v in sc]:
                scopes.remove(sc)
                for w in sc:
                    if w != v and not set(sc) <= self._own(vs, w):
                        vs[w].multi -= 1
            scopes.append(scope)
            for w in scope:
                if not set(scope) <= self._own(vs, w):
                    vs[w].multi += 1
        for w in scope:
            y = vs[w]
            y.fadj |= set(scope)
            y.fadj.discard(w)
            y.fadj.discard(v)
            y.edges.pop(v, None)
            y.members.discard(v)
            if y.kind == "group" and y.block == v:
                y.block = -1  # the block variable is gone: its coupling went into the table
        return scope

    def _lookahead(self, vs: list[_Var], scopes: list, costs: dict, v: int) -> int:
        """max(cost of v, the cheapest step near v right after it): a step that leaves only
        expensive steps around it (e.g. one that joins two large groups in one table) waits."""
        N = self._neighbours(vs, v)
        scope = set(N)
        best = 1 << 62
        for w in N:
            y = vs[w]
            if y.kind == "block":
                continue
            after = (self._neighbours(vs, w) | scope) - {w, v}
            own = self._own(vs, w) - ({v} if y.block == v else set())
            gone = sum(1 for sc in scopes if v in sc and w in sc and not set(sc) <= own)
            multi = y.multi - gone + (0 if scope <= own | {w} else 1)
            c = 1
            for u in after:
                c *= vs[u].size
            if not (y.kind in ("group", "copy") and multi == 0):
                c *= y.size
            best = min(best, c)
        for w in set().union(*(self._neighbours(vs, u) for u in N)) - N - {v} if N else ():
            best = min(best, costs.get(w, 1 << 62))
        return max(costs[v], best) if N else costs[v]

    def _greedy(self, lookahead: bool, pre: list = ()):
        """One elimination order (and the relaxations it needed) on a copy of the structure,
        after the relaxations ``pre``."""
        vs = [_clone(x) for x in self._base]
        relax: list = []
        for kind, item in pre:
            self._apply(vs, kind, item)
            relax.append((kind, item))
        scopes: list = []
        alive = set(range(len(vs)))
        steps = []
        while alive:
            costs = {v: self._cost(vs, v) for v in alive}
            if lookahead:
                score = {v: (self._lookahead(vs, scopes, costs, v) if costs[v] <= self.max_table
                             else 1 << 62, costs[v]) for v in alive}
            else:
                score = {v: (costs[v], 0) for v in alive}
            v = min(alive, key=lambda u: (score[u], len(self._neighbours(vs, u)), u))
            if costs[v] > self.max_table and (self._cut_for(vs, alive, costs, relax)
                                               or self._split_for(vs, alive, v, relax)):
                continue
            if costs[v] > HARD_MAX_TABLE:
                raise ValueError(
                    f"channels: the count DP needs a table of {costs[v]} entries and no edge is "
                    f"left to cut; this coupling graph is too wide for the fast solver")
            kind = "threshold" if self._threshold_ok(vs, v) else "table"
            scope = self._eliminate_structure(vs, v, scopes)
            steps.append(Step(v, kind, scope))
            alive.discard(v)
        return steps, relax, [x.size for x in vs]

    def _forest_relaxation(self) -> list:
        """Cut every coupled pair off a maximum spanning forest (weight a·n_g·n_h: the MACs at
        stake) and give every block member its own u_b: what is left is a forest, whose
        elimination tables stay small. The last resort of the planner."""
        base = self._base
        parent = list(range(len(base)))

        def find(i):
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        pairs = sorted(((a * base[g].size * base[h].size, g, h, a)
                        for g, x in enumerate(base) if x.kind == "group"
                        for h, a in x.edges.items() if g < h), reverse=True)
        relax, nxt = [], len(base)
        for _, g, h, a in pairs:
            rg, rh = find(g), find(h)
            if rg != rh:
                parent[rg] = rh
                continue
            src, dst = (g, h) if base[g].size <= base[h].size else (h, g)
            relax.append(("cut", Cut(src=src, dst=dst, copy=nxt, coef=a)))
            nxt += 1
        for u, x in enumerate(base):
            if x.kind == "block":
                for w in sorted(x.members)[1:]:
                    relax.append(("split", (w, u, nxt)))
                    nxt += 1
        return relax

    @staticmethod
    def _apply(vs: list[_Var], kind: str, item) -> None:
        """Apply one relaxation (a cut edge or a split block member) to a variable list."""
        if kind == "cut":
            cut = item
            vs[cut.src].edges.pop(cut.dst)
            vs[cut.dst].edges.pop(cut.src)
            assert len(vs) == cut.copy
            vs.append(_Var("copy", vs[cut.src].size, group=vs[cut.src].group,
                           edges={cut.dst: cut.coef}))
            vs[cut.dst].edges[cut.copy] = cut.coef
        else:
            w, old, new = item
            vs[old].members.discard(w)
            assert len(vs) == new
            vs.append(_Var("block", 2, block=vs[old].block, members={w}))
            vs[w].block = new

    def _plan(self) -> None:
        self._base = [_clone(x) for x in self.vars]
        best, failure = None, None
        attempts = [(False, None), (True, None), (False, "forest")]
        for lookahead, pre in attempts:
            try:
                steps, relax, sizes = self._greedy(
                    lookahead, self._forest_relaxation() if pre else ())
            except ValueError as exc:
                failure = exc
                continue
            size = max((_step_size(s, sizes) for s in steps), default=1)
            key = (len(relax), size)
            if best is None or key < best[0]:
                best = (key, steps, relax, sizes)
            if not relax:
                break
        if best is None:
            raise failure
        _, self.steps, relax, self.sizes = best
        self.cuts = [item for kind, item in relax if kind == "cut"]
        self.splits = [item for kind, item in relax if kind == "split"]
        for kind, item in relax:  # the problem's variables get the chosen plan's relaxations
            self._apply(self.vars, kind, item)
        self.max_step = max((_step_size(s, self.sizes) for s in self.steps), default=1)

    def _step_size(self, s: Step) -> int:
        return _step_size(s, self.sizes)

    def _split_for(self, vs: list[_Var], alive: set, v: int, relax: list) -> bool:
        """Relax a collapsible block near v: every member gets its own u_b (min-keep and
        collapse then hold per group, not per block: a superset of the allowed counts, so the
        maximum is still an upper bound). Returns False when no block has two members left."""
        near = self._neighbours(vs, v) | {v}
        cands = [u for u in alive if vs[u].kind == "block" and len(vs[u].members) >= 2]
        if not cands:
            return False
        u = min(cands, key=lambda b: (b not in near, -len(vs[b].members), b))
        for w in sorted(vs[u].members)[1:]:
            item = (w, u, len(vs))
            self._apply(vs, "split", item)
            alive.add(item[2])
            relax.append(("split", item))
        return True

    def _cut_for(self, vs: list[_Var], alive: set, costs: dict, relax: list) -> bool:
        """Cut bilinear edges of the cheapest group that has a cuttable one, until it fits.

        An edge (v, w) is cuttable when w is adjacent to v by that edge alone. Returns False
        when there is nothing to cut."""
        def cuttable(v, w):
            return w not in vs[v].fadj and vs[w].kind == "group"

        cands = [v for v in alive if vs[v].kind == "group"
                 and any(cuttable(v, w) for w in vs[v].edges)]
        if not cands:
            return False
        v = min(cands, key=lambda u: (costs[u], u))
        for w in sorted(vs[v].edges, key=lambda u: (-vs[u].size, u)):
            if not cuttable(v, w):
                continue
            cut = Cut(src=v, dst=w, copy=len(vs), coef=vs[v].edges[w])
            self._apply(vs, "cut", cut)
            alive.add(cut.copy)
            relax.append(("cut", cut))
            if self._cost(vs, v) <= self.max_table:
                break
        return True

    # ------------------------------------------------------------------------------ numbers
    def _unary(self, x: _Var, mu: float, lin: float) -> tuple[np.ndarray, np.ndarray]:
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

    def _intervals(self, x: _Var, u_state: int | None) -> list[tuple[int, int]]:
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

    def _masked_unary(self, x: _Var, U: np.ndarray) -> np.ndarray:
        out = np.full(U.shape, NEG)
        for lo, hi in self._intervals(x, None):
            out[lo:hi + 1] = U[lo:hi + 1]
        return out

    def _coupling(self, x: _Var) -> np.ndarray:
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
        vs = [_clone(x) for x in self.vars]
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
            self._eliminate_structure(vs, v)
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


def _clone(x: _Var) -> _Var:
    return _Var(x.kind, x.size, x.group, x.block, dict(x.edges), set(x.fadj), set(x.members),
                x.multi)


def _step_size(s: Step, sizes: list) -> int:
    c = 1
    for w in s.scope:
        c *= sizes[w]
    return c if s.kind == "threshold" else c * sizes[s.var]


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


# ===================================================================== exact budgeted DP on chains
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
    start = time.perf_counter()
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
    status = "optimal"
    for i in range(1, L):
        if time_limit is not None and time.perf_counter() - start > time_limit:
            status = "time_limit"
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
            status = "time_limit"
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
            status = "time_limit"
            break
    complete = status == "optimal"
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
            return ChainDPResult("infeasible", None, -np.inf, -np.inf, labels, max_front)
        return ChainDPResult("optimal", best_k, best_val, best_val + eps, labels, max_front)
    return ChainDPResult("time_limit", best_k, best_val, np.inf, labels, max_front)
