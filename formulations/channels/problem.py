"""Structured channel selection with bilinear FLOPs (DESIGN §2c).

Channels that must be removed together form a group g = 0..G-1 (a residual add ties the output
channels of several convolutions into one group). Group g owns the n_g ≥ 1 channels
``channel_ptr[g]:channel_ptr[g+1]`` with scores s_{g,i} ≥ 0. Keeping k_g channels of each group
costs, in MACs per input sample,

    FLOPs(k) = c₀ + Σ_g b_g k_g + Σ_{e=(g,h)∈E} a_e k_g k_h          (a, b, c₀ ≥ 0)

(a conv from group g to group h costs K²·H_out·W_out·k_g·k_h; a conv reading the network input, or a
classifier writing a fixed number of classes, is linear and folded into b; a self-edge (g, g) is
allowed and costs a·k_g²). The program is

    maximize    Σ_g V_g(k_g)                       V_g(k) = the sum of the k largest scores of g
    subject to  FLOPs(k) ≤ F
                m_g ≤ k_g ≤ n_g                    for every group outside a collapsible block
                k_g = 0 for all g ∈ b,  or  m_g ≤ k_g ≤ n_g for all g ∈ b     (each block b)

**Collapse.** A collapsible block b (the inner group(s) of one residual branch) may be removed
whole: with a "keep block" binary u_b,

    m_g u_b ≤ k_g ≤ n_g u_b        for g ∈ b,

so u_b = 0 empties every group of the block and lifts their min-keep, u_b = 1 enforces it. The
FLOPs of a collapsed branch vanish by themselves (every term of its convs holds a zero count).
A group belongs to at most one block (``blocks[g]`` = its block id, -1 for none).

**Decision.** ``x`` (and ``SolveResult.x``) is the per-channel 0/1 vector z, group-major, flat.
Counts are k_g = Σ_i z_{g,i}; the objective is Σ s·z (for given counts the best z keeps the top
k_g scores of each group, :meth:`ChannelProblem.selection_from_counts`). ``evaluate(z)`` reports
two constraints: ``flops`` (FLOPs(k) ≤ F) and ``min_keep_violation`` (≤ 0): the number of
channels missing below min-keep, summed over the groups that are not in a fully collapsed block.

Exchange format (one ``.npz``, no pickles, ``formulation`` = "channels"):
``scores`` float64[N] ≥ 0; ``channel_ptr`` int64[G+1] (group g owns channels
channel_ptr[g]:channel_ptr[g+1], every group non-empty); ``edges`` int64[E,2] (conv from group
edges[e,0] to group edges[e,1]); ``edge_coef`` float64[E] ≥ 0 (a_e, MACs per kept pair);
``linear_coef`` float64[G] ≥ 0 (b_g); ``const`` float scalar ≥ 0 (c₀); ``flop_budget`` float
scalar ≥ 0 (F); ``min_keep`` int64[G] (0 ≤ m_g ≤ n_g); ``blocks`` int64[G] (collapsible block id
0..B-1 or -1); optional ``names`` str[G].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from pruneopt.formulations.base import Formulation, datum
from pruneopt.formulations.checks import check_pointer, int_array
from pruneopt.formulations.common import Evaluation, segment_count, segment_sum_selected


def _edge_array(value, name: str) -> np.ndarray:
    """The (E, 2) edge list; an empty sequence is no edge."""
    edges = np.asarray(value)
    return int_array(np.zeros((0, 2), dtype=np.int64) if edges.size == 0 else edges, name, 2)


def _groups(problem: ChannelProblem) -> int:
    return max(int(problem.channel_ptr.size) - 1, 0)


@dataclass(frozen=True, eq=False)
class ChannelProblem(Formulation):
    """Problem data of structured channel selection (see the module docstring for the program)."""

    scores: np.ndarray = datum("real", bound=">= 0")
    channel_ptr: np.ndarray = datum("int")
    edges: np.ndarray = datum("int", 2, coerce=_edge_array)
    edge_coef: np.ndarray = datum("real", per="edge", bound=">= 0")
    linear_coef: np.ndarray = datum("real", per="group", bound=">= 0")
    const: float = datum("real", 0, bound=">= 0")
    flop_budget: float = datum("real", 0, bound=">= 0")
    # default: 1 in every group
    min_keep: np.ndarray | None = datum(
        "int", per="group", optional=True,
        fill=lambda problem: np.ones(_groups(problem), dtype=np.int64))
    # default: no collapsible block
    blocks: np.ndarray | None = datum(
        "int", per="group", optional=True,
        fill=lambda problem: np.full(_groups(problem), -1, dtype=np.int64))
    names: tuple[str, ...] | None = datum("names", per="group", optional=True)
    _cache: dict = field(init=False, repr=False, compare=False)

    kind: ClassVar[str] = "channels"
    sense: ClassVar[str] = "maximize"

    # ----------------------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise ``ValueError`` naming the offending field if the data do not define a problem."""
        self.check_values()
        check_pointer(self.channel_ptr, "channel_ptr", self.num_channels, of="scores N",
                      part="group", count="G", members="channels")
        G = self.num_groups
        e = self.edges
        if e.shape[1] != 2:
            raise ValueError(f"edges: must have shape (E, 2), got {e.shape}")
        if e.size and (e.min() < 0 or e.max() >= G):
            raise ValueError(f"edges: group indices must lie in 0..{G - 1}")
        self.check_lengths()
        m, n = self.min_keep, np.diff(self.channel_ptr)
        if np.any(m < 0) or np.any(m > n):
            bad = int(np.flatnonzero((m < 0) | (m > n))[0])
            raise ValueError(
                f"min_keep: must lie in 0..n_g; group {bad} has min_keep {int(m[bad])} and "
                f"{int(n[bad])} channels")
        b = self.blocks
        if np.any(b < -1):
            raise ValueError("blocks: entries must be -1 (no block) or a block id >= 0")
        ids = np.unique(b[b >= 0])
        if ids.size and not np.array_equal(ids, np.arange(ids.size)):
            raise ValueError(f"blocks: block ids must be 0..B-1 with every id used, got "
                             f"{ids.tolist()}")

    def dimensions(self) -> dict[str, tuple[str, int]]:
        return {"group": ("G", self.num_groups), "edge": ("E", self.num_edges)}

    def _derive(self) -> None:
        """Read-only derived arrays: sizes, per-group descending order, value tables, pairs."""
        c = {}
        object.__setattr__(self, "_cache", c)
        ptr, s = self.channel_ptr, self.scores
        G, n = self.num_groups, np.diff(ptr)
        group_of = np.repeat(np.arange(G, dtype=np.int64), n)
        # descending order within each group (stable: ties keep their index order)
        order = np.lexsort((np.arange(s.size), -s, group_of))
        rank = np.empty(s.size, dtype=np.int64)
        rank[order] = np.arange(s.size, dtype=np.int64) - ptr[group_of[order]]
        sorted_scores = s[order]
        # V_g(0..n_g), flat with offset vptr[g] = ptr[g] + g; V_g(0) = 0
        vptr = ptr + np.arange(G + 1, dtype=np.int64)
        values = np.zeros(s.size + G, dtype=np.float64)
        for g in range(G):  # G prefix sums (a loop over groups, not channels)
            np.cumsum(sorted_scores[ptr[g]:ptr[g + 1]], out=values[vptr[g] + 1:vptr[g + 1]])
        # coupling: unordered pairs g < h with summed coefficients, self-edges folded per group
        e, a = self.edges, self.edge_coef
        self_coef = np.zeros(G, dtype=np.float64)
        loops = e[:, 0] == e[:, 1]
        np.add.at(self_coef, e[loops, 0], a[loops])
        lo = np.minimum(e[~loops, 0], e[~loops, 1])
        hi = np.maximum(e[~loops, 0], e[~loops, 1])
        key = lo * G + hi
        uniq, inv = np.unique(key, return_inverse=True)
        pair_coef = np.zeros(uniq.size, dtype=np.float64)
        np.add.at(pair_coef, inv, a[~loops])
        pairs = np.stack([uniq // G, uniq % G], axis=1).astype(np.int64).reshape(-1, 2)
        n_blocks = int(self.blocks.max()) + 1 if G and self.blocks.max() >= 0 else 0
        k_min = np.where(self.blocks >= 0, 0, self.min_keep).astype(np.int64)
        for name, arr in (("sizes", n.astype(np.int64)), ("group_of", group_of), ("order", order),
                          ("rank", rank), ("sorted_scores", sorted_scores), ("vptr", vptr),
                          ("values", values), ("self_coef", self_coef), ("pairs", pairs),
                          ("pair_coef", pair_coef), ("min_counts", k_min)):
            arr.setflags(write=False)
            c[name] = arr
        c["num_blocks"] = n_blocks

    # ----------------------------------------------------------------------------- shape
    @property
    def num_channels(self) -> int:
        return int(self.scores.size)

    @property
    def num_items(self) -> int:  # the length of x, as in the other formulations
        return int(self.scores.size)

    @property
    def num_groups(self) -> int:
        return int(self.channel_ptr.size - 1)

    @property
    def num_edges(self) -> int:
        return int(self.edges.shape[0])

    @property
    def num_blocks(self) -> int:
        return self._cache["num_blocks"]

    @property
    def group_sizes(self) -> np.ndarray:
        """n_g (int64[G], read-only)."""
        return self._cache["sizes"]

    @property
    def pairs(self) -> np.ndarray:
        """The coupled pairs (g, h), g < h, with parallel and reversed edges merged (int64[P,2])."""
        return self._cache["pairs"]

    @property
    def pair_coef(self) -> np.ndarray:
        """a_{gh} summed over the edges between g and h (float64[P])."""
        return self._cache["pair_coef"]

    @property
    def self_coef(self) -> np.ndarray:
        """a_{gg} summed over the self-edges of each group (float64[G]): cost a_{gg} k_g²."""
        return self._cache["self_coef"]

    @property
    def sorted_scores(self) -> np.ndarray:
        """Scores sorted decreasingly within each group (group-major, float64[N])."""
        return self._cache["sorted_scores"]

    def value_table(self, g: int) -> np.ndarray:
        """V_g(0..n_g): prefix sums of group g's scores in decreasing order (float64[n_g+1])."""
        vptr = self._cache["vptr"]
        return self._cache["values"][vptr[g]:vptr[g + 1]]

    def block_members(self, b: int) -> np.ndarray:
        return np.flatnonzero(self.blocks == b)

    def allowed_counts(self, g: int) -> np.ndarray:
        """The counts group g may take: m_g..n_g, plus 0 when it is in a collapsible block."""
        m, n = int(self.min_keep[g]), int(self.group_sizes[g])
        ks = np.arange(m, n + 1, dtype=np.int64)
        if self.blocks[g] >= 0 and m > 0:
            ks = np.concatenate(([0], ks))
        return ks

    @property
    def min_counts(self) -> np.ndarray:
        """The counts of least FLOPs: every block collapsed, every other group at min-keep."""
        return self._cache["min_counts"]

    @property
    def dense_flops(self) -> float:
        return self.flops_of_counts(self.group_sizes)

    # ----------------------------------------------------------------------------- counts
    def counts(self, z) -> np.ndarray:
        """k_g = number of kept channels of each group (int64[G])."""
        return segment_count(self.canonical(z), self.channel_ptr)

    def _counts_array(self, k) -> np.ndarray:
        arr = np.asarray(k)
        if arr.shape[-1:] != (self.num_groups,):
            raise ValueError(f"k: last axis must have G={self.num_groups} entries, got {arr.shape}")
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or np.any(arr != np.rint(arr)):
                raise ValueError("k: counts must be integers")
        elif arr.dtype.kind not in "iu":
            raise ValueError(f"k: counts must be integers, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        if np.any(arr < 0) or np.any(arr > self.group_sizes):
            raise ValueError("k: counts must lie in 0..n_g")
        return arr

    def flops_of_counts(self, k):
        """FLOPs(k) = c₀ + Σ b_g k_g + Σ_e a_e k_g k_h in float64; k may be batched (..., G)."""
        kk = self._counts_array(k).astype(np.float64)
        e = self.edges
        out = self.const + kk @ self.linear_coef
        if e.shape[0]:
            out = out + (kk[..., e[:, 0]] * kk[..., e[:, 1]]) @ self.edge_coef
        return float(out) if np.ndim(out) == 0 else out

    def value_of_counts(self, k):
        """Σ_g V_g(k_g) (the best objective with these counts); k may be batched (..., G)."""
        kk = self._counts_array(k)
        vals = self._cache["values"][self._cache["vptr"][:-1] + kk]
        out = vals.sum(axis=-1)
        return float(out) if np.ndim(out) == 0 else out

    def min_keep_violation(self, k):
        """Channels missing below min-keep, over the groups not in a fully collapsed block."""
        kk = self._counts_array(k)
        short = np.maximum(self.min_keep - kk, 0)
        blk = self.blocks
        if self.num_blocks:
            inb = blk >= 0
            open_ = np.zeros(kk.shape[:-1] + (self.num_blocks,), dtype=np.int64)
            # a block is open (must meet min-keep) when any of its groups keeps a channel
            for b in range(self.num_blocks):
                open_[..., b] = np.any(kk[..., blk == b] > 0, axis=-1)
            exempt = np.zeros_like(kk, dtype=bool)
            exempt[..., inb] = open_[..., blk[inb]] == 0
            short = np.where(exempt, 0, short)
        out = short.sum(axis=-1)
        return int(out) if np.ndim(out) == 0 else out

    def counts_feasible(self, k, tol: float = 1e-9):
        """True where the counts meet min-keep/collapse and the FLOP budget (relative tol)."""
        ok = (np.asarray(self.min_keep_violation(k)) == 0) & (
            np.asarray(self.flops_of_counts(k))
            <= self.flop_budget + tol * max(1.0, self.flop_budget))
        return bool(ok) if ok.ndim == 0 else ok

    def selection_from_counts(self, k) -> np.ndarray:
        """z keeping the k_g largest scores of every group (ties: the lower index first)."""
        kk = self._counts_array(k)
        if kk.ndim != 1:
            raise ValueError("k: must be 1-D here")
        return self._cache["rank"] < kk[self._cache["group_of"]]

    # ----------------------------------------------------------------------------- evaluation
    def evaluate(self, x) -> Evaluation:
        """Objective Σ s·z and constraint usage (FLOPs, min-keep shortfall), in float64."""
        zb = self.canonical(x)
        k = segment_count(zb, self.channel_ptr)
        return Evaluation(
            objective=segment_sum_selected(self.scores, zb, self.channel_ptr),
            usage={"flops": self.flops_of_counts(k),
                   "min_keep_violation": float(self.min_keep_violation(k))},
            limits={"flops": float(self.flop_budget), "min_keep_violation": 0.0},
        )

    # ----------------------------------------------------------------------------- declarations
    def to_pyomo(self, form: str = "layered", score_scale: float = 1.0, cost_unit: float = 1.0,
                 bounds=None):
        """The program as a Pyomo ``ConcreteModel`` that reads like the math.

        ``form="layered"`` is P1 (one-hot counts y_{g,k}, edge variables e per coupled pair);
        ``form="mccormick"`` is P1′ (integer counts, binary expansions, McCormick products);
        ``bounds = (lo, hi)`` declares only the counts in those windows (no blocks). See
        :mod:`pruneopt.formulations.channels.pyomo_model`. ``score_scale`` multiplies the objective,
        ``cost_unit`` divides every MAC coefficient and the budget (exact when it divides them).
        """
        from pruneopt.formulations.channels.pyomo_model import build_layered, build_mccormick

        if form == "layered":
            return build_layered(self, score_scale=score_scale, cost_unit=cost_unit,
                                 bounds=bounds)
        if form == "mccormick":
            return build_mccormick(self, score_scale=score_scale, cost_unit=cost_unit,
                                   bounds=bounds)

        raise ValueError(f"form: must be 'layered' or 'mccormick', got {form!r}")

    def to_cpsat(self, score_scale: float | None = None, value_cap: float | None = None):
        """The program as an OR-Tools CP-SAT model over integer counts.

        Returns ``(model, k_vars, scaling)`` (see :mod:`pruneopt.formulations.channels.cpsat_model`);
        ``value_cap``, a proven upper bound on the optimum, sets the value scale.
        """
        from pruneopt.formulations.channels.cpsat_model import build_cpsat

        return build_cpsat(self, score_scale=score_scale, value_cap=value_cap)

    def __repr__(self) -> str:
        return (f"ChannelProblem(N={self.num_channels}, G={self.num_groups}, E={self.num_edges}, "
                f"blocks={self.num_blocks}, flop_budget={self.flop_budget:.6g})")
