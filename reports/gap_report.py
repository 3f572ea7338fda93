"""The optimality-gap report: a study of generated instances, every practical solver on each,
cross-checked, summarised in ``rows.csv``, ``report.md`` and a standalone ``index.html``.

Three separate pieces, so that later formulations and models only add jobs or renderers:

1. **Study** — :func:`build_study` returns a list of :class:`Job`: one generated instance
   (:class:`InstanceSpec`, rebuilt from its seed wherever the job runs), the solvers practical at
   its size (:data:`SOLVER_MAX_ITEMS`), and a time limit.
2. **Runner** — :func:`run_study` runs the jobs (in a process pool by default; ``workers=1`` runs
   them in this process), each job one :func:`~pruneopt.solvers.crosscheck.crosscheck` so that the
   verdicts compare every solver of an instance, and returns one row per instance × solver
   (columns :data:`ROW_COLUMNS`). :func:`add_best_bound_gaps` then sets ``gap_to_best_bound``.
3. **Renderers** — :func:`summarize`, :func:`render_markdown`, :func:`make_plots` and
   :func:`render_html` read only the rows DataFrame (and a small ``meta`` dict).

The honest figure is the **gap to the best bound** of an instance: the bound of the best solver that
proved optimality there (its bound meets its objective within 1e-9), else the smallest (tightest)
valid bound any solver reported — FALCON's LP dual, an exact solver's bound at its time limit, or a
heuristic's single-row LP bound. A solver's own ``gap`` only measures it against its own bound.

:func:`build_report` ties the three together and writes the files (each written to a temporary
file and renamed, so a crash leaves no half-written file).
"""

from __future__ import annotations

import concurrent.futures as cf
import io
import math
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# ---------------------------------------------------------------------------------------- study
#: Largest instance (items) on which each solver is run; solvers not listed run at any size,
#: except exact solvers registered later, which default to :data:`DEFAULT_EXACT_MAX_ITEMS`.
SOLVER_MAX_ITEMS: dict[str, int] = {
    "pyomo-highs": 10_000,  # the Pyomo build is slow beyond ~1e4 items
    "highs": 300_000,  # highspy from arrays, reduced-cost fixing
    "cpsat": 2_000,
    "pyomo-scip": 1_000,
    "exact": 100_000_000,  # count-space branch and bound: proven at network scale
}
DEFAULT_EXACT_MAX_ITEMS = 2_000

#: (keep_nnz, keep_flops) pairs: the fractions of weights and of dense MACs kept.
BUDGETS: tuple[tuple[float, float], ...] = ((0.25, 0.2), (0.48, 0.4), (0.68, 0.6))

TIME_LIMIT = 20.0  # seconds per solver run, instances up to 20,000 items
TIME_LIMIT_LARGE = 10.0  # per solver run on network-size instances (HiGHS may not finish there)
LARGE_ITEMS = 100_000

GAP_FLOOR = 1e-12  # gaps below this (zero, or float rounding) are drawn at the floor

ROW_COLUMNS = [
    "instance", "shape", "p", "layers", "dist", "keep_nnz", "keep_flops", "instance_seed",
    "nnz_budget", "flop_budget", "formulation", "sense", "solver", "kind", "time_limit",
    "status", "proven_optimal", "objective", "bound", "gap", "gap_to_best_bound",
    "best_bound", "best_bound_source", "seconds", "feasible", "verdict", "nnz_used",
    "flops_used", "backend", "backend_version", "message",
]


@dataclass(frozen=True)
class InstanceSpec:
    """A generated joint instance, reproducible from its fields (see ``generate_joint``)."""

    shape: str
    items: int
    layers: int
    dist: str
    keep_nnz: float
    keep_flops: float
    seed: int

    @property
    def id(self) -> str:
        size = f"p{self.items}-L{self.layers}" if self.shape == "random" else self.shape
        return f"{size}-{self.dist}-F{self.keep_flops:g}"

    def build(self):
        from pruneopt.formulations.joint.generate import generate_joint

        return generate_joint(layers=self.layers, items=self.items, dist=self.dist,
                              shape=self.shape, keep_nnz=self.keep_nnz,
                              keep_flops=self.keep_flops, seed=self.seed)


@dataclass(frozen=True)
class Job:
    """One instance and the solvers run on it (together, so that they are cross-checked)."""

    instance: InstanceSpec
    solvers: tuple[str, ...]
    time_limit: float
    p: int = 0  # number of items (filled by build_study)
    options: dict = field(default_factory=dict, hash=False, compare=False)


def instance_seed(study_seed: int, key: str) -> int:
    """A per-instance seed that depends only on the study seed and the instance's own key."""
    return int(np.random.SeedSequence([int(study_seed), zlib.crc32(key.encode())])
               .generate_state(1)[0])


