"""Planning the max-plus elimination of the channel count DP: its variables, order, relaxations.

The variables of :class:`~pruneopt.solvers.fast.channels.elimination.CountElimination` are the
groups' counts and, for each collapsible block, a 2-state variable u_b tied to its groups;
bilinear edges join groups coupled by a conv. Eliminating a variable produces a table over its
neighbours (a *threshold step* when it is held only by its edges, its u_b and tables over it
alone; a *table step* otherwise). The elimination order is planned once per problem (greedy on
the table sizes; when that needs a table above ``max_table`` entries, a greedy with one step of
lookahead, which holds back a step that would leave only expensive steps around it). On trees
(chains, CIFAR ResNets with stage streams tied) and on ResNet-50's coupling graph (a triangle per
bottleneck, a 4-cycle per downsample: the streams are eliminated by hull steps in a sweep) every
table stays small (ResNet-50: at most 2049 × 513) and L(μ) is exact.

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

The planner keeps the order with the fewest relaxations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_MAX_TABLE = 1 << 22
HARD_MAX_TABLE = 1 << 27  # 1 GiB of float64: refuse rather than exhaust memory


# ===================================================================== variables of the elimination
@dataclass
class Var:
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


def clone_var(x: Var) -> Var:
    return Var(x.kind, x.size, x.group, x.block, dict(x.edges), set(x.fadj), set(x.members),
               x.multi)


def step_size(s: Step, sizes: list) -> int:
    c = 1
    for w in s.scope:
        c *= sizes[w]
    return c if s.kind == "threshold" else c * sizes[s.var]


class EliminationPlan:
    """An elimination order of the count DP's variables, with the relaxations (cut edges, split
    blocks) it needed to keep every table within ``max_table`` entries (module docstring).

    ``vars`` are the problem's variables with the chosen relaxations applied, ``steps`` the
    order, ``cuts`` and ``splits`` the relaxations, ``sizes`` the number of states of each
    variable and ``max_step`` the largest table a step makes.
    """

    def __init__(self, problem, max_table: int = DEFAULT_MAX_TABLE):
        self.problem = problem
        self.max_table = int(max_table)
        sizes = problem.group_sizes
        self.vars: list[Var] = [Var("group", int(sizes[g]) + 1, group=g)
                                for g in range(problem.num_groups)]
        for bb in range(problem.num_blocks):
            vid = len(self.vars)
            self.vars.append(Var("block", 2, block=bb))
            for g in problem.block_members(bb).tolist():
                self.vars[g].block = vid
                self.vars[vid].members.add(g)
        for (g, h), a in zip(problem.pairs.tolist(), problem.pair_coef.tolist(), strict=True):
            if a > 0:
                self.vars[g].edges[h] = a
                self.vars[h].edges[g] = a
        self.cuts: list[Cut] = []
        self.steps: list[Step] = []
        self._plan()

    @staticmethod
    def _neighbours(vs: list[Var], v: int) -> set:
        x = vs[v]
        out = set(x.fadj) | set(x.edges)
        if x.kind == "group" and x.block >= 0:
            out.add(x.block)
        if x.kind == "block":
            out |= x.members
        return out

    @staticmethod
    def _own(vs: list[Var], w: int) -> set:
        y = vs[w]
        return {w, y.block} if y.kind == "group" and y.block >= 0 else {w}

    @staticmethod
    def _threshold_ok(vs: list[Var], v: int) -> bool:
        """A threshold step needs v's tables to be over v alone (or v and its u_b)."""
        return vs[v].kind in ("group", "copy") and vs[v].multi == 0

    def _cost(self, vs: list[Var], v: int) -> int:
        if vs[v].kind == "block" and any(self._threshold_ok(vs, w) for w in vs[v].members):
            return 1 << 62  # eliminating u_b first would cost its members their threshold step
        c = 1
        for w in self._neighbours(vs, v):
            c *= vs[w].size
        return c if self._threshold_ok(vs, v) else c * vs[v].size

    def eliminate(self, vs: list[Var], v: int, scopes: list | None = None) -> tuple:
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

    def _lookahead(self, vs: list[Var], scopes: list, costs: dict, v: int) -> int:
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
        vs = [clone_var(x) for x in self._base]
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
            scope = self.eliminate(vs, v, scopes)
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
    def _apply(vs: list[Var], kind: str, item) -> None:
        """Apply one relaxation (a cut edge or a split block member) to a variable list."""
        if kind == "cut":
            cut = item
            vs[cut.src].edges.pop(cut.dst)
            vs[cut.dst].edges.pop(cut.src)
            assert len(vs) == cut.copy
            vs.append(Var("copy", vs[cut.src].size, group=vs[cut.src].group,
                           edges={cut.dst: cut.coef}))
            vs[cut.dst].edges[cut.copy] = cut.coef
        else:
            w, old, new = item
            vs[old].members.discard(w)
            assert len(vs) == new
            vs.append(Var("block", 2, block=vs[old].block, members={w}))
            vs[w].block = new

    def _plan(self) -> None:
        self._base = [clone_var(x) for x in self.vars]
        best, failure = None, None
        attempts = [(False, None), (True, None), (False, "forest")]
        for lookahead, pre in attempts:
            try:
                steps, relax, sizes = self._greedy(
                    lookahead, self._forest_relaxation() if pre else ())
            except ValueError as exc:
                failure = exc
                continue
            size = max((step_size(s, sizes) for s in steps), default=1)
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
        self.max_step = max((step_size(s, self.sizes) for s in self.steps), default=1)

    def _split_for(self, vs: list[Var], alive: set, v: int, relax: list) -> bool:
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

    def _cut_for(self, vs: list[Var], alive: set, costs: dict, relax: list) -> bool:
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
