"""FALCON (and the baselines) against the proven optimum of the full joint MIQP on small layers.

    python benchmarks/miqp_small.py [--instances 50] [--p-min 20] [--p-max 40] [--json]

Each instance is ``models.small_instances.sampled_problem``: p weights drawn from 3 layers of
the trained digits CNN, the quadratic model of 16 calibration samples, budgets keep 50% of the
weights and 40% of their MACs. The optimum is the ``exact`` joint-qp solver (proven: its bound
meets its objective). Reported per method: the relative excess (Q_method − Q*)/|Q*| as a
distribution (quantiles), how often the method is optimal, and seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

METHODS = ["falcon", "chita", "woodfisher", "magnitude"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--instances", type=int, default=50)
    ap.add_argument("--p-min", type=int, default=20)
    ap.add_argument("--p-max", type=int, default=40)
    ap.add_argument("--exact", default="exact")
    ap.add_argument("--time-limit", type=float, default=120.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from pruneopt.models.small_instances import sampled_problem
    from pruneopt.solvers import solve

    rows = []
    rng = np.random.default_rng(0)
    for i in range(args.instances):
        p = int(rng.integers(args.p_min, args.p_max + 1))
        problem = sampled_problem(p=p, seed=i)
        t0 = time.perf_counter()
        opt = solve(problem, args.exact, time_limit=args.time_limit)
        row = {"instance": i, "p": problem.num_items, "exact_status": opt.status,
               "proven": opt.proven_optimal, "optimum": opt.objective,
               "exact_seconds": time.perf_counter() - t0}
        for m in METHODS:
            r = solve(problem, m)
            row[m] = r.objective
            row[f"{m}_seconds"] = r.seconds
            row[f"{m}_excess"] = (r.objective - opt.objective) / max(abs(opt.objective), 1e-300)
        rows.append(row)
        print(f"{i:3d} p={row['p']:2d} {opt.status} {opt.seconds:.2f}s  falcon excess "
              f"{row['falcon_excess']:.3g}", file=sys.stderr)
    proven = [r for r in rows if r["proven"]]
    summary = {"instances": len(rows), "proven": len(proven),
               "exact_seconds_median": float(np.median([r["exact_seconds"] for r in rows])),
               "exact_seconds_max": float(np.max([r["exact_seconds"] for r in rows]))}
    for m in METHODS:
        ex = np.array([r[f"{m}_excess"] for r in proven])
        summary[m] = {"optimal_share": float(np.mean(ex <= 1e-9)) if ex.size else None,
                      "excess_quantiles": {q: float(np.quantile(ex, q)) for q in
                                           (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)} if ex.size else None,
                      "excess_mean": float(ex.mean()) if ex.size else None,
                      "never_below_optimum": bool(np.all(ex >= -1e-9))}
    out = {"summary": summary, "rows": rows}
    print(json.dumps(out if args.json else summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
