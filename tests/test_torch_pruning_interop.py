"""Torch-Pruning (DepGraph) interop: pruneopt's groups agree with DepGraph's, and a pruneopt
decision exported as a pruning plan and applied by DependencyGraph has pruneopt's MACs."""

from __future__ import annotations

import pytest
import torch

import pruneopt
from pruneopt.models.channels import channel_problem
from pruneopt.models.costs import flop_counter_macs
from pruneopt.models.torch_pruning_interop import apply_plan, compare_groups, pruning_plan
from pruneopt.models.vision import torchvision_model

pytest.importorskip("torch_pruning")


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_groups_agree_and_plan_applies_with_pruneopt_macs(name, one_torch_thread):
    model = torchvision_model(name, num_classes=10, input_shape=(3, 32, 32))
    x = torch.zeros(1, 3, 32, 32)
    problem, graph = channel_problem(model, x, "l1", 0.5)
    cmp = compare_groups(model, x, graph)
    # every group DepGraph prunes is a prunable group of pruneopt, the same modules in it
    assert cmp["tp_groups"] == cmp["pruneopt_prunable"]
    assert cmp["fraction"] == 1.0
    assert {row["match"] for row in cmp["rows"]} == {"same"}
    res = pruneopt.solve(problem, "fast")
    plan = pruning_plan(graph, res.x)
    assert plan and all(entry["remove"] for entry in plan)
    pruned = apply_plan(model, x, plan)
    assert flop_counter_macs(pruned, x) == graph.macs_of_counts(graph.counts(res.x))
    assert flop_counter_macs(model, x) == graph.dense_macs  # the original is untouched


def test_cli_exports_the_plan_and_checks_it_with_torch_pruning(tmp_path, capsys,
                                                              one_torch_thread):
    """``pruneopt channels --export-tp-plan --tp-check``: the file holds the plan of the returned
    selection (rebuilt here from selection.npz), DepGraph's groups agree, and DepGraph applying
    the plan reaches pruneopt's measured MACs."""
    import json

    import numpy as np

    from pruneopt.cli import main
    from pruneopt.models.channels import build_channel_graph

    plan_file, out_dir = tmp_path / "plan.json", tmp_path / "run"
    code = main(["channels", "--model", "torchvision.models:resnet18", "--input-shape",
                 "3,32,32", "--flops", "0.5", "--solver", "fast", "--json", "--tp-check",
                 "--export-tp-plan", str(plan_file), "--out", str(out_dir)])
    out, err = capsys.readouterr()
    assert code == 0, err
    record = json.loads(out)
    tp = record["torch_pruning"]
    assert tp["groups"]["fraction"] == 1.0
    assert tp["plan_applied"] and tp["plan_macs_equal"]
    assert tp["plan_macs"] == record["macs_measured"] == record["macs_predicted"]
    exported = json.loads(plan_file.read_text())
    assert exported["macs_predicted"] == record["macs_predicted"]
    x = np.load(out_dir / "selection.npz")["x"].astype(bool)
    model = torchvision_model("resnet18", input_shape=(3, 32, 32))
    graph = build_channel_graph(model, torch.zeros(1, 3, 32, 32))
    assert exported["plan"] == pruning_plan(graph, x)
    assert all(g["reason"] == "" for g in record["groups"] if not g["fixed"])
    assert all(g["reason"] for g in record["groups"] if g["fixed"])


def test_cli_reports_torch_pruning_failing_instead_of_crashing(capsys, one_torch_thread):
    """Torch-Pruning 1.6.1 cannot build a DependencyGraph for ShuffleNetV2 (its channel shuffle):
    the record says so; pruneopt's own answer stands (exit 0)."""
    from pruneopt.cli import main

    code = main(["channels", "--model", "torchvision.models:shufflenet_v2_x0_5", "--input-shape",
                 "3,32,32", "--flops", "0.5", "--solver", "fast", "--tp-check"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Torch-Pruning could not list its groups: ZeroDivisionError" in out
    assert "Torch-Pruning could not apply the plan" in out
