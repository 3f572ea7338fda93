"""Pieces every formulation's evaluation shares: the evaluation record, 0/1 decisions, and
sums over contiguous segments (layers, groups).

Input checks are in :mod:`pruneopt.formulations.checks`, the exchange file in
:mod:`pruneopt.formulations.exchange`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Evaluation:
    """Objective and per-constraint usage of a decision, recomputed in numpy (float64).

    ``usage[name] <= limits[name]`` must hold for every constraint name for the decision to be
    feasible.
    """

    objective: float
    usage: dict[str, float]
    limits: dict[str, float]

    def violations(self, tol: float = 1e-9) -> dict[str, float]:
        """Constraints exceeded by more than ``tol`` relative (and absolute) slack."""
        out = {}
        for name, used in self.usage.items():
            limit = self.limits[name]
            if used > limit + tol * max(1.0, abs(limit)):
                out[name] = used - limit
        return out

    def is_feasible(self, tol: float = 1e-9) -> bool:
        return not self.violations(tol)


def as_binary_vector(x, size: int, name: str = "x") -> np.ndarray:
    """Turn a 0/1 decision (bool, int or float within 1e-6 of 0/1) into a bool array of ``size``
    (``ValueError("<name>: ...")`` otherwise)."""
    arr = np.asarray(x)
    if arr.ndim != 1 or arr.size != size:
        raise ValueError(f"{name}: must be a vector of {size} entries (0/1), got shape "
                         f"{arr.shape}")
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name}: must be 0/1 numbers, got dtype {arr.dtype}")
    rounded = np.rint(arr)
    if not np.all(np.isfinite(arr)) or np.any(np.abs(arr - rounded) > 1e-6):
        raise ValueError(f"{name}: entries must be 0 or 1")
    if np.any((rounded != 0) & (rounded != 1)):
        raise ValueError(f"{name}: entries must be 0 or 1")
    return rounded.astype(bool)


# Up to this many segments a Python loop of numpy calls over contiguous slices beats any
# vectorised form (which needs a p-sized temporary); beyond it the vectorised form is used.
LOOP_SEGMENTS = 20_000


def segment_count(x: np.ndarray, ptr: np.ndarray) -> np.ndarray:
    """Number of True entries of a bool array in each segment ptr[g]:ptr[g+1] (int64[L])."""
    L = ptr.size - 1
    if L <= LOOP_SEGMENTS:
        bounds = ptr.tolist()
        return np.array([np.count_nonzero(x[bounds[g]:bounds[g + 1]]) for g in range(L)],
                        dtype=np.int64).reshape(L)
    csum = np.concatenate(([0], np.cumsum(x, dtype=np.int64)))
    return csum[ptr[1:]] - csum[ptr[:-1]]


def segment_sum_selected(values: np.ndarray, x: np.ndarray, ptr: np.ndarray) -> float:
    """Σ values[x], summed pairwise (np.sum(..., where=x) is not: 3e-9 off at 25M items)."""
    if ptr.size - 1 <= LOOP_SEGMENTS:
        bounds = ptr.tolist()
        parts = np.array([np.sum(values[a:b][x[a:b]]) for a, b in zip(bounds[:-1], bounds[1:])])
        return float(np.sum(parts))
    return float(np.sum(values[x]))
