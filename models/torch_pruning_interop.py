"""Torch-Pruning (DepGraph) interop: export a pruneopt channel decision as a pruning plan that
``torch_pruning.DependencyGraph`` applies, cross-check pruneopt's groups against DepGraph's, and
run Torch-Pruning's own pruner at a MAC target (the ``[tp]`` extra, ``torch-pruning`` 1.6).

**Plan.** :func:`pruning_plan` turns a keep vector z of a :class:`~pruneopt.models.channels.
ChannelGraph` into one entry per group that loses channels: the group's *root* (the first
conv/linear producing it) and the root's output channels to remove —

    {"group": name, "root": "layer1.0.conv2", "kind": "conv" | "linear", "remove": [3, 17, ...]}

(a JSON-ready list of dicts; a folded group lists the channel in every slice). :func:`apply_plan`
builds a ``DependencyGraph`` of the model and prunes each entry with
``DG.get_pruning_group(root, tp.prune_conv_out_channels | tp.prune_linear_out_channels,
remove).prune()``; DepGraph then removes the coupled channels everywhere (BatchNorm, the
convs reading them, the residual partners). Where both tools group the same channels, the
result has exactly pruneopt's predicted MACs (``tests/test_torch_pruning_interop.py``). pruneopt's
MAC formula stays its own: Torch-Pruning's ``count_ops_and_params`` counts differently from
``FlopCounterMode`` (biases, BatchNorm, pooling), so MACs here are always FlopCounterMode/2.

**Group cross-check.** :func:`compare_groups` lists DepGraph's groups
(``get_all_groups(root_module_types=(Conv, Linear))``, the classifier ignored as Torch-Pruning's
examples do) by the set of modules whose *output* channels each removes, and pruneopt's groups by
their ``out`` members, and says for each DepGraph group whether pruneopt has the same group,
finer groups covering it (pruneopt split it: e.g. a folded or partitioned group), a coarser one,
or keeps it fixed (with pruneopt's reason).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from pruneopt.models.channels import ChannelGraph, graph_module, keep_vector


def import_torch_pruning():
    try:
        import torch_pruning as tp
    except ModuleNotFoundError:
        raise ValueError("torch_pruning: Torch-Pruning is not installed; install pruneopt with "
                         "the [tp] extra (make test does)") from None
    return tp


def _roots(graph: ChannelGraph) -> dict[int, list[str]]:
    """Per group, the conv/linear modules whose output positions carry it (forward order)."""
    out: dict[int, list[str]] = {}
    for name, info in graph.modules.items():
        if info.kind not in ("conv", "gconv", "linear"):
            continue
        for g in np.unique(info.out_gid[info.out_gid >= 0]).tolist():
            out.setdefault(g, []).append(name)
    return out


def pruning_plan(graph: ChannelGraph, keep) -> list[dict]:
    """The pruning plan of keep vector z (see the module docstring)."""
    z = keep_vector(keep, graph.num_channels)
    ptr = graph.channel_ptr
    k = graph.counts(z)
    roots = _roots(graph)
    plan = []
    for g in range(graph.num_groups):
        if k[g] == graph.sizes[g]:
            continue
        if graph.fixed[g]:
            raise ValueError(f"keep: group {graph.names[g]} is not prunable "
                             f"({graph.fixed_reason[g]})")
        if g not in roots:
            raise ValueError(f"keep: group {graph.names[g]} has no conv/linear producing it")
        root = roots[g][0]
        info = graph.modules[root]
        pos = np.flatnonzero(info.out_gid == g)
        drop = pos[~z[ptr[g] + info.out_idx[pos]]]
        plan.append({"group": graph.names[g], "root": root,
                     "kind": "linear" if info.kind == "linear" else "conv",
                     "remove": [int(i) for i in drop]})
    return plan


def apply_plan(model: nn.Module, example_input: torch.Tensor, plan: list[dict], *,
               inplace: bool = False) -> nn.Module:
    """Apply a :func:`pruning_plan` with Torch-Pruning's DependencyGraph; returns the pruned model
    (a deep copy unless ``inplace``)."""
    tp = import_torch_pruning()
    model = model if inplace else copy.deepcopy(model)
    was = model.training
    model.eval()
    DG = tp.DependencyGraph().build_dependency(model, example_inputs=example_input,
                                               verbose=False)
    # one root may carry several of pruneopt's groups (a partitioned output): prune it once
    by_root: dict[str, tuple[str, list[int]]] = {}
    for entry in plan:
        kind, idx = by_root.get(entry["root"], (entry["kind"], []))
        by_root[entry["root"]] = (kind, idx + list(entry["remove"]))
    for root, (kind, idx) in by_root.items():
        module = graph_module(model, root)
        fn = tp.prune_linear_out_channels if kind == "linear" else tp.prune_conv_out_channels
        group = DG.get_pruning_group(module, fn, sorted(set(idx)))
        group.prune()
    model.train(was)
    return model


def _tp_groups(model: nn.Module, example_input: torch.Tensor, ignored: list[nn.Module]):
    tp = import_torch_pruning()
    DG = tp.DependencyGraph().build_dependency(model, example_inputs=example_input,
                                               verbose=False)
    names = {m: n for n, m in model.named_modules()}
    groups = []
    for group in DG.get_all_groups(ignored_layers=ignored,
                                   root_module_types=(nn.Conv2d, nn.Linear)):
        outs = set()
        for dep, _ in group:
            m = dep.target.module
            if isinstance(m, nn.Conv2d | nn.Linear) and DG.is_out_channel_pruning_fn(dep.handler):
                outs.add(names.get(m, str(m)))
        if outs:
            groups.append(outs)
    return groups


def classifier_layers(model: nn.Module, graph: ChannelGraph) -> list[nn.Module]:
    """The conv/linear modules producing the groups that reach the network output."""
    out = []
    for g in np.flatnonzero(graph.fixed).tolist():
        if graph.fixed_reason[g].startswith("reaches the network output"):
            for name, role in graph.members[g]:
                if role == "out":
                    out.append(graph_module(model, name))
    return out


def compare_groups(model: nn.Module, example_input: torch.Tensor, graph: ChannelGraph) -> dict:
    """pruneopt's groups against DepGraph's ``get_all_groups`` (see the module docstring).

    Returns ``{"tp_groups", "tp_prunable_in_pruneopt", "fraction", "rows"}``: one row per
    DepGraph group with its output modules, a ``match`` (``same``, ``split`` — pruneopt has
    several prunable groups covering exactly these modules —, ``merged`` — pruneopt's group spans
    more modules —, ``fixed`` or ``missing``) and pruneopt's group names and fixed reasons."""
    was = model.training
    model.eval()
    try:
        tp_groups = _tp_groups(model, example_input, classifier_layers(model, graph))
    finally:
        model.train(was)
    outs: dict[int, set] = {}
    for g in range(graph.num_groups):
        # a depthwise conv passes its group through; DepGraph lists it among the output-pruned
        outs[g] = {m for m, r in graph.members[g] if r in ("out", "dw")}
    owner: dict[str, list[int]] = {}
    for g, ms in outs.items():
        for m in ms:
            owner.setdefault(m, []).append(g)
    rows = []
    prunable_hits = 0
    for tg in tp_groups:
        gs = sorted({g for m in tg for g in owner.get(m, [])})
        if not gs:
            match = "missing"
        elif any(graph.fixed[g] for g in gs):
            match = "fixed"
        elif len(gs) == 1 and outs[gs[0]] == tg:
            match = "same"
        elif set().union(*(outs[g] for g in gs)) == tg:
            match = "split"
        else:
            match = "merged"
        if match in ("same", "split", "merged"):
            prunable_hits += 1
        rows.append({"tp_outputs": sorted(tg), "match": match,
                     "pruneopt_groups": [graph.names[g] for g in gs],
                     "pruneopt_reasons": sorted({graph.fixed_reason[g] for g in gs
                                                 if graph.fixed[g]})})
    covered = set().union(*tp_groups) if tp_groups else set()
    only_pruneopt = [graph.names[g] for g in range(graph.num_groups)
                     if not graph.fixed[g] and not (outs[g] & covered)]
    return {"tp_groups": len(tp_groups), "tp_prunable_in_pruneopt": prunable_hits,
            "fraction": prunable_hits / len(tp_groups) if tp_groups else math.nan,
            "pruneopt_prunable": int(graph.prunable.sum()),
            "pruneopt_only": only_pruneopt, "rows": rows}


