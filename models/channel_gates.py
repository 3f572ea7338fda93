"""Per-channel multiplicative gates on the channel groups of a model, and the relaxed MAC count.

Two structured pruning methods of the gap studies train one real gate per channel (AutoBot's
λ = σ(ψ), the generalised continuous relaxation's g = σ(a·s); see
:mod:`pruneopt.models.autobot` and :mod:`pruneopt.models.relaxation`). Both need the same two
pieces, which live here:

* :func:`gated` — a context manager that multiplies every channel, where it is produced, by its
  gate. For a :class:`~pruneopt.models.channels.ChannelGraph` the production points are
  ``graph.activations``: the BatchNorm that directly follows a producing conv (else the
  conv/linear itself). Channel i of group g at such a point is multiplied by
  ``gates[channel_ptr[g] + i]``. Channels tied by a residual add share a group, hence one gate,
  applied at every producer's output (before the add), so a 0 gate removes the channel from the
  whole residual stream exactly as :func:`~pruneopt.models.shrink.mask_channels` does.

  AutoBot multiplies the activation *after* the ReLU. Gating the BN output before the ReLU is
  the same for positive gates, since ReLU(λx) = λ·ReLU(x) for λ > 0 (and max-pooling commutes
  with a positive per-channel scale too); at λ = 0 both give 0. Fixed groups (not prunable, e.g.
  the classifier's outputs) get no hook: their entries of ``gates`` are never read.

* :func:`relaxed_macs` — the bilinear MAC count of the graph (DESIGN §2c) with the kept count
  k_g replaced by the gate mass S_g:

      F(S) = c₀ + Σ_g b_g S_g + Σ_{e=(g,h)} a_e S_g S_h,
      S_g  = Σ_{i ∈ g} gates_i  (prunable g),   S_g = n_g (fixed g; its terms are folded into
                                                           c₀ and b already, see ChannelGraph)

  computed in float64 and differentiable in ``gates``. At 0/1 gates S_g = k_g, so F equals
  ``graph.macs_of_counts(graph.counts(gates))`` exactly (integers below 2⁵³ are exact in
  float64). This is AutoBot's F(λ) (conv: cin = Σλ_in, cout = Σλ_out) and the relaxation's
  relaxed FLOPs, restricted to the Conv2d/Linear MACs that the whole package counts (BatchNorm
  and activations are not counted; the original AutoBot counter adds 2·H·W·C per BN).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from pruneopt.models.channels import ChannelGraph

__all__ = ["GateHandle", "channel_group_index", "gated", "relaxed_macs"]


def channel_group_index(graph: ChannelGraph) -> np.ndarray:
    """The group of each flat channel (int64[N])."""
    return np.repeat(np.arange(graph.num_groups, dtype=np.int64), graph.sizes)


def _check_gates(graph: ChannelGraph, gates) -> torch.Tensor:
    if not isinstance(gates, torch.Tensor):
        raise ValueError(f"gates: must be a torch tensor of {graph.num_channels} gate values, "
                         f"got {type(gates).__name__}")
    if gates.shape != (graph.num_channels,):
        raise ValueError(f"gates: must have one value per channel (N={graph.num_channels}), "
                         f"got shape {tuple(gates.shape)}")
    if not gates.is_floating_point():
        raise ValueError(f"gates: must be floating point, got {gates.dtype}")
    return gates


class GateHandle:
    """What :func:`gated` yields: set ``handle.gates`` to a new tensor (same shape) to change the
    gates for the following forward passes (a training loop recomputes λ = σ(ψ) every step)."""

    def __init__(self, graph: ChannelGraph, gates: torch.Tensor) -> None:
        self._graph = graph
        self._gates = _check_gates(graph, gates)

    @property
    def gates(self) -> torch.Tensor:
        return self._gates

    @gates.setter
    def gates(self, value: torch.Tensor) -> None:
        self._gates = _check_gates(self._graph, value)


@contextlib.contextmanager
def gated(model: nn.Module, graph: ChannelGraph, gates: torch.Tensor) -> Iterator[GateHandle]:
    """Within the block, every prunable channel of ``model`` is multiplied by its gate where it is
    produced (the outputs of ``graph.activations``; see the module docstring):

        out[:, j, ...] ← gates[channel_ptr[g_j] + i_j] · out[:, j, ...]

    ``gates`` is flat (N,), group-major; entries of fixed groups are ignored. The hooks read the
    handle's current gates at each forward, so gradients flow into them. The hooks are removed on
    exit, also on an exception.
    """
    handle = GateHandle(graph, gates)
    ptr = graph.channel_ptr
    hooks = []

    def make_hook(flat: torch.Tensor):
        cache: dict = {}

        def hook(_module, _inputs, out):
            if not isinstance(out, torch.Tensor) or out.dim() < 2 or out.shape[1] != flat.numel():
                raise ValueError(f"model: an activation point of the channel graph produced "
                                 f"{tuple(getattr(out, 'shape', ()))}, expected {flat.numel()} "
                                 "channels along dim 1; the graph does not match the model")
            key = out.device
            idx = cache.get(key)
            if idx is None:
                idx = cache[key] = flat.to(out.device)
            g = handle.gates.to(device=out.device, dtype=out.dtype).index_select(0, idx)
            return out * g.view(1, -1, *([1] * (out.dim() - 2)))
        return hook

    try:
        for name, gid, idx in graph.activations:
            if graph.fixed[int(gid[0])]:
                continue
            try:
                module = model.get_submodule(name)
            except AttributeError:
                raise ValueError(f"model: has no module {name!r}; it does not match the channel "
                                 "graph") from None
            flat = torch.as_tensor(ptr[gid] + idx, dtype=torch.long)
            hooks.append(module.register_forward_hook(make_hook(flat)))
        yield handle
    finally:
        for h in hooks:
            h.remove()


def relaxed_macs(graph: ChannelGraph, gates: torch.Tensor) -> torch.Tensor:
    """F(S) = c₀ + Σ_g b_g S_g + Σ_e a_e S_g S_h with S_g the gate mass of group g (fixed groups:
    n_g), a float64 scalar tensor differentiable in ``gates`` (see the module docstring). Equal to
    ``graph.macs_of_counts(k)`` when the gates are 0/1 with k_g ones in group g."""
    gates = _check_gates(graph, gates)
    G = graph.num_groups
    group = torch.as_tensor(channel_group_index(graph), device=gates.device)
    S = torch.zeros(G, dtype=torch.float64, device=gates.device).index_add(
        0, group, gates.to(torch.float64))
    fixed = torch.as_tensor(graph.fixed, device=gates.device)
    sizes = torch.as_tensor(graph.sizes, dtype=torch.float64, device=gates.device)
    S = torch.where(fixed, sizes, S)
    b = torch.as_tensor(graph.linear_coef, dtype=torch.float64, device=gates.device)
    total = torch.as_tensor(float(graph.const), dtype=torch.float64, device=gates.device) \
        + torch.dot(b, S)
    if graph.edges.shape[0]:
        e = torch.as_tensor(graph.edges, device=gates.device)
        a = torch.as_tensor(graph.edge_coef, dtype=torch.float64, device=gates.device)
        total = total + torch.sum(a * S[e[:, 0]] * S[e[:, 1]])
    return total
