"""Study configs for ``pruneopt sweep``: a TOML file parsed and validated into :class:`SweepJob`\\ s
before any job runs, and :func:`run_sweep_job`, which runs one job anywhere (a local process, a
Dask worker) and returns its result rows.

A full example (``examples/sweep_small.toml`` is a runnable one)::

    [study]
    name = "my-study"        # default "study"; names the default output file <name>.csv
    seed = 0                 # integer >= 0; every instance seed derives from it (default 0)
    time_limit = 10.0        # seconds per solver run (default 10)

    [[instances]]            # generated instances; one block per formulation family
    formulation = "joint"            # joint | joint-qp | allocation | channels
    sizes = [300, 2000]              # the generator's size parameter (see below)
    budgets = [0.3, 0.5]             # kept FLOP fractions in (0, 1]
    count = 2                        # instances (seeds) per size × budget (default 1)
    solvers = ["exact", "falcon"]    # default: every available solver of the formulation
    time_limit = 5.0                 # optional: overrides [study].time_limit for this block
    keep_nnz = 0.5                   # optional (joint, joint-qp, allocation): NNZ fraction kept
    dist = "lognormal"               # optional (joint, channels): score distribution

    [[networks]]             # pruning methods on networks (optional)
    model = "digits-cnn"             # a zoo name (NETWORK_MODELS)
    methods = ["falcon", "magnitude"]   # default: every runnable method (known_methods())
    flops = [0.3, 0.5]               # kept FLOP fractions in (0, 1]
    nnz = 1.0                        # optional: kept NNZ fraction (default 1: FLOP budget only)
    count = 1                        # optional: seeds per method × flops (default 1)
    calibration = 64                 # optional: calibration samples (default DEFAULT_CALIBRATION)

**Size parameter per formulation** (an integer ≥ 1, or a network name where listed):

* ``joint`` — p items (:func:`~pruneopt.formulations.joint.generate.generate_joint`, shape ``random``)
  in ``layers`` layers (optional key; default clip(round(√p), 1, 20), at most p); or a layer
  table name ``resnet20`` | ``mobilenetv1`` | ``resnet50``. Optional keys ``dist``, ``keep_nnz``
  (default: no NNZ constraint, i.e. 1), ``layers``.
* ``joint-qp`` — p weights of a random quadratic model built here from numpy
  (:func:`random_joint_qp`; the repository's generator of real ones,
  ``models/small_instances.py``, needs torch and the trained digits CNN): ``samples`` (n, default
  16) rows of X ~ N(0, 0.5²), w̄ ~ N(0, 0.3²), ridge 0.05, min(3, p) layers with MAC costs drawn
  from {1, 16, 64, 256}. Optional keys ``keep_nnz`` (default 1), ``samples``, ``layers``.
* ``allocation`` — L layers of the ``random`` shape
  (:func:`~pruneopt.formulations.allocation.generate.generate_allocation`) with ``options`` keep
  fractions each (optional key, default 10); or a layer table name. Optional ``keep_nnz``
  (default: no NNZ budget).
* ``channels`` — G channel groups of the ``random`` DAG shape
  (:func:`~pruneopt.formulations.channels.generate.generate_channels`) of at most ``channels``
  channels each (optional key, default 16); or the channel groups of ``resnet20`` | ``resnet56``
  | ``resnet50``. Optional ``dist``.

**Default solvers** are every solver of the formulation available here; for ``joint`` with an
integer size, only those practical at that size (the gap report's ``SOLVER_MAX_ITEMS``).

**Jobs.** One :class:`SweepJob` per instance block × size × budget × replicate (its solvers run
together in one :func:`~pruneopt.solvers.crosscheck.crosscheck`, so their verdicts compare them),
and one per network block × method × flops × replicate. An instance's seed is
``instance_seed(study seed, "<formulation>/<size>/<budget>/<replicate>")`` (as in the gap
report), so a size or budget added later leaves the other instances unchanged. A network job's
seed is study seed + replicate, the same for every method and budget (the same trained model,
data split and calibration batch; replicate 0 of seed 0 is ``pruneopt prune --seed 0``).
``job_id`` is the first 12 hex digits of the SHA-256 of the job's canonical spec (JSON, sorted
keys): the same config always gives the same ids, and the study name does not enter it. Two
blocks that give the same job are an error.

**Errors.** Every problem is found before any job runs and raised as ``ValueError("config:
<key path>: <what is wrong>")``, e.g. ``config: instances[1].solvers: unknown solver 'foo' for
the joint formulation (known: ...)``.

**Network runners.** A network job is dispatched by :data:`NETWORK_RUNNERS` (method → callable
``(job) -> dict`` of row fields); a method not listed there runs :func:`run_prune_network`
(``pruneopt.models.workflow.run_prune``). Torch is imported only when a network job runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

FORMULATIONS = ("joint", "joint-qp", "allocation", "channels")

#: The zoo names of :mod:`pruneopt.models.zoo` (``ZOO_NAMES``), kept here so that a config is
#: checked without importing torch (a test checks that the two agree).
NETWORK_MODELS = ("digits-mlp", "digits-cnn", "resnet20", "resnet56", "mobilenetv1", "resnet50")

#: Named sizes each formulation accepts besides integers.
NAMED_SIZES = {
    "joint": ("resnet20", "mobilenetv1", "resnet50"),
    "joint-qp": (),
    "allocation": ("resnet20", "mobilenetv1", "resnet50"),
    "channels": ("resnet20", "resnet56", "resnet50"),
}

DEFAULT_TIME_LIMIT = 10.0
COMMON_INSTANCE_KEYS = ("formulation", "sizes", "budgets", "count", "solvers", "time_limit")
#: Optional generator keys of each formulation (and their checkers, see ``_extra``).
EXTRA_KEYS = {
    "joint": ("dist", "keep_nnz", "layers"),
    "joint-qp": ("keep_nnz", "samples", "layers"),
    "allocation": ("keep_nnz", "options"),
    "channels": ("dist", "channels"),
}
STUDY_KEYS = ("name", "seed", "time_limit")
NETWORK_KEYS = ("model", "methods", "flops", "tolerances", "nnz", "count", "calibration",
                "finetune_epochs", "stages", "max_combinations")
TOP_KEYS = ("study", "instances", "networks")


# ------------------------------------------------------------------------------------ the job
@dataclass(frozen=True)
class SweepJob:
    """One unit of a sweep; ``job_id`` is a hash of everything else (see the module docstring).

    ``kind`` "instance": ``formulation``, ``size``, ``budget`` (kept FLOP fraction), ``seed``,
    ``solvers``, ``time_limit`` and ``params`` (generator keys, sorted (key, value) pairs).
    ``kind`` "network": ``model``, ``method``, ``budget`` (= flops kept), ``seed`` and ``params``
    (nnz, calibration).
    """

    kind: str
    budget: float
    seed: int
    formulation: str = ""
    size: int | str = 0
    solvers: tuple[str, ...] = ()
    time_limit: float = DEFAULT_TIME_LIMIT
    model: str = ""
    method: str = ""
    params: tuple[tuple[str, object], ...] = ()
    replicate: int = 0
    job_id: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "job_id", hashlib.sha256(
            json.dumps(self.spec(), sort_keys=True).encode()).hexdigest()[:12])

    def spec(self) -> dict:
        """The canonical spec (JSON-ready); ``job_id`` hashes it."""
        base = {"kind": self.kind, "budget": float(self.budget), "seed": int(self.seed),
                "params": {k: v for k, v in self.params}}
        if self.kind == "instance":
            base.update(formulation=self.formulation, size=self.size,
                        solvers=list(self.solvers), time_limit=float(self.time_limit))
        else:
            base.update(model=self.model, method=self.method)
        return base

    @property
    def label(self) -> str:
        if self.kind == "instance":
            return f"{self.formulation}/{self.size}/F{self.budget:g}/#{self.replicate}"
        return f"{self.model}/{self.method}/F{self.budget:g}/#{self.replicate}"

    def param(self, key: str, default=None):
        return dict(self.params).get(key, default)


# ------------------------------------------------------------------------------------ parsing
def _fail(path: str, msg: str):
    raise ValueError(f"config: {path}: {msg}")


def _check_keys(table, path: str, allowed) -> None:
    if not isinstance(table, dict):
        _fail(path, f"must be a table, got {type(table).__name__}")
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        _fail(f"{path}.{unknown[0]}" if path else unknown[0],
              f"unknown key (known: {', '.join(allowed)})")


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _int(v, path: str, minimum: int) -> int:
    if not _is_int(v):
        _fail(path, f"must be an integer, got {v!r}")
    if v < minimum:
        _fail(path, f"must be >= {minimum}, got {v}")
    return int(v)


def _positive(v, path: str) -> float:
    if not _is_real(v) or not math.isfinite(v) or v <= 0:
        _fail(path, f"must be a positive number, got {v!r}")
    return float(v)


def _fraction(v, path: str) -> float:
    if not _is_real(v) or not math.isfinite(v) or not 0 < v <= 1:
        _fail(path, f"must be a fraction kept in (0, 1], got {v!r}")
    return float(v)


def _list(v, path: str, *, allow_scalar: bool = True) -> list:
    if isinstance(v, list):
        if not v:
            _fail(path, "must not be empty")
        return v
    if allow_scalar and not isinstance(v, dict):
        return [v]
    _fail(path, f"must be a list, got {type(v).__name__}")


def _names(v, path: str) -> list[str]:
    items = _list(v, path)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            _fail(f"{path}[{i}]", f"must be a string, got {item!r}")
    if len(set(items)) != len(items):
        _fail(path, f"repeats a name: {items}")
    return items


def _dist(v, path: str, formulation: str) -> str:
    if formulation == "joint":
        from pruneopt.formulations.joint.generate import DISTRIBUTIONS
    else:
        from pruneopt.formulations.channels.generate import DISTRIBUTIONS
    if v not in DISTRIBUTIONS:
        _fail(path, f"unknown distribution {v!r} (known: {', '.join(DISTRIBUTIONS)})")
    return str(v)


def _extra(key: str, v, path: str, formulation: str):
    if key == "dist":
        return _dist(v, path, formulation)
    if key == "keep_nnz":
        return _fraction(v, path)
    return _int(v, path, 1)  # layers, samples, options, channels


def _size(v, path: str, formulation: str) -> int | str:
    named = NAMED_SIZES[formulation]
    if isinstance(v, str):
        if v not in named:
            known = f"an integer >= 1{', or one of ' + ', '.join(named) if named else ''}"
            _fail(path, f"unknown size {v!r} for the {formulation} formulation (expected {known})")
        return v
    return _int(v, path, 1)


def _solvers(block: dict, path: str, formulation: str, size) -> tuple[str, ...]:
    from pruneopt.solvers.registry import solver_specs

    specs = {s.name: s for s in solver_specs(formulation)}
    if "solvers" not in block:
        names = [n for n, s in specs.items() if s.available()]
        if formulation == "joint" and _is_int(size):  # the gap report's size caps
            from pruneopt.reports.gap_report import DEFAULT_EXACT_MAX_ITEMS, SOLVER_MAX_ITEMS

            names = [n for n in names if size <= SOLVER_MAX_ITEMS.get(
                n, DEFAULT_EXACT_MAX_ITEMS if specs[n].exact else size)]
        return tuple(names)
    names = _names(block["solvers"], f"{path}.solvers")
    for i, name in enumerate(names):
        if name not in specs:
            _fail(f"{path}.solvers[{i}]" if isinstance(block["solvers"], list) else
                  f"{path}.solvers", f"unknown solver {name!r} for the {formulation} formulation "
                                     f"(known: {', '.join(specs)})")
        if not specs[name].available():
            _fail(f"{path}.solvers", f"solver {name!r} is not available here "
                                     f"({specs[name].description})")
    return tuple(names)


def _instance_jobs(block, path: str, seed: int, time_limit: float) -> list[SweepJob]:
    from pruneopt.reports.gap_report import instance_seed

    if not isinstance(block, dict):
        _fail(path, f"must be a table, got {type(block).__name__}")
    if "formulation" not in block:
        _fail(f"{path}.formulation", f"is required (one of {', '.join(FORMULATIONS)})")
    formulation = block["formulation"]
    if formulation not in FORMULATIONS:
        _fail(f"{path}.formulation",
              f"unknown formulation {formulation!r} (known: {', '.join(FORMULATIONS)})")
    _check_keys(block, path, COMMON_INSTANCE_KEYS + EXTRA_KEYS[formulation])
    for key in ("sizes", "budgets"):
        if key not in block:
            _fail(f"{path}.{key}", "is required")
    sizes = [_size(v, f"{path}.sizes[{i}]", formulation)
             for i, v in enumerate(_list(block["sizes"], f"{path}.sizes"))]
    budgets = [_fraction(v, f"{path}.budgets[{i}]")
               for i, v in enumerate(_list(block["budgets"], f"{path}.budgets"))]
    count = _int(block.get("count", 1), f"{path}.count", 1)
    limit = (_positive(block["time_limit"], f"{path}.time_limit") if "time_limit" in block
             else time_limit)
    params = tuple(sorted((k, _extra(k, block[k], f"{path}.{k}", formulation))
                          for k in EXTRA_KEYS[formulation] if k in block))
    jobs = []
    for size in sizes:
        solvers = _solvers(block, path, formulation, size)
        if not solvers:
            _fail(f"{path}.solvers", f"no solver of the {formulation} formulation is available")
        for budget in budgets:
            for rep in range(count):
                key = f"{formulation}/{size}/{budget:g}/{rep}"
                jobs.append(SweepJob(kind="instance", formulation=formulation, size=size,
                                     budget=budget, seed=instance_seed(seed, key),
                                     solvers=solvers, time_limit=limit, params=params,
                                     replicate=rep))
    return jobs


def known_methods() -> tuple[str, ...]:
    """The methods a network job can run: ``run_prune``'s (``models.defaults.METHODS``, read at
    call time) and those with an entry in :data:`NETWORK_RUNNERS`."""
    from pruneopt.models.defaults import METHODS

    return tuple(METHODS) + tuple(m for m in NETWORK_RUNNERS if m not in METHODS)


def _network_jobs(block, path: str, seed: int) -> list[SweepJob]:
    from pruneopt.models.defaults import DEFAULT_CALIBRATION, DEFAULT_TOLERANCE, STAGES

    _check_keys(block, path, NETWORK_KEYS)
    for key in ("model",):
        if key not in block:
            _fail(f"{path}.{key}", "is required")
    model = block["model"]
    if model not in NETWORK_MODELS:
        _fail(f"{path}.model", f"unknown model {model!r} (known: {', '.join(NETWORK_MODELS)})")
    known = known_methods()
    methods = _names(block["methods"], f"{path}.methods") if "methods" in block else list(known)
    for i, m in enumerate(methods):
        if m not in known:
            _fail(f"{path}.methods[{i}]", f"unknown method {m!r} (known: {', '.join(known)})")
    if "flops" not in block and any(m != "fair" for m in methods):
        _fail(f"{path}.flops", "is required (every method but fair takes a FLOP budget)")
    flops = [_fraction(v, f"{path}.flops[{i}]")
             for i, v in enumerate(_list(block.get("flops", []), f"{path}.flops"))]
    tolerances = []
    for i, v in enumerate(_list(block.get("tolerances", [DEFAULT_TOLERANCE]),
                                f"{path}.tolerances")):
        if not _is_real(v) or not 0.0 <= float(v) <= 1.0:
            _fail(f"{path}.tolerances[{i}]", f"must be a number in [0, 1], got {v!r}")
        tolerances.append(float(v))
    epochs = _int(block.get("finetune_epochs", 0), f"{path}.finetune_epochs", 0)
    stages = _int(block.get("stages", STAGES), f"{path}.stages", 1)
    max_comb = _int(block.get("max_combinations", 4096), f"{path}.max_combinations", 1)
    nnz = _fraction(block.get("nnz", 1.0), f"{path}.nnz")
    count = _int(block.get("count", 1), f"{path}.count", 1)
    calibration = _int(block.get("calibration", DEFAULT_CALIBRATION), f"{path}.calibration", 1)
    jobs = []
    for method in methods:
        params = [("calibration", calibration), ("nnz", nnz)]
        if epochs:
            params.append(("finetune_epochs", epochs))
        if method == "falcon++":
            params.append(("stages", stages))
        if method in ("autobot", "fair", "relaxation"):
            params.append(("max_combinations", max_comb))
        for f in (tolerances if method == "fair" else flops):  # FAIR: its tolerance α
            extra = (("tolerance", f),) if method == "fair" else ()
            for rep in range(count):
                # the same seed for every method and budget of a replicate: the same trained
                # model, data split and calibration batch (common random numbers)
                jobs.append(SweepJob(kind="network", model=model, method=method, budget=f,
                                     seed=seed + rep, params=tuple(params) + extra,
                                     replicate=rep))
    return jobs


@dataclass(frozen=True)
class StudyConfig:
    name: str
    seed: int
    time_limit: float
    jobs: tuple[SweepJob, ...]


def parse_config(data: dict) -> StudyConfig:
    """Validate a config (the dict of a TOML document) and expand it into jobs."""
    _check_keys(data, "", TOP_KEYS)
    study = data.get("study", {})
    _check_keys(study, "study", STUDY_KEYS)
    name = study.get("name", "study")
    if not isinstance(name, str) or not name.strip():
        _fail("study.name", f"must be a non-empty string, got {name!r}")
    seed = _int(study.get("seed", 0), "study.seed", 0)
    time_limit = _positive(study.get("time_limit", DEFAULT_TIME_LIMIT), "study.time_limit")
    jobs: list[SweepJob] = []
    origin: dict[str, str] = {}
    for section in ("instances", "networks"):
        blocks = data.get(section, [])
        if not isinstance(blocks, list):
            _fail(section, f"must be an array of tables ([[{section}]]), got "
                           f"{type(blocks).__name__}")
        for b, block in enumerate(blocks):
            path = f"{section}[{b}]"
            if not isinstance(block, dict):
                _fail(path, f"must be a table, got {type(block).__name__}")
            new = (_instance_jobs(block, path, seed, time_limit) if section == "instances"
                   else _network_jobs(block, path, seed))
            for job in new:
                if job.job_id in origin:
                    _fail(path, f"repeats the job {job.label} of {origin[job.job_id]}")
                origin[job.job_id] = path
            jobs.extend(new)
    if not jobs:
        _fail("instances", "the config defines no job (add [[instances]] or [[networks]])")
    return StudyConfig(name=name, seed=seed, time_limit=time_limit, jobs=tuple(jobs))


def load_config(path: str | os.PathLike) -> StudyConfig:
    """Read and validate a TOML study config (errors: ``ValueError("config: ...")``)."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ValueError(f"config: {path}: no such file") from None
    except OSError as exc:
        raise ValueError(f"config: {path}: cannot read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config: {path}: not valid TOML ({exc})") from None
    return parse_config(data)


