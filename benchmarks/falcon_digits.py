"""FALCON against the baselines on real networks, and FALCON one-shot at ResNet-20 scale.

    python benchmarks/falcon_digits.py [--quick] [--json] [--skip-resnet]

1. Accuracy table: the digits MLP and CNN at 20%, 30% and 50% of MACs kept, each paired with
   an NNZ budget as in FALCON's ResNet-50 scripts (FLOPs removed 0.8/0.7/0.5 go with NNZ
   removed 0.75/0.62/0.42, i.e. kept 0.25/0.38/0.58); methods magnitude, CHITA-style,
   WoodFisher, FALCON, FALCON++ — all one-shot, no fine-tuning, n = 128 calibration samples.
2. FALCON one-shot on ResNet-20 (268,336 weights, random weights, synthetic inputs) with
   n = 128, timed end to end (gradients, projections, backsolves).

Prints one JSON object (``--json``) or a table. ``--quick`` runs the CNN at one budget only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

PAIRS = [(0.2, 0.25), (0.3, 0.38), (0.5, 0.58)]
METHODS = ["magnitude", "chita", "woodfisher", "falcon", "falcon++"]


def accuracy_table(models, pairs, methods, stages, seeds):
    from pruneopt.models.pruning import PruneSettings
    from pruneopt.models.workflows.prune import run_prune

    rows = []
    for model in models:
        for keep_flops, keep_nnz in pairs:
            for method, seed in ((m, s) for m in methods for s in range(seeds)):
                settings = PruneSettings(method=method, keep_flops=keep_flops,
                                         keep_nnz=keep_nnz, stages=stages, seed=seed)
                _, rec = run_prune(model, settings)
                last = rec["stages"][-1]
                rows.append({"seed": seed,
                    "model": model, "flops_kept_asked": keep_flops, "nnz_kept_asked": keep_nnz,
                    "method": method, "accuracy_before": rec["accuracy_before"],
                    "accuracy_after": rec["accuracy_after"], "macs_kept": rec["macs_kept"],
                    "nnz_kept": rec["nnz_kept"], "budgets_met": rec["budgets_met"],
                    "quadratic_objective_last_stage": last.get("quadratic_objective"),
                    "seconds": rec["seconds"]})
                print(f"{model} {keep_flops:.2f}/{keep_nnz:.2f} {method:10s} "
                      f"acc {rec['accuracy_after']:.4f} ({rec['seconds']:.1f}s)", file=sys.stderr)
    return rows


def summarise(rows):
    """Mean and standard deviation of accuracy over calibration draws, per cell."""
    import numpy as np

    cells = {}
    for r in rows:
        cells.setdefault((r["model"], r["flops_kept_asked"], r["nnz_kept_asked"], r["method"]),
                         []).append(r["accuracy_after"])
    return [{"model": k[0], "flops_kept_asked": k[1], "nnz_kept_asked": k[2], "method": k[3],
             "accuracy_mean": float(np.mean(v)), "accuracy_std": float(np.std(v)),
             "draws": len(v)} for k, v in cells.items()]


def resnet20_timing():
    from pruneopt.models.pruning import PruneSettings
    from pruneopt.models.workflows.prune import run_prune

    t0 = time.perf_counter()
    _, rec = run_prune("resnet20", PruneSettings(method="falcon", keep_flops=0.6, keep_nnz=0.6),
                       n_calibration=128)
    stage = rec["stages"][0]
    return {"model": "resnet20", "weights": rec["nnz_dense"], "n": 128,
            "keep_flops": 0.6, "keep_nnz": 0.6, "seconds_total": time.perf_counter() - t0,
            "seconds_falcon": stage["seconds"],
            "seconds_projection": stage["seconds_projection"],
            "seconds_backsolve": stage["seconds_backsolve"], "iterations": stage["iterations"],
            "projections": stage["projections"], "budgets_met": rec["budgets_met"],
            "cores": os.cpu_count()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--skip-resnet", action="store_true")
    ap.add_argument("--seeds", type=int, default=3,
                    help="seeds per cell: each seed trains its own digits model and draws its own calibration set")
    args = ap.parse_args()
    if args.quick:
        table = accuracy_table(["digits-cnn"], [(0.2, 0.25)], METHODS, stages=5, seeds=1)
    else:
        table = accuracy_table(["digits-mlp", "digits-cnn"], PAIRS, METHODS, stages=20,
                               seeds=args.seeds)
    out = {"accuracy": table, "summary": summarise(table)}
    if not args.skip_resnet:
        out["resnet20_one_shot"] = resnet20_timing()
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        for r in out["summary"]:
            print(f"{r['model']:11s} {r['flops_kept_asked']:.2f} {r['nnz_kept_asked']:.2f} "
                  f"{r['method']:10s} {r['accuracy_mean']:.4f} ± {r['accuracy_std']:.4f}")
        if "resnet20_one_shot" in out:
            print(out["resnet20_one_shot"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
