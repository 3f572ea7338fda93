"""Layout rules of the ops that join tensors: elementwise add/sub/mul (residual adds tie groups,
squeeze-excitation scales), channel-wise parameters, and concatenation along the channels.
A mixin of :class:`~pruneopt.models.channels.builder.GraphBuilder`."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.fx as fx

from pruneopt.models.channels.layouts import FIXED, HARD, Layout
from pruneopt.models.channels.rules import target_name
from pruneopt.models.channels.trace_state import Unhandled


class JoinRules:
    """The builder's rules for ops that combine several tensors."""

    def _binary(self, n: fx.Node, result) -> Layout | None:
        if not isinstance(result, torch.Tensor) or result.dim() < 2:
            raise Unhandled("")
        nd = result.dim()
        operands = [a for a in (list(n.args) + list(n.kwargs.values()))
                    if isinstance(a, fx.Node) and self.shapes.get(a) is not None]
        axes = {self.axis.get(a, 1) for a in operands
                if self.layouts.get(a) is not None and self.axis.get(a, 1) is not None
                and np.any(self.layouts[a].kind != FIXED)}
        if len(axes) > 1:
            raise Unhandled("operands with their channels on different axes")
        ax = axes.pop() if axes else None
        if ax is None:  # no grouped operand: nothing to tie
            for a in operands:
                if a in self.splits or a in self.tuples:
                    raise Unhandled("")
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
                raise Unhandled("")
            if a in self.splits or a in self.tuples:
                raise Unhandled("")
            lay = self.layouts.get(a)
            if d < 0 or shape[d] == 1:
                # one value broadcast over every channel (a per-sample mask, a spatial map)
                if lay is not None and self.axis.get(a, 1) is not None \
                        and np.any(lay.kind != FIXED):
                    self._fix_layout(lay, reason)
                continue
            if shape[d] != c:
                raise Unhandled("")
            at = self._at(a, d)
            if at is None:
                raise Unhandled("")
            full.append((a, at))
        if not full:
            raise Unhandled("")
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
            raise Unhandled("")
        nd = result.dim()
        dim = dim % nd
        axes = {self.axis.get(t, 1) for t in tensors
                if self.layouts.get(t) is not None and self.axis.get(t, 1) is not None
                and np.any(self.layouts[t].kind != FIXED)}
        if len(axes) > 1:
            raise Unhandled("operands with their channels on different axes")
        ax = axes.pop() if axes else None
        if ax is None:
            ax = 1 if dim == 1 else None
            if ax is None:
                if any(t in self.splits or t in self.tuples for t in tensors):
                    raise Unhandled("")
                return self._fixed_out(result, n)
        reason = f"concatenated by {n.name}"
        if dim == ax:
            parts = []
            for t in tensors:
                at = self._at(t, ax)
                if at is None:
                    raise Unhandled("")
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
                raise Unhandled("")
            full.append((t, at))
        out = self._join(n, full, reason)
        for t in params:
            if len(self.shapes[t]) != nd or self.shapes[t][ax] != len(out):
                raise Unhandled("")
            self._param(self.param_of[t], ax, out, reason)
        self._set_axis(n, ax)
        return out

    # ------------------------------------------------------------------ modules
