#!/usr/bin/env python
"""Scale benchmark of the ``exact`` solver (solvers/fast/exact_joint.py), printing JSON.

    python benchmarks/exact_scale.py [--quick] [--repeats 2] [--highs-limit 600] [--out FILE]

1. ``resnet50`` — ResNet-50 with downsample convs (25,502,912 weights, 54 layers, 6 distinct MACs
   per weight), Kaiming-like scores, budgets (keep_flops, keep_nnz) in {(0.2, 0.25), (0.4, 0.48),
   (0.6, 0.68)}: wall time of the proven-optimal solve against one ``np.sort`` of the same scores,
   measured alternately in the same process (median of ``--repeats``), their ratio (target ≤ 5),
   the proof (status, gap, bound − objective), the search (classes, core items, nodes, rounds,
   seconds per phase), and the peak memory of a separate solve under tracemalloc, beyond what was
   live before it, in units of ``scores.nbytes`` (target ≤ 3).
2. ``p1e5`` — ``generate_joint(layers=20, items=100000, dist='kaiming', keep_flops=0.4,
   keep_nnz=0.48)``: exact against ``highs`` with reduced-cost fixing (default) and without it
   (``fixing=False``): objectives, whether they agree within 1e-9, and the times.

``--quick`` uses ResNet-20 (268,336 weights) instead of ResNet-50 and skips HiGHS without fixing.
The JSON also records the machine and the load average, since timings are noisy on shared hosts.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import time

import numpy as np
from harness import emit, loadavg, logger, traced_peak

import pruneopt
from pruneopt.formulations.joint.generate import generate_joint
from pruneopt.solvers.fast.joint.exact import solve_exact

BUDGETS = ((0.2, 0.25), (0.4, 0.48), (0.6, 0.68))
TARGET_RATIO = 5.0
TARGET_MEMORY = 3.0


log = logger()


def summary(r, wall: float) -> dict:
    return {"status": r.status, "proven_optimal": r.proven_optimal, "objective": r.objective,
            "bound": r.bound, "gap": r.gap, "wall_s": wall, "message": r.message}


def time_exact_vs_sort(problem, repeats: int) -> dict:
    sort_s, exact_s = [], []
    result = None
    for _ in range(repeats):
        gc.collect()
        t = time.perf_counter()
        np.sort(problem.scores)
        sort_s.append(time.perf_counter() - t)
        gc.collect()
        t = time.perf_counter()
        result = solve_exact(problem)
        exact_s.append(time.perf_counter() - t)
    med_exact, med_sort = statistics.median(exact_s), statistics.median(sort_s)
    info = result.info
    return {
        "exact_median_s": med_exact, "sort_median_s": med_sort,
        "ratio": med_exact / med_sort, "ratio_pass": med_exact / med_sort <= TARGET_RATIO,
        "exact_s": exact_s, "sort_s": sort_s,
        "result": summary(result, exact_s[-1]),
        "bound_minus_objective": result.bound - result.objective,
        "search": {k: info[k] for k in ("classes", "core_items", "nodes", "rounds",
                                        "dual_evaluations", "lp_evaluations", "lattice_root")},
        "phase_seconds": info["seconds"],
        "loadavg": loadavg(),
    }


def peak_memory(problem) -> dict:
    r, peak, _ = traced_peak(lambda: solve_exact(problem))
    ratio = peak / problem.scores.nbytes
    return {"peak_extra_bytes": peak, "scores_nbytes": int(problem.scores.nbytes),
            "peak_extra_ratio": ratio, "pass": ratio <= TARGET_MEMORY,
            "proven_optimal": r.proven_optimal}


def part_network(shape: str, repeats: int) -> list[dict]:
    rows = []
    for keep_flops, keep_nnz in BUDGETS:
        log(f"{shape} keep_flops={keep_flops} keep_nnz={keep_nnz}: generating")
        problem = generate_joint(shape=shape, dist="kaiming", keep_flops=keep_flops,
                                 keep_nnz=keep_nnz, seed=0)
        row = {"shape": shape, "items": problem.num_items, "layers": problem.num_groups,
               "keep_flops": keep_flops, "keep_nnz": keep_nnz}
        row.update(time_exact_vs_sort(problem, repeats))
        row["memory"] = peak_memory(problem)
        log(f"  exact {row['exact_median_s']:.2f}s  sort {row['sort_median_s']:.2f}s  "
            f"ratio {row['ratio']:.2f}  {row['result']['status']} gap {row['result']['gap']:.2e}  "
            f"nodes {row['search']['nodes']}  mem {row['memory']['peak_extra_ratio']:.2f}x")
        rows.append(row)
        del problem
        gc.collect()
    return rows


def part_1e5(highs_limit: float, quick: bool) -> dict:
    problem = generate_joint(layers=20, items=100_000, dist="kaiming", keep_flops=0.4,
                             keep_nnz=0.48)
    out = {"items": problem.num_items, "layers": problem.num_groups,
           "classes": int(np.unique(problem.flop_cost).size)}
    t = time.perf_counter()
    ex = solve_exact(problem)
    out["exact"] = {**summary(ex, time.perf_counter() - t), "nodes": ex.info["nodes"],
                    "core_items": ex.info["core_items"]}
    log(f"1e5 exact: {out['exact']['wall_s']:.3f}s {ex.status}")
    runs = [("highs", {})] + ([] if quick else [("highs_nofixing", {"fixing": False})])
    for label, opts in runs:
        t = time.perf_counter()
        h = pruneopt.solve(problem, "highs", time_limit=highs_limit, **opts)
        wall = time.perf_counter() - t
        top = max(abs(h.objective), abs(ex.objective), 1e-300)
        out[label] = {**summary(h, wall),
                      "same_optimum": abs(h.objective - ex.objective) <= 1e-9 * top,
                      "exact_speedup": wall / out["exact"]["wall_s"]}
        log(f"1e5 {label}: {wall:.2f}s {h.status} same={out[label]['same_optimum']}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="ResNet-20 instead of ResNet-50")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--highs-limit", type=float, default=600.0)
    ap.add_argument("--out", default=None, help="also write the JSON to this file")
    args = ap.parse_args(argv)
    started = time.time()
    shape = "resnet20" if args.quick else "resnet50"
    report = {
        "benchmark": "exact_scale",
        "environment": {"python": platform.python_version(), "numpy": np.__version__,
                        "machine": platform.machine(), "cpus": os.cpu_count(),
                        "loadavg_start": loadavg()},
        "targets": {"ratio_to_np_sort": TARGET_RATIO, "peak_extra_memory_x_scores": TARGET_MEMORY},
        "network": part_network(shape, args.repeats),
        "p1e5": part_1e5(args.highs_limit, args.quick),
    }
    net = report["network"]
    report["summary"] = {
        "all_proven": all(r["result"]["proven_optimal"] for r in net),
        "max_ratio": max(r["ratio"] for r in net),
        # the ≤ 5× np.sort target is for ResNet-50 (fixed costs dominate at ResNet-20 size)
        "ratio_pass": all(r["ratio_pass"] for r in net) if shape == "resnet50" else None,
        "max_memory_ratio": max(r["memory"]["peak_extra_ratio"] for r in net),
        "memory_pass": all(r["memory"]["pass"] for r in net),
        "p1e5_same_as_highs": all(v.get("same_optimum", True) for k, v in report["p1e5"].items()
                                  if k.startswith("highs")),
        "total_s": time.time() - started,
    }
    emit(report, args.out, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
