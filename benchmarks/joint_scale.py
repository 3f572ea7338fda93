#!/usr/bin/env python
"""Scale benchmark of the joint FLOP/NNZ ILP (FALCON's problem): fast algorithm vs exact solvers.

    python benchmarks/joint_scale.py [--json] [--quick] [--networks resnet20,mobilenetv1,resnet50]
                                     [--exact-max-seconds 60] [--seed 0]

Three parts, all in one JSON object (``--json``: exactly one JSON object on stdout, progress on
stderr; without it a readable report and then the same JSON, indented):

1. ``falcon`` — for each network layer table (ResNet-20, MobileNetV1, ResNet-50 with downsample
   convs) with Kaiming-like scores and each FALCON budget pair (keep_flops, keep_nnz) in
   {(0.2, 0.25), (0.4, 0.48), (0.6, 0.68)}: the wall time of ``pruneopt.solve(problem, "falcon")``
   (median of several repeats; 2 for ResNet-50), the time of one ``np.sort`` of the same scores
   array measured in the same process right next to each solve (median of as many repeats), their
   ratio, falcon's certified relative gap, the peak extra memory of the solve (tracemalloc peak
   during the solve / scores.nbytes; numpy reports its buffers to tracemalloc), and a breakdown of
   where the time goes (presort in SortedLayers, the dual bisection, greedy fill, select, the result
   check in ``finalize``) with the dual's evaluation counts.
2. ``exact`` — the exact solvers ('highs', 'pyomo-highs', 'cpsat', 'pyomo-scip', and 'highs' with
   ``fixing=False`` as 'highs-raw') on random-shape instances of growing size p; each solver stops
   at the first size where it takes longer than the limit or does not prove optimality. Every solve
   runs in a spawned worker process with ``time_limit`` = the limit; the worker is killed when it
   has not answered limit + 30 s after starting its solve (status 'killed'), because HiGHS can
   overrun its own time limit on large raw models (DESIGN §7). Results at each size are
   cross-checked against each other and against FALCON's certified bound and feasible objective.
3. ``summary`` — the targets, each as measured value and pass/fail:
   falcon at 25.5M weights ≤ 2× np.sort with gap ≤ 1e-6; highs proves p = 1e5 within 60 s;
   pyomo-highs proves p = 1e4 within 30 s.

``--quick`` runs only ResNet-20 and exact sizes up to 1e4 (a smoke run).

Part 1 lives in ``joint_scale_falcon.py``, part 2 in ``joint_scale_exact.py``, the helpers the
benchmarks share in ``harness.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

from harness import environment, git_state, jsonable, loadavg, logger
from joint_scale_exact import EXACT_SIZES, EXACT_SOLVERS, QUICK_MAX_SIZE, run_exact_part
from joint_scale_falcon import BUDGETS, NETWORK_CHOICES, QUICK_REPEATS, REPEATS, run_falcon_part

TARGET_FALCON_RATIO = 2.0
TARGET_FALCON_GAP = 1e-6
TARGET_FALCON_P = 25_502_912
TARGETS_EXACT = (("highs", 100_000, 60.0), ("pyomo-highs", 10_000, 30.0))

PACKAGES = ("pruneopt", "numpy", "highspy", "pyomo", "ortools", "PySCIPOpt")

log = logger("joint_scale")


# ============================================================================ part 3: summary
def summarize(falcon_rows: list[dict], exact: dict | None) -> dict:
    targets = []
    big = [r for r in falcon_rows if r["p"] == TARGET_FALCON_P]
    if big:
        worst_ratio = max(r["ratio"] for r in big)
        worst_gap = max(r["gap"] for r in big)
        ok = worst_ratio <= TARGET_FALCON_RATIO and worst_gap <= TARGET_FALCON_GAP
        targets.append({
            "name": "falcon at 25.5M weights (ResNet-50): time <= 2x np.sort, gap <= 1e-6",
            "measured": {"worst_ratio": worst_ratio, "worst_gap": worst_gap,
                         "per_budget": [{"keep_flops": r["keep_flops"], "keep_nnz": r["keep_nnz"],
                                         "ratio": r["ratio"], "gap": r["gap"],
                                         "falcon_s": r["falcon_median_s"],
                                         "sort_s": r["sort_median_s"]} for r in big]},
            "pass": ok,
        })
    else:
        targets.append({"name": "falcon at 25.5M weights (ResNet-50): time <= 2x np.sort, "
                                "gap <= 1e-6", "measured": None, "pass": None,
                        "note": "resnet50 not run"})
    for label, p, secs in TARGETS_EXACT:
        name = f"{label} proves p={p:.0e} within {secs:g} s"
        row = None
        if exact is not None:
            row = next((r for r in exact["runs"] if r["label"] == label and r["p"] == p), None)
        if row is None:
            note = "not run"
            if exact is not None and label in exact["stopped_at"] and exact["stopped_at"][label]:
                stop = exact["stopped_at"][label]
                note = f"series stopped earlier: {stop['reason']}"
                stop_row = next((r for r in exact["runs"]
                                 if r["label"] == label and r["p"] == stop["p"]), {})
                verdict = False
                if exact["time_limit_s"] < secs and stop_row.get("status") in ("time_limit",
                                                                                "killed"):
                    verdict = None
                    note += (f"; inconclusive with --exact-max-seconds {exact['time_limit_s']:g}"
                             f" < {secs:g}")
                targets.append({"name": name, "measured": None, "pass": verdict, "note": note})
            else:
                targets.append({"name": name, "measured": None, "pass": None, "note": note})
            continue
        ok = bool(row.get("proven_optimal")) and float(row.get("seconds", math.inf)) <= secs
        measured = {"seconds": row.get("seconds"), "status": row["status"],
                    "proven_optimal": bool(row.get("proven_optimal")), "gap": row.get("gap")}
        entry = {"name": name, "measured": measured, "pass": ok}
        if not ok and exact["time_limit_s"] < secs and row["status"] in ("time_limit", "killed"):
            entry["pass"] = None
            entry["note"] = (f"inconclusive: run with --exact-max-seconds {exact['time_limit_s']:g}"
                             f" < {secs:g}")
        targets.append(entry)
    out = {
        "targets": targets,
        "all_pass": all(t["pass"] is True for t in targets),
        "falcon_ratio": {f"{r['network']}@{r['keep_flops']}": r["ratio"] for r in falcon_rows},
        "falcon_gap": {f"{r['network']}@{r['keep_flops']}": r["gap"] for r in falcon_rows},
        "falcon_memory_ratio": {f"{r['network']}@{r['keep_flops']}":
                                r["memory"]["peak_extra_ratio"] for r in falcon_rows},
    }
    if exact is not None:
        out["largest_proven"] = exact["largest_proven"]
        out["stopped_at"] = exact["stopped_at"]
        out["crosscheck_flags"] = exact["crosscheck_flags"]
    return out


# ============================================================================ text report
def text_report(res: dict) -> str:
    lines = ["FALCON vs np.sort (median seconds)",
             f"{'network':12s} {'p':>11s} {'flops':>5s} {'nnz':>5s} {'falcon':>8s} {'sort':>8s} "
             f"{'ratio':>6s} {'gap':>9s} {'mem':>5s} {'presort':>8s} {'dual':>7s} {'select':>7s} "
             f"{'final':>7s}"]
    for r in res["falcon"]:
        b = r["breakdown"]
        lines.append(f"{r['network']:12s} {r['p']:>11,d} {r['keep_flops']:>5.2f} {r['keep_nnz']:>5.2f} "
                     f"{r['falcon_median_s']:>8.3f} {r['sort_median_s']:>8.3f} {r['ratio']:>6.2f} "
                     f"{r['gap']:>9.2e} {r['memory']['peak_extra_ratio']:>5.2f} "
                     f"{b['presort_s']:>8.3f} {b['solve_dual_s']:>7.3f} {b['select_s']:>7.3f} "
                     f"{b['finalize_s']:>7.3f}")
    if res.get("exact"):
        lines += ["", f"Exact solvers (limit {res['exact']['time_limit_s']:g} s)",
                  f"{'solver':12s} {'p':>9s} {'status':>10s} {'proven':>6s} {'seconds':>8s} "
                  f"{'gap':>9s}  message"]
        for r in res["exact"]["runs"]:
            gap = r.get("gap")
            gap_s = f"{gap:>9.2e}" if isinstance(gap, float) else f"{str(gap):>9s}"
            lines.append(f"{r['label']:12s} {r['p']:>9,d} {r['status']:>10s} "
                         f"{str(bool(r.get('proven_optimal'))):>6s} {r.get('seconds', math.nan):>8.2f} "
                         f"{gap_s}  {str(r.get('message', ''))[:90]}")
    lines += ["", "Targets"]
    for t in res["summary"]["targets"]:
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[t["pass"]]
        lines.append(f"  [{verdict}] {t['name']}: {json.dumps(jsonable(t['measured']))}"
                     + (f" ({t['note']})" if t.get("note") else ""))
    return "\n".join(lines)


# ============================================================================ main
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true",
                    help="print exactly one JSON object on stdout (progress goes to stderr)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: resnet20 only, exact sizes up to 1e4")
    ap.add_argument("--networks", default=None,
                    help="comma-separated subset of resnet20,mobilenetv1,resnet50 "
                         "(default: all; with --quick: resnet20); 'none' skips part 1")
    ap.add_argument("--exact-max-seconds", type=float, default=60.0,
                    help="time limit of each exact solve; a solver's series stops at the first "
                         "size over it or not proven (default 60)")
    ap.add_argument("--exact-solvers", default=",".join(EXACT_SOLVERS),
                    help=f"comma-separated subset of {','.join(EXACT_SOLVERS)}; 'none' skips part 2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the JSON object to this file")
    args = ap.parse_args(argv)

    def subset(flag: str, text: str, known) -> list[str]:
        """The comma-separated names of ``text`` ('none': no name), each one of ``known``."""
        names = ([] if text.strip().lower() == "none"
                 else [n.strip() for n in text.split(",") if n.strip()])
        bad = [n for n in names if n not in known]
        if bad:
            ap.error(f"{flag}: unknown {bad} (known: {', '.join(known)})")
        return names

    networks = (subset("--networks", args.networks, NETWORK_CHOICES) if args.networks is not None
                else ["resnet20"] if args.quick else list(NETWORK_CHOICES))
    solvers = subset("--exact-solvers", args.exact_solvers, EXACT_SOLVERS)
    if not (args.exact_max_seconds > 0 and math.isfinite(args.exact_max_seconds)):
        ap.error("--exact-max-seconds: must be a positive number")
    args.network_list, args.solver_list = networks, solvers
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    # Keep stdout for the one JSON object: whatever else writes to fd 1 goes to stderr.
    out_stream = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    started = time.time()
    sizes = [p for p in EXACT_SIZES if not args.quick or p <= QUICK_MAX_SIZE]
    log(f"networks={args.network_list} exact solvers={args.solver_list} sizes={sizes} "
        f"limit={args.exact_max_seconds:g}s seed={args.seed} quick={args.quick}")
    res = {
        "benchmark": "joint_scale",
        "schema": 1,
        "args": {"quick": args.quick, "networks": args.network_list,
                 "exact_solvers": args.solver_list, "exact_max_seconds": args.exact_max_seconds,
                 "seed": args.seed},
        "environment": environment(PACKAGES, detailed=True),
        "settings": {"budgets_keep_flops_keep_nnz": BUDGETS,
                     "repeats": QUICK_REPEATS if args.quick else REPEATS,
                     "ratio": "median falcon seconds / median np.sort seconds, measured "
                              "alternately in this process on the same scores array",
                     "memory": "tracemalloc peak during the solve minus memory live before it, "
                               "divided by scores.nbytes"},
    }
    res["loadavg_start"] = loadavg(2)
    res["falcon"] = run_falcon_part(args.network_list, args.seed, args.quick)
    res["exact"] = (run_exact_part(args.solver_list, sizes, args.exact_max_seconds, args.seed)
                    if args.solver_list else None)
    res["summary"] = summarize(res["falcon"], res["exact"])
    res["loadavg_end"] = loadavg(2)
    res["git_end"] = git_state()
    if res["git_end"] != res["environment"]["git"]:
        log("warning: the checkout changed while the benchmark ran (see environment.git and "
            "git_end); exact workers import the library afresh")
    res["total_seconds"] = time.time() - started
    log(f"done in {res['total_seconds']:.0f} s")

    clean = jsonable(res)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(clean, fh, indent=2, allow_nan=False)
    if args.json:
        out_stream.write(json.dumps(clean, allow_nan=False) + "\n")
    else:
        out_stream.write(text_report(res) + "\n\n" + json.dumps(clean, indent=2, allow_nan=False)
                         + "\n")
    out_stream.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
