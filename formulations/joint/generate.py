"""Random joint instances: several score distributions and layer shapes, reproducible by seed.

Score distributions (``dist``):

* ``kaiming``     — s = w², w ~ N(0, 2/fan_in) per layer (magnitude pruning of a fresh network);
* ``uniform``     — s ~ U(0, 1);
* ``lognormal``   — heavy-tailed, s = exp(N(0, 2²));
* ``exponential`` — s ~ Exp(1);
* ``ties``        — small integers 0..9 (many equal scores, zeros included).

Layer shapes (``shape``):

* ``random``      — layer sizes from a Dirichlet split of p, MAC costs like a CNN's
                    (H·W for resolutions 32, 16, 8, 4 and 1 for the last layer);
* ``resnet20``, ``mobilenetv1``, ``resnet50`` — the real layer tables of
  :mod:`pruneopt.formulations.network_shapes` (``items`` and ``layers`` are then ignored).

Budgets are fractions kept: K = ⌊keep_nnz · p⌋, F = keep_flops · (dense MACs).
"""

from __future__ import annotations

import numpy as np

from pruneopt.formulations.checks import fraction
from pruneopt.formulations.joint.problem import JointBudgetProblem
from pruneopt.formulations.network_shapes import NETWORKS, layer_arrays
from pruneopt.formulations.sampling import DISTRIBUTIONS, random_scores, stage_costs

SHAPES = ("random",) + tuple(NETWORKS)


def _layer_scores(rng: np.random.Generator, dist: str, sizes: np.ndarray) -> np.ndarray:
    p = int(sizes.sum())
    if dist == "kaiming":
        # fan_in ~ layer size / fan_out; a plausible fan_in per layer keeps scales layer-specific
        fan_in = np.maximum(np.sqrt(np.maximum(sizes, 1)).astype(np.float64), 1.0)
        std = np.repeat(np.sqrt(2.0 / fan_in), sizes)
        w = rng.standard_normal(p) * std
        return w * w
    return random_scores(rng, dist, p)


def random_layer_shape(rng: np.random.Generator, layers: int, items: int):
    if layers < 1:
        raise ValueError(f"layers: must be >= 1, got {layers}")
    if items < layers:
        raise ValueError(f"items: must be >= layers ({layers}), got {items}")
    split = rng.dirichlet(np.full(layers, 2.0))
    sizes = 1 + np.floor(split * (items - layers)).astype(np.int64)
    sizes[-1] += items - int(sizes.sum())
    names = [f"layer{g}" for g in range(layers)]
    return names, sizes, stage_costs(layers)


def generate_joint(*, layers: int = 8, items: int = 1000, dist: str = "kaiming",
                   shape: str = "random", keep_nnz: float = 0.5, keep_flops: float = 0.4,
                   seed: int = 0) -> JointBudgetProblem:
    """A random joint instance (see the module docstring)."""
    if dist not in DISTRIBUTIONS:
        raise ValueError(f"dist: unknown distribution '{dist}' (known: {', '.join(DISTRIBUTIONS)})")
    for name, frac in (("keep_nnz", keep_nnz), ("keep_flops", keep_flops)):
        fraction(frac, name, low_open=False, got=f"{frac}")
    rng = np.random.default_rng(seed)
    if shape == "random":
        names, sizes, costs = random_layer_shape(rng, layers, items)
    elif shape in NETWORKS:
        names, sizes, costs = layer_arrays(NETWORKS[shape]())
    else:
        raise ValueError(f"shape: unknown layer shape '{shape}' (known: {', '.join(SHAPES)})")
    scores = _layer_scores(rng, dist, sizes)
    ptr = np.concatenate(([0], np.cumsum(sizes)))
    p = int(ptr[-1])
    return JointBudgetProblem(
        scores=scores, group_ptr=ptr, flop_cost=costs,
        nnz_budget=int(np.floor(keep_nnz * p)),
        flop_budget=float(np.floor(keep_flops * float(sizes @ costs))),
        names=names,
    )
