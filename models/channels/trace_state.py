"""The small records the channel tracer keeps between nodes: a module's first call, a channel
axis split over several dims by a view, and the exception a rule raises to give up on an op."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pruneopt.models.channels.layouts import Layout


class Unhandled(Exception):
    """Raised inside a rule: the op is treated as unknown (its groups kept whole)."""


@dataclass
class ModuleRecord:
    """A module's first call: raw layouts, for slicing it later."""

    kind: str
    inp: Layout
    out: Layout | None = None
    src_pos: np.ndarray | None = None
    stride: int = 1
    resolved: bool = False
    groups: int = 1


@dataclass
class ChannelSplit:
    """A tensor whose channel axis was split over dims ``start..start+len(pos.shape)-1`` by a
    view: ``pos`` holds, for each index over those dims, the channel of ``base`` it is."""

    base: Layout
    start: int
    pos: np.ndarray


def period_of(lay: Layout, slices: int) -> bool:
    """Every one of ``slices`` equal slices of the layout holds the same channels in the same
    order (what a grouped conv or GroupNorm needs)."""
    n = len(lay)
    if slices <= 1:
        return True
    if n % slices:
        return False
    s = n // slices
    return (np.all(lay.kind.reshape(slices, s) == lay.kind[:s])
            and np.all(lay.gid.reshape(slices, s) == lay.gid[:s])
            and np.all(lay.idx.reshape(slices, s) == lay.idx[:s]))


