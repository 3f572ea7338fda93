"""Cost extraction: the prunable layers of a PyTorch model and what each of their weights costs.

The selection problems (DESIGN §2) need, for every prunable weight, its cost in MACs
(multiply-accumulates) per input sample. Within one layer every weight costs the same:

* a ``Conv2d`` weight (grouped and depthwise included) is used once per output position, so it
  costs H_out·W_out;
* a ``Linear`` weight is used once per output row, so it costs prod(output.shape[1:-1]) — 1 for
  the usual 2-D input, the sequence length for a (batch, seq, features) input.

These are measured, not derived from layer hyper-parameters: one no-grad forward pass with hooks
records each layer's actual output shapes (so padding, stride, dilation, pooling and reshapes are
all accounted for, and a layer called twice per forward pays twice). Biases, BatchNorm,
activations and pooling are not counted, which is exactly what
``torch.utils.flop_counter.FlopCounterMode`` counts (2 FLOPs per MAC, convolutions and matrix
products only) — :func:`flop_counter_macs` is the independent reference the tests compare with.

The flat weight vector of a model (:func:`flatten_weights`, :func:`layer_ptr`) is laid out layer
by layer, row-major, which is the item order of :class:`~pruneopt.formulations.joint.problem.
JointBudgetProblem`; :func:`joint_problem` builds one from scores over that vector.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
from torch import nn

from pruneopt.formulations.checks import fraction
from pruneopt.formulations.joint.problem import JointBudgetProblem


@dataclass(eq=False)
class PrunableLayer:
    """One prunable layer: its qualified name, the module, and the MACs per sample each of its
    weights costs."""

    name: str
    module: nn.Module
    macs_per_weight: int

    @property
    def weight(self) -> nn.Parameter:
        return self.module.weight

    @property
    def numel(self) -> int:
        return int(self.module.weight.numel())

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.module.weight.shape)

    @property
    def macs(self) -> int:
        return self.numel * self.macs_per_weight


_PRUNABLE = (nn.Conv2d, nn.Linear)


def _saved_modes(model: nn.Module) -> list[tuple[nn.Module, bool]]:
    # per module, not just the root: a caller may have put some submodules in another mode
    return [(m, m.training) for m in model.modules()]


def _restore_modes(saved: list[tuple[nn.Module, bool]]) -> None:
    for m, mode in saved:
        m.training = mode


def _batch_size(example_input: torch.Tensor) -> int:
    if not isinstance(example_input, torch.Tensor) or example_input.dim() < 1:
        raise ValueError("input_shape: the example input must be a tensor with a batch dimension")
    n = int(example_input.shape[0])
    if n < 1:
        raise ValueError("input_shape: the example input has an empty batch")
    return n


def _per_sample(total: int, batch: int, what: str) -> int:
    if total % batch:
        raise ValueError(
            f"input_shape: {what} performs {total} weight uses for a batch of {batch}, "
            "which is not a whole number per sample"
        )
    return total // batch


def prunable_layers(model: nn.Module, example_input: torch.Tensor) -> list[PrunableLayer]:
    """Every ``Conv2d`` and ``Linear`` of ``model`` that runs in a forward pass on
    ``example_input``, in ``named_modules()`` order, with its per-weight MAC cost per sample.

    The forward pass runs once in eval mode under ``torch.no_grad()``; every module's training flag
    is restored afterwards. Layers that never run are left out; a module called several times
    accumulates the cost of every call; modules that share one weight tensor are reported once
    (under the first name) with their costs added, so the flat weight vector holds each weight once.
    """
    batch = _batch_size(example_input)
    candidates = [(name, m) for name, m in model.named_modules() if isinstance(m, _PRUNABLE)]
    if not candidates:
        raise ValueError("model: has no prunable layers (Conv2d or Linear)")

    # uses[id(module)] = number of times each of its weights is applied, summed over the batch
    uses: dict[int, int] = {}

    def hook(module: nn.Module, _inputs, output) -> None:
        # every weight is used once per output element of its output channel / feature
        out_units = module.out_channels if isinstance(module, nn.Conv2d) else module.out_features
        uses[id(module)] = uses.get(id(module), 0) + output.numel() // out_units

    handles = [m.register_forward_hook(hook) for _, m in candidates]
    saved = _saved_modes(model)
    try:
        model.eval()
        with torch.no_grad():
            model(example_input)
    except Exception as exc:  # any failure of the user's forward is an input/model mismatch
        raise ValueError(
            f"input_shape: the model does not accept inputs of shape "
            f"{tuple(example_input.shape)}: {exc}"
        ) from exc
    finally:
        for h in handles:
            h.remove()
        _restore_modes(saved)

    layers: list[PrunableLayer] = []
    by_weight: dict[int, PrunableLayer] = {}
    for name, m in candidates:
        if id(m) not in uses:
            continue
        cost = _per_sample(uses[id(m)], batch, f"layer {name}")
        tied = by_weight.get(id(m.weight))
        if tied is not None:  # the same Parameter in another module: one set of weights
            tied.macs_per_weight += cost
            continue
        layer = PrunableLayer(name=name, module=m, macs_per_weight=cost)
        by_weight[id(m.weight)] = layer
        layers.append(layer)
    if not layers:
        raise ValueError("model: has no prunable layers (Conv2d or Linear) that run in forward")
    for layer in layers:
        if not bool(torch.isfinite(layer.weight.detach()).all()):
            raise ValueError(f"model: weights of layer {layer.name} are not finite")
    return layers


def total_macs(layers: list[PrunableLayer]) -> int:
    """Dense MACs per sample of the prunable layers."""
    return sum(layer.macs for layer in layers)


def total_weights(layers: list[PrunableLayer]) -> int:
    """Number of prunable weights p."""
    return sum(layer.numel for layer in layers)


def sparse_macs(layers: list[PrunableLayer]) -> int:
    """MACs per sample of the pruned model, counted per nonzero weight:
    Σ_layers nnz(weight)·macs_per_weight (the quantity a FLOP budget constrains)."""
    return sum(int(torch.count_nonzero(layer.weight.detach())) * layer.macs_per_weight
               for layer in layers)


def flop_counter_macs(model: nn.Module, example_input: torch.Tensor) -> int:
    """MACs per sample as counted by ``torch.utils.flop_counter.FlopCounterMode`` (its total
    FLOPs / 2 / batch), in eval mode without gradients — an independent reference for
    :func:`prunable_layers`."""
    from torch.utils.flop_counter import FlopCounterMode

    batch = _batch_size(example_input)
    saved = _saved_modes(model)
    try:
        model.eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example_input)
    finally:
        _restore_modes(saved)
    flops = int(counter.get_total_flops())
    return _per_sample(flops // 2, batch, "the model")


# ------------------------------------------------------------------------------------ flat vector
def layer_ptr(layers: list[PrunableLayer]) -> np.ndarray:
    """Offsets int64[L+1]: layer g owns entries ptr[g]:ptr[g+1] of the flat weight vector."""
    sizes = np.fromiter((layer.numel for layer in layers), dtype=np.int64, count=len(layers))
    return np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(sizes)))


def flatten_weights(layers: list[PrunableLayer]) -> np.ndarray:
    """The weights of all layers as one float64 vector, layer by layer, each row-major."""
    if not layers:
        return np.zeros(0, dtype=np.float64)
    with torch.no_grad():
        parts = [layer.weight.detach().reshape(-1).to("cpu", torch.float64) for layer in layers]
        return torch.cat(parts).numpy()


def assign_weights(layers: list[PrunableLayer], w: np.ndarray) -> None:
    """Write a flat vector (as from :func:`flatten_weights`) back into the layers, in place,
    in each weight's own dtype and device."""
    w = np.asarray(w)
    p = total_weights(layers)
    if w.ndim != 1 or w.shape[0] != p:
        raise ValueError(f"w: must be a vector of length p={p}, got shape {w.shape}")
    if w.dtype.kind not in "biuf":
        raise ValueError(f"w: must hold real numbers, got dtype {w.dtype}")
    ptr = layer_ptr(layers)
    src = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float64))
    with torch.no_grad():
        for g, layer in enumerate(layers):
            weight = layer.weight
            chunk = src[ptr[g]:ptr[g + 1]].reshape(weight.shape)
            weight.copy_(chunk.to(device=weight.device, dtype=weight.dtype))


