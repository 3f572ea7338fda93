#!/usr/bin/env python
"""Scale benchmark of the layer budget allocation (multiple-choice knapsack): exact vs fast.

    python benchmarks/allocation_scale.py [--quick] [--seeds 5] [--layers 100] [--options 50]
                                          [--keep-nnz 0.5] [--keep-flops 0.4] [--repeats 3]
                                          [--out results.json]

For each seed, a generated instance (:func:`pruneopt.formulations.allocation.generate.
generate_allocation`: random CNN-like layers with 10^3..2·10^6 weights, keep fractions j/m as
options, convex-ish noisy loss curves, both budgets active) is solved by

* ``exact`` — the best proven solver (the DP when its state space is small; on these instances,
  with real NNZ counts, HiGHS on the core left by reduced-cost fixing), and
* ``fast`` — the Lagrangian dual over the layers' convex hulls with rounding and moves,

each ``--repeats`` times (median wall time of ``pruneopt.solve``, model building and the result
check included). Per seed it reports both times, fast's certified gap (``result.gap``: from its
own LP bound) and its true gap to the proven optimum (fast − exact) / |exact|, and how exact
proved it (method, core size, HiGHS nodes). ``summary`` holds the targets as measured value and
pass/fail: exact ≤ 1 s on every seed (max of the medians), fast's true gap ≤ 0.5 % on every seed.

One JSON object goes to stdout; progress lines go to stderr. ``--quick``: 2 seeds, 1 repeat.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np
from harness import emit, logger

import pruneopt
from pruneopt.formulations.allocation.generate import generate_allocation

EXACT_TARGET_S = 1.0
TRUE_GAP_TARGET = 0.005


log = logger()


def timed(problem, name: str, repeats: int):
    runs = [pruneopt.solve(problem, name) for _ in range(repeats)]
    return runs[-1], statistics.median(r.seconds for r in runs), [r.seconds for r in runs]


def run_seed(seed: int, args) -> dict:
    p = generate_allocation(args.layers, args.options, seed, keep_nnz=args.keep_nnz,
                            keep_flops=args.keep_flops)
    exact, t_exact, all_exact = timed(p, "exact", args.repeats)
    fast, t_fast, all_fast = timed(p, "fast", args.repeats)
    true_gap = ((fast.objective - exact.objective) / abs(exact.objective)
                if exact.proven_optimal else float("nan"))
    row = {
        "seed": seed,
        "layers": p.num_layers, "options": p.num_options,
        "nnz_budget": p.nnz_budget, "flop_budget": p.flop_budget,
        "exact": {
            "status": exact.status, "proven_optimal": exact.proven_optimal,
            "objective": exact.objective, "bound": exact.bound, "gap": exact.gap,
            "median_s": t_exact, "runs_s": all_exact,
            "method": exact.options.get("method"),
            "core_options": exact.info.get("core_options"), "nodes": exact.info.get("nodes"),
            "ladder": exact.info.get("stages"),
        },
        "fast": {
            "status": fast.status, "objective": fast.objective, "bound": fast.bound,
            "certified_gap": fast.gap, "true_gap": true_gap,
            "median_s": t_fast, "runs_s": all_fast,
            "dual_evaluations": fast.info.get("dual_evaluations"),
        },
        "crosscheck_ok": bool(exact.bound <= fast.objective * (1 + 1e-9)
                              and fast.bound <= exact.objective * (1 + 1e-9)),
    }
    log(f"seed {seed}: exact {exact.status} {t_exact:.3f}s (core {row['exact']['core_options']}, "
        f"{row['exact']['nodes']} nodes); fast {t_fast * 1e3:.1f} ms, certified gap "
        f"{fast.gap:.2e}, true gap {true_gap:.2e}")
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 seeds, 1 repeat")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--layers", type=int, default=100)
    ap.add_argument("--options", type=int, default=50)
    ap.add_argument("--keep-nnz", type=float, default=0.5)
    ap.add_argument("--keep-flops", type=float, default=0.4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.repeats = min(args.seeds, 2), 1
    pruneopt.solve(generate_allocation(5, 4, 0), "exact")  # import and warm up the backends
    start = time.perf_counter()
    rows = [run_seed(seed, args) for seed in range(args.seeds)]
    exact_max = max(r["exact"]["median_s"] for r in rows)
    gap_max = max(r["fast"]["true_gap"] for r in rows)
    summary = {
        "exact_all_proven": all(r["exact"]["proven_optimal"] for r in rows),
        "exact_max_median_s": exact_max,
        "exact_median_of_medians_s": statistics.median(r["exact"]["median_s"] for r in rows),
        "exact_target_s": EXACT_TARGET_S,
        "exact_pass": bool(exact_max <= EXACT_TARGET_S),
        "fast_max_median_s": max(r["fast"]["median_s"] for r in rows),
        "fast_max_certified_gap": max(r["fast"]["certified_gap"] for r in rows),
        "fast_max_true_gap": gap_max,
        "true_gap_target": TRUE_GAP_TARGET,
        "fast_pass": bool(gap_max <= TRUE_GAP_TARGET),
        "crosscheck_ok": all(r["crosscheck_ok"] for r in rows),
    }
    out = {
        "benchmark": "allocation_scale",
        "settings": {"layers": args.layers, "options": args.options, "seeds": args.seeds,
                     "repeats": args.repeats, "keep_nnz": args.keep_nnz,
                     "keep_flops": args.keep_flops, "quick": args.quick},
        "machine": {"python": platform.python_version(), "numpy": np.__version__,
                    "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None},
        "instances": rows,
        "summary": summary,
        "wall_s": time.perf_counter() - start,
    }
    emit(out, args.out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