def torch_pruning_baseline(model: nn.Module, example_input: torch.Tensor, graph: ChannelGraph,
                           scores: np.ndarray, keep_flops: float, *, iterations: int = 12,
                           global_pruning: bool = False) -> dict:
    """Torch-Pruning's own pruner (``BasePruner`` with ``GroupMagnitudeImportance(p=1)``, the
    classifier ignored) at the MAC target ``keep_flops`` · dense: the largest pruning ratio (by
    bisection, ``iterations`` steps) whose pruned model's FlopCounterMode MACs meet the target.

    Returns its MACs (measured), its ratio, and the value Σ scores of the channels it keeps in
    pruneopt's terms (``scores``: a flat vector over the graph's channels; channels of groups it
    prunes that pruneopt keeps fixed are counted, and ``touches_fixed`` says so)."""
    from pruneopt.models.costs import flop_counter_macs

    tp = import_torch_pruning()
    target = keep_flops * graph.dense_macs
    ptr = graph.channel_ptr

    def run(ratio: float):
        m = copy.deepcopy(model).eval()
        ignored = classifier_layers(m, graph)
        pruner = tp.pruner.BasePruner(m, example_input,
                                      importance=tp.importance.GroupMagnitudeImportance(p=1),
                                      pruning_ratio=ratio, ignored_layers=ignored,
                                      global_pruning=global_pruning)
        names = {mod: n for n, mod in m.named_modules()}
        removed = np.zeros(graph.num_channels, dtype=bool)
        unmapped = 0
        for group in pruner.step(interactive=True):
            root = group[0].dep.target.module
            idxs = np.asarray(group[0].idxs, dtype=np.int64)
            info = graph.modules.get(names.get(root, ""))
            if info is None or info.kind not in ("conv", "gconv", "linear", "depthwise"):
                unmapped += len(idxs)
            else:
                gid, idx = info.out_gid[idxs], info.out_idx[idxs]
                ok = gid >= 0
                removed[ptr[gid[ok]] + idx[ok]] = True
                unmapped += int((~ok).sum())
            group.prune()
        return m, removed, unmapped

    lo, hi = 0.0, 1.0
    best = None
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        try:
            m, removed, unmapped = run(mid)
            macs = flop_counter_macs(m, example_input)
        except Exception:  # a ratio Torch-Pruning cannot apply: treat as infeasible upward
            hi = mid
            continue
        if macs <= target:
            best, hi = (mid, macs, removed, unmapped), mid
        else:
            lo = mid
    if best is None:
        return {"status": "no ratio met the target", "macs": None, "value": None}
    ratio, macs, removed, unmapped = best
    keep = ~removed
    value = float(np.sum(np.asarray(scores, dtype=np.float64)[keep]))
    touches_fixed = bool(np.any(removed & np.repeat(graph.fixed, graph.sizes)))
    return {"status": "ok", "ratio": ratio, "macs": int(macs), "value": value,
            "touches_fixed": touches_fixed, "unmapped_removed": int(unmapped),
            "macs_formula": int(graph.macs_of_counts(graph.counts(keep)))
            if not unmapped else None}


__all__ = ["apply_plan", "classifier_layers", "compare_groups", "import_torch_pruning",
           "pruning_plan", "torch_pruning_baseline"]