def practical_solvers(problem, max_items: dict[str, int] | None = None) -> tuple[str, ...]:
    """The available solvers of ``problem`` that are practical at its size."""
    from pruneopt.solvers.registry import solver_specs

    limits = SOLVER_MAX_ITEMS if max_items is None else max_items
    p = problem.num_items
    names = []
    for spec in solver_specs(problem):
        if not spec.available():
            continue
        cap = limits.get(spec.name, DEFAULT_EXACT_MAX_ITEMS if spec.exact else None)
        if cap is None or p <= cap:
            names.append(spec.name)
    return tuple(names)


def _tiers(quick: bool) -> list[tuple[str, int, tuple[str, ...], tuple[tuple[float, float], ...]]]:
    """(shape, items, distributions, budgets) of each size tier of the study."""
    if quick:
        return [
            ("random", 300, ("kaiming", "lognormal", "ties"), BUDGETS),
            ("random", 1000, ("kaiming", "lognormal"), (BUDGETS[0],)),
        ]
    return [
        ("random", 300, ("kaiming", "lognormal", "ties"), BUDGETS),
        ("random", 2000, ("kaiming", "lognormal"), BUDGETS),
        ("random", 20_000, ("kaiming", "lognormal"), BUDGETS),
        ("resnet20", 0, ("kaiming", "lognormal"), BUDGETS),
    ]


def build_study(*, quick: bool = False, seed: int = 0, time_limit: float | None = None,
                max_items: dict[str, int] | None = None) -> list[Job]:
    """The jobs of the joint-ILP study (same ``seed`` → same instances).

    Full: p ∈ {300, 2000, 20000} with shape ``random`` (8–20 layers, drawn per instance) and the
    ResNet-20 layer table (268,336 weights); kaiming and lognormal scores (and ties at p = 300);
    the three (keep_nnz, keep_flops) pairs of :data:`BUDGETS`. Quick: p = 300 as in full, plus
    two instances of p = 1000 (every exact solver finishes in seconds there). ``time_limit``
    overrides both default limits.
    """
    jobs = []
    for shape, items, dists, budgets in _tiers(quick):
        for dist in dists:
            for keep_nnz, keep_flops in budgets:
                key = f"{shape}/{items}/{dist}/{keep_nnz:g}/{keep_flops:g}"
                s = instance_seed(seed, key)
                layers = int(np.random.default_rng(s).integers(8, 21)) if shape == "random" else 0
                spec = InstanceSpec(shape=shape, items=items, layers=layers, dist=dist,
                                    keep_nnz=keep_nnz, keep_flops=keep_flops, seed=s)
                problem = spec.build()
                if shape != "random":
                    spec = InstanceSpec(shape=shape, items=problem.num_items,
                                        layers=problem.num_groups, dist=dist, keep_nnz=keep_nnz,
                                        keep_flops=keep_flops, seed=s)
                limit = time_limit if time_limit is not None else (
                    TIME_LIMIT_LARGE if problem.num_items > LARGE_ITEMS else TIME_LIMIT)
                jobs.append(Job(instance=spec, solvers=practical_solvers(problem, max_items),
                                time_limit=float(limit), p=problem.num_items))
    return jobs


# ---------------------------------------------------------------------------------------- runner
def _base_row(job: Job, problem=None) -> dict:
    spec = job.instance
    row = {"instance": spec.id, "shape": spec.shape, "p": job.p or spec.items,
           "layers": spec.layers, "dist": spec.dist, "keep_nnz": spec.keep_nnz,
           "keep_flops": spec.keep_flops, "instance_seed": spec.seed, "time_limit": job.time_limit}
    if problem is not None:
        row.update(p=problem.num_items, layers=problem.num_groups,
                   nnz_budget=problem.nnz_budget, flop_budget=problem.flop_budget,
                   formulation=problem.kind, sense=problem.sense)
    return row


def _kinds(names) -> dict[str, str]:
    from pruneopt.solvers.registry import solver_specs

    exact = {s.name: s.exact for s in solver_specs("joint")}
    return {n: ("exact" if exact.get(n) else "fast") for n in names}


def error_rows(job: Job, message: str) -> list[dict]:
    """Rows for a job that produced no results (a crash, or a worker that did not return)."""
    kinds = _kinds(job.solvers)
    return [{**_base_row(job), "formulation": "joint", "sense": "maximize", "solver": name,
             "kind": kinds[name], "status": "error", "proven_optimal": False,
             "feasible": False, "verdict": "error", "message": message} for name in job.solvers]


def run_job(job: Job) -> list[dict]:
    """Build the job's instance, cross-check its solvers, return one row dict per solver."""
    from pruneopt.solvers.crosscheck import crosscheck

    problem = job.instance.build()
    df = crosscheck(problem, job.solvers, time_limit=job.time_limit,
                    options=job.options or None)
    results = df.attrs["results"]
    kinds = _kinds(job.solvers)
    base = _base_row(job, problem)
    rows = []
    for rec, res in zip(df.to_dict("records"), results, strict=True):
        rows.append({
            **base, **rec, "kind": kinds.get(rec["solver"], "fast"),
            "nnz_used": res.usage.get("nnz", math.nan),
            "flops_used": res.usage.get("flops", math.nan),
            "backend": res.backend, "backend_version": res.backend_version,
        })
    return rows


