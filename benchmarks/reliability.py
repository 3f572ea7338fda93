"""Reliability of the exact solvers: random tiny instances of every formulation, every exact
solver on each, every answer checked against brute force.

    python benchmarks/reliability.py --instances 10000 --workers 2 > reliability.json
    python benchmarks/reliability.py --quick           # 40 instances, a smoke run

The instances are small enough for enumeration (tests/solver_test_helpers.py's oracles:
all 2^p selections of a joint ILP, all 2^p supports of a joint MIQP with a dense backsolve each,
every option combination of an allocation, every count vector of a channel problem), drawn at
random per instance seed: sizes, layers, blocks, score distributions (ties included), first-order
terms, zero weights, and budgets anywhere in [0, 1] (zero, binding on one row, on both, on
neither). Every exact solver registered for the formulation runs with a time limit, and each
answer is counted against the enumerated optimum OPT (tolerance 2e-9·max(1, |OPT|), twice the
proof threshold, since a proven objective may sit 1e-9 from the bound):

* ``false_optimal``  — proven_optimal, but the objective is worse than OPT, or a problem with no
                       feasible decision was answered with one (or the reverse);
* ``wrong_bound``    — the reported bound is on the wrong side of OPT (below it for a
                       maximisation, above it for a minimisation);
* ``infeasible_x``   — a returned decision that breaks a budget (re-checked with
                       ``problem.is_feasible``) while the status claims a solution;
* ``overrun``        — wall seconds above 1.1·limit + 2;
* ``errors`` / ``refused`` — status ``error``, or a ``ValueError`` the solver raises because it
                       does not apply (e.g. ``dp`` off chains); counted, not failures.

The counts go to the README (goal: all failures zero). A failure lists its formulation, instance
seed and solver, so ``--kinds K --first SEED --instances 1`` reproduces it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from harness import environment, jsonable, logger  # noqa: E402

KINDS = ("joint", "joint-qp", "allocation", "channels")
FAILURES = ("false_optimal", "wrong_bound", "infeasible_x", "overrun")


def build(kind: str, seed: int):
    """A random tiny instance of ``kind`` (deterministic in ``seed``)."""
    from solver_test_helpers import make_qp

    from pruneopt.formulations.allocation.generate import generate_allocation
    from pruneopt.formulations.channels.generate import generate_channels
    from pruneopt.formulations.joint.generate import generate_joint
    from pruneopt.formulations.sampling import DISTRIBUTIONS

    rng = np.random.default_rng([seed, KINDS.index(kind)])
    budget = lambda: float(rng.choice([0.0, 1.0, round(rng.uniform(0.05, 0.95), 3)],  # noqa: E731
                                      p=[0.05, 0.1, 0.85]))
    if kind == "joint":
        items = int(rng.integers(3, 15))
        return generate_joint(layers=int(rng.integers(1, min(4, items) + 1)), items=items,
                              dist=str(rng.choice(DISTRIBUTIONS)), keep_nnz=budget(),
                              keep_flops=budget(), seed=seed)
    if kind == "joint-qp":
        p = int(rng.integers(3, 10))
        return make_qp(p=p, n=int(rng.integers(1, 9)), layers=int(rng.integers(1, min(3, p) + 1)),
                       blocks=int(rng.integers(1, min(3, p) + 1)), seed=seed,
                       ridge=float(rng.choice([0.01, 0.05, 0.5])),
                       linear=float(rng.choice([0.0, 0.0, 0.5])), keep_nnz=budget(),
                       keep_flops=budget(), zeros=int(rng.integers(0, 2)))
    # allocation and channels may be infeasible (every option / min_keep too costly): budgets
    # from (0.2, 1] keep most instances feasible, a few below that test the infeasible answer
    roomy = lambda: float(rng.choice([rng.uniform(0.01, 0.2), rng.uniform(0.2, 1.0)],  # noqa: E731
                                     p=[0.1, 0.9]))
    if kind == "allocation":
        nnz = rng.choice([None, roomy()])
        return generate_allocation(layers=int(rng.integers(1, 6)), options=int(rng.integers(2, 6)),
                                   seed=seed, keep_nnz=nnz, keep_flops=roomy())
    if kind == "channels":
        shape = str(rng.choice(["random", "chain"]))
        return generate_channels(shape=shape, seed=seed, keep_flops=roomy(),
                                 dist=str(rng.choice(["kaiming", "ties", "uniform"])),
                                 groups=int(rng.integers(1, 5)), channels=int(rng.integers(2, 6)))
    raise ValueError(kind)


def check_instance(kind: str, seed: int, time_limit: float) -> list[dict]:
    """Every exact solver on one instance; one record per solver."""
    from solver_test_helpers import optimum

    import pruneopt
    from pruneopt.solvers.registry import solver_specs

    problem = build(kind, seed)
    opt = optimum(problem)
    maximize = problem.sense == "maximize"
    tol = 2e-9 * max(1.0, abs(opt)) if opt is not None else 0.0
    out = []
    for spec in solver_specs(kind):
        if not spec.exact or not spec.available():
            continue
        rec = {"kind": kind, "seed": seed, "solver": spec.name, "failures": [], "error": None}
        start = time.perf_counter()
        try:
            r = pruneopt.solve(problem, spec.name, time_limit=time_limit)
        except ValueError as exc:  # the solver does not apply to this instance
            rec.update(status="refused", seconds=time.perf_counter() - start, error=str(exc))
            out.append(rec)
            continue
        wall = time.perf_counter() - start
        rec.update(status=r.status, proven=bool(r.proven_optimal), seconds=wall,
                   objective=r.objective, bound=r.bound, opt=opt)
        if r.status == "error":
            rec["error"] = r.message
        claims_x = r.status in ("optimal", "feasible", "time_limit") and r.x is not None
        if claims_x and not problem.is_feasible(r.x):
            rec["failures"].append("infeasible_x")
        if opt is None:  # no feasible decision exists
            if r.proven_optimal or (claims_x and r.status != "time_limit"):
                rec["failures"].append("false_optimal")
        else:
            if r.proven_optimal:
                worse = (opt - r.objective) if maximize else (r.objective - opt)
                if not (worse <= tol):
                    rec["failures"].append("false_optimal")
            if r.status == "infeasible":
                rec["failures"].append("false_optimal")
            b = r.bound
            if b is not None and not (isinstance(b, float) and math.isnan(b)):
                wrong = (b < opt - tol) if maximize else (b > opt + tol)
                if wrong:
                    rec["failures"].append("wrong_bound")
        if wall > 1.1 * time_limit + 2.0:
            rec["failures"].append("overrun")
        out.append(rec)
    return out


def _chunk(args) -> list[dict]:
    kind, seeds, limit = args
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    recs = []
    for s in seeds:
        recs.extend(check_instance(kind, s, limit))
    return recs


def summarize(records: list[dict], instances: Counter) -> dict:
    table = defaultdict(lambda: Counter())
    seconds = defaultdict(float)
    examples = []
    for r in records:
        key = (r["kind"], r["solver"])
        c = table[key]
        c["runs"] += 1
        c["proven"] += int(bool(r.get("proven")))
        c["errors"] += int(r["status"] == "error")
        c["refused"] += int(r["status"] == "refused")
        c["time_limit"] += int(r["status"] == "time_limit")
        for f in r["failures"]:
            c[f] += 1
        seconds[key] += r["seconds"]
        if r["failures"] and len(examples) < 50:
            examples.append({k: r.get(k) for k in ("kind", "seed", "solver", "status", "proven",
                                                   "objective", "bound", "opt", "failures",
                                                   "seconds")})
    rows = [{"formulation": k, "solver": s, **{f: int(c[f]) for f in
             ("runs", "proven", "time_limit", "errors", "refused", *FAILURES)},
             "seconds": round(seconds[(k, s)], 2)} for (k, s), c in table.items()]
    totals = {f: int(sum(r[f] for r in rows)) for f in FAILURES + ("runs", "errors", "refused")}
    return {"instances": dict(instances), "instances_total": int(sum(instances.values())),
            "totals": totals, "per_solver": rows, "failure_examples": examples}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=10_000, help="in all, split over --kinds")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--first", type=int, default=0, help="first instance seed")
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--quick", action="store_true", help="40 instances")
    args = ap.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        ap.error(f"--kinds: unknown {unknown} (known: {', '.join(KINDS)})")
    total = 40 if args.quick else args.instances
    per = [total // len(kinds) + (i < total % len(kinds)) for i in range(len(kinds))]
    log = logger("reliability")
    jobs = []
    for kind, n in zip(kinds, per):
        seeds = list(range(args.first, args.first + n))
        jobs += [(kind, seeds[i:i + 25], args.time_limit) for i in range(0, n, 25)]
    start = time.perf_counter()
    records = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for i, recs in enumerate(pool.map(_chunk, jobs), 1):
            records.extend(recs)
            if i % 20 == 0 or i == len(jobs):
                bad = sum(bool(r["failures"]) for r in records)
                log(f"{i}/{len(jobs)} chunks, {len(records)} solver runs, {bad} failures, "
                    f"{time.perf_counter() - start:.0f} s")
    summary = summarize(records, Counter(dict(zip(kinds, per))))
    summary.update(benchmark="reliability", time_limit=args.time_limit,
                   wall_seconds=round(time.perf_counter() - start, 1), workers=args.workers,
                   environment=environment(["pruneopt", "highspy", "ortools", "pyomo",
                                            "PySCIPOpt", "numpy"]))
    print(json.dumps(jsonable(summary), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