# ------------------------------------------------------------------------------- instances
def random_joint_qp(*, p: int, keep_flops: float, keep_nnz: float = 1.0, seed: int = 0,
                    samples: int = 16, layers: int | None = None):
    """A random full joint problem (a') from numpy alone (see the module docstring)."""
    from pruneopt.formulations.joint_qp.problem import JointQuadraticProblem

    rng = np.random.default_rng(seed)
    L = max(1, min(3 if layers is None else layers, p))
    cuts = np.sort(rng.choice(np.arange(1, p), L - 1, replace=False)) if L > 1 else []
    sizes = np.diff(np.concatenate(([0], cuts, [p]))).astype(np.int64)
    costs = rng.choice([1.0, 16.0, 64.0, 256.0], L)
    return JointQuadraticProblem(
        X=rng.standard_normal((samples, p)) * 0.5, w_bar=rng.standard_normal(p) * 0.3,
        ridge=0.05, group_ptr=np.concatenate(([0], np.cumsum(sizes))), flop_cost=costs,
        nnz_budget=int(math.floor(keep_nnz * p)),
        flop_budget=keep_flops * float(sizes @ costs), names=[f"layer{g}" for g in range(L)])


def build_instance(job: SweepJob):
    """The problem of an instance job, rebuilt from its spec (same job → same instance)."""
    f, size, budget, seed = job.formulation, job.size, job.budget, job.seed
    if f == "joint":
        from pruneopt.formulations.joint.generate import generate_joint

        if isinstance(size, str):
            return generate_joint(shape=size, dist=job.param("dist", "kaiming"),
                                  keep_nnz=job.param("keep_nnz", 1.0), keep_flops=budget,
                                  seed=seed)
        layers = job.param("layers", int(np.clip(round(math.sqrt(size)), 1, 20)))
        return generate_joint(layers=min(layers, size), items=size,
                              dist=job.param("dist", "kaiming"),
                              keep_nnz=job.param("keep_nnz", 1.0), keep_flops=budget, seed=seed)
    if f == "joint-qp":
        return random_joint_qp(p=size, keep_flops=budget, keep_nnz=job.param("keep_nnz", 1.0),
                               seed=seed, samples=job.param("samples", 16),
                               layers=job.param("layers"))
    if f == "allocation":
        from pruneopt.formulations.allocation.generate import generate_allocation

        shape = size if isinstance(size, str) else "random"
        return generate_allocation(layers=size if isinstance(size, int) else 20,
                                   options=job.param("options", 10), seed=seed,
                                   keep_nnz=job.param("keep_nnz"), keep_flops=budget, shape=shape)
    if f == "channels":
        from pruneopt.formulations.channels.generate import generate_channels

        shape = size if isinstance(size, str) else "random"
        return generate_channels(shape=shape, seed=seed, keep_flops=budget,
                                 dist=job.param("dist", "kaiming"),
                                 groups=size if isinstance(size, int) else 6,
                                 channels=job.param("channels", 16))
    raise ValueError(f"formulation: unknown formulation {f!r} (known: {', '.join(FORMULATIONS)})")


