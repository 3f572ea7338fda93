"""Channel importance scores, one per channel of a :class:`~pruneopt.models.channels.
ChannelGraph` (flat, group-major: the ``scores`` of a ChannelProblem).

A group's channel i may be produced by several tied modules (the convs whose outputs a residual
add sums); each score sums over them.

* ``l1`` — s_{g,i} = Σ_{producers m} ‖W_m[i]‖₁, the L1 norm of output filter i of every conv or
  linear that produces group g (Li et al. 2017);
* ``l2`` — the same with ‖W_m[i]‖₂;
* ``bn`` — s_{g,i} = Σ_{BatchNorms m on g} |γ_m[i]| (network slimming, Liu et al. 2017); a group
  with no BatchNorm has no such score and raises;
* ``taylor`` — the first-order Taylor estimate of the loss change when channel i is zeroed
  (Molchanov et al. 2017), on a batch X (labels y, or the model's own predictions):

      s_{g,i} = (1/|X|) Σ_{x∈X} | Σ_{members m} Σ_{h,w} a_m(x)_{i,h,w} · ∂L(x)/∂a_m(x)_{i,h,w} |

  with a_m the activation where the channel is produced: the output of the BatchNorm that
  directly follows a producing conv, else the conv/linear output itself. L is the per-sample
  cross-entropy; the model runs in eval mode (BatchNorm on its running statistics).

Scores of fixed groups are computed too (the problem builder sets them to 0).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pruneopt.models.channels import ChannelGraph, graph_module

SCORES = ("l1", "l2", "bn", "taylor")


def filter_norm_scores(model: nn.Module, graph: ChannelGraph, p: int = 1) -> np.ndarray:
    """Σ over producing conv/linear modules of the L^p norm (p = 1 or 2) of each output filter."""
    if p not in (1, 2):
        raise ValueError(f"p: must be 1 or 2, got {p!r}")
    scores = np.zeros(graph.num_channels, dtype=np.float64)
    ptr = graph.channel_ptr
    for name, info in graph.modules.items():
        if info.kind not in ("conv", "linear"):
            continue
        w = graph_module(model, name).weight.detach().to("cpu", torch.float64)
        w = w.reshape(w.shape[0], -1)
        norms = (w.abs().sum(1) if p == 1 else w.square().sum(1).sqrt()).numpy()
        sel = info.out_gid >= 0
        np.add.at(scores, ptr[info.out_gid[sel]] + info.out_idx[sel], norms[sel])
    return scores


def bn_scores(model: nn.Module, graph: ChannelGraph) -> np.ndarray:
    """Σ over the BatchNorms on each group of |γ| at the channel's positions."""
    scores = np.zeros(graph.num_channels, dtype=np.float64)
    seen = np.zeros(graph.num_groups, dtype=bool)
    ptr = graph.channel_ptr
    for name, info in graph.modules.items():
        if info.kind != "bn":
            continue
        m = graph_module(model, name)
        if not m.affine:
            continue
        gamma = m.weight.detach().to("cpu", torch.float64).abs().numpy()
        sel = info.in_gid >= 0
        np.add.at(scores, ptr[info.in_gid[sel]] + info.in_idx[sel], gamma[sel])
        seen[np.unique(info.in_gid[sel])] = True
    missing = np.flatnonzero(~seen & graph.prunable)
    if missing.size:
        raise ValueError(f"score: 'bn' needs a BatchNorm with a scale γ on every prunable group; "
                         f"group {graph.names[int(missing[0])]} has none (use l1, l2 or taylor)")
    return scores


def taylor_scores(model: nn.Module, graph: ChannelGraph, X: torch.Tensor,
                  y: torch.Tensor | None = None, *, batch_size: int = 32) -> np.ndarray:
    """First-order Taylor scores on the batch X (see the module docstring)."""
    if not isinstance(X, torch.Tensor) or X.dim() < 2 or X.shape[0] < 1:
        raise ValueError("data: taylor scores need a batch of inputs X (N, ...) with N >= 1")
    if y is not None and (not isinstance(y, torch.Tensor) or y.shape != (X.shape[0],)):
        raise ValueError(f"data: y must hold one label per row of X ({X.shape[0]})")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: must be an integer >= 1, got {batch_size!r}")
    N = graph.num_channels
    ptr = graph.channel_ptr
    # per activation point: flat channel index of each of its output positions
    points: dict[str, torch.Tensor] = {}
    for name, gid, idx in graph.activations:
        points[name] = torch.as_tensor(ptr[gid] + idx)
    total = torch.zeros(N, dtype=torch.float64)
    saved = [(m, m.training) for m in model.modules()]
    handles = []
    per_sample: list[torch.Tensor] = []  # the current chunk's (n, N) sums

    def make_hook(flat_index: torch.Tensor):
        def hook(_module, _inputs, out):
            act = out

            def grad_hook(grad):
                prod = act.detach() * grad
                contrib = prod.reshape(prod.shape[0], prod.shape[1], -1).sum(2)
                per_sample[0].index_add_(1, flat_index, contrib.to("cpu", torch.float64))

            if act.requires_grad:
                act.register_hook(grad_hook)
            # downstream in-place ops (ReLU(inplace=True)) act on a copy, so that `act` keeps
            # the value the gradient is taken at
            return out.clone()
        return hook

    try:
        for name, flat_index in points.items():
            handles.append(graph_module(model, name).register_forward_hook(make_hook(flat_index)))
        model.eval()
        ref = next(iter(model.parameters()), None)
        device = ref.device if ref is not None else X.device
        for start in range(0, X.shape[0], batch_size):
            xb = X[start:start + batch_size].detach().to(device).clone().requires_grad_(True)
            per_sample[:] = [torch.zeros(xb.shape[0], N, dtype=torch.float64)]
            logits = model(xb)
            if logits.dim() != 2:
                raise ValueError(f"model: output must be (batch, classes) logits for taylor "
                                 f"scores, got shape {tuple(logits.shape)}")
            labels = (y[start:start + batch_size].to(device) if y is not None
                      else logits.detach().argmax(dim=1))
            # summed, not averaged: each sample's own loss gradient
            loss = nn.functional.cross_entropy(logits, labels.long(), reduction="sum")
            torch.autograd.grad(loss, [xb])
            total += per_sample[0].abs().sum(0)
    finally:
        for h in handles:
            h.remove()
        for m, mode in saved:
            m.training = mode
    return (total / X.shape[0]).numpy()


def channel_scores(model: nn.Module, graph: ChannelGraph, method: str = "l1", *,
                   X: torch.Tensor | None = None, y: torch.Tensor | None = None,
                   batch_size: int = 32) -> np.ndarray:
    """Scores by name: ``l1``, ``l2``, ``bn`` or ``taylor`` (which needs X, optionally y)."""
    if method == "l1":
        return filter_norm_scores(model, graph, 1)
    if method == "l2":
        return filter_norm_scores(model, graph, 2)
    if method == "bn":
        return bn_scores(model, graph)
    if method == "taylor":
        if X is None:
            raise ValueError("data: taylor scores need a batch of inputs X")
        return taylor_scores(model, graph, X, y, batch_size=batch_size)
    raise ValueError(f"score: unknown score {method!r} (known: {', '.join(SCORES)})")
