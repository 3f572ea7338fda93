"""Bad model inputs of the library (models/): clear ``ValueError("model: ...")``."""

from __future__ import annotations

import textwrap

import pytest
import torch
from torch import nn

from pruneopt.models.channels import channel_problem
from pruneopt.models.workflows.loading import resolve_model


def test_module_function_found_in_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "my_nets_here.py").write_text(textwrap.dedent("""
        from torch import nn
        def build():
            return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2))
        def broken():
            raise RuntimeError("no weights for you")
        """))
    monkeypatch.chdir(tmp_path)
    resolved = resolve_model("my_nets_here:build", input_shape=(3, 6, 6))
    assert isinstance(resolved.model, nn.Module)
    with pytest.raises(ValueError, match=r"^model: .*no weights for you"):
        resolve_model("my_nets_here:broken", input_shape=(3, 6, 6))


def test_torchvision_spec_resolves():
    resolved = resolve_model("torchvision.models:squeezenet1_0", input_shape=(3, 32, 32))
    assert type(resolved.model).__name__ == "SqueezeNet"
    assert resolve_model("torchvision.models:squeezenet1_0").input_shape == (3, 224, 224)


def test_nothing_prunable_is_a_clear_error():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).eval()  # only the classifier
    with pytest.raises(ValueError, match=r"^model: has no prunable channel group .*output"):
        channel_problem(model, torch.zeros(1, 3, 2, 2), "l1", 0.5)