# ------------------------------------------------------------------------------- running
def _job_fields(job: SweepJob) -> dict:
    row = {"job_id": job.job_id, "job_key": job.label, "job_kind": job.kind, "budget": job.budget,
           "seed": job.seed}
    if job.kind == "instance":
        row.update(formulation=job.formulation, size=job.size, time_limit=job.time_limit,
                   keep_nnz=job.param("keep_nnz"))
    else:
        row.update(model=job.model, method=job.method, nnz=job.param("nnz"))
        if job.method == "fair":  # its "budget" is the tolerance α
            row.update(tolerance=job.param("tolerance"), flops=None)
        else:
            row.update(flops=job.budget)
    return row


def _solver_kinds(formulation: str, names) -> dict[str, str]:
    from pruneopt.solvers.registry import solver_specs

    exact = {s.name: s.exact for s in solver_specs(formulation)}
    return {n: ("exact" if exact.get(n) else "fast") for n in names}


def _problem_items(problem) -> int:
    """The length of the decision: items (joint, joint-qp), channels, or options (allocation)."""
    for attr in ("num_items", "num_options"):
        if hasattr(problem, attr):
            return int(getattr(problem, attr))
    return 0


def run_instance_job(job: SweepJob) -> list[dict]:
    """Build the instance and cross-check its solvers: one row per solver."""
    from pruneopt.solvers.crosscheck import crosscheck

    problem = build_instance(job)
    df = crosscheck(problem, job.solvers, time_limit=job.time_limit)
    kinds = _solver_kinds(job.formulation, job.solvers)
    nnz_budget = getattr(problem, "nnz_budget", None)
    if nnz_budget is not None and nnz_budget < 0:  # allocation: -1 = no NNZ budget
        nnz_budget = None
    flop_budget = getattr(problem, "flop_budget", None)
    if flop_budget is not None and not math.isfinite(flop_budget):
        flop_budget = None
    base = {**_job_fields(job), "job_status": "ok", "job_rows": len(df),
            "p": _problem_items(problem), "sense": problem.sense,
            "nnz_budget": nnz_budget, "flop_budget": flop_budget}
    return [{**base, **rec, "kind": kinds.get(rec["solver"], "fast")}
            for rec in df.to_dict("records")]


