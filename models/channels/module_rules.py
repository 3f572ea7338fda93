"""Layout and MAC rules of modules: Conv2d (plain, depthwise, grouped), Linear, BatchNorm,
LayerNorm, GroupNorm, index-mapping leaves, and the records that shrinking reads. A mixin of
:class:`~pruneopt.models.channels.builder.GraphBuilder`."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from pruneopt.models.channels.layouts import HARD, SOFT, ZERO, Layout
from pruneopt.models.channels.maps import CHANNEL_MAPS
from pruneopt.models.channels.rules import PASS_MODULES
from pruneopt.models.channels.trace_state import ModuleRecord, period_of


class ModuleRules:
    """The builder's rules for leaf modules (the MAC terms come from here)."""

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
        if 1 < G < C and not period_of(lay, G):
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
            self.records[name] = ModuleRecord(kind, inp, out, groups=groups)
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
        if groups > 1 and not depthwise and not period_of(lay, groups):
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
            self.records[name] = ModuleRecord("fixed", inp, None)
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
        self.records[name] = ModuleRecord("map", lay, None, src, stride)
        inside = src >= 0
        kind = np.full(src.size, ZERO, np.int8)
        gid = np.full(src.size, -1, np.int64)
        idx = np.full(src.size, -1, np.int64)
        kind[inside] = SOFT
        gid[inside] = lay.gid[src[inside]]
        idx[inside] = lay.idx[src[inside]]
        return Layout(kind, gid, idx)

