"""Channel groups and bilinear FLOP coefficients of a PyTorch model (DESIGN §2c, §5).

Structured channel selection needs, for a network, the groups of channels that must be removed
together and the MACs as a function of how many channels each group keeps:

    FLOPs(k) = c₀ + Σ_g b_g k_g + Σ_{e=(g,h)} a_e k_g k_h         (MACs per input sample)

equal, for every k, to the MACs of the Conv2d/Linear layers of the model with k_g channels
kept in group g (what ``FlopCounterMode`` counts, /2). :func:`build_channel_graph` reads both off
the model with ``torch.fx`` and one shape-propagating forward pass at batch 1.

**Layouts.** Every tensor of the traced graph carries a *layout*: for each position along dim 1
(the channels of an N×C×H×W map, the features of an N×F matrix) where its value comes from:

* HARD (g, i) — channel i of group g: removing that channel removes this position;
* FIXED        — a channel that is never removed (network input, output of an op we do not
  understand); it still costs MACs, as a constant count;
* ZERO, SOFT (g, i) — only at the output of an index-mapping leaf (ResNet option-A shortcut):
  a zero-padded channel, or a *copy* of channel i of g that is simply dropped when either end
  is removed (so it does not tie the groups; see below).

**Rules.**

* A Conv2d (groups = 1) or Linear output starts a new group of ``out_channels`` channels.
* BatchNorm, activations, pooling, dropout, identity, ``mean`` over spatial dims and reshapes
  that keep dims 0 and 1 pass the layout through. Flatten of an N×C×H×W map to N×(C·H·W)
  repeats each channel H·W times (channel-major), so a Linear after it costs H·W·out per kept
  channel.
* A residual add (also sub/mul of equal channel counts, and cat along a non-channel dim) ties
  the groups it joins position by position (union-find). Two groups tie only channel i to
  channel i with equal sizes; anything else, or a HARD channel meeting a FIXED one, makes the
  groups unprunable.
* ``torch.cat`` along channels concatenates layouts: a conv reading it gets one bilinear edge
  per source group.
* A depthwise conv (groups = in_channels, out = m·in) passes its input layout through (each
  position repeated m times) and costs linearly in it: b_g += K²·H·W·m.
* A conv/linear reading FIXED positions costs a·(fixed count)·k_out (into b); a group that
  reaches the graph output (the classifier's classes) is not prunable, min_keep = n, and every
  term with it is folded into b or c₀ with its count n.
* A grouped conv with 1 < groups < in_channels, a Linear on a non-2-D input, and every op not
  listed here (slicing, split, permute, matmul, unknown modules, ...) that reads a grouped
  tensor makes those groups unprunable and outputs a FIXED layout — conservative: the answer is
  exact, it only forgoes pruning there. Their MACs (measured by ``FlopCounterMode`` per node) go
  into c₀. ``ChannelGraph.unknown_ops`` and ``fixed_reason`` say which and why.
* An index-mapping leaf (``ShortcutA``: stride-s subsampling and zero-padding of the new
  channels) with padding maps input channel j to output channel j + pad: its output is SOFT.
  When it feeds a residual add directly (its only use) the add's output group is its output:
  channel p of the add keeps the copy of input channel p − pad only when both are kept (the
  shrunk model rebuilds it as a :class:`ChannelMap`, zero MACs; a shrunk model traces again).
  Without padding it is an identity and ties its input to the add (the ResNet stream groups).
  More mapping leaves can be registered in ``CHANNEL_MAPS``.

**Coefficients.** A conv g → h costs a·k_g·k_h with a = K_h·K_w·H_out·W_out (Linear: a = 1),
times the multiplicity with which g appears in its input (H·W after a flatten, 2 for cat([x, x])).
All coefficients are integers (Python ints, exact); every conv/linear node's formula is checked
against ``FlopCounterMode`` on that node, and the dense total c₀ + Σ b n + Σ a n n against the
measured total.

**Not done.** Collapsible residual blocks are not detected (``blocks`` is all −1): a removed
branch would leave BatchNorm's bias as a constant, and PyTorch has no zero-channel Conv2d to
shrink to, so every prunable group keeps at least one channel.

**API.** :func:`build_channel_graph` (model, example input → :class:`ChannelGraph`),
:func:`channel_problem` (→ a :class:`~pruneopt.formulations.channels.ChannelProblem` whose
decision z is the graph's group-major keep vector), :func:`group_scores`, :class:`ChannelMap`,
``CHANNEL_MAPS``. Shrinking is :mod:`pruneopt.models.shrink`, scores
:mod:`pruneopt.models.channel_importance`.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pruneopt.formulations.channels import ChannelProblem
from pruneopt.models import zoo

HARD, FIXED, ZERO, SOFT = 0, 1, 2, 3


# ============================================================================ layouts
@dataclass(frozen=True, eq=False)
class _Layout:
    """Per position along dim 1: kind (HARD/FIXED/ZERO/SOFT), raw group id, channel index.
    For SOFT entries gid may be -1 (a copy of a FIXED channel). Arrays are never mutated."""

    kind: np.ndarray
    gid: np.ndarray
    idx: np.ndarray

    @staticmethod
    def fixed(n: int) -> _Layout:
        return _Layout(np.full(n, FIXED, np.int8), np.full(n, -1, np.int64),
                       np.full(n, -1, np.int64))

    @staticmethod
    def group(g: int, n: int) -> _Layout:
        return _Layout(np.full(n, HARD, np.int8), np.full(n, g, np.int64),
                       np.arange(n, dtype=np.int64))

    def __len__(self) -> int:
        return int(self.kind.size)

    @staticmethod
    def cat(parts: list[_Layout]) -> _Layout:
        return _Layout(np.concatenate([p.kind for p in parts]),
                       np.concatenate([p.gid for p in parts]),
                       np.concatenate([p.idx for p in parts]))

    @property
    def plain(self) -> bool:
        """Only HARD and FIXED entries (what every consumer but an add expects)."""
        return bool(np.all((self.kind == HARD) | (self.kind == FIXED)))


class _UnionFind:
    """Ties between raw groups (channel i of one is channel i of the other), and a "fixed" flag
    per class (the class may not lose a channel). Raw group ids start at 1."""

    def __init__(self) -> None:
        self.parent = [0]
        self.size = [0]  # channels of each raw group
        self.flag = [False]

    def add(self, n: int) -> int:
        self.parent.append(len(self.parent))
        self.size.append(int(n))
        self.flag.append(False)
        return len(self.parent) - 1

    def find(self, a: int) -> int:
        p = self.parent
        root = a
        while p[root] != root:
            root = p[root]
        while p[a] != root:  # path compression
            p[a], a = root, p[a]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            ra, rb = min(ra, rb), max(ra, rb)  # the earlier group names the class
            self.parent[rb] = ra
            self.flag[ra] = self.flag[ra] or self.flag[rb]

    def fix(self, a: int) -> None:
        self.flag[self.find(a)] = True

    def is_fixed(self, a: int) -> bool:
        return self.flag[self.find(a)]


# ============================================================================ the result
@dataclass(frozen=True, eq=False)
class ModuleChannels:
    """How one module's channels follow the groups (final group ids; -1 = always kept).

    ``kind``: ``conv`` (groups = 1), ``depthwise``, ``linear``, ``bn``, ``map`` (an index-mapping
    leaf such as ResNet option-A's ``ShortcutA``) or ``fixed`` (left as it is). ``in_*`` are per
    input position (dim 1; for Linear the input features), ``out_*`` per output position.
    ``src_pos`` (map only): the input position each output position copies, -1 for a zero
    channel; ``stride``: its spatial subsampling.
    """

    name: str
    kind: str
    in_gid: np.ndarray
    in_idx: np.ndarray
    out_gid: np.ndarray
    out_idx: np.ndarray
    src_pos: np.ndarray | None = None
    stride: int = 1


@dataclass(frozen=True, eq=False)
class ChannelGraph:
    """Channel groups of a model and the exact bilinear MAC count of its Conv2d/Linear layers.

    Group g owns channels ``channel_ptr[g]:channel_ptr[g+1]`` of the flat, group-major keep
    vector z (the :class:`ChannelProblem`'s decision). ``members[g]`` lists ``(module, role)``
    with role ``out`` (a conv/linear whose output filters are the channels), ``in`` (a
    conv/linear reading them), ``bn``, ``dw`` (a depthwise conv passing them through) or ``map``.
    ``fixed[g]``: the group may not lose a channel (``fixed_reason[g]`` says why).

        MACs(k) = const + Σ_g linear_coef[g]·k_g + Σ_e edge_coef[e]·k_{edges[e,0]}·k_{edges[e,1]}

    where terms with a fixed group are already folded in with k = n (so fixed groups have
    linear_coef 0 and appear in no edge). All coefficients are exact integers.
    """

    names: tuple[str, ...]
    channel_ptr: np.ndarray
    fixed: np.ndarray
    fixed_reason: tuple[str, ...]
    members: tuple[tuple[tuple[str, str], ...], ...]
    edges: np.ndarray
    edge_coef: np.ndarray
    linear_coef: np.ndarray
    const: int
    dense_macs: int
    modules: dict[str, ModuleChannels]
    activations: tuple[tuple[str, np.ndarray, np.ndarray], ...]
    unknown_ops: tuple[str, ...]
    input_shape: tuple[int, ...]
    blocks: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.blocks is None:
            object.__setattr__(self, "blocks", np.full(self.num_groups, -1, dtype=np.int64))

    @property
    def num_groups(self) -> int:
        return int(self.channel_ptr.size - 1)

    @property
    def num_channels(self) -> int:
        return int(self.channel_ptr[-1])

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.channel_ptr)

    @property
    def prunable(self) -> np.ndarray:
        return ~self.fixed

    def group_index(self, name: str) -> int:
        return self.names.index(name)

    def counts(self, keep) -> np.ndarray:
        """k_g from a flat keep vector z (bool[N])."""
        z = _keep_vector(keep, self.num_channels)
        csum = np.concatenate(([0], np.cumsum(z, dtype=np.int64)))
        return csum[self.channel_ptr[1:]] - csum[self.channel_ptr[:-1]]

    def macs_of_counts(self, k) -> int:
        """The exact integer MACs per sample with k_g channels kept in each group."""
        k = np.asarray(k, dtype=np.int64)
        if k.shape != (self.num_groups,):
            raise ValueError(f"k: must have one count per group (G={self.num_groups}), "
                             f"got shape {k.shape}")
        e = self.edges
        total = int(self.const) + int(np.dot(self.linear_coef, k))
        if e.shape[0]:
            total += int(np.sum(self.edge_coef * k[e[:, 0]] * k[e[:, 1]]))
        return total

    def split(self, flat) -> list[np.ndarray]:
        """A flat group-major vector cut into one array per group."""
        flat = np.asarray(flat)
        return [flat[a:b] for a, b in zip(self.channel_ptr[:-1], self.channel_ptr[1:], strict=True)]

    def summary(self) -> list[dict]:
        """One JSON-ready row per group."""
        return [{"name": self.names[g], "channels": int(self.sizes[g]),
                 "fixed": bool(self.fixed[g]), "reason": self.fixed_reason[g],
                 "members": [f"{m}:{r}" for m, r in self.members[g]]}
                for g in range(self.num_groups)]

    def __repr__(self) -> str:
        return (f"ChannelGraph(G={self.num_groups}, N={self.num_channels}, "
                f"prunable={int(self.prunable.sum())}, E={self.edges.shape[0]}, "
                f"dense_macs={self.dense_macs:,})")


def graph_module(model: nn.Module, name: str) -> nn.Module:
    """The module a graph names (an activation point, a member), or a clear ValueError when the
    model does not match the graph."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise ValueError(f"model: has no module {name!r}; it does not match the channel "
                         "graph") from None


def _keep_vector(keep, n: int) -> np.ndarray:
    z = np.asarray(keep)
    if z.ndim != 1 or z.size != n:
        raise ValueError(f"keep: must be a vector of N={n} channel flags, got shape {z.shape}")
    if z.dtype == np.bool_:
        return z
    if z.dtype.kind not in "iuf" or not np.all((z == 0) | (z == 1)):
        raise ValueError("keep: entries must be 0 or 1")
    return z.astype(bool)


# ============================================================================ op tables
class ChannelMap(nn.Module):
    """out[:, j] = x[:, :, ::s, ::s][:, gather[j]], or 0 where ``gather[j]`` = in_channels.

    An index map along the channels: what :func:`~pruneopt.models.shrink.shrink_model` rebuilds
    a ResNet option-A shortcut as. ``index_select`` costs no MACs (``FlopCounterMode`` counts
    none), and a shrunk model stays traceable: it is a known mapping leaf here too.
    """

    def __init__(self, index: torch.Tensor, in_channels: int, stride: int = 1) -> None:
        super().__init__()
        index = torch.as_tensor(index, dtype=torch.long)
        self.in_channels = int(in_channels)
        self.stride = int(stride)
        # -1 (a zero channel) points at an extra all-zero channel appended in forward
        self.register_buffer("gather", torch.where(index < 0, self.in_channels, index))

    @property
    def out_channels(self) -> int:
        return int(self.gather.numel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        zero = x.new_zeros((x.shape[0], 1, *x.shape[2:]))
        return torch.cat((x, zero), dim=1).index_select(1, self.gather)

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> {self.out_channels}, stride={self.stride}"


def _shortcut_a_map(module: nn.Module, c_in: int) -> tuple[np.ndarray, int]:
    """Zoo ``ShortcutA``: output channel j + pad_front copies input channel j."""
    c_out = module.pad_front + c_in + module.pad_back
    src = np.full(c_out, -1, dtype=np.int64)
    src[module.pad_front:module.pad_front + c_in] = np.arange(c_in)
    return src, int(module.stride)


def _channel_map_map(module: ChannelMap, c_in: int) -> tuple[np.ndarray, int]:
    g = module.gather.detach().cpu().numpy().astype(np.int64)
    return np.where(g >= module.in_channels, -1, g), int(module.stride)


# Index-mapping leaf modules: class -> f(module, c_in) -> (input position copied by each output
# position, -1 for a zero channel; spatial stride). They are traced as leaves: fx would see their
# channel padding / gathering as unknown ops. Extend it for your own index-mapping modules.
CHANNEL_MAPS: dict[type, object] = {zoo.ShortcutA: _shortcut_a_map, ChannelMap: _channel_map_map}

_PASS_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Identity,
    nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
_PASS_FUNCTIONS = {
    F.relu, torch.relu, torch.relu_, F.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.gelu,
    F.silu, F.mish, F.hardswish, F.hardsigmoid, F.hardtanh, torch.sigmoid, F.sigmoid,
    torch.tanh, F.tanh, torch.clamp, torch.clip, F.dropout, F.dropout2d, F.alpha_dropout,
    F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, operator.neg,
}
_PASS_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_",
                 "clip", "contiguous", "clone", "detach", "float", "neg"}
_RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape}
_RESHAPE_METHODS = {"flatten", "view", "reshape"}
_REDUCE_FUNCTIONS = {torch.mean, torch.sum, torch.amax}
_REDUCE_METHODS = {"mean", "sum", "amax"}
_BINARY_FUNCTIONS = {operator.add, operator.iadd, torch.add, operator.sub, operator.isub,
                     torch.sub, operator.mul, operator.imul, torch.mul}
