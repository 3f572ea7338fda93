"""torchvision architectures end to end: channel groups, fast and exact selection, measured MACs,
FALCON, and Torch-Pruning's groups and pruner — one JSON row per model (random weights,
synthetic data, 3×64×64 inputs).

    python benchmarks/torchvision_zoo.py --json                      # the whole table
    python benchmarks/torchvision_zoo.py --models resnet18,vit_b_16 --budgets 0.5 --no-falcon

Per model and MAC budget (fraction kept): ``fast`` and ``exact`` (status, certified gap,
seconds), the shrunk model's FlopCounterMode/2 against the formulation's count, and the value
(Σ of the L1 filter scores of the channels kept, every group) of Torch-Pruning's own pruner
(``BasePruner``, GroupMagnitudeImportance(p=1), one ratio for every layer, bisected to the same
MAC target) beside pruneopt's. ``tp_groups_prunable_in_pruneopt``: the share of the groups that
DepGraph prunes that pruneopt can prune too. FALCON: ``prune --method falcon`` on 4 synthetic
calibration samples (per-sample gradients are n × p float64: models above ``--falcon-max-weights``
are skipped and say so). Progress goes to stderr; a JSON line per model to stdout (with
``--json``, one JSON document at the end instead).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback

import numpy as np
import torch

MODELS = ("resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0",
          "shufflenet_v2_x1_0", "densenet121", "squeezenet1_0", "vgg11_bn", "regnet_x_400mf",
          "convnext_tiny", "vit_b_16", "googlenet")


def _solve_row(problem, graph, model, x, solver, time_limit):
    import pruneopt
    from pruneopt.models.costs import flop_counter_macs
    from pruneopt.models.shrink import shrink_model

    t = time.perf_counter()
    res = pruneopt.solve(problem, solver, time_limit=time_limit)
    row = {"status": res.status, "gap": res.gap, "seconds": round(time.perf_counter() - t, 3),
           "method": res.options.get("method")}
    if res.x is not None and res.feasible:
        k = graph.counts(res.x)
        pred = graph.macs_of_counts(k)
        shrunk = shrink_model(model, graph, res.x, example_input=x)
        meas = flop_counter_macs(shrunk, x)
        row.update(macs_predicted=int(pred), macs_measured=int(meas),
                   measured_equals_predicted=bool(meas == pred),
                   budget_met=bool(pred <= problem.flop_budget), objective=res.objective)
    return row, res


def _falcon(name, shape, max_weights):
    from pruneopt.models.costs import prunable_layers, total_weights
    from pruneopt.models.pruning import PruneSettings
    from pruneopt.models.vision import torchvision_model
    from pruneopt.models.workflows.prune import run_prune

    model = torchvision_model(name, input_shape=shape)
    p = total_weights(prunable_layers(model, torch.zeros(1, *shape)))
    if p > max_weights:
        return {"ok": None, "skipped": f"{p} weights > --falcon-max-weights {max_weights} "
                                       "(per-sample gradients are n x p float64)"}
    spec = f"torchvision.models:{name}" if not name.startswith("vit_") else None
    if spec is None:
        return {"ok": None, "skipped": "module:function builds ViT at 224x224; use 224 inputs"}
    t = time.perf_counter()
    try:
        _, rec = run_prune(spec, PruneSettings(method="falcon", keep_flops=0.5, keep_nnz=0.6,
                                               max_iter=2),
                           input_shape=shape, n_calibration=4)
    except Exception as exc:  # report, do not stop the table
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": bool(rec["budgets_met"]), "macs_kept": rec["macs_kept"],
            "nnz_kept": rec["nnz_kept"], "data": rec["data"], "weights": p,
            "seconds": round(time.perf_counter() - t, 1)}


def run_model(name, budgets, *, time_limit, falcon, max_weights, shape=(3, 64, 64)):
    from pruneopt.models.channel_importance import channel_scores
    from pruneopt.models.channels import build_channel_graph, channel_problem
    from pruneopt.models.vision import torchvision_model

    row = {"model": name, "input": list(shape)}
    model = torchvision_model(name, input_shape=shape)
    x = torch.zeros(1, *shape)
    t = time.perf_counter()
    graph = build_channel_graph(model, x)
    row.update(trace_seconds=round(time.perf_counter() - t, 3), groups=graph.num_groups,
               prunable=int(graph.prunable.sum()), unknown_ops=len(graph.unknown_ops),
               dense_macs=int(graph.dense_macs),
               fixed_reasons=sorted({r for r, f in zip(graph.fixed_reason, graph.fixed,
                                                       strict=True) if f})[:6])
    scores = channel_scores(model, graph, "l1")
    fixed_value = float(scores[np.repeat(graph.fixed, graph.sizes)].sum())
    try:
        from pruneopt.models.torch_pruning_interop import compare_groups

        cmp = compare_groups(model, x, graph)
        row.update(tp_groups=cmp["tp_groups"], tp_groups_prunable_in_pruneopt=cmp["fraction"],
                   tp_differences=[r for r in cmp["rows"] if r["match"] != "same"][:8])
    except Exception as exc:
        row["tp_groups_error"] = f"{type(exc).__name__}: {exc}"[:300]
    row["budgets"] = {}
    for b in budgets:
        problem, _ = channel_problem(model, x, scores, b, graph=graph)
        cell = {}
        for solver in ("fast", "exact"):
            print(f"  {name} {b} {solver}", file=sys.stderr, flush=True)
            cell[solver], res = _solve_row(problem, graph, model, x, solver, time_limit)
            if "objective" in cell[solver]:
                cell[solver]["value"] = cell[solver]["objective"] + fixed_value
        try:
            from pruneopt.models.torch_pruning_interop import torch_pruning_baseline

            print(f"  {name} {b} torch-pruning", file=sys.stderr, flush=True)
            t = time.perf_counter()
            cell["torch_pruning"] = torch_pruning_baseline(model, x, graph, scores, b,
                                                           iterations=8)
            cell["torch_pruning"]["seconds"] = round(time.perf_counter() - t, 2)
        except Exception as exc:
            cell["torch_pruning"] = {"status": f"{type(exc).__name__}: {exc}"[:300]}
        row["budgets"][str(b)] = cell
    if falcon:
        print(f"  {name} falcon", file=sys.stderr, flush=True)
        row["falcon"] = _falcon(name, shape, max_weights)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--budgets", default="0.3,0.5")
    ap.add_argument("--time-limit", type=float, default=120.0)
    ap.add_argument("--no-falcon", action="store_true")
    ap.add_argument("--falcon-max-weights", type=int, default=30_000_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for name in args.models.split(","):
        print(f"{name} ...", file=sys.stderr, flush=True)
        try:
            row = run_model(name, [float(b) for b in args.budgets.split(",")],
                            time_limit=args.time_limit, falcon=not args.no_falcon,
                            max_weights=args.falcon_max_weights)
        except Exception as exc:
            row = {"model": name, "error": f"{type(exc).__name__}: {exc}",
                   "traceback": traceback.format_exc()[-1500:]}
        rows.append(row)
        if not args.json:
            print(json.dumps(row, default=float), flush=True)
    if args.json:
        print(json.dumps({"machine": "shared 2-core VM, torch.set_num_threads(1)",
                          "rows": rows}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
