"""Reduced-cost fixing for the joint ILP: which items every better solution must keep or drop.

Take any dual point (λ, ω) ≥ 0 with value D = D(λ, ω) and reduced scores a_i = s_i − λ c_{g(i)}.
For every feasible x,

    Σ_i s_i x_i = D − λ(F − Σ c x) − ω(K − Σ x)
                    − Σ_{i: a_i > ω, x_i = 0} (a_i − ω) − Σ_{i: a_i < ω, x_i = 1} (ω − a_i)
                ≤ D − (penalty of each item on the "wrong side" of its LP value).

So an x that beats an incumbent of value z must have every single penalty < Δ = D − z: items with
a_i − ω ≥ Δ are kept and items with ω − a_i ≥ Δ are dropped in every such x. Within a layer that
leaves a window [lo_g, hi_g) of the sorted order free; everything above it is kept, everything
below it dropped. A small safety margin keeps float rounding on the safe side (fixing fewer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pruneopt.solvers.fast.joint.lagrangian import dual_value
from pruneopt.solvers.fast.joint.sorted_layers import SortedLayers


@dataclass(frozen=True)
class Windows:
    lo: np.ndarray  # int64[L]: the lo_g best items of layer g are fixed to 1
    hi: np.ndarray  # int64[L]: items from position hi_g on are fixed to 0
    dual_value: float  # D(λ, ω) used for the fixing
    delta: float  # D − incumbent

    @property
    def core_size(self) -> int:
        return int(np.sum(self.hi - self.lo))


def fixing_windows(layers: SortedLayers, lam: float, omega: float, K: int, F: float,
                   incumbent: float) -> Windows:
    """Windows of items not fixed by reduced costs at (λ, ω) against an incumbent value."""
    thr = lam * layers.cost + omega
    k = layers.count_above(thr)
    D = dual_value(layers, lam, omega, k, K, F)
    margin = 1e-9 * max(abs(D), 1.0)
    delta = max(D - incumbent, 0.0) + margin
    lo = layers.count_above(thr + delta)
    # items with s > thr - delta stay free; the rest (s <= thr - delta) are dropped
    hi = layers.count_above(thr - delta)
    return Windows(lo=lo, hi=np.maximum(hi, lo), dual_value=D, delta=delta)


def full_windows(layers: SortedLayers) -> Windows:
    zeros = np.zeros(layers.L, dtype=np.int64)
    return Windows(lo=zeros, hi=layers.size.copy(), dual_value=np.inf, delta=np.inf)