def _job_budget(job: Job) -> float:
    # each solver: its limit, HiGHS's outside guard (≤ limit/4 + 5 s), model building; plus slack
    return len(job.solvers) * (2.0 * job.time_limit + 30.0) + 60.0


def _kill_pool(executor: cf.ProcessPoolExecutor) -> None:
    for proc in list((getattr(executor, "_processes", None) or {}).values()):
        try:
            proc.kill()
        except Exception:  # noqa: BLE001 — already gone
            pass
    executor.shutdown(wait=False, cancel_futures=True)


def run_study(jobs: list[Job], *, progress: bool = True, workers: int | None = None) -> pd.DataFrame:
    """Run every job; return the rows (one per instance × solver) in job order.

    ``workers`` > 1 runs jobs in a pool of spawned processes (default: 2, or fewer CPUs); a job
    that raises becomes ``error`` rows; if no job finishes for longer than any job may take, the
    jobs still out are recorded as ``error`` rows and their workers ended.
    """
    from tqdm.auto import tqdm

    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    workers = max(1, min(int(workers), len(jobs) or 1))
    done: dict[int, list[dict]] = {}
    bar = tqdm(total=len(jobs), desc="gap report", unit="instance", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)

    def finish(i: int, rows: list[dict]) -> None:
        done[i] = rows
        bar.set_postfix_str(jobs[i].instance.id, refresh=False)
        bar.update(1)

    try:
        if workers == 1:
            for i, job in enumerate(jobs):
                try:
                    rows = run_job(job)
                except Exception as exc:  # noqa: BLE001 — one bad job must not end the report
                    rows = error_rows(job, f"job failed: {type(exc).__name__}: {exc}")
                finish(i, rows)
        else:
            # largest first, so that the long jobs do not end up alone at the tail
            order = sorted(range(len(jobs)), key=lambda i: -jobs[i].p)
            stall = max(_job_budget(j) for j in jobs)
            executor = cf.ProcessPoolExecutor(max_workers=workers,
                                              mp_context=mp.get_context("spawn"))
            futures = {executor.submit(run_job, jobs[i]): i for i in order}
            pending = set(futures)
            try:
                while pending:
                    finished, pending = cf.wait(pending, timeout=stall,
                                                return_when=cf.FIRST_COMPLETED)
                    if not finished:
                        for fut in pending:
                            i = futures[fut]
                            finish(i, error_rows(jobs[i], f"not finished: no job returned for "
                                                          f"{stall:.0f} s; worker ended"))
                        pending = set()
                        _kill_pool(executor)
                        break
                    for fut in finished:
                        i = futures[fut]
                        try:
                            rows = fut.result()
                        except Exception as exc:  # noqa: BLE001 — incl. a broken pool
                            rows = error_rows(jobs[i], f"job failed: {type(exc).__name__}: {exc}")
                        finish(i, rows)
            finally:
                executor.shutdown(wait=False, cancel_futures=True)
    finally:
        bar.close()
    rows = [row for i in range(len(jobs)) for row in done.get(i, [])]
    df = pd.DataFrame(rows)
    for col in ROW_COLUMNS:
        if col not in df.columns:
            df[col] = math.nan
    return add_best_bound_gaps(df[ROW_COLUMNS])


def _rel_gap(ref: float, z: float) -> float:
    if not (math.isfinite(ref) and math.isfinite(z)):
        return math.nan
    scale = max(abs(ref), abs(z))
    return 0.0 if scale == 0.0 else abs(ref - z) / max(scale, 1e-300)


def add_best_bound_gaps(rows: pd.DataFrame) -> pd.DataFrame:
    """Set ``best_bound``, ``best_bound_source`` and ``gap_to_best_bound`` on every row.

    Per instance, the best bound is the bound of the best solver that proved optimality (feasible,
    verdict ``ok``); without one, the tightest finite bound of a row whose bound no feasible
    selection beats (no ``bound-below-feasible`` flag). A row's gap to it is
    |best bound − objective| / max(|best bound|, |objective|); NaN for a row without a feasible x.
    """
    rows = rows.copy()
    rows["best_bound"] = rows["best_bound"].astype("float64")
    rows["gap_to_best_bound"] = rows["gap_to_best_bound"].astype("float64")
    rows["best_bound_source"] = rows["best_bound_source"].astype("object")
    for _, idx in rows.groupby("instance", sort=False).groups.items():
        sub = rows.loc[idx]
        maximize = (sub["sense"].iloc[0] if isinstance(sub["sense"].iloc[0], str)
                    else "maximize") == "maximize"
        verdict = sub["verdict"].astype(str)
        proven = sub[(sub["proven_optimal"] == True) & (sub["feasible"] == True)  # noqa: E712
                     & (verdict == "ok")]
        ref, source = math.nan, "none"
        if len(proven):
            best = proven.sort_values("objective", ascending=not maximize).iloc[0]
            ref, source = float(best["bound"]), f"proven optimum ({best['solver']})"
        else:
            valid = sub[np.isfinite(sub["bound"].astype(float))
                        & ~verdict.str.contains("bound-below-feasible")]
            if len(valid):
                best = valid.sort_values("bound", ascending=maximize).iloc[0]
                ref, source = float(best["bound"]), f"tightest bound ({best['solver']})"
        rows.loc[idx, "best_bound"] = ref
        rows.loc[idx, "best_bound_source"] = source
        rows.loc[idx, "gap_to_best_bound"] = [
            _rel_gap(ref, float(z)) if f is True or f == 1 else math.nan
            for z, f in zip(sub["objective"], sub["feasible"], strict=True)]
    return rows


