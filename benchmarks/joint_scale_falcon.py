"""Part 1 of ``joint_scale.py`` (a helper module, not a benchmark): FALCON on the network layer
tables against ``np.sort`` of the same scores, with its stages timed and traced and a profile.

For each network (ResNet-20, MobileNetV1, ResNet-50 with downsample convs) with Kaiming-like
scores and each budget pair of :data:`BUDGETS`: the median wall time of ``pruneopt.solve(problem,
"falcon")`` and of one ``np.sort`` measured alternately in this process, their ratio, falcon's
certified gap, its peak extra memory, and a breakdown of where the time goes.
"""

from __future__ import annotations

import cProfile
import gc
import math
import os
import pstats
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
from harness import loadavg, logger, median, traced_peak

import pruneopt
from pruneopt.formulations.joint.generate import generate_joint
from pruneopt.solvers.fast.joint import sorted_layers
from pruneopt.solvers.fast.joint.falcon import greedy_fill
from pruneopt.solvers.fast.joint.lagrangian import solve_dual
from pruneopt.solvers.fast.joint.sorted_layers import SortedLayers
from pruneopt.solvers.result import finalize

NETWORK_CHOICES = ("resnet20", "mobilenetv1", "resnet50")
# (keep_flops, keep_nnz): FALCON's ResNet-50 scripts pair FLOP and NNZ targets like this
BUDGETS = ((0.2, 0.25), (0.4, 0.48), (0.6, 0.68))
# timed repeats of the falcon solve (and of np.sort next to it) per network
REPEATS = {"resnet20": 7, "mobilenetv1": 5, "resnet50": 2}
QUICK_REPEATS = {"resnet20": 5, "mobilenetv1": 3, "resnet50": 1}

log = logger("joint_scale")


def falcon_stages(problem, measure: Callable[[str, Callable], object]):
    """FALCON's stages with the same calls as ``solve(problem, 'falcon')``, each one run as
    ``measure(stage name, thunk)``; returns the sorted layers and the dual."""
    K, F = problem.nnz_budget, problem.flop_budget
    layers = measure("presort", lambda: SortedLayers(problem.scores, problem.group_ptr,
                                                     problem.flop_cost))
    dual = measure("solve_dual", lambda: solve_dual(layers, K, F))
    k = measure("greedy_fill", lambda: greedy_fill(layers, dual.counts, dual.lam, K, F))
    x = measure("select", lambda: layers.select(problem.scores, k))
    measure("finalize", lambda: finalize(problem, solver="falcon", x=x, bound=dual.bound,
                                         backend_status="feasible", backend="numpy",
                                         backend_version=np.__version__, options={}))
    return layers, dual


def falcon_stage_times(problem) -> dict:
    """One FALCON run split into its stages (seconds of each), with the dual's work counts."""
    seconds = {}

    def timed(name, fn):
        t = time.perf_counter()
        value = fn()
        seconds[f"{name}_s"] = time.perf_counter() - t
        return value

    gc.collect()
    layers, dual = falcon_stages(problem, timed)

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
        **seconds,
        "total_s": sum(seconds.values()),
        "dual_evaluations": dual.evaluations,
        "omega_steps": dual.omega_steps,
        "count_above_calls": calls,
        "count_above_us": count_above_s * 1e6,
        "prefix_us": prefix_s * 1e6,
        # estimate: calls x the cost of one call at the final threshold, over the dual's time
        "count_above_share_of_dual": (calls * count_above_s) / max(seconds["solve_dual_s"], 1e-12),
        "vectorised_count_above": bool(layers.L > int(getattr(sorted_layers, "_LOOP_LAYERS", 0))),
    }


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
    nbytes = problem.scores.nbytes
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
            out[name] = {"peak_extra": (peak - before) / nbytes,
                         "retained": (cur - before) / nbytes,
                         "live_total_at_peak": (peak - base0) / nbytes}
            return val

        falcon_stages(problem, stage)
    finally:
        tracemalloc.stop()
    return out


def falcon_memory(problem) -> dict:
    """Peak extra memory of one ``solve(problem, 'falcon')`` (and of one np.sort, for scale)."""
    nbytes = problem.scores.nbytes
    result, falcon_peak, falcon_retained = traced_peak(lambda: pruneopt.solve(problem, "falcon"))
    del result
    sorted_copy, sort_peak, _ = traced_peak(lambda: np.sort(problem.scores))
    del sorted_copy
    return {
        "peak_extra_bytes": int(falcon_peak),
        "peak_extra_ratio": falcon_peak / nbytes,
        "retained_ratio": falcon_retained / nbytes,  # the result (x as bool[p]) etc.
        "np_sort_peak_ratio": sort_peak / nbytes,
        "scores_nbytes": int(nbytes),
    }


def falcon_profile(problem, top: int = 12) -> list[dict]:
    """cProfile of one solve: the functions with the most own time (numpy calls included)."""
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
        "loadavg": loadavg(2),
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
    # load the solver registry (pyomo etc.) once before anything is timed
    pruneopt.solve(generate_joint(items=100, layers=4, seed=seed), "falcon")
    rows = []
    for network in networks:
        repeats = (QUICK_REPEATS if quick else REPEATS)[network]
        for keep_flops, keep_nnz in BUDGETS:
            rows.append(bench_falcon_instance(network, keep_flops, keep_nnz, seed, repeats))
            gc.collect()
    return rows


__all__ = ["BUDGETS", "NETWORK_CHOICES", "QUICK_REPEATS", "REPEATS", "bench_falcon_instance",
           "falcon_memory", "falcon_profile", "falcon_stage_memory", "falcon_stage_times",
           "falcon_stages", "reference_sort_times", "run_falcon_part"]
