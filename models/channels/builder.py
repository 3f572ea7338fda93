"""The channel tracer: a ``torch.fx`` interpreter that gives every node a layout and every
Conv2d/Linear its MAC terms, then :func:`build_channel_graph` (model, example input → graph).
The rules are in the package docstring (:mod:`pruneopt.models.channels`)."""

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
    PASS_FUNCTIONS,
    PASS_METHODS,
    PASS_MODULES,
    REDUCE_FUNCTIONS,
    REDUCE_METHODS,
    RESHAPE_FUNCTIONS,
    RESHAPE_METHODS,
    target_name,
)

# ============================================================================ the tracer
class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, tuple(CHANNEL_MAPS)) or super().is_leaf_module(m, qualname)


@dataclass
class _Record:
    """A module's first call: raw layouts, for slicing it later."""

    kind: str
    inp: Layout
    out: Layout | None = None
    src_pos: np.ndarray | None = None
    stride: int = 1
    resolved: bool = False


class GraphBuilder(fx.Interpreter):
    """Runs the traced graph once, giving every node a layout and every conv/linear its terms."""

    def __init__(self, gm: fx.GraphModule, modules: dict[str, nn.Module]) -> None:
        super().__init__(gm)
        self.mods = modules
        self.uf = UnionFind()
        self.layouts: dict[fx.Node, Layout | None] = {}
        self.shapes: dict[fx.Node, tuple[int, ...] | None] = {}
        self.terms: list[tuple[int, int | None, int | None]] = []  # coef·k_A·k_B (None: 1)
        self.records: dict[str, _Record] = {}
        self.producers: dict[int, list[str]] = {}  # raw group -> modules whose output it is
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
            if np.all(ia[sel] == ib[sel]) and self.uf.size[g] == self.uf.size[h]:
                self.uf.union(g, h)  # channel i of g is channel i of h
            else:
                # a permuted or partial correspondence: not expressible with counts
                self._fix([g, h], f"{reason} (channels do not correspond one to one)")

    def _group(self, n: int, producer: str) -> int:
        g = self.uf.add(n)
        self.producers[g] = [producer]
        return g

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
        lay = self._layout(n, result, macs)
        if lay is not None and (self.shapes[n] is None or len(self.shapes[n]) < 2
                                or len(lay) != self.shapes[n][1]):
            raise RuntimeError(f"internal: layout of {n.name} does not match its shape")
        self.layouts[n] = lay
        return result

    def _in(self, a) -> Layout | None:
        return self.layouts.get(a) if isinstance(a, fx.Node) else None

    def _fixed_out(self, result) -> Layout | None:
        if isinstance(result, torch.Tensor) and result.dim() >= 2:
            return Layout.fixed(int(result.shape[1]))
        return None

    def _unknown(self, n: fx.Node, result, macs: int, why: str | None = None) -> Layout | None:
        """An op we do not model: every grouped input is kept whole, the output is FIXED."""
        reason = why or f"read by {n.op} {target_name(n)} ({n.name}), which is not modelled"
        touched = False
        for a in n.all_input_nodes:
            lay = self.layouts.get(a)
            if lay is not None and np.any(lay.kind != FIXED):
                touched = True
                lay = self._materialize(lay, reason)
                self._fix(lay.gid[lay.kind == HARD], reason)
        if touched or macs:
            self.unknown.append(f"{n.name}: {n.op} {target_name(n)}")
        self.terms.append((macs, None, None))
        return self._fixed_out(result)

    def _layout(self, n: fx.Node, result, macs: int) -> Layout | None:
        if n.op == "placeholder" or n.op == "get_attr":
            return self._fixed_out(result)
        if n.op == "call_module":
            return self._module(n, self.mods[n.target], result, macs)
        if n.op == "call_function" and n.target is getattr and len(n.args) > 1 \
                and n.args[1] in META_ATTRS:
            return None
        if n.op == "call_method" and n.target in META_METHODS:
            return None
        if n.op == "call_function" and n.target is operator.getitem \
                and self._in(n.args[0]) is None and not isinstance(result, torch.Tensor):
            return None  # indexing a shape or a tuple of sizes
        if macs:
            return self._unknown(n, result, macs)
        fn, meth = (n.target if n.op == "call_function" else None,
                    n.target if n.op == "call_method" else None)
        if fn in PASS_FUNCTIONS or meth in PASS_METHODS:
            return self._pass(n, result)
        if fn in RESHAPE_FUNCTIONS or meth in RESHAPE_METHODS:
            return self._reshape(n, result)
        if fn in REDUCE_FUNCTIONS or meth in REDUCE_METHODS:
            return self._reduce(n, result)
        if fn in BINARY_FUNCTIONS or meth in BINARY_METHODS:
            return self._binary(n, result)
        if fn in CAT_FUNCTIONS:
            return self._cat(n, result)
        return self._unknown(n, result, macs)

    # ------------------------------------------------------------------ channel-wise ops
    def _first_tensor(self, n: fx.Node):
        a = n.args[0] if n.args else None
        return a, self._in(a), self.shapes.get(a) if isinstance(a, fx.Node) else None

    def _pass(self, n: fx.Node, result) -> Layout | None:
        a, lay, shape = self._first_tensor(n)
        others = [x for x in n.all_input_nodes if x is not a and self.layouts.get(x) is not None]
        if (lay is None or others or not isinstance(result, torch.Tensor)
                or result.dim() != len(shape) or result.shape[1] != shape[1]):
            return self._unknown(n, result, 0)
        return self._materialize(lay, f"passed through {target_name(n)} ({n.name})")

    def _reshape(self, n: fx.Node, result) -> Layout | None:
        _, lay, shape = self._first_tensor(n)
        if lay is None or not isinstance(result, torch.Tensor):
            return self._unknown(n, result, 0)
        out = tuple(result.shape)
        lay = self._materialize(lay, f"reshaped by {n.name}")
        if len(out) >= 2 and out[:2] == shape[:2]:
            return lay  # only the trailing (spatial) dims regroup
        if len(out) == 2 and len(shape) >= 3 and out[0] == shape[0] \
                and out[1] == math.prod(shape[1:]):
            rep = math.prod(shape[2:])  # N×C×H×W → N×(C·H·W), channel-major
            return Layout(np.repeat(lay.kind, rep), np.repeat(lay.gid, rep),
                           np.repeat(lay.idx, rep))
        return self._unknown(n, result, 0)

    def _reduce(self, n: fx.Node, result) -> Layout | None:
        _, lay, shape = self._first_tensor(n)
        dim = n.kwargs.get("dim", n.args[1] if len(n.args) > 1 else None)
        if lay is None or dim is None or not isinstance(result, torch.Tensor):
            return self._unknown(n, result, 0)
        dims = [dim] if isinstance(dim, int) else list(dim)
        dims = [d % len(shape) for d in dims]
        if 0 in dims or 1 in dims or result.dim() < 2 or result.shape[1] != shape[1]:
            return self._unknown(n, result, 0)
        return self._materialize(lay, f"reduced by {n.name}")

    def _binary(self, n: fx.Node, result) -> Layout | None:
        operands = [a for a in (list(n.args) + list(n.kwargs.values()))
                    if isinstance(a, fx.Node) and self.shapes.get(a) is not None]
        if not isinstance(result, torch.Tensor) or result.dim() < 2:
            return self._unknown(n, result, 0)
        c = int(result.shape[1])
        full, broadcast = [], []
        for a in operands:
            shape = self.shapes[a]
            numel = math.prod(shape)
            if numel == 1:
                continue  # a scalar tensor: channel-wise
            if self.layouts.get(a) is None or len(shape) != result.dim():
                return self._unknown(n, result, 0)
            (full if shape[1] == c else broadcast).append(a)
        reason = f"joined by {target_name(n)} ({n.name})"
        for a in broadcast:  # one value broadcast over every channel
            if self.shapes[a][1] != 1:
                return self._unknown(n, result, 0)
            lay = self._materialize(self.layouts[a], reason)
            self._fix(lay.gid[lay.kind == HARD], reason)
        if not full:
            return Layout.fixed(c)
        return self._join(n, full, reason)

    def _join(self, n: fx.Node, operands: list[fx.Node], reason: str) -> Layout:
        """Positionwise join (residual add): HARD entries tie; SOFT copies from a map leaf that
        feeds only this node are dropped/kept with the join's own channels."""
        soft_ops, plain = [], []
        for a in operands:
            lay = self.layouts[a]
            if not lay.plain and self._soft_candidate(a, n):
                soft_ops.append(a)
            else:
                plain.append(self._materialize(lay, reason))
        hard_any = np.zeros(len(self.layouts[operands[0]]), dtype=bool)
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
        if (not isinstance(tensors, list | tuple) or not isinstance(result, torch.Tensor)
                or result.dim() < 2 or not all(isinstance(t, fx.Node)
                                               and self.layouts.get(t) is not None
                                               for t in tensors)):
            return self._unknown(n, result, 0)
        dim = dim % result.dim()
        reason = f"concatenated by {n.name}"
        if dim == 1:
            return Layout.cat([self._materialize(self.layouts[t], reason) for t in tensors])
        if dim == 0 or dim >= 2:  # stacking samples or pixels: channel i is channel i
            return self._join(n, list(tensors), reason)
        return self._unknown(n, result, 0)

    # ------------------------------------------------------------------ modules
    def _module(self, n: fx.Node, m: nn.Module, result, macs: int) -> Layout | None:
        _, lay, shape = self._first_tensor(n)
        name = n.target
        if lay is None or len(n.all_input_nodes) != 1:
            return self._unknown(n, result, macs)
        if isinstance(m, tuple(CHANNEL_MAPS)):
            return self._map(n, m, lay, result)
        if isinstance(m, nn.Conv2d | nn.Linear):
            return self._layer(n, m, lay, shape, result, macs)
        if macs:
            return self._unknown(n, result, macs)
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            out = self._materialize(lay, f"normalised by {name}")
            return self._remember(name, "bn", out, None)
        if (isinstance(m, nn.PReLU) and m.num_parameters == 1) or isinstance(m, PASS_MODULES):
            return self._pass(n, result)
        if isinstance(m, nn.Flatten):
            return self._reshape(n, result)
        return self._unknown(n, result, macs)

    def _remember(self, name: str, kind: str, inp: Layout, out: Layout | None) -> Layout:
        """Store a module's first call; a later call of the same module must see the same
        channels (its weights are sliced once), so its input is tied to the first call's."""
        rec = self.records.get(name)
        if rec is None:
            self.records[name] = _Record(kind, inp, out)
            return out if out is not None else inp
        self._tie(rec.inp, inp, f"module {name} called twice")
        return rec.out if rec.out is not None else inp

    def _layer(self, n, m, lay, shape, result, macs) -> Layout | None:
        name = n.target
        reason = f"read by {name}"
        lay = self._materialize(lay, reason)
        out_shape = tuple(result.shape)
        if isinstance(m, nn.Linear):
            if len(shape) != 2:
                return self._fixed_layer(n, lay, result, macs, "a Linear on a non-2-D input")
            a_coef, c_in, c_out, groups = 1, m.in_features, m.out_features, 1
        else:
            a_coef = m.kernel_size[0] * m.kernel_size[1] * out_shape[2] * out_shape[3]
            c_in, c_out, groups = m.in_channels, m.out_channels, m.groups
        if groups == 1:
            formula = a_coef * c_in * c_out
        elif groups == c_in:
            formula = a_coef * c_out
        else:
            return self._fixed_layer(n, lay, result, macs,
                                     f"a grouped conv ({groups} groups) is kept whole")
        if formula != macs:  # never seen; keep the count exact whatever happens
            return self._fixed_layer(n, lay, result, macs,
                                     f"MACs {macs} differ from the formula {formula}")
        rec = self.records.get(name)
        if rec is not None and rec.kind == "fixed":
            return self._fixed_layer(n, lay, result, macs, "called before as a fixed layer")
        hard = lay.kind == HARD
        gs, counts = np.unique(lay.gid[hard], return_counts=True)
        mult = {}
        for g, cnt in zip(gs.tolist(), counts.tolist(), strict=True):
            if cnt % self.uf.size[g]:
                raise RuntimeError(f"internal: group {g} incomplete at {name}")
            mult[g] = cnt // self.uf.size[g]
        n_fixed = int(np.count_nonzero(~hard))
        if groups == 1:
            if rec is None:
                g_out = self._group(c_out, name)
                out = Layout.group(g_out, c_out)
                kind = "linear" if isinstance(m, nn.Linear) else "conv"
            else:
                out, kind = rec.out, rec.kind
                g_out = int(out.gid[0])
            for g, mg in mult.items():
                self.terms.append((a_coef * mg, g, g_out))
            self.terms.append((a_coef * n_fixed, g_out, None))
            users = list(n.users)
            act = name
            if len(users) == 1 and users[0].op == "call_module" \
                    and isinstance(self.mods[users[0].target], nn.BatchNorm2d | nn.BatchNorm1d):
                act = users[0].target
            if rec is None:
                self.act_points.append((act, g_out))
            return self._remember(name, kind, lay, out)
        # depthwise: output channel j reads input channel j // mult
        rep = c_out // c_in
        for g, mg in mult.items():
            self.terms.append((a_coef * rep * mg, g, None))
        self.terms.append((a_coef * rep * n_fixed, None, None))
        out = Layout(np.repeat(lay.kind, rep), np.repeat(lay.gid, rep), np.repeat(lay.idx, rep))
        return self._remember(name, "depthwise", lay, out)

    def _fixed_layer(self, n, lay, result, macs, why: str) -> Layout | None:
        name = n.target
        reason = f"read by {name}: {why}"
        self._fix(lay.gid[lay.kind == HARD], reason)
        rec = self.records.get(name)
        if rec is not None and rec.kind != "fixed":
            # called before as a prunable layer: its weights cannot be sliced for one call only
            for old in (rec.inp, rec.out):
                if old is not None:
                    self._fix(old.gid[old.kind == HARD], reason)
        self.unknown.append(f"{n.name}: {name} ({why})")
        self.terms.append((macs, None, None))
        if name not in self.records:
            self.records[name] = _Record("fixed", lay, None)
        return self._fixed_out(result)

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
            lay = self.layouts.get(a)
            if lay is not None:
                lay = self._materialize(lay, reason)
                self._fix(lay.gid[lay.kind == HARD], reason)


