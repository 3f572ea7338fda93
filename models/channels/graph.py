"""The result of channel tracing: :class:`ChannelGraph` (groups, members, exact bilinear MACs) and
:class:`ModuleChannels` (how one module's channels follow the groups)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import nn

from pruneopt.formulations.common import as_binary_vector


# ============================================================================ the result
@dataclass(frozen=True, eq=False)
class ModuleChannels:
    """How one module's channels follow the groups (final group ids; -1 = always kept).

    ``kind``: ``conv`` (groups = 1), ``gconv`` (1 < groups < in_channels: every slice keeps the
    same channels), ``depthwise``, ``linear`` (on the last dim), ``bn``, ``ln`` (a LayerNorm on
    the channels), ``gn`` (GroupNorm), ``map`` (an index-mapping leaf such as ResNet option-A's
    ``ShortcutA``) or ``fixed`` (left as it is). ``in_*`` are per
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
    groups: int = 1  # gconv: the conv's groups; gn: the GroupNorm's num_groups


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
    # parameters applied channel-wise (layer scales, position embeddings): attribute path ->
    # (the parameter's dim that holds the channels, group id per position, channel index)
    params: dict = field(default_factory=dict)

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
        z = keep_vector(keep, self.num_channels)
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


def keep_vector(keep, n: int) -> np.ndarray:
    """A keep vector z over the graph's N channels as bool[N] (``ValueError("keep: ...")``)."""
    return as_binary_vector(keep, n, "keep")
