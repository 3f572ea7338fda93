"""Small models for ``--model module:function`` tests (importable because pytest puts tests/ on
sys.path)."""

import torch
from torch import nn


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2),
                         nn.ReLU(), nn.Flatten(), nn.Linear(4 * 3 * 3, 5))


def no_prunable_layers() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.ReLU())


def nan_weights() -> nn.Module:
    model = tiny_cnn()
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] = float("nan")
    return model


def not_a_module():
    return 42