# ------------------------------------------------------------------------------------ problems
def _fraction(value, field: str) -> Fraction:
    """A budget fraction in (0, 1], as the exact decimal the caller wrote (``Fraction(repr(x))``),
    so that e.g. 0.29 of 100 weights is 29 and not floor(28.999999999999996)."""
    return Fraction(repr(fraction(value, field)))


def joint_problem(layers: list[PrunableLayer], scores: np.ndarray, *, keep_flops: float,
                  keep_nnz: float) -> JointBudgetProblem:
    """FALCON's joint FLOP/NNZ selection problem for ``layers`` with the given item scores.

    Keeps at most floor(keep_nnz·p) weights and at most keep_flops·(dense MACs) MACs per sample;
    items are the flat weight vector's entries (see :func:`layer_ptr`), each layer one group whose
    items cost ``macs_per_weight``.
    """
    f_flops = _fraction(keep_flops, "flops")
    f_nnz = _fraction(keep_nnz, "nnz")
    scores = np.asarray(scores)
    p = total_weights(layers)
    if scores.ndim != 1 or scores.shape[0] != p:
        raise ValueError(f"scores: must be a vector of length p={p}, got shape {scores.shape}")
    return JointBudgetProblem(
        scores=scores,
        group_ptr=layer_ptr(layers),
        flop_cost=np.array([layer.macs_per_weight for layer in layers], dtype=np.float64),
        nnz_budget=math.floor(f_nnz * p),
        flop_budget=float(f_flops * total_macs(layers)),
        names=tuple(layer.name for layer in layers),
    )
