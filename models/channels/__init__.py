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
* **The channel axis** is dim 1 until a permute/transpose moves it (ConvNeXt's NCHW ↔ NHWC, a
  ViT's N×L×D tokens); reshapes that merge it with neighbours repeat or tile its layout, a
  Linear reads the last dim (a = tokens: MACs L·in·out per sample), reductions and indexing
  of other dims shift it.
* **Stochastic depth / drop path** (``stochastic_depth``, ``drop_path``, matched by name) pass
  through; the graph is traced in eval mode.
* **Grouped conv** (1 < groups < in_channels): every slice must keep the same channels, so the
  input group is *folded* (a unit = one channel in each slice; its producer is traced again
  making it so: :mod:`~pruneopt.models.channels.builder`'s passes) and the output group is
  folded likewise; MACs K²HW·G·k_in·k_out. **GroupNorm(G, C)** with 1 < G < C folds by G;
  with G ∈ {1, C} it is sliced like BatchNorm. **LayerNorm** (subclasses such as ConvNeXt's
  ``LayerNorm2d`` stay leaves) on the channel axis is sliced (no MACs); over another dim it
  passes the channels through.
* **Channel-wise parameters** (a get_attr broadcast along the channels in an add/mul, or
  concatenated along another dim: layer scale, position embedding, class token) are sliced with
  the group (``ChannelGraph.params``).
* **Channel shuffle and chunk.** ``view(N, g, C/g, ...)`` → ``transpose`` → ``view(N, C, ...)``
  is followed as a permutation of the layout; ``chunk(k)``/``split(int)`` along the channels
  slice it. The shrunk model splits its *own* channel count into g (k) equal slices, so the
  slices must keep the same channels: they are tied position by position (what cannot be tied
  one to one is fixed). Literal channel positions (``x[:, :8]``, ``split([a, b])``, list
  indexing) are fixed.
* **Partial reads**: a conv that reads part of a group asks its producer to partition the group
  (traced again); at most 6 passes, then what is still open is fixed.
* Every op not listed here (``roll``, matmul/attention, ``nn.MultiheadAttention``, unknown
  modules, ...) that reads a grouped tensor makes those groups unprunable and outputs a FIXED
  layout — conservative: the answer is exact, it only forgoes pruning there. Their MACs
  (measured by ``FlopCounterMode`` per node) go into c₀. An exception inside a rule is treated
  the same way: the tracer never crashes on an op. ``ChannelGraph.unknown_ops`` and
  ``fixed_reason`` say which and why.
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
:func:`channel_problem` (→ a :class:`~pruneopt.formulations.channels.problem.ChannelProblem` whose
decision z is the graph's group-major keep vector), :func:`group_scores`, :class:`ChannelMap`,
``CHANNEL_MAPS``. Shrinking is :mod:`pruneopt.models.shrink`, scores
:mod:`pruneopt.models.channel_importance`.

**Modules.** ``layouts`` (Layout, UnionFind), ``rules`` (op tables), ``maps`` (index-mapping
leaves), ``trace_state`` (per-node records), the tracer ``builder`` (the torch.fx interpreter and
its passes) with its mixins ``bookkeeping`` (groups, ties, requests between passes),
``shape_rules`` (reshape, permute, index, split, reduce), ``join_rules`` (add/mul, parameters,
cat) and ``module_rules`` (conv, linear, norms, maps: the MAC terms), ``assemble`` (→ the graph),
``graph`` (ChannelGraph, ModuleChannels) and ``problem`` (→ ChannelProblem).
"""

from pruneopt.models.channels.builder import build_channel_graph
from pruneopt.models.channels.graph import ChannelGraph, ModuleChannels, graph_module, keep_vector
from pruneopt.models.channels.maps import CHANNEL_MAPS, ChannelMap
from pruneopt.models.channels.problem import channel_problem, group_scores

__all__ = ["CHANNEL_MAPS", "ChannelGraph", "ChannelMap", "ModuleChannels", "build_channel_graph",
           "channel_problem", "graph_module", "group_scores", "keep_vector"]
