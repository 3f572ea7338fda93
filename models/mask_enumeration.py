"""The true loss of many channel masks at once, and the exact best mask over prefix counts.

For a tiny network the exact optimum of the *true* one-shot loss under a FLOP budget,

    minimize  CE(z) = (1/n) Σ_{x∈X} ℓ(f(x; W ⊙ z), y)   s.t.  FLOPs(k(z)) ≤ T,

can be found by enumeration (seeds_other.md, programs P2 / G2 / F5 / C1). With the channels of
every group ranked by an order (a method's own scores), the candidate masks are the *prefix
counts*: group g keeps its k_g best-ranked channels, k_g ∈ [m_g, n_g], Π_g (n_g − m_g + 1)
combinations. Every method measured here keeps a prefix of its own order (AutoBot's global
threshold on λ, FAIR's pruning of the lowest-U units, the relaxation's gate threshold), so its
mask is one of the candidates and the enumerated minimum is at most its loss.

A mask removes channel (g, i) by zeroing its activation where it is produced (the output of the
BatchNorm after a conv, else of the conv/linear: ``graph.activations``): in eval mode that equals
the physically shrunk network. M masks are evaluated in one forward pass on the batch repeated
M times, each copy multiplied by its own mask (a (M·n, C) gate per activation point), so that
thousands of masks cost a few hundred batched forwards.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import nn

from pruneopt.models.channels import ChannelGraph, graph_module

MAX_COMBINATIONS = 4_096  # prefix-count combinations enumerated by default (the digits MLP: 2,048)


def masked_losses(model: nn.Module, graph: ChannelGraph, masks: np.ndarray, X: torch.Tensor,
                  y: torch.Tensor, *, rows_per_pass: int = 16_384) -> tuple[np.ndarray, np.ndarray]:
    """Mean cross-entropy and accuracy on (X, y) of the model under each mask (bool[M, N]).

    Returns two float64[M] arrays. The model runs in eval mode, without gradients.
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 2 or masks.shape[1] != graph.num_channels:
        raise ValueError(f"masks: must be (M, {graph.num_channels}) booleans, got {masks.shape}")
    n = X.shape[0]
    if n < 1 or y.shape != (n,):
        raise ValueError("data: need a batch X (n, ...) with n >= 1 and one label per row")
    ptr = graph.channel_ptr
    per_pass = max(1, rows_per_pass // n)
    gate = {"value": None}  # (m, N) float tensor of the current chunk
    handles = []

    def make_hook(flat: torch.Tensor):
        def hook(_m, _inp, out):
            g = gate["value"][:, flat]  # (m, C)
            g = g.repeat_interleave(n, dim=0)  # mask-major: rows j*n..(j+1)*n-1 use mask j
            return out * g.reshape(g.shape + (1,) * (out.dim() - 2)).to(out.dtype)
        return hook

    saved = [(m, m.training) for m in model.modules()]
    ce = np.empty(masks.shape[0])
    acc = np.empty(masks.shape[0])
    try:
        for name, gid, idx in graph.activations:
            flat = torch.as_tensor(ptr[gid] + idx)
            handles.append(graph_module(model, name).register_forward_hook(make_hook(flat)))
        model.eval()
        with torch.no_grad():
            for start in range(0, masks.shape[0], per_pass):
                chunk = torch.as_tensor(masks[start:start + per_pass], dtype=torch.float32)
                m = chunk.shape[0]
                gate["value"] = chunk
                logits = model(X.repeat(m, *([1] * (X.dim() - 1))))
                labels = y.repeat(m)
                loss = nn.functional.cross_entropy(logits.double(), labels, reduction="none")
                ce[start:start + m] = loss.reshape(m, n).mean(1).numpy()
                hit = (logits.argmax(1) == labels).reshape(m, n).double().mean(1)
                acc[start:start + m] = hit.numpy()
    finally:
        for h in handles:
            h.remove()
        for mod, mode in saved:
            mod.training = mode
    return ce, acc


def prefix_masks(graph: ChannelGraph, order: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """bool[M, N]: for each row of counts (M, G), keep the counts[g] best-ranked channels of g
    (rank by ``order`` descending; ties: lower index first)."""
    counts = np.asarray(counts, dtype=np.int64)
    ptr, sizes = graph.channel_ptr, graph.sizes
    group_of = np.repeat(np.arange(graph.num_groups), sizes)
    # rank of each channel within its group: sort by (group, -order, index)
    idx = np.lexsort((np.arange(order.size), -order, group_of))
    rank = np.empty(order.size, dtype=np.int64)
    rank[idx] = np.arange(order.size) - ptr[group_of[idx]]
    return rank[None, :] < counts[:, group_of]


def best_prefix_mask(model: nn.Module, graph: ChannelGraph, order: np.ndarray,
                     budget_macs: float, X: torch.Tensor, y: torch.Tensor, *,
                     min_keep: np.ndarray | None = None,
                     max_combinations: int = MAX_COMBINATIONS) -> dict:
    """The exact minimum of CE over prefix-count masks with MACs ≤ budget_macs.

    ``min_keep`` (int[G], default 1; fixed groups always keep all). Returns a dict with
    ``ce``, ``accuracy``, ``counts``, ``keep`` (bool[N]), ``macs``, ``candidates`` (how many
    masks met the budget) and ``combinations`` (how many were enumerated). Raises
    ``ValueError`` when there are more than ``max_combinations`` combinations.
    """
    G, n = graph.num_groups, graph.sizes
    lo = np.ones(G, dtype=np.int64) if min_keep is None else np.asarray(min_keep, np.int64)
    lo = np.where(graph.fixed, n, np.minimum(lo, n))
    total = int(np.prod((n - lo + 1).astype(float)))
    if total > max_combinations:
        raise ValueError(f"enumeration: {total} prefix-count combinations exceed "
                         f"max_combinations={max_combinations}")
    grids = [np.arange(lo[g], n[g] + 1) for g in range(G)]
    counts = np.array(list(itertools.product(*grids)), dtype=np.int64).reshape(-1, G)
    k = counts.astype(np.float64)
    macs = graph.const + k @ graph.linear_coef.astype(np.float64)
    e = graph.edges
    if e.shape[0]:
        macs = macs + (k[:, e[:, 0]] * k[:, e[:, 1]]) @ graph.edge_coef.astype(np.float64)
    ok = macs <= budget_macs
    if not ok.any():
        raise ValueError(f"enumeration: no prefix mask meets {budget_macs:g} MACs")
    cand = counts[ok]
    ce, acc = masked_losses(model, graph, prefix_masks(graph, order, cand), X, y)
    j = int(np.argmin(ce))
    best = cand[j]
    return {"ce": float(ce[j]), "accuracy": float(acc[j]), "counts": best,
            "keep": prefix_masks(graph, order, best[None, :])[0],
            "macs": int(graph.macs_of_counts(best)), "candidates": int(cand.shape[0]),
            "combinations": total}


__all__ = ["MAX_COMBINATIONS", "best_prefix_mask", "masked_losses", "prefix_masks"]
