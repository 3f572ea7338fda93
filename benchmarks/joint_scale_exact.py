"""Part 2 of ``joint_scale.py`` (a helper module, not a benchmark): the exact solvers on
random-shape instances of growing size, each solve in a guarded worker process.

Each solver ('highs', 'pyomo-highs', 'cpsat', 'pyomo-scip', and 'highs' with ``fixing=False`` as
'highs-raw') stops at the first size where it takes longer than the limit or does not prove
optimality. Every solve runs in a spawned worker process (in its own process group) with
``time_limit`` = the limit; the worker is killed when it has not answered limit + 30 s after
starting its solve (status 'killed'), because HiGHS can overrun its own time limit on large raw
models (DESIGN §7). Results at each size are cross-checked against each other and against
FALCON's certified bound and feasible objective.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import signal
import time
import traceback

from harness import jsonable, loadavg, logger, rel_diff

import pruneopt
from pruneopt.formulations.joint.generate import generate_joint

EXACT_SIZES = (1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000)
QUICK_MAX_SIZE = 10_000
EXACT_LAYERS = 16  # random layer shape, ~10-20 layers as in small CNNs
EXACT_KEEP_FLOPS, EXACT_KEEP_NNZ = 0.4, 0.48
# label -> (registered solver name, options)
EXACT_SOLVERS = {
    "highs": ("highs", {}),
    "highs-raw": ("highs", {"fixing": False, "model": "items"}),
    "pyomo-highs": ("pyomo-highs", {}),
    "cpsat": ("cpsat", {}),
    "pyomo-scip": ("pyomo-scip", {}),
}
KILL_GRACE_S = 30.0  # a worker is killed this long after its time limit
START_TIMEOUT_S = 300.0  # spawn + import + instance generation

PROOF_REL_TOL = 1e-9  # the result contract's tolerance (solvers/result.py)

log = logger("joint_scale")


def exact_instance_kwargs(p: int, seed: int) -> dict:
    return dict(layers=EXACT_LAYERS, items=int(p), dist="kaiming", shape="random",
                keep_nnz=EXACT_KEEP_NNZ, keep_flops=EXACT_KEEP_FLOPS, seed=seed)


def _exact_worker(conn, solver: str, options: dict, gen_kwargs: dict, limit: float) -> None:
    """Runs in a spawned process: generate the instance, solve it, send back a summary."""
    os.dup2(2, 1)  # anything a backend prints must not reach the parent's JSON stdout
    try:
        os.setpgid(0, 0)  # own process group: the parent can end this worker and its children
    except OSError:
        pass
    try:
        problem = generate_joint(**gen_kwargs)
        conn.send(("started", time.time()))
        t = time.perf_counter()
        result = pruneopt.solve(problem, solver, time_limit=limit, **options)
        wall = time.perf_counter() - t
        info = {k: v for k, v in result.info.items() if isinstance(v, int | float | str | bool)}
        conn.send(("done", {
            "status": result.status,
            "proven_optimal": bool(result.proven_optimal),
            "seconds": result.seconds,
            "wall_seconds": wall,
            "objective": result.objective,
            "bound": result.bound,
            "gap": result.gap,
            "feasible": bool(result.feasible),
            "message": result.message,
            "backend_version": result.backend_version,
            "options_used": jsonable(result.options),
            "info": jsonable(info),
            "peak_rss_mib": _peak_rss_mib(),
        }))
    except BaseException as exc:  # noqa: BLE001 - report everything to the parent
        try:
            conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        except Exception:  # noqa: BLE001
            pass
    finally:
        conn.close()


def _peak_rss_mib() -> float | None:
    """This process's peak resident memory (VmHWM; ru_maxrss would carry the parent's over exec)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def run_exact_guarded(solver: str, options: dict, gen_kwargs: dict, limit: float) -> dict:
    """One exact solve in a spawned worker that is killed limit + 30 s after its solve starts."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    # not a daemon: the library may start its own guard worker inside the solve
    proc = ctx.Process(target=_exact_worker, args=(child, solver, options, gen_kwargs, limit),
                       daemon=False)
    spawned = time.perf_counter()
    proc.start()
    child.close()
    started = None
    deadline = spawned + START_TIMEOUT_S
    out = None
    while True:
        now = time.perf_counter()
        if now >= deadline:
            break
        try:
            ready = parent.poll(min(0.5, deadline - now))
        except (EOFError, OSError):
            ready = False
        if ready:
            try:
                msg = parent.recv()
            except (EOFError, OSError):
                break  # the worker died without a word
            if msg[0] == "started":
                started = time.perf_counter()
                deadline = started + limit + KILL_GRACE_S
                continue
            out = msg
            break
        if not proc.is_alive() and not parent.poll(0):
            break
    elapsed = time.perf_counter() - (started if started is not None else spawned)
    row = {"wall_since_start_s": elapsed}
    if out is None:
        alive = proc.is_alive()
        if alive:
            _kill_worker(proc)
        proc.join(10)
        if alive:
            row.update(status="killed", proven_optimal=False, seconds=elapsed,
                       message=(f"no answer {limit + KILL_GRACE_S:.0f} s after the solve started "
                                f"(time_limit={limit:g} s); worker killed" if started is not None
                                else f"worker did not start within {START_TIMEOUT_S:.0f} s; killed"))
        else:
            row.update(status="crashed", proven_optimal=False, seconds=elapsed,
                       message=f"worker exited with code {proc.exitcode} without a result")
    elif out[0] == "error":
        proc.join(10)
        row.update(status="exception", proven_optimal=False, seconds=elapsed, message=out[1],
                   traceback=out[2])
    else:
        proc.join(10)
        row.update(out[1])
    if proc.is_alive():  # should not happen; never leave a worker behind
        _kill_worker(proc)
        proc.join(5)
    _kill_group(proc.pid)  # any grandchild (a library guard worker) still in the group
    parent.close()
    return row


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass


def _kill_worker(proc) -> None:
    """End the worker and everything in its process group (only processes this script started)."""
    _kill_group(proc.pid)
    if proc.is_alive():
        proc.kill()


def falcon_reference(p: int, seed: int) -> dict:
    """FALCON on the same instance, in this process: a certified bound and a feasible value."""
    problem = generate_joint(**exact_instance_kwargs(p, seed))
    r = pruneopt.solve(problem, "falcon")
    return {"p": problem.num_items, "layers": problem.num_groups,
            "nnz_budget": problem.nnz_budget, "flop_budget": problem.flop_budget,
            "falcon_objective": r.objective, "falcon_bound": r.bound, "falcon_gap": r.gap,
            "falcon_seconds": r.seconds}


def crosscheck_size(runs: list[dict], ref: dict) -> dict:
    """Flags at one size: disagreeing proven optima, bounds below a feasible value, and exact
    objectives outside FALCON's certified [objective, bound]."""
    flags = []
    tol = PROOF_REL_TOL
    feasible = [(r["label"], r["objective"]) for r in runs
                if r.get("feasible") and isinstance(r.get("objective"), float)
                and math.isfinite(r["objective"])]
    feasible.append(("falcon", ref["falcon_objective"]))
    best_label, best_obj = max(feasible, key=lambda t: t[1])
    proven = [(r["label"], r["objective"]) for r in runs if r.get("proven_optimal")]
    for label, obj in proven:
        if obj < best_obj - tol * max(1.0, abs(best_obj)):
            flags.append(f"{label}: proven optimum {obj:.15g} is beaten by {best_label} "
                         f"({best_obj:.15g}, {rel_diff(obj, best_obj):.2e} relative)")
        if obj > ref["falcon_bound"] + tol * max(1.0, abs(ref["falcon_bound"])):
            flags.append(f"{label}: objective {obj:.15g} exceeds FALCON's certified LP bound "
                         f"{ref['falcon_bound']:.15g}")
    for r in runs:
        b = r.get("bound")
        if isinstance(b, float) and math.isfinite(b) and b < best_obj - tol * max(1.0, abs(best_obj)):
            flags.append(f"{r['label']}: bound {b:.15g} is below {best_label}'s feasible "
                         f"objective {best_obj:.15g}")
    for i, (la, oa) in enumerate(proven):
        for lb, ob in proven[i + 1:]:
            if rel_diff(oa, ob) > tol:
                flags.append(f"{la} and {lb} both proven but differ: {oa:.15g} vs {ob:.15g}")
    return {"p": ref["p"], "best_objective": best_obj, "best_by": best_label,
            "falcon_objective": ref["falcon_objective"], "falcon_bound": ref["falcon_bound"],
            "falcon_gap_to_best": rel_diff(ref["falcon_objective"], best_obj),
            "flags": flags}