# ---------------------------------------------------------------------------------------- renderers
@dataclass
class Section:
    heading: str
    text: str = ""
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    images: list[tuple[str, str]] = field(default_factory=list)  # (plot key, caption)
    after: str = ""


def _solver_order(rows: pd.DataFrame) -> list[str]:
    from pruneopt.solvers.registry import solver_specs

    known = [s.name for s in solver_specs("joint")]
    present = list(dict.fromkeys(rows["solver"].astype(str)))
    return [n for n in known if n in present] + [n for n in present if n not in known]


def _fmt_gap(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return "0" if v == 0 else f"{v:.2e}"


def _fmt_sec(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.3g}" if v < 10 else f"{v:.1f}"


def _flagged(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows["verdict"].astype(str) != "ok"]


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per solver: runs, solved, proven optima, gap to the best bound, seconds, flags."""
    out = []
    for name in _solver_order(rows):
        sub = rows[rows["solver"] == name]
        feas = sub["feasible"] == True  # noqa: E712
        g = sub.loc[feas, "gap_to_best_bound"].astype(float)
        s = sub["seconds"].astype(float)
        out.append({
            "solver": name, "kind": sub["kind"].iloc[0],
            "largest p": int(sub["p"].max()), "instances": len(sub),
            "solved": int(feas.sum()), "proven optimal": int((sub["proven_optimal"] == True).sum()),  # noqa: E712
            "time limit hit": int((sub["status"] == "time_limit").sum()),
            "median gap to best bound": float(g.median()) if len(g) else math.nan,
            "max gap to best bound": float(g.max()) if len(g) else math.nan,
            "median seconds": float(s.median()) if s.notna().any() else math.nan,
            "max seconds": float(s.max()) if s.notna().any() else math.nan,
            "non-ok verdicts": int((sub["verdict"].astype(str) != "ok").sum()),
        })
    return pd.DataFrame(out)


def _display_summary(summary: pd.DataFrame) -> pd.DataFrame:
    d = summary.copy()
    for c in ("median gap to best bound", "max gap to best bound"):
        d[c] = d[c].map(_fmt_gap)
    for c in ("median seconds", "max seconds"):
        d[c] = d[c].map(_fmt_sec)
    d["non-ok verdicts"] = d["non-ok verdicts"].map(lambda n: f"**{n}**" if n else "0")
    return d.astype(str)


def _size_label(row) -> str:
    return f"{row['shape']} p={int(row['p'])}" if row["shape"] != "random" else f"p={int(row['p'])}"


def _gap_by_size(rows: pd.DataFrame) -> pd.DataFrame:
    """Median (max) gap to the best bound per solver (rows) and instance size (columns)."""
    d = rows.assign(size=rows.apply(_size_label, axis=1))
    sizes = list(dict.fromkeys(d.sort_values("p")["size"]))
    out = []
    for name in _solver_order(rows):
        rec = {"solver": name}
        for size in sizes:
            g = d[(d["solver"] == name) & (d["size"] == size) & (d["feasible"] == True)]  # noqa: E712
            g = g["gap_to_best_bound"].astype(float)
            ran = ((d["solver"] == name) & (d["size"] == size)).any()
            rec[size] = (f"{_fmt_gap(g.median())} ({_fmt_gap(g.max())})" if len(g)
                         else ("no feasible x" if ran else "not run"))
        out.append(rec)
    return pd.DataFrame(out).astype(str)


def _instances_table(rows: pd.DataFrame) -> pd.DataFrame:
    out = []
    for inst, sub in rows.groupby("instance", sort=False):
        r0 = sub.iloc[0]
        exact = sub[sub["kind"] == "exact"]
        proven = exact[exact["proven_optimal"] == True]["solver"].tolist()  # noqa: E712
        feas = sub[sub["feasible"] == True]["objective"].astype(float)  # noqa: E712
        out.append({
            "instance": inst, "p": int(r0["p"]), "layers": int(r0["layers"]), "dist": r0["dist"],
            "keep nnz": f"{r0['keep_nnz']:g}", "keep flops": f"{r0['keep_flops']:g}",
            "best objective": f"{feas.max():.10g}" if len(feas) else "—",
            "best bound": f"{r0['best_bound']:.10g}" if math.isfinite(r0["best_bound"]) else "—",
            "source": r0["best_bound_source"],
            "proven by": ", ".join(proven) if proven else ("—" if len(exact) == 0
                                                           else "**none (time limit)**"),
        })
    return pd.DataFrame(out).astype(str)


def _flag_table(rows: pd.DataFrame) -> pd.DataFrame:
    f = _flagged(rows)
    return pd.DataFrame({
        "instance": f["instance"], "solver": f["solver"], "status": f["status"],
        "verdict": f["verdict"].map(lambda v: f"**{v}**"),
        "objective": f["objective"].map(lambda v: f"{v:.12g}"),
        "bound": f["bound"].map(lambda v: f"{v:.12g}"),
        "message": f["message"].astype(str).str.slice(0, 160),
    }).astype(str)


def _versions_table(rows: pd.DataFrame, meta: dict) -> pd.DataFrame:
    out = []
    for name in _solver_order(rows):
        sub = rows[rows["solver"] == name]
        backends = sorted(set(sub["backend"].dropna().astype(str)) - {""})
        versions = sorted(set(sub["backend_version"].dropna().astype(str)) - {"", "nan"})
        out.append({"solver": name, "backend": ", ".join(backends) or "—",
                    "version": ", ".join(versions) or "—"})
    for key, val in meta.get("versions", {}).items():
        out.append({"solver": "(environment)", "backend": key, "version": str(val)})
    return pd.DataFrame(out).astype(str)


def report_sections(rows: pd.DataFrame, meta: dict) -> list[Section]:
    """The report's content, shared by the Markdown and HTML renderers."""
    summary = summarize(rows)
    flagged = _flagged(rows)
    n_inst = rows["instance"].nunique()
    per_limit = (rows.drop_duplicates("instance").groupby("time_limit")["p"].agg(["min", "max"]))
    limits_txt = ", ".join(
        f"{t:g} s on instances of {lo:,} items" if lo == hi else
        f"{t:g} s on instances of {lo:,}–{hi:,} items"
        for t, lo, hi in zip(per_limit.index, per_limit["min"].astype(int),
                             per_limit["max"].astype(int), strict=True)) or "none"
    mode = "quick" if meta.get("quick") else "full"
    sizes = rows.drop_duplicates("instance").groupby(["shape", "p"], sort=True).size()
    size_txt = ", ".join(f"{int(p):,} items ({shape}, {n} instances)" for (shape, p), n in
                         sorted(sizes.items(), key=lambda kv: kv[0][1]))
    shape_notes = {"random": "Shape `random` has 8–20 layers (Dirichlet sizes, CNN-like MAC costs).",
                   "resnet20": "`resnet20` is the real ResNet-20 (CIFAR, 32×32) layer table.",
                   "mobilenetv1": "`mobilenetv1` is the real MobileNetV1 (224×224) layer table.",
                   "resnet50": "`resnet50` is the real ResNet-50 (224×224) layer table."}
    shape_txt = " ".join(shape_notes.get(sh, f"`{sh}`.") for sh in dict.fromkeys(rows["shape"]))
    exact_tl = rows[(rows["kind"] == "exact") & (rows["status"] == "time_limit")]
    sections = []

    head = (f"Mode **{mode}**, seed {meta.get('seed', 0)}, {n_inst} instances, {len(rows)} solver "
            f"runs, {meta.get('workers', 1)} worker process(es), wall time "
            f"{meta.get('wall_seconds', math.nan):.1f} s. Generated {meta.get('generated', '')} "
            f"on {meta.get('host', '')}.")
    if len(flagged):
        verdict_txt = (f"> **CROSS-CHECK FAILED: {len(flagged)} of {len(rows)} solver runs carry a "
                       f"non-'ok' verdict ({', '.join(sorted(set(flagged['solver'])))}). Each one "
                       f"is a bug in a formulation or a solver, or a run that returned nothing; "
                       f"see the section \"Flagged runs\" below.**")
    else:
        verdict_txt = (f"> All {len(rows)} solver runs passed the cross-check (verdict `ok`): no "
                       f"proven optimum beaten, no bound below a feasible objective, no infeasible "
                       f"selection, no two proven optima that differ.")
    sections.append(Section("", head + "\n\n" + verdict_txt))

    sections.append(Section("What was run", (
        "The **joint FLOP/NNZ selection** ILP (FALCON): maximize Σ s_i x_i subject to Σ x_i ≤ K "
        "(NNZ budget) and Σ c_g(i) x_i ≤ F (FLOP budget), x binary; s_i ≥ 0 are importance "
        "scores and c_g the MACs per weight of layer g.\n\n"
        f"Generated instances (`generate_joint`): {size_txt}. {shape_txt} Score distributions: "
        f"{', '.join(f'`{d}`' for d in dict.fromkeys(rows['dist']))}. Budgets: K = ⌊keep_nnz·p⌋ "
        "and F = keep_flops · dense MACs, with (keep_nnz, keep_flops) pairs "
        f"{', '.join(f'({a:g}, {b:g})' for a, b in sorted(set(zip(rows['keep_nnz'], rows['keep_flops']))))}."
        " Each instance's seed derives from the study seed and the instance's own parameters, so "
        "the same seed gives the same instances.\n\n"
        "Every solver runs only where it is practical (its largest instance is in the summary "
        f"table below), with a time limit per run of {limits_txt}; a run may overrun its limit by "
        "a few seconds (model building, HiGHS's outside guard). All solvers of an "
        "instance run one after another in one job and are cross-checked together; "
        f"{meta.get('workers', 1)} job(s) ran at a time, so seconds are wall-clock times with "
        "that many jobs sharing the machine.\n\n"
        "**Units.** FLOPs are counted as MACs (multiply-accumulates) per input sample: a Conv2d "
        "weight costs H_out·W_out MACs, a Linear weight 1. Bias, BatchNorm and activations are "
        "not counted (they are not selection variables). NNZ counts prunable weights.")))

    sections.append(Section("How to read the gap", (
        "**Gap to the best bound** (the honest figure): per instance, the best bound is the bound "
        "of the best solver that proved optimality there (its bound meets its objective within "
        "1e-9 relative), else the smallest valid bound any solver reported (FALCON's LP dual, an "
        "exact solver's dual bound at its time limit, or a heuristic's single-row LP bound). A "
        "row's gap to it is |best bound − objective| / max(|best bound|, |objective|), the "
        "objective always recomputed in numpy from the returned selection. Where an exact solver "
        "proved the optimum this is the true relative loss; elsewhere it is an upper bound on "
        "it.\n\n"
        "A solver's own `gap` (in rows.csv) compares it only with its own bound; a heuristic's own "
        "bound is weak, so its own gap overstates its loss. **Verdicts** come from "
        "`crosscheck`: `beaten-optimum`, `bound-below-feasible`, `infeasible-x`, `optima-differ` "
        "— any of them is a bug.")))

    sections.append(Section("Summary per solver", (
        "solved = runs that returned a feasible selection; proven optimal = bound meets the "
        "objective within 1e-9 (only exact solvers can); gaps are over solved runs."
        + ("" if exact_tl.empty else
           f"\n\nExact solvers stopped at their time limit in **{len(exact_tl)} run(s)** "
           f"({', '.join(f'{k} ×{v}' for k, v in exact_tl['solver'].value_counts().items())}), "
           f"on {exact_tl['instance'].nunique()} instance(s): a time limit is not a bug, but there "
           "the gap to the best bound is an upper bound on the true loss, not a proven figure.")),
        tables=[("", _display_summary(summary))]))

    sections.append(Section(
        "Gap to the best bound by instance size",
        "Median (max) over the instances of each size.",
        tables=[("", _gap_by_size(rows))],
        images=[("gap_vs_budget", "Gap to the best bound vs the fraction of dense MACs kept, per "
                 f"solver (log scale; zero gaps are drawn at {GAP_FLOOR:g}). Points are "
                 "instances, lines join medians."),
                ("time_vs_size", "Solve time vs instance size, per solver (log–log). Points are "
                 "runs, lines join medians; dashed: the time limit.")]))

    if len(flagged):
        sections.append(Section("Flagged runs", (
            f"> **{len(flagged)} run(s) with a non-'ok' verdict. Do not trust these rows; "
            "reproduce with `pruneopt crosscheck` on the instance.**"),
            tables=[("", _flag_table(rows))]))

    sections.append(Section("Instances", "Best bound and who proved it, per instance.",
                            tables=[("", _instances_table(rows))]))
    sections.append(Section("Versions", "", tables=[("", _versions_table(rows, meta))],
                            after=("Files: `rows.csv` (one row per instance × solver, all "
                                   "fields), `report.md`, `index.html`, and the plots as PNG.")))
    return sections


def _md_table(df: pd.DataFrame) -> str:
    from pruneopt.reports.html import numeric_columns

    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    numeric = numeric_columns(df)
    head = "| " + " | ".join(cell(c) for c in df.columns) + " |"
    sep = "|" + "|".join("---:" if c in numeric else "---" for c in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in rec) + " |" for rec in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


TITLE = "pruneopt optimality-gap report"


def _all_sections(rows: pd.DataFrame, meta: dict, extra) -> list[Section]:
    """The joint-ILP sections (when there are joint rows) followed by ``extra``; the versions
    section stays last."""
    extra = list(extra or [])
    if not len(rows):
        return [Section("", _study_head(meta)), *extra,
                Section("Versions", "", tables=[("", _versions_table(rows, meta))])]
    secs = report_sections(rows, meta)
    return [*secs[:-1], *extra, secs[-1]]


def _study_head(meta: dict) -> str:
    return (f"Study **{meta.get('study', 'study')}**, seed {meta.get('seed', 0)}, wall time "
            f"{meta.get('wall_seconds', math.nan):.1f} s. Generated {meta.get('generated', '')} "
            f"on {meta.get('host', '')}.")


def render_markdown(rows: pd.DataFrame, meta: dict | None = None,
                    plot_files: dict[str, str] | None = None, extra=None) -> str:
    """The Markdown report of a rows DataFrame (plots referenced by relative file name);
    ``extra``: more sections (the sweep part of the study)."""
    meta = meta or {}
    out = [f"# {TITLE}", ""]
    for sec in _all_sections(rows, meta, extra):
        if sec.heading:
            out += [f"## {sec.heading}", ""]
        if sec.text:
            out += [sec.text, ""]
        for caption, df in sec.tables:
            if caption:
                out += [f"**{caption}**", ""]
            out += [_md_table(df), ""]
        for key, caption in sec.images:
            if plot_files and key in plot_files:
                out += [f"![{caption}]({os.path.basename(plot_files[key])})", "", f"*{caption}*",
                        ""]
        if sec.after:
            out += [sec.after, ""]
    return "\n".join(out)


def render_html(rows: pd.DataFrame, meta: dict | None = None,
                plots: dict[str, bytes] | None = None, extra=None) -> str:
    """The standalone HTML page of a rows DataFrame (plots as PNG bytes, embedded)."""
    from pruneopt.reports import html

    return html.page(TITLE, _all_sections(rows, meta or {}, extra), plots or {})


# ---------------------------------------------------------------------------------------- plots
_MARKERS = "osD^vP*Xh<>"


def _figure(width=8.0, height=5.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def plot_gap_vs_budget(rows: pd.DataFrame) -> bytes:
    """Gap to the best bound vs keep_flops, one series per solver, log y with a floor."""
    fig = _figure()
    ax = fig.add_subplot()
    solvers = _solver_order(rows)
    budgets = sorted(set(rows["keep_flops"].astype(float)))
    step = min(np.diff(budgets)) if len(budgets) > 1 else 0.2
    width = 0.6 * step
    for k, name in enumerate(solvers):
        sub = rows[(rows["solver"] == name) & (rows["feasible"] == True)]  # noqa: E712
        if not len(sub):
            continue
        off = (k - (len(solvers) - 1) / 2) * width / max(len(solvers), 1)
        g = np.maximum(sub["gap_to_best_bound"].astype(float).to_numpy(), GAP_FLOOR)
        x = sub["keep_flops"].astype(float).to_numpy() + off
        color = f"C{k % 10}"
        ax.scatter(x, g, s=14, alpha=0.35, color=color, marker=_MARKERS[k % len(_MARKERS)])
        med = (sub.assign(g=g).groupby("keep_flops")["g"].median())
        ax.plot(med.index.to_numpy(dtype=float) + off, med.to_numpy(), color=color,
                marker=_MARKERS[k % len(_MARKERS)], lw=1.6, ms=6, label=name)
    ax.set_yscale("log")
    ax.axhline(GAP_FLOOR, color="0.6", lw=0.8, ls=":")
    ax.text(0.01, GAP_FLOOR, f" floor {GAP_FLOOR:g} (zero gap)", transform=ax.get_yaxis_transform(),
            va="bottom", ha="left", fontsize=8, color="0.4")
    ax.set_xticks(budgets)
    ax.set_xticklabels([f"{b:g}" for b in budgets])
    ax.set_xlabel("FLOP budget kept (fraction of dense MACs)")
    ax.set_ylabel("relative gap to the best bound")
    ax.set_title("Gap to the best bound vs FLOP budget")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(title="solver", loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9)
    return _png(fig)


def plot_time_vs_size(rows: pd.DataFrame) -> bytes:
    """Seconds vs number of items, one series per solver, log-log."""
    fig = _figure()
    ax = fig.add_subplot()
    solvers = _solver_order(rows)
    for k, name in enumerate(solvers):
        sub = rows[(rows["solver"] == name) & rows["seconds"].notna()]
        if not len(sub):
            continue
        color = f"C{k % 10}"
        jitter = 1.0 + 0.04 * (k - (len(solvers) - 1) / 2)
        sec = np.maximum(sub["seconds"].astype(float).to_numpy(), 1e-5)
        ax.scatter(sub["p"].astype(float) * jitter, sec, s=14, alpha=0.35, color=color,
                   marker=_MARKERS[k % len(_MARKERS)])
        med = sub.assign(sec=sec).groupby("p")["sec"].median()
        ax.plot(med.index.to_numpy(dtype=float) * jitter, med.to_numpy(), color=color,
                marker=_MARKERS[k % len(_MARKERS)], lw=1.6, ms=6, label=name)
    for t in sorted(set(rows["time_limit"].dropna().astype(float))):
        ax.axhline(t, color="0.5", lw=0.9, ls="--")
        ax.text(0.01, t, f"time limit {t:g} s", transform=ax.get_yaxis_transform(), ha="left",
                va="bottom", fontsize=8, color="0.35")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("instance size p (prunable weights)")
    ax.set_ylabel("seconds (wall clock)")
    ax.set_title("Solve time vs instance size")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(title="solver", loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9)
    return _png(fig)


PLOTS = {"gap_vs_budget": plot_gap_vs_budget, "time_vs_size": plot_time_vs_size}


def make_plots(rows: pd.DataFrame) -> dict[str, bytes]:
    """Every plot of the report as PNG bytes, by key."""
    return {key: fn(rows) for key, fn in PLOTS.items()}


# ---------------------------------------------------------------------------------------- files
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str, data: bytes | str) -> str:
    """Write ``data`` to a temporary file next to ``path``, then rename it into place."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def _environment() -> dict[str, str]:
    import matplotlib

    import pruneopt

    return {"pruneopt": pruneopt.__version__, "python": platform.python_version(),
            "numpy": np.__version__, "pandas": pd.__version__,
            "matplotlib": matplotlib.__version__}


def _joint_as_sweep_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The joint study's rows in the sweep's column names, for the one rows file."""
    if not len(rows):
        return rows
    out = rows.copy()
    out.insert(0, "job_kind", "instance")
    out.insert(0, "job_id", rows["instance"])
    out["budget"], out["seed"], out["size"] = rows["keep_flops"], rows["instance_seed"], rows["p"]
    return out


def build_report(out_dir, *, quick: bool = False, seed: int = 0, progress: bool = True,
                 workers: int | None = None, time_limit: float | None = None,
                 config: str | os.PathLike | None = None, resume: bool = False
                 ) -> dict[str, str]:
    """Run the study and write ``rows.csv`` (and ``rows.parquet``), ``report.md``,
    ``index.html`` and the PNG plots.

    Without ``config``: the joint-ILP study (:func:`build_study`) and the default study of every
    other formulation and every pruning method (:func:`~pruneopt.reports.study_report.
    default_study_config`). With ``config`` (a TOML file in the ``pruneopt sweep`` schema,
    validated before anything runs): that study only. The sweep part's rows go to
    ``DIR/sweep-rows.csv`` as each job finishes; ``resume`` keeps the jobs already there
    (otherwise the file is started afresh). Returns the paths written, by key.
    """
    from pruneopt.reports.study_config import load_config, parse_config
    from pruneopt.reports.study_report import default_study_config, study_plots, study_sections
    from pruneopt.reports.sweep import run_sweep

    study = (parse_config(default_study_config(quick=quick, seed=seed)) if config is None
             else load_config(config))  # a bad config fails here, before any job
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    start = time.perf_counter()
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    if config is None:
        jobs = build_study(quick=quick, seed=seed, time_limit=time_limit)
        rows = run_study(jobs, progress=progress, workers=workers)
    else:
        jobs, rows = [], pd.DataFrame(columns=ROW_COLUMNS)
    sweep_path = os.path.join(out_dir, "sweep-rows.csv")
    if not resume and os.path.exists(sweep_path):
        os.remove(sweep_path)
    sweep_rows = run_sweep(study.jobs, sweep_path, executor="local", workers=workers,
                           progress=progress)
    meta = {
        "quick": quick, "seed": seed if config is None else study.seed,
        "study": study.name, "workers": max(1, min(workers, len(jobs) or 1)),
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "versions": _environment(),
    }
    paths = {"html": os.path.join(out_dir, "index.html"),
             "markdown": os.path.join(out_dir, "report.md"),
             "rows": os.path.join(out_dir, "rows.csv"),
             "rows_parquet": os.path.join(out_dir, "rows.parquet"),
             "sweep_rows": sweep_path}
    all_rows = pd.concat([_joint_as_sweep_rows(rows), sweep_rows], ignore_index=True,
                         sort=False) if len(rows) else sweep_rows
    write_atomic(paths["rows"], all_rows.to_csv(index=False))
    buf = io.BytesIO()
    all_rows.astype({c: "string" for c in all_rows.columns
                     if all_rows[c].dtype == object}).to_parquet(buf, index=False)
    write_atomic(paths["rows_parquet"], buf.getvalue())
    plots = make_plots(rows) if len(rows) else {}
    plots.update(study_plots(sweep_rows))
    for key, png in plots.items():
        paths[f"plot_{key}"] = write_atomic(os.path.join(out_dir, f"{key}.png"), png)
    meta["wall_seconds"] = time.perf_counter() - start
    plot_files = {key: paths[f"plot_{key}"] for key in plots}
    extra = study_sections(sweep_rows, meta)
    write_atomic(paths["markdown"], render_markdown(rows, meta, plot_files, extra))
    write_atomic(paths["html"], render_html(rows, meta, plots, extra))
    return paths


__all__ = ["BUDGETS", "InstanceSpec", "Job", "ROW_COLUMNS", "SOLVER_MAX_ITEMS", "Section",
           "add_best_bound_gaps", "build_report", "build_study", "make_plots", "render_html",
           "render_markdown", "run_job", "run_study", "summarize", "write_atomic"]
