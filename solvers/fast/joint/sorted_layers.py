"""Per-layer sorted scores with prefix sums: the data structure of the count-space algorithms.

Within a layer every item costs the same, so any optimal selection of the joint ILP keeps the
k_g best items of each layer g and the problem lives in the counts k. This module sorts each
layer once (descending), keeps prefix sums P_g(k) = sum of the k largest scores of g, and answers
"how many items of each layer have score > t_g" for a vector of thresholds t with one vectorised
binary search over all layers (no Python loop over items).

Memory: two float64 arrays of p entries (the negated sorted scores and the prefix sums).
"""

from __future__ import annotations

import numpy as np

from pruneopt.formulations.common import LOOP_SEGMENTS

# Below this many layers, one np.searchsorted per layer is faster than the vectorised search.
_LOOP_LAYERS = 128


class SortedLayers:
    """Scores of each layer in decreasing order, with per-layer prefix sums."""

    def __init__(self, scores: np.ndarray, group_ptr: np.ndarray, flop_cost: np.ndarray):
        self.ptr = np.asarray(group_ptr, dtype=np.int64)
        self.start = self.ptr[:-1]
        self.size = np.diff(self.ptr)
        self.cost = np.asarray(flop_cost, dtype=np.float64)
        self.L = self.size.size
        # neg holds -scores sorted ascending inside each layer (= scores descending), so that
        # np.searchsorted applies directly; sorting in place avoids a second p-sized buffer.
        neg = np.negative(scores)
        for a, b in zip(self.ptr[:-1].tolist(), self.ptr[1:].tolist()):
            if b - a > 1:
                neg[a:b].sort(kind="quicksort")
        self.neg = neg
        cum = np.empty_like(neg)
        for a, b in zip(self.ptr[:-1].tolist(), self.ptr[1:].tolist()):
            if b > a:
                np.cumsum(neg[a:b], out=cum[a:b])
        np.negative(cum, out=cum)
        self.cum = cum  # cum[start_g + k - 1] = P_g(k), the sum of the k largest scores of g
        self.top = self.score_at(np.zeros(self.L, dtype=np.int64))  # best score per layer

    # ------------------------------------------------------------------------------ queries
    def prefix(self, k: np.ndarray) -> np.ndarray:
        """P_g(k_g) for every layer (float64[L]); P_g(0) = 0."""
        k = np.asarray(k, dtype=np.int64)
        idx = np.maximum(self.start + k - 1, 0)
        vals = self.cum[idx] if self.cum.size else np.zeros(self.L)
        return np.where(k > 0, vals, 0.0)

    def score_at(self, k: np.ndarray) -> np.ndarray:
        """The (k_g+1)-th largest score of each layer (−inf where the layer has ≤ k_g items)."""
        k = np.asarray(k, dtype=np.int64)
        ok = k < self.size
        idx = np.where(ok, self.start + k, 0)
        vals = -self.neg[idx] if self.neg.size else np.zeros(self.L)
        return np.where(ok, vals, -np.inf)

    def count_above(self, t: np.ndarray) -> np.ndarray:
        """k_g = #{i in layer g : s_i > t_g} for a threshold per layer (int64[L])."""
        t = np.asarray(t, dtype=np.float64)
        if self.L <= _LOOP_LAYERS:
            out = np.empty(self.L, dtype=np.int64)
            for g, (a, b) in enumerate(zip(self.ptr[:-1].tolist(), self.ptr[1:].tolist())):
                out[g] = np.searchsorted(self.neg[a:b], -t[g], side="left")
            return out
        return self._count_vectorised(-t)

    def _count_vectorised(self, v: np.ndarray) -> np.ndarray:
        # Binary search in every layer at once: #{j : neg[start+j] < v} per layer.
        lo = np.zeros(self.L, dtype=np.int64)
        hi = self.size.copy()
        neg = self.neg
        last = max(neg.size - 1, 0)
        while True:
            active = lo < hi
            if not active.any():
                return lo
            mid = (lo + hi) >> 1
            vals = neg[np.minimum(self.start + mid, last)]
            right = active & (vals < v)
            lo = np.where(right, mid + 1, lo)
            hi = np.where(active & ~right, mid, hi)

    def select(self, scores: np.ndarray, k: np.ndarray) -> np.ndarray:
        """A 0/1 selection (bool[p]) keeping the k_g largest scores of each layer.

        Ties at a layer's threshold are broken by item index, so exactly k_g items are kept.
        """
        k = np.asarray(k, dtype=np.int64)
        thr = self.score_at(k - 1)  # k_g-th largest score; -inf where k_g = 0 is handled below
        thr = np.where(k > 0, thr, np.inf)
        if self.L <= LOOP_SEGMENTS:
            x = np.empty(scores.size, dtype=bool)
            for g, (a, b) in enumerate(zip(self.ptr[:-1].tolist(), self.ptr[1:].tolist())):
                np.greater(scores[a:b], thr[g], out=x[a:b])
        else:
            x = scores > np.repeat(thr, self.size)
        above = self.count_above(thr)
        short = np.flatnonzero(above < k)  # layers whose threshold score is tied
        for g in short.tolist():
            a, b = int(self.ptr[g]), int(self.ptr[g + 1])
            tied = np.flatnonzero(scores[a:b] == thr[g])[: k[g] - above[g]]
            x[a + tied] = True
        return x
