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
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import math
import multiprocessing as mp
import os
import platform
import pstats
import statistics
import sys
import time
import tracemalloc
import traceback

import numpy as np

# --------------------------------------------------------------------------------------- settings
NETWORK_CHOICES = ("resnet20", "mobilenetv1", "resnet50")
# (keep_flops, keep_nnz): FALCON's ResNet-50 scripts pair FLOP and NNZ targets like this
BUDGETS = ((0.2, 0.25), (0.4, 0.48), (0.6, 0.68))
# timed repeats of the falcon solve (and of np.sort next to it) per network
REPEATS = {"resnet20": 7, "mobilenetv1": 5, "resnet50": 2}
QUICK_REPEATS = {"resnet20": 5, "mobilenetv1": 3, "resnet50": 1}

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

TARGET_FALCON_RATIO = 2.0
TARGET_FALCON_GAP = 1e-6
TARGET_FALCON_P = 25_502_912
TARGETS_EXACT = (("highs", 100_000, 60.0), ("pyomo-highs", 10_000, 30.0))

PROOF_REL_TOL = 1e-9  # the result contract's tolerance (solvers/result.py)


# --------------------------------------------------------------------------------------- helpers
def log(msg: str) -> None:
    print(f"[joint_scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def jsonable(value):
    """Plain JSON values; NaN becomes null and ±inf the strings 'inf' / '-inf'."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


def median(xs):
    return float(statistics.median(xs)) if xs else math.nan


def rel_diff(a: float, b: float) -> float:
    scale = max(abs(a), abs(b))
    return 0.0 if scale == 0 else abs(a - b) / scale


def environment() -> dict:
    """Versions from package metadata (no backend is imported in this process)."""
    from importlib import metadata

    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        env["ram_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        env["ram_gib"] = None
    for dist in ("pruneopt", "numpy", "highspy", "pyomo", "ortools", "PySCIPOpt"):
        try:
            env[dist.lower()] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            env[dist.lower()] = None
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")),
                         None)
        env["cpu_model"] = model
    except OSError:
        env["cpu_model"] = None
    env["git"] = git_state()
    return env


def git_state() -> dict | None:
    """HEAD and the modified files of the checkout this benchmark imports pruneopt from."""
    import subprocess

    import pruneopt

    root = os.path.dirname(os.path.dirname(os.path.abspath(pruneopt.__file__)))
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "-C", root, "status", "--porcelain"], capture_output=True,
                                text=True, timeout=10).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"root": root, "head": head or None, "modified": [ln.strip() for ln in status]}


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# ============================================================================ part 1: falcon
def falcon_stage_times(problem) -> dict:
    """One FALCON run split into its stages, with the same calls as ``solve(problem, 'falcon')``."""
    from pruneopt.solvers.fast.joint.falcon import greedy_fill
    from pruneopt.solvers.fast.joint.lagrangian import solve_dual
    from pruneopt.solvers.fast.joint.sorted_layers import SortedLayers
    from pruneopt.solvers.result import finalize

    K, F = problem.nnz_budget, problem.flop_budget
    gc.collect()
    t0 = time.perf_counter()
    layers = SortedLayers(problem.scores, problem.group_ptr, problem.flop_cost)
    t1 = time.perf_counter()
    dual = solve_dual(layers, K, F)
    t2 = time.perf_counter()
    k = greedy_fill(layers, dual.counts, dual.lam, K, F)
    t3 = time.perf_counter()
    x = layers.select(problem.scores, k)
    t4 = time.perf_counter()
    finalize(problem, solver="falcon", x=x, bound=dual.bound, backend_status="feasible",
             backend="numpy", backend_version=np.__version__, options={}, message="")
    t5 = time.perf_counter()

    # cost of one count_above (the unit of work of the dual: one per ω step and per λ evaluation)
    thr = dual.lam * layers.cost + dual.omega
    n = 200
    c0 = time.perf_counter()
    for _ in range(n):
        layers.count_above(thr)
    count_above_s = (time.perf_counter() - c0) / n
    d0 = time.perf_counter()
    for _ in range(n):
        layers.prefix(dual.counts)
    prefix_s = (time.perf_counter() - d0) / n
    calls = dual.evaluations + dual.omega_steps
    return {
        "presort_s": t1 - t0,
        "solve_dual_s": t2 - t1,
        "greedy_fill_s": t3 - t2,
        "select_s": t4 - t3,
        "finalize_s": t5 - t4,
        "total_s": t5 - t0,
        "dual_evaluations": dual.evaluations,
        "omega_steps": dual.omega_steps,
        "count_above_calls": calls,
        "count_above_us": count_above_s * 1e6,
        "prefix_us": prefix_s * 1e6,
        # estimate: calls x the cost of one call at the final threshold, over the dual's time
        "count_above_share_of_dual": (calls * count_above_s) / max(t2 - t1, 1e-12),
        "vectorised_count_above": bool(layers.L > _loop_layers()),
    }


def _loop_layers() -> int:
    from pruneopt.solvers.fast.joint import sorted_layers

    return int(getattr(sorted_layers, "_LOOP_LAYERS", 0))


def reference_sort_times(problem) -> dict:
    """What the presort must pay at least: the per-layer in-place sort of a negated copy."""
    s = problem.scores
    ptr = problem.group_ptr.tolist()
    gc.collect()
    t0 = time.perf_counter()
    neg = np.negative(s)
    t1 = time.perf_counter()
    for a, b in zip(ptr[:-1], ptr[1:]):
        if b - a > 1:
            neg[a:b].sort(kind="quicksort")
    t2 = time.perf_counter()
    cum = np.empty_like(neg)
    for a, b in zip(ptr[:-1], ptr[1:]):
        if b > a:
            np.cumsum(neg[a:b], out=cum[a:b])
    t3 = time.perf_counter()
    del neg, cum
    return {"negate_copy_s": t1 - t0, "per_layer_sort_s": t2 - t1, "per_layer_cumsum_s": t3 - t2}


def falcon_stage_memory(problem) -> dict:
    """tracemalloc peak of each stage (bytes above what was live before it) / scores.nbytes."""
    from pruneopt.solvers.fast.joint.falcon import greedy_fill
    from pruneopt.solvers.fast.joint.lagrangian import solve_dual
    from pruneopt.solvers.fast.joint.sorted_layers import SortedLayers
    from pruneopt.solvers.result import finalize

    nbytes = problem.scores.nbytes
    K, F = problem.nnz_budget, problem.flop_budget
    out = {}
    gc.collect()
    tracemalloc.start()
    try:
        base0 = tracemalloc.get_traced_memory()[0]

        def stage(name, fn):
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            val = fn()
            cur, peak = tracemalloc.get_traced_memory()
            out[name] = {"peak_extra": (peak - before) / nbytes, "retained": (cur - before) / nbytes,
                         "live_total_at_peak": (peak - base0) / nbytes}
            return val

        layers = stage("presort", lambda: SortedLayers(problem.scores, problem.group_ptr,
                                                        problem.flop_cost))
        dual = stage("solve_dual", lambda: solve_dual(layers, K, F))
        k = stage("greedy_fill", lambda: greedy_fill(layers, dual.counts, dual.lam, K, F))
        x = stage("select", lambda: layers.select(problem.scores, k))
        stage("finalize", lambda: finalize(problem, solver="falcon", x=x, bound=dual.bound,
                                           backend_status="feasible", backend="numpy",
                                           backend_version=np.__version__, options={}))
    finally:
        tracemalloc.stop()
    return out


def falcon_memory(problem) -> dict:
    """Peak extra memory of one ``solve(problem, 'falcon')`` (and of one np.sort, for scale)."""
    import pruneopt

    nbytes = problem.scores.nbytes
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = pruneopt.solve(problem, "falcon")
        cur, peak = tracemalloc.get_traced_memory()
        falcon_peak, falcon_retained = peak - base, cur - base
        del result
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        sorted_copy = np.sort(problem.scores)
        sort_peak = tracemalloc.get_traced_memory()[1] - base
        del sorted_copy
    finally:
        tracemalloc.stop()
    return {
        "peak_extra_bytes": int(falcon_peak),
        "peak_extra_ratio": falcon_peak / nbytes,
        "retained_ratio": falcon_retained / nbytes,  # the result (x as bool[p]) etc.
        "np_sort_peak_ratio": sort_peak / nbytes,
        "scores_nbytes": int(nbytes),
    }


def falcon_profile(problem, top: int = 12) -> list[dict]:
    """cProfile of one solve: the functions with the most own time (numpy calls included)."""
    import pruneopt

    prof = cProfile.Profile()
    gc.collect()
    prof.enable()
    pruneopt.solve(problem, "falcon")
    prof.disable()
    stats = pstats.Stats(prof)
    rows = []
    for (filename, line, func), (cc, nc, tt, ct, _callers) in stats.stats.items():
        short = os.path.basename(filename) if filename != "~" else ""
        rows.append({"function": f"{short}:{line}({func})" if short else func,
                     "calls": nc, "tottime_s": tt, "cumtime_s": ct})
    rows.sort(key=lambda r: -r["tottime_s"])
    return rows[:top]


def bench_falcon_instance(network: str, keep_flops: float, keep_nnz: float, seed: int,
                          repeats: int, problem=None) -> dict:
    import pruneopt
    from pruneopt.formulations.joint.generate import generate_joint

    t0 = time.perf_counter()
    if problem is None:
        problem = generate_joint(shape=network, dist="kaiming", keep_nnz=keep_nnz,
                                 keep_flops=keep_flops, seed=seed)
    gen_s = time.perf_counter() - t0
    s = problem.scores

    # untimed passes first: the stage breakdown also warms caches and lazy imports
    stages = falcon_stage_times(problem)
    stages.update(reference_sort_times(problem))

    falcon_s, sort_s, result = [], [], None
    for r in range(repeats):
        # alternate the order so that neither measurement always runs on a "warmer" machine
        order = ("sort", "falcon") if r % 2 == 0 else ("falcon", "sort")
        for what in order:
            gc.collect()
            if what == "sort":
                t = time.perf_counter()
                sorted_copy = np.sort(s)
                sort_s.append(time.perf_counter() - t)
                del sorted_copy
            else:
                t = time.perf_counter()
                result = pruneopt.solve(problem, "falcon")
                wall = time.perf_counter() - t
                falcon_s.append(result.seconds if math.isfinite(result.seconds) else wall)
                if r < repeats - 1:
                    result = result.replace(x=None)
    mem = falcon_memory(problem)
    stage_mem = falcon_stage_memory(problem)
    profile = falcon_profile(problem)

    f_med, s_med = median(falcon_s), median(sort_s)
    row = {
        "network": network,
        "p": problem.num_items,
        "layers": problem.num_groups,
        "keep_flops": keep_flops,
        "keep_nnz": keep_nnz,
        "nnz_budget": problem.nnz_budget,
        "flop_budget": problem.flop_budget,
        "generate_seconds": gen_s,
        "repeats": repeats,
        "falcon_seconds": falcon_s,
        "sort_seconds": sort_s,
        "falcon_median_s": f_med,
        "sort_median_s": s_med,
        "ratio": f_med / s_med,
        "ratio_of_minimums": min(falcon_s) / min(sort_s),
        "status": result.status,
        "objective": result.objective,
        "bound": result.bound,
        "gap": result.gap,
        "feasible": result.feasible,
        "dual_evaluations": result.info.get("dual_evaluations"),
        "omega_steps": result.info.get("omega_steps"),
        "loadavg": loadavg(),
        "memory": mem,
        "breakdown": stages,
        "stage_memory": stage_mem,
        "profile_top": profile,
    }
    log(f"falcon {network:11s} p={problem.num_items:>10,d} flops {keep_flops:.1f} nnz "
        f"{keep_nnz:.2f}: falcon {f_med:.3f}s  np.sort {s_med:.3f}s  ratio {row['ratio']:.2f}  "
        f"gap {result.gap:.2e}  mem {mem['peak_extra_ratio']:.2f}x  "
        f"[presort {stages['presort_s']:.3f} dual {stages['solve_dual_s']:.3f} "
        f"({stages['dual_evaluations']} evals, {stages['omega_steps']} ω-steps) "
        f"fill {stages['greedy_fill_s']:.4f} select {stages['select_s']:.3f} "
        f"finalize {stages['finalize_s']:.3f}]")
    return row


def run_falcon_part(networks: list[str], seed: int, quick: bool) -> list[dict]:
    from pruneopt.formulations.joint.generate import generate_joint

    # load the solver registry (pyomo etc.) once before anything is timed
    import pruneopt

    pruneopt.solve(generate_joint(items=100, layers=4, seed=seed), "falcon")
    rows = []
    for network in networks:
        repeats = (QUICK_REPEATS if quick else REPEATS)[network]
        for keep_flops, keep_nnz in BUDGETS:
            rows.append(bench_falcon_instance(network, keep_flops, keep_nnz, seed, repeats))
            gc.collect()
    return rows


# ============================================================================ part 2: exact solvers
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
        import pruneopt
        from pruneopt.formulations.joint.generate import generate_joint

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
    import signal

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
    import pruneopt
    from pruneopt.formulations.joint.generate import generate_joint

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
            load = loadavg()
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
    if args.networks is None:
        networks = ["resnet20"] if args.quick else list(NETWORK_CHOICES)
    elif args.networks.strip().lower() == "none":
        networks = []
    else:
        networks = [n.strip() for n in args.networks.split(",") if n.strip()]
    bad = [n for n in networks if n not in NETWORK_CHOICES]
    if bad:
        ap.error(f"--networks: unknown {bad} (known: {', '.join(NETWORK_CHOICES)})")
    if args.exact_solvers.strip().lower() == "none":
        solvers = []
    else:
        solvers = [s.strip() for s in args.exact_solvers.split(",") if s.strip()]
    bad = [s for s in solvers if s not in EXACT_SOLVERS]
    if bad:
        ap.error(f"--exact-solvers: unknown {bad} (known: {', '.join(EXACT_SOLVERS)})")
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
        "environment": environment(),
        "settings": {"budgets_keep_flops_keep_nnz": BUDGETS,
                     "repeats": QUICK_REPEATS if args.quick else REPEATS,
                     "ratio": "median falcon seconds / median np.sort seconds, measured "
                              "alternately in this process on the same scores array",
                     "memory": "tracemalloc peak during the solve minus memory live before it, "
                               "divided by scores.nbytes"},
    }
    res["loadavg_start"] = loadavg()
    res["falcon"] = run_falcon_part(args.network_list, args.seed, args.quick)
    res["exact"] = (run_exact_part(args.solver_list, sizes, args.exact_max_seconds, args.seed)
                    if args.solver_list else None)
    res["summary"] = summarize(res["falcon"], res["exact"])
    res["loadavg_end"] = loadavg()
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
