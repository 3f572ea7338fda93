"""Layouts: where each position along dim 1 of a traced tensor comes from, and the union-find of
tied groups (see :mod:`pruneopt.models.channels` for the rules that use them)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HARD, FIXED, ZERO, SOFT = 0, 1, 2, 3


# ============================================================================ layouts
@dataclass(frozen=True, eq=False)
class Layout:
    """Per position along dim 1: kind (HARD/FIXED/ZERO/SOFT), raw group id, channel index.
    For SOFT entries gid may be -1 (a copy of a FIXED channel). Arrays are never mutated."""

    kind: np.ndarray
    gid: np.ndarray
    idx: np.ndarray

    @staticmethod
    def fixed(n: int) -> Layout:
        return Layout(np.full(n, FIXED, np.int8), np.full(n, -1, np.int64),
                       np.full(n, -1, np.int64))

    @staticmethod
    def group(g: int, n: int) -> Layout:
        return Layout(np.full(n, HARD, np.int8), np.full(n, g, np.int64),
                       np.arange(n, dtype=np.int64))

    def __len__(self) -> int:
        return int(self.kind.size)

    @staticmethod
    def cat(parts: list[Layout]) -> Layout:
        return Layout(np.concatenate([p.kind for p in parts]),
                       np.concatenate([p.gid for p in parts]),
                       np.concatenate([p.idx for p in parts]))

    @property
    def plain(self) -> bool:
        """Only HARD and FIXED entries (what every consumer but an add expects)."""
        return bool(np.all((self.kind == HARD) | (self.kind == FIXED)))


class UnionFind:
    """Ties between raw groups (channel i of one is channel i of the other), and a "fixed" flag
    per class (the class may not lose a channel). Raw group ids start at 1."""

    def __init__(self) -> None:
        self.parent = [0]
        self.size = [0]  # channels of each raw group
        self.flag = [False]

    def add(self, n: int) -> int:
        self.parent.append(len(self.parent))
        self.size.append(int(n))
        self.flag.append(False)
        return len(self.parent) - 1

    def find(self, a: int) -> int:
        p = self.parent
        root = a
        while p[root] != root:
            root = p[root]
        while p[a] != root:  # path compression
            p[a], a = root, p[a]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            ra, rb = min(ra, rb), max(ra, rb)  # the earlier group names the class
            self.parent[rb] = ra
            self.flag[ra] = self.flag[ra] or self.flag[rb]

    def fix(self, a: int) -> None:
        self.flag[self.find(a)] = True

    def is_fixed(self, a: int) -> bool:
        return self.flag[self.find(a)]
