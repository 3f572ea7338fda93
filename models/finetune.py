"""Fine-tuning of a pruned network with its masks held fixed (gradual pruning, FALCON++).

SGD with momentum 0.9 and weight decay 3.7518e-5 (the released gradual scripts), a cosine
learning-rate schedule over all steps of the call, and the masks re-applied after every
optimizer step so that pruned weights stay exactly zero (momentum and weight decay would
otherwise move them).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from pruneopt.models.costs import PrunableLayer

MOMENTUM = 0.9
WEIGHT_DECAY = 3.7518e-5


def apply_masks(layers: list[PrunableLayer], masks: list[np.ndarray]) -> None:
    """Zero every pruned weight in place (``masks[l]`` is a bool array of the layer's shape)."""
    with torch.no_grad():
        for layer, mask in zip(layers, masks):
            w = layer.weight
            w.mul_(torch.as_tensor(mask.reshape(w.shape), dtype=w.dtype, device=w.device))


def fine_tune(model: nn.Module, layers: list[PrunableLayer], masks: list[np.ndarray],
              inputs: torch.Tensor, targets: torch.Tensor, *, epochs: int, lr: float = 0.01,
              batch_size: int = 64, seed: int = 0) -> list[float]:
    """Train ``epochs`` passes over (inputs, targets) keeping the masks; the loss per epoch."""
    if epochs < 0:
        raise ValueError(f"finetune_epochs: must be >= 0, got {epochs}")
    if epochs == 0:
        return []
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM,
                          weight_decay=WEIGHT_DECAY)
    n = inputs.shape[0]
    steps = epochs * math.ceil(n / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    was_training = model.training
    model.train()
    losses = []
    try:
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen)
            total = 0.0
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                opt.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(model(inputs[idx]), targets[idx])
                loss.backward()
                opt.step()
                sched.step()
                apply_masks(layers, masks)
                total += loss.item() * idx.numel()
            losses.append(total / n)
    finally:
        model.train(was_training)
    return losses
