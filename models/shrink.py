"""Physically remove channels: a smaller model whose MACs are exactly the formulation's.

Given a model, its :class:`~pruneopt.models.channels.ChannelGraph` and a keep vector z
(flat, group-major: the :class:`~pruneopt.formulations.channels.problem.ChannelProblem`'s decision),
:func:`shrink_model` returns a deep copy in which every Conv2d, BatchNorm and Linear touching a
pruned group is replaced by a smaller module with the kept slices of its weights:

* Conv2d (groups = 1): ``W[out_keep][:, in_keep]``, bias ``b[out_keep]``;
* depthwise Conv2d: ``W[out_keep]`` with ``groups = in_channels = #kept inputs`` (its outputs
  follow its inputs, so they are kept together);
* Linear: ``W[out_keep][:, in_keep]``, where after a flatten of a C×H×W map the input features
  of a channel are its H·W block (``in_keep`` repeats each channel's flag H·W times);
* BatchNorm: γ, β, running mean and variance at the kept positions;
* a ResNet option-A ``ShortcutA`` (stride-s subsampling, zero-padded new channels): a
  :class:`ChannelMap` that subsamples and gathers each kept output channel from its kept input
  channel (zero where the input channel was removed or is padding) — no MACs.

The shrunk model's MACs, counted by ``FlopCounterMode``, are exactly
``graph.macs_of_counts(k)`` = ``problem.flops_of_counts(k)`` for k = the kept counts (integers).
Its outputs equal those of the dense model with every removed channel's activation set to zero
where it is produced (conv/BN outputs), and with option-A copies into a removed channel dropped.
:func:`mask_channels` builds the dense counterpart (weights zeroed) for checking.

Restrictions: every group must keep at least one channel (PyTorch has no zero-channel Conv2d),
a fixed group must keep all of them (a ``ValueError`` names it), and the model's ``forward``
must not hard-code channel counts (e.g. ``x.view(-1, 512)``): ``shrink_model`` runs the shrunk
model once on ``example_input`` when given, to fail early.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from pruneopt.models.channels import ChannelGraph, ChannelMap, ModuleChannels, keep_vector

__all__ = ["ChannelMap", "check_keep", "mask_channels", "shrink_model"]


# ------------------------------------------------------------------------------------ helpers
def _positions(gid: np.ndarray, idx: np.ndarray, z: np.ndarray, ptr: np.ndarray) -> np.ndarray:
    """Kept positions of a layout: always-kept entries (gid -1) and kept channels."""
    keep = np.ones(gid.size, dtype=bool)
    grouped = gid >= 0
    keep[grouped] = z[ptr[gid[grouped]] + idx[grouped]]
    return np.flatnonzero(keep)


def check_keep(graph: ChannelGraph, keep) -> np.ndarray:
    """The keep vector as bool[N], after checking it against the graph: fixed groups whole,
    every group at least one channel. Raises ``ValueError("keep: ...")``."""
    z = keep_vector(keep, graph.num_channels)
    k = graph.counts(z)
    n = graph.sizes
    bad = np.flatnonzero(graph.fixed & (k < n))
    if bad.size:
        g = int(bad[0])
        raise ValueError(f"keep: group {graph.names[g]} is not prunable "
                         f"({graph.fixed_reason[g]}); it must keep all {int(n[g])} channels, "
                         f"keeps {int(k[g])}")
    empty = np.flatnonzero(k == 0)
    if empty.size:
        g = int(empty[0])
        raise ValueError(f"keep: group {graph.names[g]} keeps no channel; a group must keep at "
                         "least one (PyTorch has no zero-channel Conv2d)")
    return z


def _get(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise ValueError(f"model: has no module {name!r}; it does not match the channel "
                         "graph") from None


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _check_size(name: str, have: int, want: int) -> None:
    if have != want:
        raise ValueError(f"model: module {name} has {have} channels where the channel graph "
                         f"has {want}; it does not match the graph")


def _new_conv(m: nn.Conv2d, w: torch.Tensor, b: torch.Tensor | None, c_in: int, c_out: int,
              groups: int) -> nn.Conv2d:
    new = nn.Conv2d(c_in, c_out, m.kernel_size, stride=m.stride, padding=m.padding,
                    dilation=m.dilation, groups=groups, bias=b is not None,
                    padding_mode=m.padding_mode, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
    new.train(m.training)
    new.weight.requires_grad_(m.weight.requires_grad)
    return new


def _slice(m: nn.Module, info: ModuleChannels, z: np.ndarray, ptr: np.ndarray) -> nn.Module:
    """The smaller replacement of one module (or the module itself when nothing is removed)."""
    name = info.name
    in_keep = _positions(info.in_gid, info.in_idx, z, ptr)
    out_keep = _positions(info.out_gid, info.out_idx, z, ptr) if info.out_gid.size else None
    full_in = in_keep.size == info.in_gid.size
    full_out = out_keep is None or out_keep.size == info.out_gid.size
    if info.kind == "conv":
        _check_size(name, m.in_channels, info.in_gid.size)
        _check_size(name, m.out_channels, info.out_gid.size)
        if full_in and full_out:
            return m
        ii, oo = torch.as_tensor(in_keep), torch.as_tensor(out_keep)
        w = m.weight.detach()[oo][:, ii]
        b = m.bias.detach()[oo] if m.bias is not None else None
        return _new_conv(m, w, b, int(ii.numel()), int(oo.numel()), 1)
    if info.kind == "gconv":
        _check_size(name, m.in_channels, info.in_gid.size)
        _check_size(name, m.out_channels, info.out_gid.size)
        if full_in and full_out:
            return m
        # every slice keeps the same channels: the weight's input dim is one slice's channels
        per_slice = info.in_gid.size // m.groups
        first = in_keep[in_keep < per_slice]
        if first.size * m.groups != in_keep.size:
            raise ValueError(f"model: grouped conv {name} would keep different channels in its "
                             "groups")
        ii, oo = torch.as_tensor(first), torch.as_tensor(out_keep)
        w = m.weight.detach()[oo][:, ii]
        b = m.bias.detach()[oo] if m.bias is not None else None
        return _new_conv(m, w, b, int(in_keep.size), int(oo.numel()), m.groups)
    if info.kind in ("ln", "gn"):
        if full_in:
            return m
        ii = torch.as_tensor(in_keep)
        k = int(ii.numel())
        new = copy.deepcopy(m)
        if info.kind == "ln":
            new.normalized_shape = (k,)
        else:
            G, C = m.num_groups, m.num_channels
            new.num_groups = 1 if G == 1 else (k if G == C else G)
            new.num_channels = k
        for attr in ("weight", "bias"):
            p = getattr(m, attr, None)
            if p is not None:
                setattr(new, attr, nn.Parameter(p.detach()[ii].clone(),
                                                requires_grad=p.requires_grad))
        return new
    if info.kind == "depthwise":
        _check_size(name, m.in_channels, info.in_gid.size)
        _check_size(name, m.out_channels, info.out_gid.size)
        if full_in and full_out:
            return m
        oo = torch.as_tensor(out_keep)
        w = m.weight.detach()[oo]
        b = m.bias.detach()[oo] if m.bias is not None else None
        return _new_conv(m, w, b, int(in_keep.size), int(oo.numel()), int(in_keep.size))
    if info.kind == "linear":
        _check_size(name, m.in_features, info.in_gid.size)
        _check_size(name, m.out_features, info.out_gid.size)
        if full_in and full_out:
            return m
        ii, oo = torch.as_tensor(in_keep), torch.as_tensor(out_keep)
        w = m.weight.detach()[oo][:, ii]
        new = nn.Linear(int(ii.numel()), int(oo.numel()), bias=m.bias is not None,
                        device=w.device, dtype=w.dtype)
        with torch.no_grad():
            new.weight.copy_(w)
            if m.bias is not None:
                new.bias.copy_(m.bias.detach()[oo])
        new.train(m.training)
        return new
    if info.kind == "bn":
        _check_size(name, m.num_features, info.in_gid.size)
        if full_in:
            return m
        ii = torch.as_tensor(in_keep)
        ref = next(iter(m.state_dict().values()), None)
        new = type(m)(int(ii.numel()), eps=m.eps, momentum=m.momentum, affine=m.affine,
                      track_running_stats=m.track_running_stats,
                      device=None if ref is None else ref.device,
                      dtype=m.weight.dtype if m.affine else None)
        with torch.no_grad():
            if m.affine:
                new.weight.copy_(m.weight.detach()[ii])
                new.bias.copy_(m.bias.detach()[ii])
            if m.track_running_stats:
                new.running_mean.copy_(m.running_mean[ii])
                new.running_var.copy_(m.running_var[ii])
                new.num_batches_tracked.copy_(m.num_batches_tracked)
        new.train(m.training)
        return new
    if info.kind == "map":
        # output position p (kept) copies input position src_pos[p] when that one is kept
        rank = np.full(info.in_gid.size, -1, dtype=np.int64)
        rank[in_keep] = np.arange(in_keep.size)
        src = info.src_pos[out_keep]
        gather = np.where(src >= 0, rank[np.maximum(src, 0)], -1)
        return ChannelMap(torch.as_tensor(gather), int(in_keep.size), info.stride)
    return m  # "fixed": every channel around it is kept


# ------------------------------------------------------------------------------------ public
def shrink_model(model: nn.Module, graph: ChannelGraph, keep, *,
                 example_input: torch.Tensor | None = None) -> nn.Module:
    """A deep copy of ``model`` with the channels where ``keep`` is 0 physically removed.

    ``keep`` is the flat group-major 0/1 vector z of ``graph`` (a ChannelProblem's ``x``).
    With ``example_input`` the shrunk model is run once (eval mode, no grad) to check that it
    runs. Raises ``ValueError`` if a fixed group loses a channel or a group keeps none.
    """
    z = check_keep(graph, keep)
    ptr = graph.channel_ptr
    new = copy.deepcopy(model)
    ref = next(iter(new.parameters()), None)
    for name, info in graph.modules.items():
        m = _get(new, name)
        repl = _slice(m, info, z, ptr)
        if repl is not m:
            if isinstance(repl, ChannelMap) and ref is not None:
                repl = repl.to(ref.device)  # the index lives with the activations
            _set(new, name, repl)
    for path, (dim, gid, idx) in getattr(graph, "params", {}).items():
        keep_pos = _positions(gid, idx, z, ptr)
        if keep_pos.size == gid.size:
            continue
        parent, _, leaf = path.rpartition(".")
        owner = new.get_submodule(parent) if parent else new
        old_p = getattr(owner, leaf)
        sliced = old_p.detach().index_select(dim, torch.as_tensor(keep_pos,
                                                                  device=old_p.device)).clone()
        if isinstance(old_p, nn.Parameter):
            setattr(owner, leaf, nn.Parameter(sliced, requires_grad=old_p.requires_grad))
        else:
            owner.register_buffer(leaf, sliced)
    if example_input is not None:
        saved = [(m, m.training) for m in new.modules()]
        try:
            new.eval()
            with torch.no_grad():
                new(example_input)
        except Exception as exc:
            raise ValueError(f"model: the shrunk model does not run ({exc}); does its forward "
                             "hard-code channel counts?") from None
        finally:
            for m, mode in saved:
                m.training = mode
    return new


def mask_channels(model: nn.Module, graph: ChannelGraph, keep) -> nn.Module:
    """The dense counterpart of :func:`shrink_model`: a deep copy with the removed channels'
    producing weights set to zero (conv/linear output filters and biases, depthwise filters,
    BatchNorm γ and β), so that in eval mode every removed channel is 0 where it is produced.

    Its outputs equal the shrunk model's except across an option-A shortcut, which still copies
    a kept input channel into a removed output channel here (the shrunk model drops that copy).
    """
    z = check_keep(graph, keep)
    ptr = graph.channel_ptr
    new = copy.deepcopy(model)
    with torch.no_grad():
        for name, info in graph.modules.items():
            m = _get(new, name)
            if info.kind in ("conv", "depthwise", "linear"):
                drop = np.setdiff1d(np.arange(info.out_gid.size),
                                    _positions(info.out_gid, info.out_idx, z, ptr))
                if drop.size:
                    m.weight[torch.as_tensor(drop)] = 0
                    if m.bias is not None:
                        m.bias[torch.as_tensor(drop)] = 0
            elif info.kind == "bn":
                drop = np.setdiff1d(np.arange(info.in_gid.size),
                                    _positions(info.in_gid, info.in_idx, z, ptr))
                if drop.size:
                    if not m.affine:
                        raise ValueError(f"model: BatchNorm {name} has no affine parameters to "
                                         "mask")
                    m.weight[torch.as_tensor(drop)] = 0
                    m.bias[torch.as_tensor(drop)] = 0
    return new