def run_prune_network(job: SweepJob) -> dict:
    """The default network runner: :func:`pruneopt.models.workflow.run_prune` on a zoo model."""
    from pruneopt.models.pruning import PruneSettings
    from pruneopt.models.workflow import run_prune

    import torch

    from pruneopt.models.costs import prunable_layers
    from pruneopt.models.defaults import STAGES

    settings = PruneSettings(method=job.method, keep_flops=job.budget,
                             keep_nnz=job.param("nnz", 1.0), seed=job.seed,
                             stages=job.param("stages", STAGES))
    resolved, record = run_prune(job.model, settings,
                                 n_calibration=job.param("calibration", 128))
    layers = prunable_layers(resolved.model, torch.zeros((1, *resolved.input_shape)))
    kept = {layer.name: int(torch.count_nonzero(layer.weight)) / layer.numel for layer in layers}
    out = {k: record.get(k) for k in ("accuracy_before", "accuracy_after", "macs_kept",
                                      "nnz_kept", "budgets_met", "data", "seconds")}
    out["kept_fractions"] = json.dumps(kept)
    return out


def run_structured_network(job: SweepJob) -> dict:
    """AutoBot, FAIR-Pruner and the relaxation: :func:`~pruneopt.models.structured_workflow.
    run_structured`, with the per-group kept fractions and the gap measures as JSON."""
    from pruneopt.models.structured_workflow import StructuredSettings, run_structured

    fair = job.method == "fair"
    settings = StructuredSettings(
        method=job.method, keep_flops=None if fair else job.budget,
        tolerance=job.param("tolerance") if fair else None, seed=job.seed,
        finetune_epochs=job.param("finetune_epochs", 0),
        gap_calibration=job.param("calibration", 128),
        max_combinations=job.param("max_combinations"))
    _, _, _, record = run_structured(job.model, settings)
    out = {k: record.get(k) for k in ("accuracy_before", "accuracy_after", "accuracy_finetuned",
                                      "macs_kept", "nnz_kept", "budgets_met", "data", "seconds")}
    out["kept_fractions"] = json.dumps(record["kept_fractions"])
    out["gaps"] = json.dumps(record["gaps"], allow_nan=True)
    return out


