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


def _record(capsys, argv):
    import json

    from pruneopt.cli import main

    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_falcon_prunes_a_torchvision_model_end_to_end(capsys, one_torch_thread):
    """``prune --method falcon`` on torchvision's MobileNetV3-Small (random weights, synthetic
    calibration data, said in the record): both budgets met on the shrunk model's counts."""
    r = _record(capsys, ["prune", "--model", "torchvision.models:mobilenet_v3_small",
                         "--input-shape", "3,32,32", "--method", "falcon", "--flops", "0.5",
                         "--nnz", "0.6", "--calibration", "2", "--no-gaps", "--json"])
    assert r["data"] == "synthetic" and r["budgets_met"]
    assert r["macs_after"] <= 0.5 * r["macs_before"] and r["nnz_after"] <= 0.6 * r["nnz_before"]


def test_allocate_on_a_torchvision_model(capsys, one_torch_thread):
    """``allocate --model`` on torchvision's SqueezeNet: a proven allocation within budget."""
    r = _record(capsys, ["allocate", "--model", "torchvision.models:squeezenet1_0",
                         "--input-shape", "3,32,32", "--flops", "0.5", "--calibration", "2",
                         "--json"])
    assert r["data"] == "synthetic" and r["budgets_met"] and r["proven_optimal"]
    assert r["macs_after"] <= 0.5 * r["macs_dense"]
