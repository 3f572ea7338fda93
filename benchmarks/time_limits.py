#!/usr/bin/env python
"""Do time limits hold? Every registered solver of every formulation on an instance too large to
finish, under ``--limits`` (default 2 s and 5 s); prints JSON.

    python benchmarks/time_limits.py [--limits 2,5] [--formulations joint,joint-qp,...]
                                     [--solvers a,b] [--instances NAME,...] [--out FILE.json]

The promise (DESIGN §3, issue 15): ``pruneopt.solve(problem, name, time_limit=T)`` returns within
1.1·T + 2 s, whatever the solver, model building and the final checks included. Each run is one
fresh process that loads the instance, loads the registry (``available_solvers``: the
registrations and their module-level imports), and then times ``pruneopt.solve`` with
``time.perf_counter`` around the call — what a user sees. The process is killed when it has not
answered 3·T + 60 s after it started (``status: "killed"``).

Instances (built once, saved as ``.npz``, shared by every run):

* ``joint-resnet20``   — ``generate_joint(shape="resnet20")``: 268,336 items, 20 layers;
* ``joint-random``     — ``generate_joint(layers=64, items=200_000, dist="uniform")``;
* ``joint-qp-random``  — a random joint MIQP, p = 500 in 10 layers, n = 128 samples;
* ``joint-qp-digits``  — ``network_problem("digits-cnn", items=500)`` (needs torch; skipped
                         without it);
* ``allocation-1000``  — ``generate_allocation(1000, 10)``: 1,000 layers, 10 options each;
* ``channels-resnet50``— ``generate_channels("resnet50")``;
* ``channels-random``  — ``generate_channels("random", groups=300, channels=64)``.

Per run: ``wall_s`` (around ``pruneopt.solve``), ``result_seconds`` (``SolveResult.seconds``),
``allowed_s`` = 1.1·T + 2, ``over`` (wall_s > allowed_s), the status, feasibility, whether the
bound is on the right side of the objective, and the message (cut to 200 characters). A solver
that refuses the instance (a ValueError naming it, e.g. ``dp`` off a chain) is ``refused``.
``summary`` lists the runs over the promise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

from harness import emit, environment, jsonable, loadavg, logger

log = logger("time_limits")
PACKAGES = ("pruneopt", "numpy", "highspy", "pyomo", "ortools", "PySCIPOpt")


# ================================================================================ instances


def _digits_qp():
    from pruneopt.models.joint_qp_instances import network_problem

    return network_problem("digits-cnn", items=500, calibration=128)


def _builders():
    from pruneopt.formulations.allocation.generate import generate_allocation
    from pruneopt.formulations.channels.generate import generate_channels
    from pruneopt.formulations.joint.generate import generate_joint

    # the random MIQP of tests/test_time_limits.py
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    from solver_test_helpers import random_qp

    return {
        "joint-resnet20": lambda: generate_joint(shape="resnet20", keep_nnz=0.48,
                                                 keep_flops=0.4, seed=0),
        "joint-random": lambda: generate_joint(layers=64, items=200_000, dist="uniform",
                                               keep_nnz=0.48, keep_flops=0.4, seed=0),
        "joint-qp-random": random_qp,
        "joint-qp-digits": _digits_qp,
        "allocation-1000": lambda: generate_allocation(1000, 10, 0),
        "channels-resnet50": lambda: generate_channels("resnet50", seed=0, keep_flops=0.5),
        "channels-random": lambda: generate_channels("random", seed=0, groups=300, channels=64,
                                                     keep_flops=0.4),
    }


DEFAULT_INSTANCES = ("joint-resnet20", "joint-random", "joint-qp-random", "joint-qp-digits",
                     "allocation-1000", "channels-resnet50", "channels-random")


# ================================================================================ one run
def run_one(path: str, solver: str, limit: float) -> dict:
    """In a fresh process: load, warm the registry, time ``pruneopt.solve``."""
    import pruneopt
    from pruneopt.formulations.io import load_problem

    problem = load_problem(path)
    pruneopt.available_solvers(problem)  # the registrations and their imports
    t0 = time.perf_counter()
    try:
        res = pruneopt.solve(problem, solver, time_limit=limit)
    except ValueError as exc:
        return {"status": "refused", "wall_s": time.perf_counter() - t0,
                "message": str(exc)[:200]}
    wall = time.perf_counter() - t0
    sign = 1.0 if problem.sense == "maximize" else -1.0
    bound_ok = None
    if res.x is not None and res.feasible and not math.isnan(res.bound):
        tol = 1e-9 * max(1.0, abs(res.objective))
        bound_ok = bool(sign * (res.bound - res.objective) >= -tol)
    return {"status": res.status, "wall_s": wall, "result_seconds": res.seconds,
            "feasible": bool(res.feasible), "has_x": res.x is not None,
            "objective": res.objective, "bound": res.bound, "gap": res.gap,
            "bound_ok": bound_ok, "message": res.message[:200]}


def spawn(path: str, solver: str, limit: float) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--one", path, solver, repr(limit)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=3 * limit + 60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.communicate()
        return {"status": "killed", "wall_s": None,
                "process_s": time.perf_counter() - started}
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        return {"status": "crashed", "wall_s": None, "message": tail[0][:200]}
    row = json.loads(out.decode().strip().splitlines()[-1])
    row["process_s"] = time.perf_counter() - started
    return row


# ================================================================================ driver
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limits", default="2,5")
    ap.add_argument("--instances", default=",".join(DEFAULT_INSTANCES))
    ap.add_argument("--formulations", default=None, help="only these kinds (comma-separated)")
    ap.add_argument("--solvers", default=None, help="only these solver names")
    ap.add_argument("--out", default=None)
    ap.add_argument("--one", nargs=3, metavar=("FILE", "SOLVER", "LIMIT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        row = run_one(args.one[0], args.one[1], float(args.one[2]))
        print(json.dumps(jsonable(row)))
        return 0

    from pruneopt.solvers.registry import solver_specs

    limits = [float(x) for x in args.limits.split(",")]
    kinds = None if args.formulations is None else set(args.formulations.split(","))
    only = None if args.solvers is None else set(args.solvers.split(","))
    builders = _builders()
    runs, instances = [], {}
    with tempfile.TemporaryDirectory(prefix="pruneopt-time-limits-") as tmp:
        for name in args.instances.split(","):
            try:
                t0 = time.perf_counter()
                problem = builders[name]()
            except ImportError as exc:
                log(f"{name}: skipped ({exc})")
                instances[name] = {"skipped": str(exc)}
                continue
            if kinds is not None and problem.kind not in kinds:
                continue
            path = os.path.join(tmp, f"{name}.npz")
            problem.save(path)
            size = {v[0]: v[1] for v in problem.dimensions().values()}
            for attr in ("num_items", "num_channels"):
                if hasattr(problem, attr):
                    size[attr] = int(getattr(problem, attr))
            instances[name] = {"kind": problem.kind, "dimensions": size,
                               "build_s": time.perf_counter() - t0}
            log(f"{name}: {problem.kind} {size}")
            for spec in solver_specs(problem.kind):
                if only is not None and spec.name not in only:
                    continue
                if not spec.available():
                    continue
                for limit in limits:
                    row = spawn(path, spec.name, limit)
                    allowed = 1.1 * limit + 2.0
                    wall = row.get("wall_s")
                    row.update(instance=name, kind=problem.kind, solver=spec.name,
                               exact=spec.exact, limit=limit, allowed_s=allowed,
                               over=(wall is None and row["status"] == "killed")
                               or (wall is not None and wall > allowed),
                               loadavg=loadavg(2))
                    runs.append(row)
                    log(f"  {spec.name:22s} T={limit:g}: {row['status']:10s} "
                        f"wall {wall if wall is None else round(wall, 2)} s"
                        + ("  OVER" if row["over"] else ""))
    over = [f"{r['instance']}/{r['solver']}@{r['limit']:g}: "
            f"{r['wall_s'] if r['wall_s'] is None else round(r['wall_s'], 2)} s"
            for r in runs if r["over"]]
    report = {"benchmark": "time_limits", "limits": limits,
              "promise": "wall_s <= 1.1 * limit + 2", "instances": instances, "runs": runs,
              "summary": {"runs": len(runs), "over": len(over), "over_runs": over},
              "environment": environment(PACKAGES, detailed=True)}
    emit(report, args.out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
