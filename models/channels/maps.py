"""Index-mapping leaf modules (ResNet option-A shortcuts, :class:`ChannelMap`): traced as leaves
whose output channels copy input channels or are zero."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pruneopt.models import zoo


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
