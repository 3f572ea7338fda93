"""The channel tracer: a ``torch.fx`` interpreter that gives every node a layout (on its channel
axis) and every Conv2d/Linear its MAC terms, then :func:`build_channel_graph` (model, example
input → graph). The rules are in the package docstring (:mod:`pruneopt.models.channels`).

**Passes.** Some consumers need a group's channels in coarser units than its producer made
them: a grouped conv or a GroupNorm with G slices needs every slice to keep the same channels
(the group *folds*: one unit = one channel in each slice), and a conv that reads only part of a
group (ShuffleNet's ``chunk`` after a channel shuffle) needs that part to be a group of its own
(the group is *partitioned*). Such needs are recorded as requests against the producing modules,
and the graph is traced again with the producers making their groups folded or partitioned from
the start; after :data:`MAX_PASSES` the requests still open make their groups fixed instead.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import numpy as np
import torch
import torch.fx as fx
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pruneopt.models.channels.assemble import assemble_graph
from pruneopt.models.channels.graph import ChannelGraph
from pruneopt.models.channels.layouts import FIXED, HARD, SOFT, ZERO, Layout, UnionFind
from pruneopt.models.channels.maps import CHANNEL_MAPS
from pruneopt.models.channels.rules import (
    BINARY_FUNCTIONS,
    BINARY_METHODS,
    CAT_FUNCTIONS,
    META_ATTRS,
    META_METHODS,
    PARAM_METHODS,
    PASS_FUNCTION_NAMES,
    PASS_FUNCTIONS,
    PASS_METHODS,
    PASS_MODULES,
    PERMUTE_FUNCTIONS,
    PERMUTE_METHODS,
    REDUCE_FUNCTIONS,
    REDUCE_METHODS,
    RESHAPE_FUNCTIONS,
    RESHAPE_METHODS,
    SPLIT_FUNCTIONS,
    SPLIT_METHODS,
    target_name,
)

MAX_PASSES = 6
NORM_LEAVES = (nn.LayerNorm, nn.GroupNorm)


# ============================================================================ the tracer
class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        # LayerNorm/GroupNorm subclasses (ConvNeXt's LayerNorm2d) stay leaves: their weights
        # are sliced per channel like BatchNorm's
        return isinstance(m, tuple(CHANNEL_MAPS) + NORM_LEAVES) \
            or super().is_leaf_module(m, qualname)


class _Unhandled(Exception):
    """Raised inside a rule: the op is treated as unknown (its groups kept whole)."""


@dataclass
class _Record:
    """A module's first call: raw layouts, for slicing it later."""

    kind: str
    inp: Layout
    out: Layout | None = None
    src_pos: np.ndarray | None = None
    stride: int = 1
    resolved: bool = False
    groups: int = 1


@dataclass
class _Split:
    """A tensor whose channel axis was split over dims ``start..start+len(pos.shape)-1`` by a
    view: ``pos`` holds, for each index over those dims, the channel of ``base`` it is."""

    base: Layout
    start: int
    pos: np.ndarray


def _period_of(lay: Layout, slices: int) -> bool:
    """Every one of ``slices`` equal slices of the layout holds the same channels in the same
    order (what a grouped conv or GroupNorm needs)."""
    n = len(lay)
    if slices <= 1:
        return True
    if n % slices:
        return False
    s = n // slices
    return (np.all(lay.kind.reshape(slices, s) == lay.kind[:s])
            and np.all(lay.gid.reshape(slices, s) == lay.gid[:s])
            and np.all(lay.idx.reshape(slices, s) == lay.idx[:s]))