#: The single dispatch point of network jobs: method → callable(job) -> dict of row fields
#: (accuracy_before, accuracy_after, macs_kept, nnz_kept, seconds, ...). Methods not listed run
#: :func:`run_prune_network`. Entries added here are accepted as methods by the config.
NETWORK_RUNNERS: dict[str, Callable[[SweepJob], dict]] = {
    "autobot": run_structured_network, "fair": run_structured_network,
    "relaxation": run_structured_network}


def run_network_job(job: SweepJob) -> list[dict]:
    start = time.perf_counter()
    fields = NETWORK_RUNNERS.get(job.method, run_prune_network)(job)
    row = {**_job_fields(job), "job_status": "ok", "job_rows": 1, "status": "ok",
           "seconds": time.perf_counter() - start, **fields}
    return [row]


def run_sweep_job(job: SweepJob) -> list[dict]:
    """Run one job (in any process) and return its rows; exceptions propagate to the caller."""
    if job.kind == "instance":
        return run_instance_job(job)
    if job.kind == "network":
        return run_network_job(job)
    raise ValueError(f"job: unknown kind {job.kind!r}")


def error_rows(job: SweepJob, message: str) -> list[dict]:
    """The rows recorded for a job that raised (or whose worker never returned)."""
    message = " ".join(str(message).split())
    base = {**_job_fields(job), "job_status": "error", "status": "error", "verdict": "error",
            "message": message}
    if job.kind == "instance":
        kinds = _solver_kinds(job.formulation, job.solvers)
        return [{**base, "job_rows": len(job.solvers), "solver": s, "kind": kinds[s],
                 "proven_optimal": False, "feasible": False} for s in job.solvers]
    return [{**base, "job_rows": 1}]


__all__ = ["FORMULATIONS", "NETWORK_MODELS", "NETWORK_RUNNERS", "StudyConfig", "SweepJob",
           "build_instance", "error_rows", "known_methods", "load_config", "parse_config",
           "random_joint_qp", "run_network_job", "run_prune_network", "run_sweep_job"]
