"""Layout rules of the ops that move, reshape, index, split or reduce the channel axis:
pass-through, view/reshape/flatten (including channel shuffles), permute/transpose,
getitem, split/chunk, reductions. A mixin of :class:`~pruneopt.models.channels.builder.
GraphBuilder`."""

from __future__ import annotations

import numpy as np
import torch
import torch.fx as fx

from pruneopt.models.channels.layouts import Layout
from pruneopt.models.channels.rules import target_name
from pruneopt.models.channels.trace_state import ChannelSplit, Unhandled


class ShapeRules:
    """The builder's rules for ops that change where the channels sit."""

    def _first(self, n: fx.Node):
        a = n.args[0] if n.args else next(iter(n.kwargs.values()), None)
        if not isinstance(a, fx.Node):
            raise Unhandled("no tensor input")
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
            raise Unhandled("")
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
            raise Unhandled("")
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
            raise Unhandled("an irregular reshape")
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
                self.splits[n] = ChannelSplit(lay, news[0], np.arange(shape[ax]).reshape(sizes))
                return None
            raise Unhandled("the channel axis is split and merged at once")
        raise Unhandled("")

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

    def _merge_split(self, n: fx.Node, sp: ChannelSplit, shape: tuple, out: tuple) -> Layout | None:
        k = sp.pos.ndim
        span = list(range(sp.start, sp.start + k))
        groups = self._dim_groups(shape, out)
        if groups is None:
            raise Unhandled("")
        for olds, news in groups:
            if olds == span and len(news) == 1:
                chan = sp.pos.reshape(-1)
                self._set_axis(n, news[0])
                return Layout(sp.base.kind[chan], sp.base.gid[chan], sp.base.idx[chan])
        raise Unhandled("a split channel axis is reshaped otherwise")

    def _permute(self, n: fx.Node, result) -> Layout | None:
        a, lay, shape, ax = self._first(n)
        if not isinstance(result, torch.Tensor) or shape is None:
            raise Unhandled("")
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
                raise Unhandled("a split channel axis is permuted with other dims")
            self.splits[n] = ChannelSplit(sp.base, sp.start,
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
                raise Unhandled("")
            lay, ax = self.tuples[a][key]
            self._set_axis(n, ax)
            return lay
        if not isinstance(result, torch.Tensor):
            return None
        if not isinstance(a, fx.Node) or self.shapes.get(a) is None:
            return self._fixed_out(result, n)
        if a in self.param_of:
            raise Unhandled("an indexed parameter")
        lay, shape, ax = self.layouts.get(a), self.shapes[a], self.axis.get(a, 1)
        if a in self.splits or a in self.tuples:
            raise Unhandled("")
        if lay is None or ax is None:
            return self._fixed_out(result, n)
        keys = list(key) if isinstance(key, tuple) else [key]
        if any(isinstance(k, fx.Node) or (k is not None and not isinstance(
                k, int | slice | type(Ellipsis))) for k in keys):
            raise Unhandled("indexing with tensors")
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
                    raise Unhandled("a single channel is selected")
                sel = np.arange(shape[ax])[k]
                if sel.size != shape[ax] or np.any(sel != np.arange(shape[ax])):
                    # literal positions: after shrinking they would point elsewhere
                    raise Unhandled("channels selected at fixed positions")
                lay = self._materialize(lay, f"sliced by {n.name}")
                out = (Layout(lay.kind[sel], lay.gid[sel], lay.idx[sel]), new_dim)
            if not isinstance(k, int):
                new_dim += 1
            dim += 1
        if out is None:
            raise Unhandled("")
        self._set_axis(n, out[1])
        return out[0]

    def _split(self, n: fx.Node, result) -> Layout | None:
        a, lay, shape, ax = self._first(n)
        if not isinstance(result, tuple | list) or not all(isinstance(r, torch.Tensor)
                                                           for r in result):
            raise Unhandled("")
        name = n.target if isinstance(n.target, str) else n.target.__name__
        default = 0
        dim = n.kwargs.get("dim", n.args[2] if len(n.args) > 2 and name != "unbind"
                           else (n.args[1] if name == "unbind" and len(n.args) > 1 else default))
        dim = int(dim) % len(shape)
        if lay is None or ax is None:
            if a in self.splits or a in self.tuples:
                raise Unhandled("")
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
                raise Unhandled("channels split at fixed positions")
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
            raise Unhandled("")
        if ax is None:
            return self._fixed_out(result, n)
        dims = [dim] if isinstance(dim, int) else list(dim)
        dims = sorted({d % len(shape) for d in dims})
        if 0 in dims or ax in dims:
            raise Unhandled("a reduction over the channels or the batch")
        keep = result.dim() == len(shape)
        new_ax = ax if keep else ax - sum(1 for d in dims if d < ax)
        if result.dim() <= new_ax or result.shape[new_ax] != shape[ax]:
            raise Unhandled("")
        self._set_axis(n, new_ax)
        return self._materialize(lay, f"reduced by {n.name}")