_BINARY_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_"}
_CAT_FUNCTIONS = {torch.cat, torch.concat, torch.concatenate}
_META_METHODS = {"size", "dim"}
_META_ATTRS = {"shape", "dtype", "device", "ndim"}


def _target_name(node: fx.Node) -> str:
    t = node.target
    if node.op == "call_module":
        return str(t)
    return getattr(t, "__name__", str(t))


# ============================================================================ the tracer
class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, tuple(CHANNEL_MAPS)) or super().is_leaf_module(m, qualname)


@dataclass
class _Record:
    """A module's first call: raw layouts, for slicing it later."""

    kind: str
    inp: _Layout
    out: _Layout | None = None
    src_pos: np.ndarray | None = None
    stride: int = 1
    resolved: bool = False


class _Builder(fx.Interpreter):
    """Runs the traced graph once, giving every node a layout and every conv/linear its terms."""

    def __init__(self, gm: fx.GraphModule, modules: dict[str, nn.Module]) -> None:
        super().__init__(gm)
        self.mods = modules
        self.uf = _UnionFind()
        self.layouts: dict[fx.Node, _Layout | None] = {}
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

    def _materialize(self, lay: _Layout, reason: str) -> _Layout:
        """SOFT → FIXED (its source group fixed), ZERO → FIXED: for consumers other than an add."""
        if lay.plain:
            return lay
        soft = lay.kind == SOFT
        self._fix(lay.gid[soft], reason)
        kind = np.where(lay.kind == HARD, HARD, FIXED).astype(np.int8)
        gid = np.where(kind == HARD, lay.gid, -1)
        idx = np.where(kind == HARD, lay.idx, -1)
        return _Layout(kind, gid, idx)

    def _tie(self, a: _Layout, b: _Layout, reason: str) -> None:
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

    def _in(self, a) -> _Layout | None:
        return self.layouts.get(a) if isinstance(a, fx.Node) else None

    def _fixed_out(self, result) -> _Layout | None:
        if isinstance(result, torch.Tensor) and result.dim() >= 2:
            return _Layout.fixed(int(result.shape[1]))
        return None

    def _unknown(self, n: fx.Node, result, macs: int, why: str | None = None) -> _Layout | None:
        """An op we do not model: every grouped input is kept whole, the output is FIXED."""
        reason = why or f"read by {n.op} {_target_name(n)} ({n.name}), which is not modelled"
        touched = False
        for a in n.all_input_nodes:
            lay = self.layouts.get(a)
            if lay is not None and np.any(lay.kind != FIXED):
                touched = True
                lay = self._materialize(lay, reason)
                self._fix(lay.gid[lay.kind == HARD], reason)
        if touched or macs:
            self.unknown.append(f"{n.name}: {n.op} {_target_name(n)}")
        self.terms.append((macs, None, None))
        return self._fixed_out(result)

    def _layout(self, n: fx.Node, result, macs: int) -> _Layout | None:
        if n.op == "placeholder" or n.op == "get_attr":
            return self._fixed_out(result)
        if n.op == "call_module":
            return self._module(n, self.mods[n.target], result, macs)
        if n.op == "call_function" and n.target is getattr and len(n.args) > 1 \
                and n.args[1] in _META_ATTRS:
            return None
        if n.op == "call_method" and n.target in _META_METHODS:
            return None
        if n.op == "call_function" and n.target is operator.getitem \
                and self._in(n.args[0]) is None and not isinstance(result, torch.Tensor):
            return None  # indexing a shape or a tuple of sizes
        if macs:
            return self._unknown(n, result, macs)
        fn, meth = (n.target if n.op == "call_function" else None,
                    n.target if n.op == "call_method" else None)
        if fn in _PASS_FUNCTIONS or meth in _PASS_METHODS:
            return self._pass(n, result)
        if fn in _RESHAPE_FUNCTIONS or meth in _RESHAPE_METHODS:
            return self._reshape(n, result)
        if fn in _REDUCE_FUNCTIONS or meth in _REDUCE_METHODS:
            return self._reduce(n, result)
        if fn in _BINARY_FUNCTIONS or meth in _BINARY_METHODS:
            return self._binary(n, result)
        if fn in _CAT_FUNCTIONS:
            return self._cat(n, result)
        return self._unknown(n, result, macs)

    # ------------------------------------------------------------------ channel-wise ops
    def _first_tensor(self, n: fx.Node):
        a = n.args[0] if n.args else None
        return a, self._in(a), self.shapes.get(a) if isinstance(a, fx.Node) else None

    def _pass(self, n: fx.Node, result) -> _Layout | None:
        a, lay, shape = self._first_tensor(n)
        others = [x for x in n.all_input_nodes if x is not a and self.layouts.get(x) is not None]
        if (lay is None or others or not isinstance(result, torch.Tensor)
                or result.dim() != len(shape) or result.shape[1] != shape[1]):
            return self._unknown(n, result, 0)
        return self._materialize(lay, f"passed through {_target_name(n)} ({n.name})")

    def _reshape(self, n: fx.Node, result) -> _Layout | None:
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
            return _Layout(np.repeat(lay.kind, rep), np.repeat(lay.gid, rep),
                           np.repeat(lay.idx, rep))
        return self._unknown(n, result, 0)

    def _reduce(self, n: fx.Node, result) -> _Layout | None:
        _, lay, shape = self._first_tensor(n)
        dim = n.kwargs.get("dim", n.args[1] if len(n.args) > 1 else None)
        if lay is None or dim is None or not isinstance(result, torch.Tensor):
            return self._unknown(n, result, 0)
        dims = [dim] if isinstance(dim, int) else list(dim)
        dims = [d % len(shape) for d in dims]
        if 0 in dims or 1 in dims or result.dim() < 2 or result.shape[1] != shape[1]:
            return self._unknown(n, result, 0)
        return self._materialize(lay, f"reduced by {n.name}")

    def _binary(self, n: fx.Node, result) -> _Layout | None:
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
        reason = f"joined by {_target_name(n)} ({n.name})"
        for a in broadcast:  # one value broadcast over every channel
            if self.shapes[a][1] != 1:
                return self._unknown(n, result, 0)
            lay = self._materialize(self.layouts[a], reason)
            self._fix(lay.gid[lay.kind == HARD], reason)
        if not full:
            return _Layout.fixed(c)
        return self._join(n, full, reason)

    def _join(self, n: fx.Node, operands: list[fx.Node], reason: str) -> _Layout:
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
                out = _Layout(np.where(take, other.kind, out.kind).astype(np.int8),
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

    def _cat(self, n: fx.Node, result) -> _Layout | None:
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
            return _Layout.cat([self._materialize(self.layouts[t], reason) for t in tensors])
        if dim == 0 or dim >= 2:  # stacking samples or pixels: channel i is channel i
            return self._join(n, list(tensors), reason)
        return self._unknown(n, result, 0)

    # ------------------------------------------------------------------ modules
    def _module(self, n: fx.Node, m: nn.Module, result, macs: int) -> _Layout | None:
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
        if (isinstance(m, nn.PReLU) and m.num_parameters == 1) or isinstance(m, _PASS_MODULES):
            return self._pass(n, result)
        if isinstance(m, nn.Flatten):
            return self._reshape(n, result)
        return self._unknown(n, result, macs)

    def _remember(self, name: str, kind: str, inp: _Layout, out: _Layout | None) -> _Layout:
        """Store a module's first call; a later call of the same module must see the same
        channels (its weights are sliced once), so its input is tied to the first call's."""
        rec = self.records.get(name)
        if rec is None:
            self.records[name] = _Record(kind, inp, out)
            return out if out is not None else inp
        self._tie(rec.inp, inp, f"module {name} called twice")
        return rec.out if rec.out is not None else inp

    def _layer(self, n, m, lay, shape, result, macs) -> _Layout | None:
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
                out = _Layout.group(g_out, c_out)
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
        out = _Layout(np.repeat(lay.kind, rep), np.repeat(lay.gid, rep), np.repeat(lay.idx, rep))
        return self._remember(name, "depthwise", lay, out)

    def _fixed_layer(self, n, lay, result, macs, why: str) -> _Layout | None:
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

    def _map(self, n, m, lay, result) -> _Layout | None:
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
        return _Layout(kind, gid, idx)

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
    builder = _Builder(gm, modules)
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
    return _finish(builder, tuple(int(s) for s in example_input.shape[1:]))


def _finish(b: _Builder, input_shape: tuple[int, ...]) -> ChannelGraph:
    uf = b.uf
    raw = range(1, len(uf.parent))
    index: dict[int, int] = {}
    roots: dict[int, int] = {}
    for g in raw:  # groups numbered by their first raw group (forward order)
        index[g] = roots.setdefault(uf.find(g), len(roots))
    G = max(index.values()) + 1 if index else 0
    sizes = np.zeros(G, dtype=np.int64)
    fixed = np.zeros(G, dtype=bool)
    reason = [""] * G
    producers: list[list[str]] = [[] for _ in range(G)]
    for g in raw:
        gi = index[g]
        sizes[gi] = uf.size[g]
        if uf.is_fixed(g):
            fixed[gi] = True
            if not reason[gi]:
                reason[gi] = b.reasons.get(g, "")
        producers[gi].extend(b.producers.get(g, []))
    for gi in range(G):
        if fixed[gi] and not reason[gi]:
            reason[gi] = "tied to a group that must be kept"

    # coefficients: fold every term with a fixed group in at k = n
    const = 0
    lin = np.zeros(G, dtype=np.int64)
    edge_acc: dict[tuple[int, int], int] = {}
    for coef, ga, gb in b.terms:
        if coef == 0:
            continue
        live = []
        for g in (ga, gb):
            if g is None:
                continue
            gi = index[g]
            if fixed[gi]:
                coef *= int(sizes[gi])
            else:
                live.append(gi)
        if not live:
            const += coef
        elif len(live) == 1:
            lin[live[0]] += coef
        else:
            key = (live[0], live[1])
            edge_acc[key] = edge_acc.get(key, 0) + coef
    edges = np.array(sorted(edge_acc), dtype=np.int64).reshape(-1, 2)
    edge_coef = np.array([edge_acc[tuple(e)] for e in edges.tolist()], dtype=np.int64)
    dense = const + int(lin @ sizes) + int(np.sum(edge_coef * sizes[edges[:, 0]]
                                                   * sizes[edges[:, 1]]))
    if dense != b.measured:
        raise RuntimeError(f"internal: dense MACs {dense} differ from the measured {b.measured}")

    def final(lay: _Layout) -> tuple[np.ndarray, np.ndarray]:
        hard = lay.kind == HARD
        gid = np.full(len(lay), -1, dtype=np.int64)
        if hard.any():
            gid[hard] = np.array([index[int(g)] for g in lay.gid[hard]], dtype=np.int64)
        return gid, np.where(hard, lay.idx, -1)

    members: list[list[tuple[str, str]]] = [[] for _ in range(G)]
    modules: dict[str, ModuleChannels] = {}
    roles_in = {"conv": "in", "linear": "in", "bn": "bn", "depthwise": "dw", "map": "map",
                "fixed": "in"}
    for name, rec in b.records.items():
        kind = rec.kind
        if kind == "map" and not rec.resolved:
            kind = "fixed"  # its sources and its join were kept whole
        in_gid, in_idx = final(rec.inp)
        if rec.out is not None and kind != "fixed":
            out_gid, out_idx = final(rec.out)
        else:
            out_gid = out_idx = np.zeros(0, dtype=np.int64)
        modules[name] = ModuleChannels(name, kind, in_gid, in_idx, out_gid, out_idx,
                                       rec.src_pos if kind == "map" else None, rec.stride)
        seen = set()
        for g in np.unique(in_gid[in_gid >= 0]).tolist():
            seen.add((g, roles_in[kind] if kind != "map" else "map"))
        if kind in ("conv", "linear"):
            for g in np.unique(out_gid[out_gid >= 0]).tolist():
                seen.add((g, "out"))
        elif kind == "map":
            for g in np.unique(out_gid[out_gid >= 0]).tolist():
                seen.add((g, "map"))
        for g, role in sorted(seen):
            members[g].append((name, role))
    # producers first, then the rest in forward order
    ordered = []
    for gi in range(G):
        outs = [(m, r) for m, r in members[gi] if r == "out"]
        rest = [(m, r) for m, r in members[gi] if r != "out"]
        ordered.append(tuple(outs + rest))
    names = []
    for gi in range(G):
        prod = producers[gi]
        base = prod[0] if prod else f"group{gi}"
        names.append(base if len(prod) <= 1 else f"{base}(+{len(prod) - 1} tied)")
    acts = []
    for module_name, g in b.act_points:
        gi = index[g]
        acts.append((module_name, np.full(sizes[gi], gi, dtype=np.int64),
                     np.arange(sizes[gi], dtype=np.int64)))
    ptr = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    return ChannelGraph(
        names=tuple(names), channel_ptr=ptr, fixed=fixed, fixed_reason=tuple(reason),
        members=tuple(ordered), edges=edges, edge_coef=edge_coef, linear_coef=lin,
        const=int(const), dense_macs=int(dense), modules=modules, activations=tuple(acts),
        unknown_ops=tuple(b.unknown), input_shape=input_shape)


# ============================================================================ the problem
def _kept_fraction(value) -> Fraction:
    """keep_flops as the exact decimal written (so 0.3 of 10 MACs is 3, not 2.9999...)."""
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"flops: must be a fraction kept in (0, 1], got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"flops: must be a fraction kept in (0, 1], got {value!r}") from None
    if not math.isfinite(x) or not 0.0 < x <= 1.0:
        raise ValueError(f"flops: must be a fraction kept in (0, 1], got {value!r}")
    return Fraction(repr(x))


def group_scores(graph: ChannelGraph, scores) -> np.ndarray:
    """Scores as one flat float64 vector (N,), from a flat vector or one array per group."""
    if isinstance(scores, list | tuple):
        if len(scores) != graph.num_groups:
            raise ValueError(f"scores: need one array per group (G={graph.num_groups}), "
                             f"got {len(scores)}")
        parts = []
        for g, s in enumerate(scores):
            s = np.asarray(s, dtype=np.float64).reshape(-1)
            if s.size != graph.sizes[g]:
                raise ValueError(f"scores: group {graph.names[g]} has {int(graph.sizes[g])} "
                                 f"channels, got {s.size} scores")
            parts.append(s)
        flat = np.concatenate(parts) if parts else np.zeros(0)
    else:
        flat = np.asarray(scores)
        if flat.dtype.kind not in "iuf" or flat.shape != (graph.num_channels,):
            raise ValueError(f"scores: must be {graph.num_channels} real numbers (one per "
                             f"channel, group-major) or one array per group, got "
                             f"{flat.dtype} {flat.shape}")
        flat = flat.astype(np.float64)
    if not np.all(np.isfinite(flat)) or np.any(flat < 0):
        raise ValueError("scores: must be finite and >= 0")
    return flat


def channel_problem(model: nn.Module, example_input: torch.Tensor, scores_per_group,
                    keep_flops: float, min_keep=1, *, graph: ChannelGraph | None = None
                    ) -> tuple[ChannelProblem, ChannelGraph]:
    """The structured channel-selection problem of ``model`` (DESIGN §2c) and its graph.

        maximize Σ_g V_g(k_g)  s.t.  c₀ + Σ b_g k_g + Σ a_e k_g k_h ≤ keep_flops · dense MACs,
                                     min_keep ≤ k_g ≤ n_g,  k_g = n_g for fixed groups

    ``scores_per_group``: a flat vector (N,) group-major, one array per group, a callable
    ``graph -> scores``, or a data-free method name (``"l1"``, ``"l2"``, ``"bn"``; see
    :mod:`pruneopt.models.channel_importance`). Fixed groups get score 0 in the problem: they
    are always kept, so their scores would only add a constant to the objective and hide the gap.
    ``min_keep``: an int or one per group, at least 1 (a shrunk group cannot be empty), capped at
    n_g. ``graph``: reuse one from :func:`build_channel_graph` instead of tracing again.
    """
    frac = _kept_fraction(keep_flops)
    if graph is None:
        graph = build_channel_graph(model, example_input)
    if isinstance(scores_per_group, str):
        from pruneopt.models.channel_importance import channel_scores

        scores_per_group = channel_scores(model, graph, scores_per_group)
    elif callable(scores_per_group):
        scores_per_group = scores_per_group(graph)
    if graph.num_groups == 0:
        raise ValueError("model: has no Conv2d or Linear output channels to select")
    scores = group_scores(graph, scores_per_group)
    G, n = graph.num_groups, graph.sizes
    mk = np.asarray(min_keep)
    if mk.dtype.kind not in "iu" or mk.ndim > 1 or (mk.ndim == 1 and mk.size != G):
        raise ValueError(f"min_keep: must be an integer or {G} integers (one per group), "
                         f"got {min_keep!r}")
    if np.any(mk < 1):
        raise ValueError("min_keep: must be >= 1 (PyTorch cannot shrink a group to no channel)")
    mk = np.minimum(np.broadcast_to(mk, (G,)).astype(np.int64), n)
    mk = np.where(graph.fixed, n, mk)
    scores = scores.copy()
    scores[np.repeat(graph.fixed, n)] = 0.0
    problem = ChannelProblem(
        scores=scores, channel_ptr=graph.channel_ptr, edges=graph.edges,
        edge_coef=graph.edge_coef.astype(np.float64),
        linear_coef=graph.linear_coef.astype(np.float64), const=float(graph.const),
        flop_budget=float(frac * graph.dense_macs), min_keep=mk, blocks=graph.blocks,
        names=graph.names)
    return problem, graph
