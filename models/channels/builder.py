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

import operator

import numpy as np
import torch
import torch.fx as fx
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pruneopt.models.channels.assemble import assemble_graph
from pruneopt.models.channels.bookkeeping import GroupBookkeeping
from pruneopt.models.channels.graph import ChannelGraph
from pruneopt.models.channels.join_rules import JoinRules
from pruneopt.models.channels.layouts import FIXED, Layout, UnionFind
from pruneopt.models.channels.maps import CHANNEL_MAPS
from pruneopt.models.channels.module_rules import ModuleRules
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
from pruneopt.models.channels.shape_rules import ShapeRules
from pruneopt.models.channels.trace_state import ChannelSplit, ModuleRecord, Unhandled

MAX_PASSES = 6
NORM_LEAVES = (nn.LayerNorm, nn.GroupNorm)


# ============================================================================ the tracer
class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        # LayerNorm/GroupNorm subclasses (ConvNeXt's LayerNorm2d) stay leaves: their weights
        # are sliced per channel like BatchNorm's
        return isinstance(m, tuple(CHANNEL_MAPS) + NORM_LEAVES) \
            or super().is_leaf_module(m, qualname)


class GraphBuilder(GroupBookkeeping, ShapeRules, JoinRules, ModuleRules, fx.Interpreter):
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
        self.splits: dict[fx.Node, ChannelSplit] = {}
        self.param_of: dict[fx.Node, str] = {}
        self.params: dict[str, tuple[int, Layout]] = {}  # attr path -> (its axis, layout)
        self.shapes: dict[fx.Node, tuple[int, ...] | None] = {}
        self.terms: list[tuple[int, int | None, int | None]] = []  # coef·k_A·k_B (None: 1)
        self.records: dict[str, ModuleRecord] = {}
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
                raise Unhandled("layout does not match the shape")
        except Unhandled as exc:
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
    def _output(self, n: fx.Node) -> None:
        reason = "reaches the network output"
        for a in n.all_input_nodes:
            for lay in self._layouts_of(a):
                self._fix_layout(lay, reason)


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