# ============================================================================ building
def build_channel_graph(model: nn.Module, example_input: torch.Tensor) -> ChannelGraph:
    """Trace ``model`` with ``torch.fx`` and run it once on ``example_input[:1]`` to find its
    channel groups and their exact bilinear MAC coefficients (see the module docstring)."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: must be an nn.Module, got {type(model).__name__}")
    if not isinstance(example_input, torch.Tensor) or example_input.dim() < 2 \
            or example_input.shape[0] < 1:
        raise ValueError("input_shape: the example input must be a tensor (N, C, ...) with N >= 1")
    x = example_input[:1]
    tracer = _Tracer()
    try:
        graph = tracer.trace(model)
    except Exception as exc:
        raise ValueError(f"model: cannot be traced with torch.fx ({type(exc).__name__}: "
                         f"{exc}); write its forward without data-dependent control flow") \
            from None
    gm = fx.GraphModule(tracer.root, graph)
    modules = dict(model.named_modules())
    builder = GraphBuilder(gm, modules)
    builder.extra_traceback = False  # keep our own messages intact
    saved = [(m, m.training) for m in model.modules()]
    try:
        model.eval()  # BatchNorm at batch 1 (and 1×1 maps) needs its running statistics
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            builder.counter = counter
            builder.run(x)
    except (RuntimeError, TypeError, IndexError) as exc:
        if str(exc).startswith("internal:"):
            raise
        raise ValueError(f"input_shape: the model does not run on an input of shape "
                         f"{tuple(x.shape)}: {exc}") from None
    finally:
        for m, mode in saved:
            m.training = mode
    return assemble_graph(builder, tuple(int(s) for s in example_input.shape[1:]))
