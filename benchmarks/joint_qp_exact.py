"""The joint MIQP (a') solved by ``exact`` (branch and bound on the certified dual bound) on
instances of the trained digits MLP and CNN; prints JSON.

Instances (``models/joint_qp_instances.network_problem``): p weights sampled from the whole
network, or whole layers / the whole network, with n calibration samples and the full or the
block-diagonal Fisher. Per instance: status, proven, certified gap, seconds, nodes, root gap,
items fixed at the root and where the time went; then the largest p proven at each n, and a
table for the whole digits MLP with the block-diagonal Fisher: ``falcon``, ``chita``,
``woodfisher``, ``magnitude`` against the certified bound (or proven optimum) of ``exact``.

    python benchmarks/joint_qp_exact.py --quick          # a smoke run (about a minute)
    python benchmarks/joint_qp_exact.py                  # the full grid (long: see --help)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_instance(spec: dict, time_limit: float) -> dict:
    from pruneopt.models.joint_qp_instances import network_problem
    from pruneopt.solvers.registry import solve

    t0 = time.perf_counter()
    problem = network_problem(**spec)
    build = time.perf_counter() - t0
    res = solve(problem, "exact", time_limit=time_limit)
    info = res.info
    row = {
        **spec, "p": problem.num_items, "n": problem.num_samples,
        "blocks": int(problem.blocks.size - 1), "classes": info.get("classes"),
        "status": res.status, "proven": res.proven_optimal, "gap": res.gap,
        "objective": res.objective, "bound": res.bound, "seconds": res.seconds,
        "time_limit": time_limit, "nodes": info.get("nodes"), "root_gap": info.get("root_gap"),
        "fixed_root": info.get("fixed_root"), "root_rounds": info.get("root_rounds"),
        "shifted_blocks": info.get("shifted_blocks"),
        "seconds_by_phase": {k: round(v, 3) for k, v in info.get("seconds", {}).items()},
        "incumbent_source": info.get("incumbent_source"), "build_seconds": build,
    }
    log(f"{spec}: {res.status} gap {res.gap:.3g} {res.seconds:.1f}s nodes {row['nodes']} "
        f"root gap {row['root_gap']:.3g} fixed {row['fixed_root']}")
    return row


def mlp_table(block_size: int, calibration: int, time_limit: float, keep_nnz: float,
              keep_flops: float) -> dict:
    from pruneopt.models.joint_qp_instances import network_problem
    from pruneopt.solvers.registry import solve

    problem = network_problem("digits-mlp", calibration=calibration, block_size=block_size,
                              keep_nnz=keep_nnz, keep_flops=keep_flops)
    ex = solve(problem, "exact", time_limit=time_limit)
    rows = {"exact": {"objective": ex.objective, "bound": ex.bound, "status": ex.status,
                      "proven": ex.proven_optimal, "gap": ex.gap, "seconds": ex.seconds,
                      "nodes": ex.info.get("nodes"), "root_gap": ex.info.get("root_gap")}}
    log(f"MLP table: exact {ex.status} gap {ex.gap:.3g} {ex.seconds:.1f}s")
    for name in ("falcon", "chita", "woodfisher", "magnitude"):
        r = solve(problem, name)
        rows[name] = {"objective": r.objective, "seconds": r.seconds,
                      "excess_over_bound": (r.objective - ex.bound) / abs(ex.bound),
                      "excess_over_exact": (r.objective - ex.objective) / abs(ex.objective)}
        log(f"MLP table: {name} {r.objective:.8g}")
    return {"p": problem.num_items, "n": problem.num_samples, "block_size": block_size,
            "blocks": int(problem.blocks.size - 1), "keep_nnz": keep_nnz,
            "keep_flops": keep_flops, "methods": rows}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a smoke run: small p, short limits")
    ap.add_argument("--calibration", type=int, nargs="+", default=[16, 64, 128])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 10000])
    ap.add_argument("--models", nargs="+", default=["digits-mlp", "digits-cnn"])
    ap.add_argument("--limits", type=float, nargs="+", default=[60.0, 240.0, 600.0],
                    help="time limit per size (same order as --sizes)")
    ap.add_argument("--keep", type=float, nargs=2, default=[0.4, 0.35],
                    metavar=("NNZ", "FLOPS"))
    ap.add_argument("--whole-limit", type=float, default=600.0,
                    help="time limit for the whole network at each n (0: skip it)")
    ap.add_argument("--mlp-block", type=int, default=128)
    ap.add_argument("--mlp-limit", type=float, default=300.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-table", action="store_true", help="skip the whole-MLP table")
    ap.add_argument("--table-only", action="store_true", help="only the whole-MLP table")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    if args.quick:
        args.sizes, args.limits, args.calibration = [300], [20.0], [16, 64]
        args.mlp_limit, args.whole_limit = 20.0, 0.0
    keep_nnz, keep_flops = args.keep
    rows = []
    for model in ([] if args.table_only else args.models):
        for n in args.calibration:
            total = 6464 if model == "digits-mlp" else 14288
            sizes = list(zip(args.sizes, args.limits))
            if args.whole_limit > 0:
                sizes.append((total, args.whole_limit))
            seen = set()
            for p, limit in sizes:
                items = None if p >= total else p
                if items in seen:  # the whole network once
                    continue
                seen.add(items)
                spec = {"model": model, "calibration": n, "keep_nnz": keep_nnz,
                        "keep_flops": keep_flops, "seed": args.seed, "items": items}
                rows.append(run_instance(spec, limit))
    largest = {}
    for r in rows:
        key = f"{r['model']} n={r['n']}"
        if r["proven"]:
            largest[key] = max(largest.get(key, 0), r["p"])
        else:
            largest.setdefault(key, 0)
    out = {
        "benchmark": "joint_qp_exact", "quick": args.quick,
        "environment": {"python": platform.python_version(), "machine": platform.machine(),
                        "cpus": os.cpu_count(),
                        "note": "shared 2-core machine; timings are wall-clock under load"},
        "instances": rows, "largest_p_proven": largest,
        "mlp_block_diagonal": None if args.no_table else mlp_table(
            args.mlp_block, 128 if not args.quick else 16, args.mlp_limit, keep_nnz,
            keep_flops),
    }
    print(json.dumps(out, indent=1, default=lambda o: None if isinstance(o, float)
                     and not math.isfinite(o) else str(o)))


if __name__ == "__main__":
    main()
