"""Random layer budget allocation instances, reproducible by seed.

Layers (``shape``):

* ``random`` — layer g has s_g prunable weights, log-uniform in [10^3, 2·10^6], and costs
  c_g MACs per weight, the H·W of its stage (32², 16², 8², 4² over the depth; 1 for a final
  classifier), as in :func:`pruneopt.formulations.joint.generate.random_layer_shape`;
* ``resnet20``, ``mobilenetv1``, ``resnet50`` — the real layer tables of
  :mod:`pruneopt.formulations.network_shapes` (``layers`` is then ignored).

Options are keep fractions ρ_j = j / m, j = 1..m (m = ``options``; ``option_labels`` holds them):
n_{gj} = round(ρ_j s_g) weights, f_{gj} = n_{gj} c_g MACs (integers).

Losses are convex-ish decreasing curves with noise: e_{gj} = a_g (ρ_j^{−β_g} − 1) · exp(η ε_{gj}),
a_g ~ LogNormal(0, 1) (a layer's sensitivity), β_g ~ U(0.3, 1.5) (its curvature), ε ~ N(0, 1),
η = ``noise``; e = 0 at ρ = 1 (the dense layer loses nothing). The noise makes some options fall
off the lower convex hull, as measured loss tables do.

Budgets are fractions kept of the dense network: K = ⌊keep_nnz · Σ_g s_g⌋ and
F = ⌊keep_flops · Σ_g s_g c_g⌋; ``None`` leaves that budget out.
"""

from __future__ import annotations

import numpy as np

from pruneopt.formulations.allocation.problem import AllocationProblem
from pruneopt.formulations.checks import fraction
from pruneopt.formulations.network_shapes import NETWORKS, layer_arrays
from pruneopt.formulations.sampling import stage_costs

SHAPES = ("random",) + tuple(NETWORKS)


def random_allocation_layers(rng: np.random.Generator, layers: int):
    """(names, sizes int64[L], MACs per weight float64[L]) of a random CNN-like network."""
    if layers < 1:
        raise ValueError(f"layers: must be >= 1, got {layers}")
    sizes = np.rint(10.0 ** rng.uniform(3.0, np.log10(2e6), layers)).astype(np.int64)
    return [f"layer{g}" for g in range(layers)], sizes, stage_costs(layers)


def generate_allocation(layers: int = 20, options: int = 10, seed: int = 0, *,
                        keep_nnz: float | None = 0.5, keep_flops: float | None = 0.4,
                        shape: str = "random", noise: float = 0.05) -> AllocationProblem:
    """A random allocation instance (see the module docstring)."""
    if options < 1:
        raise ValueError(f"options: must be >= 1, got {options}")
    if not noise >= 0:
        raise ValueError(f"noise: must be >= 0, got {noise}")
    for name, frac in (("keep_nnz", keep_nnz), ("keep_flops", keep_flops)):
        fraction(frac, name, low_open=False, optional=True, got=f"{frac}")
    rng = np.random.default_rng(seed)
    if shape == "random":
        names, sizes, costs = random_allocation_layers(rng, layers)
    elif shape in NETWORKS:
        names, sizes, costs = layer_arrays(NETWORKS[shape]())
    else:
        raise ValueError(f"shape: unknown layer shape '{shape}' (known: {', '.join(SHAPES)})")
    L = sizes.size
    rho = np.arange(1, options + 1, dtype=np.float64) / options  # keep fractions
    nnz = np.rint(rho[None, :] * sizes[:, None]).astype(np.int64)  # (L, m)
    flops = nnz * costs[:, None]
    a = np.exp(rng.standard_normal(L))
    beta = rng.uniform(0.3, 1.5, L)
    curve = a[:, None] * (rho[None, :] ** -beta[:, None] - 1.0)
    loss = curve * np.exp(noise * rng.standard_normal((L, options)))
    total_nnz = int(sizes.sum())
    total_flops = float(sizes @ costs)
    return AllocationProblem(
        loss=loss.ravel(), nnz=nnz.ravel(), flops=flops.ravel(),
        option_ptr=np.arange(0, L * options + 1, options, dtype=np.int64),
        nnz_budget=None if keep_nnz is None else int(np.floor(keep_nnz * total_nnz)),
        flop_budget=None if keep_flops is None else float(np.floor(keep_flops * total_flops)),
        names=names, option_labels=np.tile(rho, L),
    )