class GraphBuilder(fx.Interpreter):
    """Runs the traced graph once, giving every node a layout and every conv/linear its terms.

    ``specs``: per producing module, how to make its output group: ``{"period": p, "labels":
    array | None}`` — a period p folds it (position j is unit j mod p), labels partition the
    units into several groups. ``requests`` collects what this pass found it needs."""

    def __init__(self, gm: fx.GraphModule, modules: dict[str, nn.Module], *,
                 specs: dict | None = None, allow_requests: bool = True) -> None:
        super().__init__(gm)
        self.mods = modules
        self.specs = specs or {}
        self.allow_requests = allow_requests
        self.requests: list[tuple] = []
        self.uf = UnionFind()
        self.layouts: dict[fx.Node, Layout | None] = {}
        self.axis: dict[fx.Node, int | None] = {}
        self.tuples: dict[fx.Node, list] = {}
        self.splits: dict[fx.Node, _Split] = {}
        self.param_of: dict[fx.Node, str] = {}
        self.params: dict[str, tuple[int, Layout]] = {}  # attr path -> (its axis, layout)
        self.shapes: dict[fx.Node, tuple[int, ...] | None] = {}
        self.terms: list[tuple[int, int | None, int | None]] = []  # coef·k_A·k_B (None: 1)
        self.records: dict[str, _Record] = {}
        self.producers: dict[int, list[str]] = {}  # raw group -> modules whose output it is
        self.group_units: dict[int, tuple] = {}  # raw group -> (producer, its units, period)
        self.reasons: dict[int, str] = {}
        self.unknown: list[str] = []
        self.act_points: list[tuple[str, int]] = []  # (module, raw group)
        self.measured = 0
        self.calls: dict[str, int] = {}
        self.counter: FlopCounterMode | None = None
        for n in gm.graph.nodes:
            if n.op == "call_module":
                self.calls[n.target] = self.calls.get(n.target, 0) + 1

    # ------------------------------------------------------------------ union-find helpers
    def _fix(self, groups, reason: str) -> None:
        for g in np.unique(np.asarray(groups, dtype=np.int64)):
            g = int(g)
            if g < 0:
                continue
            if not self.uf.is_fixed(g):
                self.reasons.setdefault(self.uf.find(g), reason)
            self.reasons.setdefault(g, reason)
            self.uf.fix(g)

    def _fix_layout(self, lay: Layout | None, reason: str) -> None:
        if lay is not None:
            self._fix(lay.gid[(lay.kind == HARD) | (lay.kind == SOFT)], reason)

    def _materialize(self, lay: Layout, reason: str) -> Layout:
        """SOFT → FIXED (its source group fixed), ZERO → FIXED: for consumers other than an add."""
        if lay.plain:
            return lay
        soft = lay.kind == SOFT
        self._fix(lay.gid[soft], reason)
        kind = np.where(lay.kind == HARD, HARD, FIXED).astype(np.int8)
        gid = np.where(kind == HARD, lay.gid, -1)
        idx = np.where(kind == HARD, lay.idx, -1)
        return Layout(kind, gid, idx)

    def _tie(self, a: Layout, b: Layout, reason: str) -> None:
        """Positions of two plain layouts of one length are the same channel."""
        both = (a.kind == HARD) & (b.kind == HARD)
        one = (a.kind == HARD) != (b.kind == HARD)  # HARD meets FIXED: must keep it
        if one.any():
            self._fix(np.concatenate((a.gid[one & (a.kind == HARD)],
                                      b.gid[one & (b.kind == HARD)])), reason)
        if not both.any():
            return
        ga, gb, ia, ib = a.gid[both], b.gid[both], a.idx[both], b.idx[both]
        pairs = np.unique(np.stack([ga, gb], axis=1), axis=0)
        for g, h in pairs.tolist():
            sel = (ga == g) & (gb == h)
            if g == h and np.all(ia[sel] == ib[sel]):
                continue
            if g != h and np.all(ia[sel] == ib[sel]) and self.uf.size[g] == self.uf.size[h] \
                    and np.unique(ia[sel]).size == self.uf.size[g]:
                self.uf.union(g, h)  # channel i of g is channel i of h
            else:
                # a permuted or partial correspondence: not expressible with counts
                self._fix([g, h], f"{reason} (channels do not correspond one to one)")

    def _group(self, n: int, producer: str) -> int:
        g = self.uf.add(n)
        self.producers[g] = [producer]
        return g

    def _new_output(self, name: str, c_out: int, fold: int = 1) -> Layout:
        """The output layout of a producing module: one new group of c_out channels, folded by
        ``fold`` (and by its spec), partitioned by its spec's labels."""
        period = c_out // fold
        spec = self.specs.get(name, {})
        want = spec.get("period")
        if want and period % want == 0:
            period = want
        labels = spec.get("labels")
        if labels is None or len(labels) != period:
            labels = np.zeros(period, dtype=np.int64)
        uniq, inv = np.unique(labels, return_inverse=True)
        unit_gid = np.empty(period, dtype=np.int64)
        unit_idx = np.empty(period, dtype=np.int64)
        for li in range(uniq.size):
            sel = inv == li
            tag = name if uniq.size == 1 else f"{name}[{li + 1}/{uniq.size}]"
            g = self._group(int(sel.sum()), tag)
            self.group_units[g] = (name, np.flatnonzero(sel), period)
            unit_gid[sel] = g
            unit_idx[sel] = np.arange(int(sel.sum()))
        reps = c_out // period
        return Layout(np.full(c_out, HARD, np.int8), np.tile(unit_gid, reps),
                      np.tile(unit_idx, reps))

    # ------------------------------------------------------------------ requests
    def _request_period(self, lay: Layout, slices: int, reason: str) -> bool:
        """Ask for the producers of ``lay`` to fold so that its ``slices`` slices are equal.
        Possible when the layout is one group class, every position HARD, in the group's
        (possibly folded) order. Returns False (and the caller fixes) otherwise."""
        n = len(lay)
        if not self.allow_requests or n % slices or not np.all(lay.kind == HARD):
            return False
        gids = np.unique(lay.gid)
        if gids.size != 1:
            return False
        g = int(gids[0])
        size = self.uf.size[g]
        if not np.array_equal(lay.idx, np.arange(n) % size):
            return False
        want = math.gcd(size, n // slices)
        self.requests.append(("period", g, want, reason))
        return True

    def _request_parts(self, lay: Layout, reason: str) -> bool:
        """A conv reads part of a group: ask for the part to become a group of its own."""
        if not self.allow_requests:
            return False
        hard = lay.kind == HARD
        for g in np.unique(lay.gid[hard]).tolist():
            mask = np.zeros(self.uf.size[g], dtype=bool)
            mask[lay.idx[hard & (lay.gid == g)]] = True
            if not mask.all():
                self.requests.append(("part", g, mask, reason))
        return True

    # ------------------------------------------------------------------ node dispatch
    def run_node(self, n: fx.Node):
        # one FlopCounterMode around the whole run (see build_channel_graph): this node's MACs
        # are the growth of its running total
        before = self.counter.get_total_flops()
        result = super().run_node(n)
        macs = (int(self.counter.get_total_flops()) - int(before)) // 2
        self.measured += macs
        self.shapes[n] = tuple(result.shape) if isinstance(result, torch.Tensor) else None
        if n.op == "output":
            self._output(n)
            return result
        try:
            lay = self._layout(n, result, macs)
            ax = self.axis.get(n)
            shape = self.shapes[n]
            if lay is not None and (shape is None or len(shape) < 2 or
                                    len(lay) != shape[ax if ax is not None else 1]):
                raise _Unhandled("layout does not match the shape")
        except _Unhandled as exc:
            self._drop(n)
            lay = self._unknown(n, result, macs, f"read by {n.op} {target_name(n)} ({n.name}), "
                                f"which is not modelled ({exc})" if str(exc) else None)
        except (RuntimeError, ValueError, TypeError, IndexError, KeyError, AttributeError,
                ZeroDivisionError) as exc:
            if str(exc).startswith("internal:"):
                raise
            self._drop(n)
            lay = self._unknown(n, result, macs,
                                f"read by {n.op} {target_name(n)} ({n.name}), where the tracer "
                                f"failed ({type(exc).__name__}: {exc})")
        self.layouts[n] = lay
        return result

    def _drop(self, n: fx.Node) -> None:
        self.layouts.pop(n, None)
        self.axis.pop(n, None)
        self.tuples.pop(n, None)
        self.splits.pop(n, None)

    def _in(self, a) -> Layout | None:
        return self.layouts.get(a) if isinstance(a, fx.Node) else None

    def _set_axis(self, n: fx.Node, ax: int | None) -> None:
        self.axis[n] = ax

    def _fixed_out(self, result, n: fx.Node | None = None) -> Layout | None:
        if n is not None:
            self.axis[n] = None  # every channel fixed: any axis may be read as the channels
        if isinstance(result, torch.Tensor) and result.dim() >= 2:
            return Layout.fixed(int(result.shape[1]))
        return None

    def _at(self, a, ax: int) -> Layout | None:
        """The layout of node ``a`` on axis ``ax``: its own, or all FIXED when it has no grouped
        channel; None when its channels lie on another axis (the caller then gives up)."""
        if not isinstance(a, fx.Node):
            return None
        lay = self.layouts.get(a)
        shape = self.shapes.get(a)
        if shape is None:
            return None
        own = self.axis.get(a, 1)
        if lay is None:
            if a in self.tuples or a in self.splits or a in self.param_of:
                return None
            return Layout.fixed(shape[ax]) if len(shape) > ax else None
        if own is None or not np.any(lay.kind != FIXED):
            return Layout.fixed(shape[ax]) if len(shape) > ax else None
        return lay if own == ax else None

    def _layouts_of(self, a) -> list[Layout]:
        out = []
        if a in self.layouts and self.layouts[a] is not None:
            out.append(self.layouts[a])
        for item in self.tuples.get(a, []):
            if item[0] is not None:
                out.append(item[0])
        if a in self.splits:
            out.append(self.splits[a].base)
        return out

    def _unknown(self, n: fx.Node, result, macs: int, why: str | None = None) -> Layout | None:
        """An op we do not model: every grouped input is kept whole, the output is FIXED."""
        reason = why or f"read by {n.op} {target_name(n)} ({n.name}), which is not modelled"
        touched = False
        for a in n.all_input_nodes:
            for lay in self._layouts_of(a):
                if np.any(lay.kind != FIXED):
                    touched = True
                    self._fix_layout(lay, reason)
        if touched or macs:
            self.unknown.append(f"{n.name}: {n.op} {target_name(n)}")
        self.terms.append((macs, None, None))
        return self._fixed_out(result, n)

    def _layout(self, n: fx.Node, result, macs: int) -> Layout | None:
        if n.op == "placeholder":
            return self._fixed_out(result, n)
        if n.op == "get_attr":
            if isinstance(result, torch.Tensor):
                self.param_of[n] = str(n.target)
            return None
        if n.op == "call_module":
            return self._module(n, self.mods[n.target], result, macs)
        if n.op == "call_function" and n.target is getattr and len(n.args) > 1 \
                and n.args[1] in META_ATTRS:
            return None
        if n.op == "call_method" and n.target in META_METHODS:
            return None
        if n.op == "call_function" and n.target is operator.getitem:
            if macs:
                return self._unknown(n, result, macs)
            return self._getitem(n, result)
        if macs:
            return self._unknown(n, result, macs)
        fn, meth = (n.target if n.op == "call_function" else None,
                    n.target if n.op == "call_method" else None)
        if meth in PARAM_METHODS and n.args and n.args[0] in self.param_of:
            if isinstance(result, torch.Tensor) and result.dim() == len(self.shapes[n.args[0]]):
                self.param_of[n] = self.param_of[n.args[0]]
                return None
        if fn in PASS_FUNCTIONS or meth in PASS_METHODS or \
                getattr(fn, "__name__", None) in PASS_FUNCTION_NAMES:
            return self._pass(n, result)
        if fn in RESHAPE_FUNCTIONS or meth in RESHAPE_METHODS:
            return self._reshape(n, result)
        if fn in PERMUTE_FUNCTIONS or meth in PERMUTE_METHODS:
            return self._permute(n, result)
        if fn in SPLIT_FUNCTIONS or meth in SPLIT_METHODS:
            return self._split(n, result)
        if fn in REDUCE_FUNCTIONS or meth in REDUCE_METHODS:
            return self._reduce(n, result)
        if fn in BINARY_FUNCTIONS or meth in BINARY_METHODS:
            return self._binary(n, result)
        if fn in CAT_FUNCTIONS:
            return self._cat(n, result)
        return self._unknown(n, result, macs)

    # ------------------------------------------------------------------ channel-wise ops
    def _first(self, n: fx.Node):
        a = n.args[0] if n.args else next(iter(n.kwargs.values()), None)
        if not isinstance(a, fx.Node):
            raise _Unhandled("no tensor input")
        return a, self.layouts.get(a), self.shapes.get(a), self.axis.get(a, 1)

    def _pass(self, n: fx.Node, result) -> Layout | None:
        a, lay, shape, ax = self._first(n)
        others = [x for x in n.all_input_nodes if x is not a and self._layouts_of(x)]
        if a in self.splits and not others and isinstance(result, torch.Tensor) \
                and tuple(result.shape) == shape:
            self.splits[n] = self.splits[a]
            return None
        if lay is None or others or not isinstance(result, torch.Tensor) \
                or result.dim() != len(shape) or (ax is not None
                                                   and result.shape[ax] != shape[ax]):
            if lay is None and not others and a not in self.tuples and a not in self.splits:
                return self._fixed_out(result, n) if isinstance(result, torch.Tensor) else None
            raise _Unhandled("")
        self._set_axis(n, ax)
        return self._materialize(lay, f"passed through {target_name(n)} ({n.name})")

    @staticmethod
    def _dim_groups(old: tuple, new: tuple):
        """Pair runs of old dims with runs of new dims of equal product (a view's regrouping)."""
        out, i, j = [], 0, 0
        while i < len(old) or j < len(new):
            a, b = [i], [j]
            pa = old[i] if i < len(old) else 1
            pb = new[j] if j < len(new) else 1
            i, j = i + 1, j + 1
            while pa != pb:
                if pa < pb:
                    if i >= len(old):
                        return None
                    pa *= old[i]
                    a.append(i)
                    i += 1
                else:
                    if j >= len(new):
                        return None
                    pb *= new[j]
                    b.append(j)
                    j += 1
            # absorb trailing size-1 dims
            out.append(([d for d in a if d < len(old)], [d for d in b if d < len(new)]))
        return out

    def _reshape(self, n: fx.Node, result) -> Layout | None:
        a, lay, shape, ax = self._first(n)
        if not isinstance(result, torch.Tensor) or shape is None:
            raise _Unhandled("")
        out = tuple(result.shape)
        if a in self.splits:
            return self._merge_split(n, self.splits[a], shape, out)
        if lay is None:
            return self._pass(n, result)
        if ax is None:
            return self._fixed_out(result, n)
        lay = self._materialize(lay, f"reshaped by {n.name}")
        groups = self._dim_groups(shape, out)
        if groups is None:
            raise _Unhandled("an irregular reshape")
        for olds, news in groups:
            if ax not in olds:
                continue
            if len(news) == 1:  # the channel axis merges with neighbours (or stays)
                sub = [shape[d] for d in olds]
                chan = np.indices(sub).reshape(len(sub), -1)[olds.index(ax)]
                self._set_axis(n, news[0])
                return Layout(lay.kind[chan], lay.gid[chan], lay.idx[chan])
            if len(olds) == 1 and len(news) == 2:
                # the channel axis splits into (g, C/g) (the view of a channel shuffle): the
                # shrunk model splits its own channel count into g equal slices, so every slice
                # must keep the same channels — the slices are tied position by position
                # (the groups the shuffle mixes become one). Remembered until a view merges the
                # dims again.
                sizes = [out[d] for d in news]
                self._tie_slices(lay, sizes[0], f"split into {sizes[0]} slices by {n.name} "
                                 "(a channel shuffle)")
                self.splits[n] = _Split(lay, news[0], np.arange(shape[ax]).reshape(sizes))
                return None
            raise _Unhandled("the channel axis is split and merged at once")
        raise _Unhandled("")

    def _tie_slices(self, lay: Layout, slices: int, reason: str) -> None:
        """The ``slices`` equal slices of ``lay`` keep the same channels (position j of every
        slice is one channel): tie them; what cannot be tied one to one is fixed."""
        n = len(lay)
        if slices <= 1:
            return
        if n % slices:
            self._fix_layout(lay, reason)
            return
        s = n // slices
        first = Layout(lay.kind[:s], lay.gid[:s], lay.idx[:s])
        for j in range(1, slices):
            part = Layout(lay.kind[j * s:(j + 1) * s], lay.gid[j * s:(j + 1) * s],
                          lay.idx[j * s:(j + 1) * s])
            self._tie(first, part, reason)

    def _merge_split(self, n: fx.Node, sp: _Split, shape: tuple, out: tuple) -> Layout | None:
        k = sp.pos.ndim
        span = list(range(sp.start, sp.start + k))
        groups = self._dim_groups(shape, out)
        if groups is None:
            raise _Unhandled("")
        for olds, news in groups:
            if olds == span and len(news) == 1:
                chan = sp.pos.reshape(-1)
                self._set_axis(n, news[0])
                return Layout(sp.base.kind[chan], sp.base.gid[chan], sp.base.idx[chan])
        raise _Unhandled("a split channel axis is reshaped otherwise")

    def _permute(self, n: fx.Node, result) -> Layout | None:
        a, lay, shape, ax = self._first(n)
        if not isinstance(result, torch.Tensor) or shape is None:
            raise _Unhandled("")
        nd = len(shape)
        args = list(n.args[1:])
        if n.target in ("permute",) or n.target is torch.permute:
            dims = args[0] if len(args) == 1 and isinstance(args[0], list | tuple) else args
            dims = n.kwargs.get("dims", dims)
            perm = [int(d) % nd for d in dims]
        else:
            d0 = int(n.kwargs.get("dim0", args[0] if args else 0)) % nd
            d1 = int(n.kwargs.get("dim1", args[1] if len(args) > 1 else 1)) % nd
            perm = list(range(nd))
            perm[d0], perm[d1] = perm[d1], perm[d0]
        if a in self.splits:
            sp = self.splits[a]
            span = list(range(sp.start, sp.start + sp.pos.ndim))
            if sorted(perm[d] for d in span) != span or any(perm[d] != d for d in range(nd)
                                                           if d not in span):
                raise _Unhandled("a split channel axis is permuted with other dims")
            self.splits[n] = _Split(sp.base, sp.start,
                                    np.transpose(sp.pos, [perm[d] - sp.start for d in span]))
            return None
        if lay is None:
            return self._pass(n, result) if a not in self.tuples else None
        if ax is None:
            return self._fixed_out(result, n)
        self._set_axis(n, perm.index(ax))
        return self._materialize(lay, f"permuted by {n.name}")

    def _getitem(self, n: fx.Node, result) -> Layout | None:
        a = n.args[0]
        key = n.args[1] if len(n.args) > 1 else None
        if isinstance(a, fx.Node) and a in self.tuples:
            if not isinstance(key, int):
                raise _Unhandled("")
            lay, ax = self.tuples[a][key]
            self._set_axis(n, ax)
            return lay
        if not isinstance(result, torch.Tensor):
            return None
        if not isinstance(a, fx.Node) or self.shapes.get(a) is None:
            return self._fixed_out(result, n)
        if a in self.param_of:
            raise _Unhandled("an indexed parameter")
        lay, shape, ax = self.layouts.get(a), self.shapes[a], self.axis.get(a, 1)
        if a in self.splits or a in self.tuples:
            raise _Unhandled("")
        if lay is None or ax is None:
            return self._fixed_out(result, n)
        keys = list(key) if isinstance(key, tuple) else [key]
        if any(isinstance(k, fx.Node) or (k is not None and not isinstance(
                k, int | slice | type(Ellipsis))) for k in keys):
            raise _Unhandled("indexing with tensors")
        if any(k is Ellipsis for k in keys):
            e = keys.index(Ellipsis)
            fill = len(shape) - (len([k for k in keys if k is not None]) - 1)
            keys = keys[:e] + [slice(None)] * fill + keys[e + 1:]
        dim, new_dim, out = 0, 0, None
        for k in keys + [slice(None)] * len(shape):
            if dim >= len(shape):
                break
            if k is None:
                new_dim += 1
                continue
            if dim == ax:
                if isinstance(k, int):
                    raise _Unhandled("a single channel is selected")
                sel = np.arange(shape[ax])[k]
                if sel.size != shape[ax] or np.any(sel != np.arange(shape[ax])):
                    # literal positions: after shrinking they would point elsewhere
                    raise _Unhandled("channels selected at fixed positions")
                lay = self._materialize(lay, f"sliced by {n.name}")
                out = (Layout(lay.kind[sel], lay.gid[sel], lay.idx[sel]), new_dim)
            if not isinstance(k, int):
                new_dim += 1
            dim += 1
        if out is None:
            raise _Unhandled("")
        self._set_axis(n, out[1])
        return out[0]

    def _split(self, n: fx.Node, result) -> Layout | None:
        a, lay, shape, ax = self._first(n)
        if not isinstance(result, tuple | list) or not all(isinstance(r, torch.Tensor)
                                                           for r in result):
            raise _Unhandled("")
        name = n.target if isinstance(n.target, str) else n.target.__name__
        default = 0
        dim = n.kwargs.get("dim", n.args[2] if len(n.args) > 2 and name != "unbind"
                           else (n.args[1] if name == "unbind" and len(n.args) > 1 else default))
        dim = int(dim) % len(shape)
        if lay is None or ax is None:
            if a in self.splits or a in self.tuples:
                raise _Unhandled("")
            self.tuples[n] = [(self._fixed_out(r), None) for r in result]
            return None
        lay = self._materialize(lay, f"split by {n.name}")
        items = []
        if dim == ax:
            sizes = [int(r.shape[dim]) for r in result]
            size_arg = n.args[1] if len(n.args) > 1 else n.kwargs.get(
                "split_size_or_sections", n.kwargs.get("chunks", n.kwargs.get("sections")))
            if name == "unbind" or len(set(sizes)) != 1 or isinstance(size_arg, list | tuple) \
                    or sum(sizes) != len(lay):
                raise _Unhandled("channels split at fixed positions")
            # chunk(k): the shrunk model cuts its own channel count into k equal parts, so the
            # parts must keep the same channels: they are tied position by position
            self._tie_slices(lay, len(sizes), f"split into {len(sizes)} equal parts by "
                             f"{n.name}")
            start = 0
            for c in sizes:
                items.append((Layout(lay.kind[start:start + c], lay.gid[start:start + c],
                                     lay.idx[start:start + c]), ax))
                start += c
        else:
            new_ax = ax - (1 if name == "unbind" and dim < ax else 0)
            items = [(lay, new_ax) for _ in result]
        self.tuples[n] = items
        return None

    def _reduce(self, n: fx.Node, result) -> Layout | None:
        a, lay, shape, ax = self._first(n)
        dim = n.kwargs.get("dim", n.args[1] if len(n.args) > 1 else None)
        if lay is None or dim is None or not isinstance(result, torch.Tensor):
            if lay is None and a not in self.splits and a not in self.tuples \
                    and isinstance(result, torch.Tensor):
                return self._fixed_out(result, n)
            raise _Unhandled("")
        if ax is None:
            return self._fixed_out(result, n)
        dims = [dim] if isinstance(dim, int) else list(dim)
        dims = sorted({d % len(shape) for d in dims})
        if 0 in dims or ax in dims:
            raise _Unhandled("a reduction over the channels or the batch")
        keep = result.dim() == len(shape)
        new_ax = ax if keep else ax - sum(1 for d in dims if d < ax)
        if result.dim() <= new_ax or result.shape[new_ax] != shape[ax]:
            raise _Unhandled("")
        self._set_axis(n, new_ax)
        return self._materialize(lay, f"reduced by {n.name}")

    def _binary(self, n: fx.Node, result) -> Layout | None:
        if not isinstance(result, torch.Tensor) or result.dim() < 2:
            raise _Unhandled("")
        nd = result.dim()
        operands = [a for a in (list(n.args) + list(n.kwargs.values()))
                    if isinstance(a, fx.Node) and self.shapes.get(a) is not None]
        axes = {self.axis.get(a, 1) for a in operands
                if self.layouts.get(a) is not None and self.axis.get(a, 1) is not None
                and np.any(self.layouts[a].kind != FIXED)}
        if len(axes) > 1:
            raise _Unhandled("operands with their channels on different axes")
        ax = axes.pop() if axes else None
        if ax is None:  # no grouped operand: nothing to tie
            for a in operands:
                if a in self.splits or a in self.tuples:
                    raise _Unhandled("")
            return self._fixed_out(result, n)
        c = int(result.shape[ax])
        full, params = [], []
        reason = f"joined by {target_name(n)} ({n.name})"
        for a in operands:
            shape = self.shapes[a]
            if math.prod(shape) == 1:
                continue  # a scalar tensor: channel-wise
            d = ax - (nd - len(shape))  # the operand's own dim aligned with the channel axis
            if a in self.param_of:
                if d >= 0 and shape[d] == c and c > 1:
                    params.append((a, d))
                    continue
                if d < 0 or shape[d] == 1:
                    continue  # broadcast over the channels: the same for every channel
                raise _Unhandled("")
            if a in self.splits or a in self.tuples:
                raise _Unhandled("")
            lay = self.layouts.get(a)
            if d < 0 or shape[d] == 1:
                # one value broadcast over every channel (a per-sample mask, a spatial map)
                if lay is not None and self.axis.get(a, 1) is not None \
                        and np.any(lay.kind != FIXED):
                    self._fix_layout(lay, reason)
                continue
            if shape[d] != c:
                raise _Unhandled("")
            at = self._at(a, d)
            if at is None:
                raise _Unhandled("")
            full.append((a, at))
        if not full:
            raise _Unhandled("")
        out = self._join(n, full, reason)
        for a, d in params:
            self._param(self.param_of[a], d, out, reason)
        self._set_axis(n, ax)
        return out

    def _param(self, path: str, d: int, lay: Layout, reason: str) -> None:
        """A parameter applied channel-wise (ConvNeXt's layer scale, ViT's position embedding):
        it is sliced with the channels of ``lay`` along its dim ``d``."""
        lay = self._materialize(lay, reason)
        old = self.params.get(path)
        if old is None:
            self.params[path] = (d, lay)
        elif old[0] != d or len(old[1]) != len(lay):
            self._fix_layout(lay, reason)
            self._fix_layout(old[1], reason)
        else:
            self._tie(old[1], lay, f"parameter {path} used twice")

    def _join(self, n: fx.Node, operands: list, reason: str) -> Layout:
        """Positionwise join (residual add): HARD entries tie; SOFT copies from a map leaf that
        feeds only this node are dropped/kept with the join's own channels."""
        soft_ops, plain = [], []
        for a, lay in operands:
            if not lay.plain and self._soft_candidate(a, n):
                soft_ops.append(a)
            else:
                plain.append(self._materialize(lay, reason))
        hard_any = np.zeros(len(operands[0][1]), dtype=bool)
        for lay in plain:
            hard_any |= lay.kind == HARD
        if soft_ops and not hard_any.all():
            # a copy with no channel of the join's own to land on: keep it all
            for a in soft_ops:
                plain.append(self._materialize(self.layouts[a], reason))
                self.records[a.target].resolved = False
            soft_ops = []
        out = plain[0]
        for other in plain[1:]:
            self._tie(out, other, reason)
            take = (out.kind != HARD) & (other.kind == HARD)
            if take.any():
                out = Layout(np.where(take, other.kind, out.kind).astype(np.int8),
                             np.where(take, other.gid, out.gid),
                             np.where(take, other.idx, out.idx))
        for a in soft_ops:
            rec = self.records[a.target]
            rec.out, rec.resolved = out, True
        return out

    def _soft_candidate(self, a: fx.Node, consumer: fx.Node) -> bool:
        return (a.op == "call_module" and a.target in self.records
                and self.records[a.target].kind == "map" and len(a.users) == 1
                and self.calls.get(a.target, 0) == 1)

    def _cat(self, n: fx.Node, result) -> Layout | None:
        tensors = n.args[0] if n.args else n.kwargs.get("tensors")
        dim = n.kwargs.get("dim", n.args[1] if len(n.args) > 1 else 0)
        if not isinstance(tensors, list | tuple) or not isinstance(result, torch.Tensor) \
                or result.dim() < 2 or not all(isinstance(t, fx.Node) for t in tensors):
            raise _Unhandled("")
        nd = result.dim()
        dim = dim % nd
        axes = {self.axis.get(t, 1) for t in tensors
                if self.layouts.get(t) is not None and self.axis.get(t, 1) is not None
                and np.any(self.layouts[t].kind != FIXED)}
        if len(axes) > 1:
            raise _Unhandled("operands with their channels on different axes")
        ax = axes.pop() if axes else None
        if ax is None:
            ax = 1 if dim == 1 else None
            if ax is None:
                if any(t in self.splits or t in self.tuples for t in tensors):
                    raise _Unhandled("")
                return self._fixed_out(result, n)
        reason = f"concatenated by {n.name}"
        if dim == ax:
            parts = []
            for t in tensors:
                at = self._at(t, ax)
                if at is None:
                    raise _Unhandled("")
                parts.append(self._materialize(at, reason))
            self._set_axis(n, ax)
            return Layout.cat(parts)
        # stacking samples, pixels or tokens: channel i is channel i
        full, params = [], []
        for t in tensors:
            if t in self.param_of:
                params.append(t)
                continue
            at = self._at(t, ax)
            if at is None:
                raise _Unhandled("")
            full.append((t, at))
        out = self._join(n, full, reason)
        for t in params:
            if len(self.shapes[t]) != nd or self.shapes[t][ax] != len(out):
                raise _Unhandled("")
            self._param(self.param_of[t], ax, out, reason)
        self._set_axis(n, ax)
        return out

    # ------------------------------------------------------------------ modules
    def _module(self, n: fx.Node, m: nn.Module, result, macs: int) -> Layout | None:
        name = n.target
        tensor_inputs = [a for a in n.all_input_nodes if self.shapes.get(a) is not None]
        if len(tensor_inputs) != 1 or not n.args or n.args[0] is not tensor_inputs[0]:
            return self._unknown(n, result, macs)
        a, lay, shape, ax = self._first(n)
        if a in self.splits or a in self.tuples or a in self.param_of:
            return self._unknown(n, result, macs)
        if isinstance(m, tuple(CHANNEL_MAPS)):
            at = self._at(a, 1)
            if at is None:
                return self._unknown(n, result, macs)
            self._set_axis(n, 1)
            return self._map(n, m, at, result)
        if isinstance(m, nn.Conv2d | nn.Linear):
            return self._layer(n, m, a, shape, result, macs)
        if macs:
            return self._unknown(n, result, macs)
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            at = self._at(a, 1)
            if at is None:
                return self._unknown(n, result, macs)
            self._set_axis(n, 1)
            out = self._materialize(at, f"normalised by {name}")
            return self._remember(name, "bn", out, None)
        if isinstance(m, nn.LayerNorm):
            return self._layer_norm(n, m, a, shape, result)
        if isinstance(m, nn.GroupNorm):
            return self._group_norm(n, m, a, shape, result)
        if (isinstance(m, nn.PReLU) and m.num_parameters == 1) or isinstance(m, PASS_MODULES):
            return self._pass(n, result)
        if isinstance(m, nn.Flatten):
            return self._reshape(n, result)
        return self._unknown(n, result, macs)

    def _layer_norm(self, n, m: nn.LayerNorm, a, shape, result) -> Layout | None:
        name = n.target
        ns = tuple(m.normalized_shape)
        nd = len(shape)
        if len(ns) != 1 or not isinstance(result, torch.Tensor) or tuple(result.shape) != shape:
            return self._unknown(n, result, 0)
        c = ns[0]
        exact = type(m) is nn.LayerNorm
        if exact or (shape[-1] == c and self.axis.get(a, 1) == nd - 1):
            ax = nd - 1  # the last dim: what nn.LayerNorm normalises
        elif shape[1] == c and shape[-1] != c:
            ax = 1  # a subclass that normalises the channels of an N×C×H×W map (LayerNorm2d)
        else:
            return self._unknown(n, result, 0, f"read by {name}: a LayerNorm subclass whose "
                                 "normalised dim is ambiguous")
        at = self._at(a, ax)
        if at is None:
            own = self.axis.get(a, 1)
            if exact and own is not None and own != ax:
                # normalises another dim: the channels pass through untouched
                self._set_axis(n, own)
                return self.layouts[a]
            return self._unknown(n, result, 0)
        self._set_axis(n, ax)
        out = self._materialize(at, f"normalised by {name}")
        return self._remember(name, "ln", out, None)

    def _group_norm(self, n, m: nn.GroupNorm, a, shape, result) -> Layout | None:
        name = n.target
        at = self._at(a, 1)
        if at is None or not isinstance(result, torch.Tensor):
            return self._unknown(n, result, 0)
        self._set_axis(n, 1)
        lay = self._materialize(at, f"normalised by {name}")
        G, C = int(m.num_groups), int(m.num_channels)
        if 1 < G < C and not _period_of(lay, G):
            why = f"a GroupNorm of {G} groups needs the same channels kept in every group"
            if not self._request_period(lay, G, f"read by {name}: {why}"):
                self._fix_layout(lay, f"read by {name}: {why}")
        return self._remember(name, "gn", lay, None, groups=G)

    def _remember(self, name: str, kind: str, inp: Layout, out: Layout | None,
                  groups: int = 1) -> Layout:
        """Store a module's first call; a later call of the same module must see the same
        channels (its weights are sliced once), so its input is tied to the first call's."""
        rec = self.records.get(name)
        if rec is None:
            self.records[name] = _Record(kind, inp, out, groups=groups)
            return out if out is not None else inp
        if len(rec.inp) != len(inp):
            self._fix_layout(rec.inp, f"module {name} called twice")
            self._fix_layout(inp, f"module {name} called twice")
        else:
            self._tie(rec.inp, inp, f"module {name} called twice")
        return rec.out if rec.out is not None else inp

    def _layer(self, n, m, a, shape, result, macs) -> Layout | None:
        name = n.target
        reason = f"read by {name}"
        out_shape = tuple(result.shape)
        nd = len(shape)
        if isinstance(m, nn.Linear):
            ax = nd - 1
            a_coef, c_in, c_out, groups = math.prod(shape[1:-1]), m.in_features, \
                m.out_features, 1
        else:
            ax = 1
            a_coef = m.kernel_size[0] * m.kernel_size[1] * out_shape[2] * out_shape[3]
            c_in, c_out, groups = m.in_channels, m.out_channels, m.groups
        lay = self._at(a, ax)
        if lay is None:
            return self._fixed_layer(n, self._layouts_of(a), result, macs,
                                     "its input's channels lie on another axis")
        lay = self._materialize(lay, reason)
        if groups == 1:
            formula = a_coef * c_in * c_out
        else:
            formula = a_coef * c_out * (c_in // groups)
        if formula != macs:  # never seen; keep the count exact whatever happens
            return self._fixed_layer(n, [lay], result, macs,
                                     f"MACs {macs} differ from the formula {formula}")
        rec = self.records.get(name)
        if rec is not None and rec.kind == "fixed":
            return self._fixed_layer(n, [lay], result, macs, "called before as a fixed layer")
        depthwise = groups > 1 and groups == c_in
        if groups > 1 and not depthwise and not _period_of(lay, groups):
            why = f"a grouped conv ({groups} groups) needs the same channels kept in every group"
            self._request_period(lay, groups, f"{reason}: {why}")
            return self._fixed_layer(n, [lay], result, macs, why)
        hard = lay.kind == HARD
        gs, counts = np.unique(lay.gid[hard], return_counts=True)
        mult = {}
        partial = False
        for g, cnt in zip(gs.tolist(), counts.tolist(), strict=True):
            whole = np.unique(lay.idx[hard & (lay.gid == g)]).size == self.uf.size[g]
            if not whole or cnt % self.uf.size[g]:
                partial = True
            mult[g] = cnt // self.uf.size[g]
        if partial:
            why = "it reads part of a group"
            self._request_parts(lay, f"{reason}: {why}")
            return self._fixed_layer(n, [lay], result, macs, why)
        n_fixed = int(np.count_nonzero(~hard))
        self._set_axis(n, ax)
        if depthwise:
            # output channel j reads input channel j // rep
            rep = c_out // c_in
            for g, mg in mult.items():
                self.terms.append((a_coef * rep * mg, g, None))
            self.terms.append((a_coef * rep * n_fixed, None, None))
            out = Layout(np.repeat(lay.kind, rep), np.repeat(lay.gid, rep),
                         np.repeat(lay.idx, rep))
            return self._remember(name, "depthwise", lay, out)
        if rec is None:
            out = self._new_output(name, c_out, groups)
            kind = "linear" if isinstance(m, nn.Linear) else ("conv" if groups == 1 else "gconv")
        else:
            out, kind = rec.out, rec.kind
        og, ocounts = np.unique(out.gid, return_counts=True)
        for go, co in zip(og.tolist(), ocounts.tolist(), strict=True):
            f_o = co // self.uf.size[go]
            for g, mg in mult.items():
                coef = a_coef * mg * f_o
                if coef % groups:
                    raise RuntimeError(f"internal: grouped conv {name} coefficient")
                self.terms.append((coef // groups, g, go))
            if n_fixed:
                coef = a_coef * n_fixed * f_o
                if coef % groups:
                    raise RuntimeError(f"internal: grouped conv {name} coefficient")
                self.terms.append((coef // groups, go, None))
        users = list(n.users)
        act = name
        if len(users) == 1 and users[0].op == "call_module" \
                and isinstance(self.mods[users[0].target], nn.BatchNorm2d | nn.BatchNorm1d):
            act = users[0].target
        if rec is None:
            for go in og.tolist():
                self.act_points.append((act, go))
        return self._remember(name, kind, lay, out, groups=groups)

    def _fixed_layer(self, n, lays, result, macs, why: str) -> Layout | None:
        name = n.target
        reason = f"read by {name}: {why}"
        for lay in lays:
            self._fix_layout(lay, reason)
        rec = self.records.get(name)
        if rec is not None and rec.kind != "fixed":
            # called before as a prunable layer: its weights cannot be sliced for one call only
            for old in (rec.inp, rec.out):
                self._fix_layout(old, reason)
        self.unknown.append(f"{n.name}: {name} ({why})")
        self.terms.append((macs, None, None))
        if name not in self.records:
            inp = lays[0] if lays else Layout.fixed(0)
            self.records[name] = _Record("fixed", inp, None)
        return self._fixed_out(result, n)

    def _map(self, n, m, lay, result) -> Layout | None:
        name = n.target
        c_in = len(lay)
        fn = next(CHANNEL_MAPS[t] for t in type(m).__mro__ if t in CHANNEL_MAPS)
        src, stride = fn(m, c_in)
        if src.size != result.shape[1]:
            raise RuntimeError(f"internal: channel map of {name} has the wrong size")
        identity = src.size == c_in and np.array_equal(src, np.arange(c_in))
        lay = self._materialize(lay, f"mapped by {name}")
        if identity:  # an identity shortcut: the add ties its input to the block's output
            return lay
        self.records[name] = _Record("map", lay, None, src, stride)
        inside = src >= 0
        kind = np.full(src.size, ZERO, np.int8)
        gid = np.full(src.size, -1, np.int64)
        idx = np.full(src.size, -1, np.int64)
        kind[inside] = SOFT
        gid[inside] = lay.gid[src[inside]]
        idx[inside] = lay.idx[src[inside]]
        return Layout(kind, gid, idx)

    def _output(self, n: fx.Node) -> None:
        reason = "reaches the network output"
        for a in n.all_input_nodes:
            for lay in self._layouts_of(a):
                self._fix_layout(lay, reason)

    # ------------------------------------------------------------------ between passes
    def resolved_specs(self) -> tuple[dict, bool]:
        """The producer specs for the next pass (this pass's specs refined by its requests),
        and whether anything changed."""
        specs = {k: dict(v) for k, v in self.specs.items()}
        changed = False
        members: dict[int, list[int]] = {}
        for g in range(1, len(self.uf.parent)):
            members.setdefault(self.uf.find(g), []).append(g)
        for req in self.requests:
            kind, g = req[0], req[1]
            for h in members[self.uf.find(g)]:
                if h not in self.group_units:
                    continue
                name, units, period = self.group_units[h]
                spec = specs.setdefault(name, {})
                labels = spec.get("labels")
                if kind == "period":
                    if labels is not None and np.unique(labels).size > 1:
                        continue  # a partitioned group is not folded as well
                    new = math.gcd(period, req[2])
                    if new < period:
                        spec["period"] = new
                        spec.pop("labels", None)
                        changed = True
                    continue
                if labels is None or labels.size != period:
                    labels = np.zeros(period, dtype=np.int64)
                mark = np.zeros(period, dtype=np.int64)
                mark[units[req[2]]] = 1
                new = np.unique(labels * 2 + mark, return_inverse=True)[1].astype(np.int64)
                if np.unique(new).size != np.unique(labels).size:
                    spec["labels"] = new
                    spec["period"] = period
                    changed = True
        return specs, changed


# ============================================================================ building
def _trace(model: nn.Module):
    tracer = _Tracer()
    try:
        graph = tracer.trace(model)
    except Exception as exc:
        raise ValueError(f"model: cannot be traced with torch.fx ({type(exc).__name__}: "
                         f"{exc}); write its forward without data-dependent control flow") \
            from None
    return fx.GraphModule(tracer.root, graph)


def build_channel_graph(model: nn.Module, example_input: torch.Tensor) -> ChannelGraph:
    """Trace ``model`` with ``torch.fx`` and run it once on ``example_input[:1]`` to find its
    channel groups and their exact bilinear MAC coefficients (see the module docstring)."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: must be an nn.Module, got {type(model).__name__}")
    if not isinstance(example_input, torch.Tensor) or example_input.dim() < 2 \
            or example_input.shape[0] < 1:
        raise ValueError("input_shape: the example input must be a tensor (N, C, ...) with N >= 1")
    x = example_input[:1]
    saved = [(m, m.training) for m in model.modules()]
    try:
        model.eval()  # trace the inference graph (dropout, stochastic depth off); BatchNorm at
        # batch 1 (and 1×1 maps) needs its running statistics
        gm = _trace(model)
        modules = dict(model.named_modules())
        specs: dict = {}
        for attempt in range(MAX_PASSES):
            last = attempt == MAX_PASSES - 1
            builder = GraphBuilder(gm, modules, specs=specs, allow_requests=not last)
            builder.extra_traceback = False  # keep our own messages intact
            try:
                with torch.no_grad(), FlopCounterMode(display=False) as counter:
                    builder.counter = counter
                    builder.run(x)
            except (RuntimeError, TypeError, IndexError) as exc:
                if str(exc).startswith("internal:"):
                    raise
                raise ValueError(f"input_shape: the model does not run on an input of shape "
                                 f"{tuple(x.shape)}: {exc}") from None
            if not builder.requests:
                break
            specs, changed = builder.resolved_specs()
            if not changed:
                # nothing more can be refined: one last pass that fixes what is still open
                builder = GraphBuilder(gm, modules, specs=specs, allow_requests=False)
                builder.extra_traceback = False
                with torch.no_grad(), FlopCounterMode(display=False) as counter:
                    builder.counter = counter
                    builder.run(x)
                break
    finally:
        for m, mode in saved:
            m.training = mode
    return assemble_graph(builder, tuple(int(s) for s in example_input.shape[1:]))