def run_exact_part(solvers: list[str], sizes: list[int], limit: float, seed: int) -> dict:
    instances = {}
    for p in sizes:
        instances[p] = falcon_reference(p, seed)
    runs = []
    largest_proven = {}
    stopped_at = {}
    for label in solvers:
        solver, options = EXACT_SOLVERS[label]
        largest_proven[label] = None
        stopped_at[label] = None
        for p in sizes:
            log(f"exact {label:11s} p={p:>9,d} (limit {limit:g} s) ...")
            load = loadavg(2)
            row = run_exact_guarded(solver, options, exact_instance_kwargs(p, seed), limit)
            row = {"label": label, "solver": solver, "options": options, "p": p,
                   "time_limit": limit, "loadavg_before": load, **row}
            runs.append(row)
            ok = bool(row.get("proven_optimal")) and float(row.get("seconds", math.inf)) <= limit
            gap = row.get("gap")
            log(f"exact {label:11s} p={p:>9,d}: {row['status']:10s} "
                f"proven={bool(row.get('proven_optimal'))} {row.get('seconds', math.nan):8.2f}s "
                f"gap={gap if gap is None else f'{gap:.2e}'}  {str(row.get('message', ''))[:120]}")
            if not ok:
                reason = ("not available here" if "not available" in str(row.get("message", ""))
                          else f"{row['status']} at p={p}"
                          + ("" if row.get("proven_optimal") else " (not proven)")
                          + (f", {row.get('seconds', math.nan):.1f} s > {limit:g} s"
                             if float(row.get("seconds", 0.0)) > limit else ""))
                stopped_at[label] = {"p": p, "reason": reason}
                break
            largest_proven[label] = p
    checks = []
    for p in sizes:
        at_p = [r for r in runs if r["p"] == p and r["status"] not in ("killed", "crashed",
                                                                        "exception")]
        if at_p:
            checks.append(crosscheck_size(at_p, instances[p]))
    return {
        "time_limit_s": limit,
        "kill_after_s": limit + KILL_GRACE_S,
        "instance": {"shape": "random", "dist": "kaiming", "layers": EXACT_LAYERS,
                     "keep_flops": EXACT_KEEP_FLOPS, "keep_nnz": EXACT_KEEP_NNZ, "seed": seed},
        "sizes": sizes,
        "instances": list(instances.values()),
        "runs": runs,
        "largest_proven": largest_proven,
        "stopped_at": stopped_at,
        "crosscheck": checks,
        "crosscheck_flags": [f for c in checks for f in c["flags"]],
    }


__all__ = ["EXACT_SIZES", "EXACT_SOLVERS", "KILL_GRACE_S", "QUICK_MAX_SIZE", "crosscheck_size",
           "exact_instance_kwargs", "falcon_reference", "run_exact_guarded", "run_exact_part"]
