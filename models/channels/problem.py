"""The structured channel-selection problem of a model (DESIGN §2c) from its channel graph."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch
from torch import nn

from pruneopt.formulations.channels.problem import ChannelProblem
from pruneopt.formulations.checks import fraction
from pruneopt.models.channels.builder import build_channel_graph
from pruneopt.models.channels.graph import ChannelGraph


# ============================================================================ the problem
def _kept_fraction(value) -> Fraction:
    """keep_flops as the exact decimal written (so 0.3 of 10 MACs is 3, not 2.9999...)."""
    return Fraction(repr(fraction(value, "flops", what="a fraction kept")))


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
    if not graph.prunable.any():
        why = sorted({r for r in graph.fixed_reason if r})
        raise ValueError("model: has no prunable channel group (every group must keep all its "
                         f"channels: {'; '.join(why[:3])}{' ...' if len(why) > 3 else ''})")
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
