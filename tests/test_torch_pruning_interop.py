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
