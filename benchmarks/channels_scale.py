#!/usr/bin/env python
"""Scale benchmark of structured channel selection: exact proofs on CIFAR ResNets, the fast
Lagrangian on ResNet-50 groups.

    python benchmarks/channels_scale.py [--json] [--quick] [--seed 0] [--exact-time-limit 120]
                                        [--repeats 3] [--out results.json]

One JSON object (``--json``: exactly one object on stdout, progress on stderr; without it a short
readable report on stderr and the object indented on stdout) with three parts:

1. ``exact`` — ResNet-20 and ResNet-56 channel-group structures (stage streams tied across the
   residual adds, one group per block's inner conv; 12 / 30 groups, 448 / 1120 channels) at
   keep_flops 0.3 and 0.5, scores ``exponential`` and ``kaiming``: ``pruneopt.solve(problem,
   "exact", time_limit=...)`` (fast Lagrangian seed, then the layered MILP P1 on HiGHS at zero
   gap), its wall time, status, proven flag and gap; on the same instance the fast solver and the
   two baselines, each with its value gap to the proven optimum (G1 of the seeds notes).
2. ``fast`` — ResNet-50 groups (37 groups, 11,456 channels; triangles and 4-cycles in the
   coupling graph, so the count DP cuts edges) at keep_flops 0.3, 0.5, 0.7 with three score
   distributions, plus one instance with collapsible bottlenecks: the median wall time of
   ``pruneopt.solve(problem, "fast")`` over ``--repeats`` runs, its certified gap
   (bound − objective) / bound, the DP's cut count, evaluations and its largest table, and the
   baselines' values against the fast bound (their certified gap).
3. ``summary`` — the targets with measured values and pass/fail: exact proves ResNet-20 and
   ResNet-56 within 60 s each (the slowest instance counts); fast on ResNet-50 ≤ 2 s (median, the
   slowest instance counts) with a certified gap (the largest is reported).

``--quick`` runs one budget and one distribution per part (about a minute).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

from harness import environment, jsonable, loadavg, logger, rel_diff

EXACT_NETWORKS = ("resnet20", "resnet56")
EXACT_BUDGETS = (0.3, 0.5)
EXACT_DISTS = ("exponential", "kaiming")
FAST_BUDGETS = (0.3, 0.5, 0.7)
FAST_DISTS = ("kaiming", "lognormal", "exponential")
TARGET_EXACT_S = 60.0
TARGET_FAST_S = 2.0
PACKAGES = ("pruneopt", "numpy", "highspy", "pyomo", "ortools")


log = logger("channels_scale")


# --------------------------------------------------------------------------------------- parts
def run_exact(quick: bool, seed: int, time_limit: float) -> list[dict]:
    import pruneopt
    from pruneopt.formulations.channels.generate import generate_channels

    rows = []
    budgets = (0.5,) if quick else EXACT_BUDGETS
    dists = ("exponential",) if quick else EXACT_DISTS
    for net in EXACT_NETWORKS:
        for dist in dists:
            for kf in budgets:
                p = generate_channels(net, seed=seed, keep_flops=kf, dist=dist)
                log(f"exact {net} {dist} keep_flops={kf}: {p.num_groups} groups, "
                    f"{p.num_channels} channels")
                load = loadavg()
                r = pruneopt.solve(p, "exact", time_limit=time_limit)
                row = {"network": net, "dist": dist, "keep_flops": kf, "groups": p.num_groups,
                       "channels": p.num_channels, "pairs": int(p.pairs.shape[0]),
                       "dense_macs": p.dense_flops, "flop_budget": p.flop_budget,
                       "solver": "exact", "method": r.options.get("method"),
                       "seconds": r.seconds, "status": r.status,
                       "proven_optimal": r.proven_optimal, "objective": r.objective,
                       "bound": r.bound, "gap": r.gap, "flops_used": r.usage.get("flops"),
                       "layered_variables": r.info.get("layered_variables"),
                       "message": r.message, "loadavg": load}
                others = {}
                for name in ("fast", "uniform", "global-threshold"):
                    o = pruneopt.solve(p, name)
                    others[name] = {"seconds": o.seconds, "objective": o.objective,
                                    "bound": o.bound,
                                    "value_gap_to_optimum": (rel_diff(r.objective, o.objective)
                                                             if r.proven_optimal else None),
                                    "flops_used": o.usage.get("flops")}
                row["others"] = others
                log(f"  {r.status} in {r.seconds:.2f} s (gap {r.gap:.2e}); fast value gap "
                    f"{others['fast']['value_gap_to_optimum']}")
                rows.append(row)
    return rows


def run_fast(quick: bool, seed: int, repeats: int) -> list[dict]:
    import pruneopt
    from pruneopt.formulations.channels.generate import generate_channels

    cases = [(kf, dist, False) for dist in (("lognormal",) if quick else FAST_DISTS)
             for kf in ((0.5,) if quick else FAST_BUDGETS)]
    cases.append((0.5, "lognormal", True))
    rows = []
    for kf, dist, collapse in cases:
        p = generate_channels("resnet50", seed=seed, keep_flops=kf, dist=dist, collapse=collapse)
        log(f"fast resnet50 {dist} keep_flops={kf} collapse={collapse}")
        times, r = [], None
        load = loadavg()
        for _ in range(max(1, repeats)):
            r = pruneopt.solve(p, "fast")
            times.append(r.seconds)
        base = {}
        for name in ("uniform", "global-threshold"):
            o = pruneopt.solve(p, name)
            base[name] = {"seconds": o.seconds, "objective": o.objective,
                          "certified_gap": rel_diff(r.bound, o.objective)}
        rows.append({"network": "resnet50", "dist": dist, "keep_flops": kf,
                     "collapse": collapse, "groups": p.num_groups, "channels": p.num_channels,
                     "dense_macs": p.dense_flops, "median_s": statistics.median(times),
                     "times_s": times, "status": r.status, "objective": r.objective,
                     "bound": r.bound, "certified_gap": r.gap,
                     "flops_used": r.usage.get("flops"), "cuts": r.info.get("cuts"),
                     "evaluations": r.info.get("evaluations"),
                     "inexact_evaluations": r.info.get("inexact_evaluations"),
                     "largest_table": r.info.get("max_table"), "baselines": base,
                     "loadavg": load})
        log(f"  {statistics.median(times):.2f} s, certified gap {r.gap:.2e}, cuts "
            f"{r.info.get('cuts')}")
    return rows


def summary(exact: list[dict], fast: list[dict]) -> dict:
    out = {}
    for net in EXACT_NETWORKS:
        rows = [r for r in exact if r["network"] == net]
        worst = max((r["seconds"] for r in rows), default=math.nan)
        proven = all(r["proven_optimal"] for r in rows) if rows else None
        out[f"exact_{net}"] = {"target": f"proven optimal within {TARGET_EXACT_S:.0f} s",
                               "slowest_s": worst, "all_proven": proven,
                               "pass": (bool(proven and worst <= TARGET_EXACT_S)
                                        if rows else None)}
    plain = [r for r in fast if not r["collapse"]]
    worst = max((r["median_s"] for r in plain), default=math.nan)
    gaps = [r["certified_gap"] for r in plain]
    out["fast_resnet50"] = {"target": f"median <= {TARGET_FAST_S:.0f} s with a certified gap",
                            "slowest_median_s": worst, "largest_certified_gap": max(gaps),
                            "pass": bool(plain) and worst <= TARGET_FAST_S
                            and all(math.isfinite(g) for g in gaps)}
    coll = [r for r in fast if r["collapse"]]
    if coll:
        out["fast_resnet50_collapse"] = {"median_s": coll[0]["median_s"],
                                         "certified_gap": coll[0]["certified_gap"]}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="only the JSON object on stdout")
    ap.add_argument("--quick", action="store_true", help="one budget and distribution per part")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--exact-time-limit", type=float, default=120.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", help="also write the JSON object to this file")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    exact = run_exact(args.quick, args.seed, args.exact_time_limit)
    fast = run_fast(args.quick, args.seed, 1 if args.quick else args.repeats)
    result = {"benchmark": "channels_scale", "quick": args.quick, "seed": args.seed,
              "environment": environment(PACKAGES), "exact": exact, "fast": fast,
              "summary": summary(exact, fast),
              "total_seconds": time.perf_counter() - start}
    text = json.dumps(jsonable(result), indent=None if args.json else 2, allow_nan=False)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    if not args.json:
        for name, s in result["summary"].items():
            log(f"summary {name}: {s}")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
