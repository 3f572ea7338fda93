"""Random data shared by the instance generators (``generate`` of each formulation).

* ``random_scores(rng, dist, n)`` — n scores from one of the shape-free distributions:
  ``uniform`` (U(0, 1)), ``lognormal`` (heavy-tailed, exp N(0, 2²)), ``exponential`` (Exp(1)),
  ``ties`` (integers 0..9: many equal scores, zeros included). ``kaiming`` (squared fresh
  Kaiming weights) depends on the layers, so each generator draws it itself.
* ``stage_costs(layers)`` — MACs per weight of a random CNN-like network: the H·W of its stage
  (resolutions 32, 16, 8, 4 over the depth) and 1 for a final classifier.
"""

from __future__ import annotations

import numpy as np

DISTRIBUTIONS = ("kaiming", "uniform", "lognormal", "exponential", "ties")


def random_scores(rng: np.random.Generator, dist: str, n: int) -> np.ndarray:
    if dist == "uniform":
        return rng.random(n)
    if dist == "lognormal":
        return np.exp(2.0 * rng.standard_normal(n))
    if dist == "exponential":
        return rng.exponential(1.0, n)
    if dist == "ties":
        return rng.integers(0, 10, n).astype(np.float64)
    raise ValueError(f"dist: unknown distribution '{dist}' (known: {', '.join(DISTRIBUTIONS)})")


def stage_costs(layers: int) -> np.ndarray:
    resolutions = np.array([32, 16, 8, 4])
    stage = np.minimum((np.arange(layers) * resolutions.size) // max(layers - 1, 1),
                       resolutions.size - 1)
    costs = (resolutions[stage] ** 2).astype(np.float64)
    if layers > 1:
        costs[-1] = 1.0  # a classifier
    return costs
