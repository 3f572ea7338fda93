"""The local quadratic model of a network's loss, from per-sample gradients (``torch.func``).

For n calibration samples (x_j, y_j) the gradient of the loss of sample j with respect to
the prunable weights is the row g_j of X (n × p). The model of the loss around the trained
weights w̄, in FALCON's and CHITA's convention divided into our form (DESIGN §2a'), is

    Q(w) = ½ Σ_b ‖X_b (w − w̄)_b‖² + (λ/2)‖w − w̄‖² + aᵀ(w − w̄),
    λ = l2 · n,   a = first_order · Σ_j g_j,

so that Q/n = ½ dᵀ(F̂ + l2·I)d + first_order·ḡᵀd with F̂ = (1/n) Σ g_j g_jᵀ the empirical
Fisher (FALCON's code: λ₂ = l2·n/2 on ‖d‖², α = a·Σ g). Blocks b cut each layer into
contiguous pieces of at most ``block_size`` weights (the official block-diagonal option);
``block_size=None`` keeps the full Fisher.

The per-sample gradients are computed with ``vmap(grad(...))`` over ``functional_call`` in
eval mode (BatchNorm uses its running statistics, as in the deployed network), in chunks so
that memory stays bounded, and stored in float64 for the solves.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from pruneopt.formulations.joint_qp.problem import JointQuadraticProblem
from pruneopt.models.costs import PrunableLayer, flatten_weights, layer_ptr
from pruneopt.models.defaults import DEFAULT_L2


def per_sample_gradients(model: nn.Module, layers: list[PrunableLayer], inputs: torch.Tensor,
                         targets: torch.Tensor, *, chunk: int = 128,
                         loss=nn.functional.cross_entropy) -> np.ndarray:
    """X (n × p, float64): row j is ∇_w loss(model(x_j), y_j) over the prunable weights."""
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(f"calibration: {inputs.shape[0]} inputs but {targets.shape[0]} targets")
    if inputs.shape[0] == 0:
        raise ValueError("calibration: needs at least one sample")
    names = {id(layer.weight): layer.name + ".weight" for layer in layers}
    params = dict(model.named_parameters())
    order = [names[id(layer.weight)] for layer in layers]
    if any(name not in params for name in order):
        raise ValueError("layers: do not belong to this model")
    trainable = {name: params[name].detach() for name in order}
    frozen = {name: p.detach() for name, p in params.items() if name not in trainable}
    frozen.update(dict(model.named_buffers()))

    def sample_loss(weights, x, y):
        out = functional_call(model, {**frozen, **weights}, (x.unsqueeze(0),))
        return loss(out, y.unsqueeze(0))

    per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))
    was_training = model.training
    model.eval()
    rows = []
    try:
        for start in range(0, inputs.shape[0], chunk):
            g = per_sample(trainable, inputs[start:start + chunk], targets[start:start + chunk])
            flat = torch.cat([g[name].reshape(g[name].shape[0], -1) for name in order], dim=1)
            rows.append(flat.to(torch.float64).numpy())
    finally:
        model.train(was_training)
    X = np.concatenate(rows, axis=0)
    if not np.all(np.isfinite(X)):
        raise ValueError("calibration: the per-sample gradients are not finite")
    return X


def block_pointer(ptr: np.ndarray, block_size: int | None) -> np.ndarray | None:
    """Offsets of blocks of at most ``block_size`` items that never straddle two layers
    (``ptr`` holds the layer offsets)."""
    if block_size is None:
        return None
    if block_size < 1:
        raise ValueError(f"block_size: must be >= 1, got {block_size}")
    cuts = [np.arange(a, b, block_size) for a, b in zip(ptr[:-1], ptr[1:])]
    return np.concatenate(cuts + [ptr[-1:]]).astype(np.int64)


def quadratic_problem(model: nn.Module, layers: list[PrunableLayer], inputs: torch.Tensor,
                      targets: torch.Tensor, *, nnz_budget: int, flop_budget: float,
                      l2: float = DEFAULT_L2, first_order: float = 0.0,
                      block_size: int | None = None, w_bar: np.ndarray | None = None,
                      X: np.ndarray | None = None) -> JointQuadraticProblem:
    """The joint MIQP (a') of ``model`` around its current weights, on the given samples."""
    if not (np.isfinite(l2) and l2 > 0):
        raise ValueError(f"l2: must be a positive ridge, got {l2}")
    if not np.isfinite(first_order):
        raise ValueError(f"first_order: must be finite, got {first_order}")
    if X is None:
        X = per_sample_gradients(model, layers, inputs, targets)
    n = X.shape[0]
    w_bar = flatten_weights(layers) if w_bar is None else w_bar
    linear = first_order * X.sum(axis=0) if first_order else np.zeros(X.shape[1])
    ptr = layer_ptr(layers)
    return JointQuadraticProblem(
        X=X, w_bar=w_bar, ridge=l2 * n, linear=linear, group_ptr=ptr,
        flop_cost=np.array([layer.macs_per_weight for layer in layers], dtype=np.float64),
        nnz_budget=nnz_budget, flop_budget=flop_budget,
        block_ptr=block_pointer(ptr, block_size),
        names=tuple(layer.name for layer in layers),
    )
