"""Torch-Pruning's two modes against the exact channel selection, on real networks.

    python benchmarks/channels_torch_gaps.py [--json]

For the digits CNN (trained) and ResNet-20 (random weights) at 30/50/70% of MACs kept, with L1
filter-norm scores: the value of `uniform` (one keep ratio in every group: Torch-Pruning's local
mode) and `global-threshold` (one score threshold: its global mode) against the proven optimum
of the same channel-selection problem; gap = (V* − V)/V*.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--time-limit", type=float, default=120.0)
    args = ap.parse_args()

    from pruneopt.models import zoo
    from pruneopt.models.channels import channel_problem
    from pruneopt.models.digits import trained_model
    from pruneopt.solvers import solve

    rows = []
    for name in ("digits-cnn", "resnet20"):
        model = trained_model(name) if name.startswith("digits") else zoo.build_model(name)
        example = torch.zeros((1, *zoo.input_shape(name)))
        for keep in (0.3, 0.5, 0.7):
            problem, _ = channel_problem(model, example, "l1", keep)
            best = solve(problem, "exact", time_limit=args.time_limit)
            row = {"model": name, "keep_flops": keep, "exact_status": best.status,
                   "proven": best.proven_optimal, "optimum": best.objective,
                   "exact_seconds": best.seconds}
            for method in ("uniform", "global-threshold", "fast"):
                r = solve(problem, method)
                row[f"{method}_value"] = r.objective
                row[f"{method}_gap"] = (best.objective - r.objective) / best.objective
            rows.append(row)
            print(f"{name} {keep}: exact {best.status} {best.seconds:.1f}s, uniform gap "
                  f"{row['uniform_gap']:.4f}, global gap {row['global-threshold_gap']:.4f}",
                  file=sys.stderr)
    print(json.dumps(rows, indent=1 if not args.json else None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
