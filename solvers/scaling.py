"""Numerical scaling for floating-point MIP backends (DESIGN §7, measured pitfalls).

HiGHS treats objective coefficients below its tolerances as zero and drops matrix coefficients
below 1e-9; scaling scores by their maximum makes most of a heavy-tailed score vector tiny. So:

* scores are multiplied by σ = 1 / (the score at the LP decision threshold), which puts the
  items that the solver must decide between at order one. The threshold comes from the exact LP
  dual (λ*, ω*): in layer g the LP keeps the items with s_i > λ* c_g + ω*; σ uses the median of
  those per-layer thresholds over the layers that have items on both sides of it, clamped so
  that no scaled score exceeds 1e10;
* MAC costs are divided by their greatest common divisor when they are integers (exact), and
  otherwise left as they are — never normalised to tiny fractions.

The same rules serve the other formulations: the allocation's losses (shifted per layer to
their smallest value) are scaled by 1 / their median (:func:`loss_scale`), the channel values
by 1 / the median last kept score (in :mod:`pruneopt.solvers.channels.registrations`), all
clamped at ``MAX_SCALED_SCORE``; integer MACs are divided by their gcd
(:func:`integer_cost_divisor`, :func:`integer_cost_unit`).

The reported objective is always recomputed from x on the original scores.
"""

from __future__ import annotations

import math

import numpy as np

from pruneopt.solvers.fast.joint.sorted_layers import SortedLayers

# No scaled score (loss, value) may exceed this: HiGHS reads 1e20 as infinity and SCIP rejects such
# data, and a range wider than this cannot be resolved by any float solver anyway (the check on
# the answer, :mod:`pruneopt.solvers.joint.polish`, catches what the solver then misses).
MAX_SCALED_SCORE = 1e10


def score_scale_at_threshold(layers: SortedLayers, lam: float, omega: float,
                             mask: np.ndarray | None = None) -> float:
    """σ = 1 / (median LP threshold λ c_g + ω over the contested layers), clamped.

    A layer is contested when the LP keeps some but not all of its items (and, when given,
    ``mask`` is True for it).
    """
    finite_top = layers.top[np.isfinite(layers.top)]
    top = float(finite_top.max()) if finite_top.size else 0.0
    if top <= 0:
        return 1.0
    thr = lam * layers.cost + omega
    kept = layers.count_above(thr)
    contested = (kept > 0) & (kept < layers.size) & (thr > 0)
    if mask is not None:
        contested &= mask
    level = float(np.median(thr[contested])) if np.any(contested) else top
    return min(1.0 / level, MAX_SCALED_SCORE / top)


def integer_cost_divisor(costs: np.ndarray) -> float:
    """The gcd of the costs when they are all integers (dividing by it is exact), else 1."""
    if costs.size == 0 or np.any(costs != np.rint(costs)) or np.any(costs > 2.0**62):
        return 1.0
    return float(math.gcd(*np.rint(costs).astype(np.int64).tolist()))


def integer_cost_unit(costs: np.ndarray) -> tuple[float, bool]:
    """(divisor, integral): the gcd of the costs when all are integers below 2^53 (exact), else
    (1, False)."""
    integral = bool(costs.size == 0 or (np.all(costs == np.rint(costs))
                                        and float(costs.max()) < 2.0**53))
    unit = integer_cost_divisor(costs) if integral else 1.0
    return (unit if unit > 0 else 1.0), integral


def loss_scale(shifted: np.ndarray) -> float:
    """σ = 1 / median of the positive per-layer-shifted losses, clamped so that σ·max ≤ 1e10:
    the differences a solver must weigh become order one (DESIGN §7)."""
    pos = shifted[shifted > 0]
    if pos.size == 0:
        return 1.0
    return float(min(1.0 / np.median(pos), MAX_SCALED_SCORE / pos.max()))
