"""Study configs (the schema of ``pruneopt sweep`` and ``pruneopt report --config``): a TOML file
parsed and validated into :class:`~pruneopt.reports.studies.jobs.SweepJob`\\ s before any job
runs, and :func:`default_study_config`, the default study of ``pruneopt report``.

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
* ``joint-qp`` — p weights of a random quadratic model built from numpy
  (:func:`~pruneopt.reports.studies.instances.random_joint_qp`; the repository's generator of
  real ones, ``models/small_instances.py``, needs torch and the trained digits CNN): ``samples``
  (n, default 16) rows of X ~ N(0, 0.5²), w̄ ~ N(0, 0.3²), ridge 0.05, min(3, p) layers with
  MAC costs drawn from {1, 16, 64, 256}. Optional keys ``keep_nnz`` (default 1), ``samples``,
  ``layers``. Or ``digits-mlp`` | ``digits-cnn``: the whole trained network's quadratic model
  (:func:`~pruneopt.models.joint_qp_instances.network_problem`, needs torch), ``samples`` its
  calibration n (default 128), ``block_size`` FALCON's block-diagonal Fisher (default: full).
* ``allocation`` — L layers of the ``random`` shape
  (:func:`~pruneopt.formulations.allocation.generate.generate_allocation`) with ``options`` keep
  fractions each (optional key, default 10); or a layer table name. Optional ``keep_nnz``
  (default: no NNZ budget).
* ``channels`` — G channel groups of the ``random`` DAG shape
  (:func:`~pruneopt.formulations.channels.generate.generate_channels`) of at most ``channels``
  channels each (optional key, default 16); or the channel groups of ``resnet20`` | ``resnet56``
  | ``resnet50``. Optional ``dist``.

**Default solvers** are every solver of the formulation available here; for ``joint`` with an
integer size, only those practical at that size
(:data:`~pruneopt.reports.studies.jobs.SOLVER_MAX_ITEMS`).

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

**Methods.** A network block accepts the methods of
:func:`~pruneopt.reports.studies.networks.known_methods`: ``run_prune``'s and those with an
entry in :data:`~pruneopt.reports.studies.networks.NETWORK_RUNNERS`. Checking a config never
imports torch.
"""

from __future__ import annotations

import math
import numbers
import os
import tomllib
from dataclasses import dataclass

from pruneopt.formulations.channels.generate import DISTRIBUTIONS as CHANNEL_DISTRIBUTIONS
from pruneopt.formulations.checks import fraction
from pruneopt.formulations.joint.generate import DISTRIBUTIONS as JOINT_DISTRIBUTIONS
from pruneopt.models.defaults import DEFAULT_CALIBRATION, DEFAULT_TOLERANCE, STAGES
from pruneopt.reports.studies.jobs import (
    DEFAULT_TIME_LIMIT,
    FORMULATIONS,
    SweepJob,
    instance_seed,
    is_practical,
)
from pruneopt.reports.studies.networks import known_methods
from pruneopt.solvers.registry import solver_specs

#: The zoo names of :mod:`pruneopt.models.zoo` (``ZOO_NAMES``), kept here so that a config is
#: checked without importing torch (a test checks that the two agree).
NETWORK_MODELS = ("digits-mlp", "digits-cnn", "resnet20", "resnet56", "mobilenetv1", "resnet50")

#: Named sizes each formulation accepts besides integers.
NAMED_SIZES = {
    "joint": ("resnet20", "mobilenetv1", "resnet50"),
    "joint-qp": ("digits-mlp", "digits-cnn"),
    "allocation": ("resnet20", "mobilenetv1", "resnet50"),
    "channels": ("resnet20", "resnet56", "resnet50"),
}

COMMON_INSTANCE_KEYS = ("formulation", "sizes", "budgets", "count", "solvers", "time_limit")
#: Optional generator keys of each formulation (and their checkers, see ``_extra``).
EXTRA_KEYS = {
    "joint": ("dist", "keep_nnz", "layers"),
    "joint-qp": ("keep_nnz", "samples", "layers", "block_size"),
    "allocation": ("keep_nnz", "options"),
    "channels": ("dist", "channels"),
}
STUDY_KEYS = ("name", "seed", "time_limit")
NETWORK_KEYS = ("model", "methods", "flops", "tolerances", "nnz", "count", "calibration",
                "finetune_epochs", "stages", "max_combinations")
TOP_KEYS = ("study", "instances", "networks")


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
    return fraction(v, f"config: {path}", what="a fraction kept")


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
    known = JOINT_DISTRIBUTIONS if formulation == "joint" else CHANNEL_DISTRIBUTIONS
    if v not in known:
        _fail(path, f"unknown distribution {v!r} (known: {', '.join(known)})")
    return str(v)


def _extra(key: str, v, path: str, formulation: str):
    if key == "dist":
        return _dist(v, path, formulation)
    if key == "keep_nnz":
        return _fraction(v, path)
    return _int(v, path, 1)  # layers, samples, options, channels, block_size


def _size(v, path: str, formulation: str) -> int | str:
    named = NAMED_SIZES[formulation]
    if isinstance(v, str):
        if v not in named:
            known = f"an integer >= 1{', or one of ' + ', '.join(named) if named else ''}"
            _fail(path, f"unknown size {v!r} for the {formulation} formulation (expected {known})")
        return v
    return _int(v, path, 1)


def _solvers(block: dict, path: str, formulation: str, size) -> tuple[str, ...]:
    specs = {s.name: s for s in solver_specs(formulation)}
    if "solvers" not in block:
        names = [n for n, s in specs.items() if s.available()]
        if formulation == "joint" and _is_int(size):  # the size caps of SOLVER_MAX_ITEMS
            names = [n for n in names if is_practical(specs[n], size)]
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


def _network_jobs(block, path: str, seed: int) -> list[SweepJob]:
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


# ------------------------------------------------------------------------------- the default
#: FAIR-Pruner's α in the default study: the reference default and one that prunes more. α =
#: 0.005 and 0.05 prune the same channels on the digits networks (the overlap ratio o(k)/k of
#: the ToD rule moves in steps of 1/k, and no group's largest qualifying k changes between
#: them), so the second value is 0.2 (measured: digits MLP 0.65 → 0.47 of the MACs kept,
#: digits CNN 0.67 → 0.51).
FAIR_TOLERANCES = (0.005, 0.2)
#: Epochs of fine-tuning of the structured methods' shrunk networks in the default study (a
#: few seconds on the digits networks; the weight-pruning methods are not fine-tuned by a study).
FINETUNE_EPOCHS = 3

def default_study_config(*, quick: bool = False, seed: int = 0) -> dict:
    """The default study beyond the joint ILP (a config dict in the ``pruneopt sweep`` schema).

    Full: the joint MIQP at p = 12 and 16 and on the whole digits MLP (block-diagonal Fisher,
    exact against FALCON, CHITA, WoodFisher and magnitude, up to 180 s: exact proves it in about
    100 s), allocation with 20 and 100 layers, channel selection
    on random DAGs of 6, 12 and 24 groups, every available solver of each (sized so that
    ``make report`` stays within 5 minutes on 2 cores; the benchmarks go to network scale);
    on the digits MLP and CNN every pruning method at 30/50/70 % of the MACs (FAIR at the α of
    :data:`FAIR_TOLERANCES`; FALCON++ with 5 stages; the structured methods' shrunk networks
    fine-tuned for :data:`FINETUNE_EPOCHS` epochs). Quick: one small size per formulation, the
    digits MLP at 50 %, FALCON++ left out.

    The true-loss gaps (G2/F5/C1) of the digits CNN stay skipped: its prefix-mask enumeration
    needs 16,384 masks, above the default ``max_combinations`` (4,096), and costs about 150
    CPU-seconds per run; a study gets them with ``max_combinations = 16384`` in its
    ``[[networks]]`` block.
    """
    if quick:
        instances = [
            {"formulation": "joint-qp", "sizes": [10], "budgets": [0.5]},
            {"formulation": "allocation", "sizes": [20], "budgets": [0.3, 0.6]},
            {"formulation": "channels", "sizes": [6], "budgets": [0.3, 0.6]},
        ]
        networks = [{"model": "digits-mlp", "flops": [0.5], "tolerances": [0.005],
                     "finetune_epochs": FINETUNE_EPOCHS,
                     "methods": ["magnitude", "chita", "woodfisher", "falcon", "autobot",
                                 "fair", "relaxation"]}]
        limit = 10.0
    else:
        instances = [
            {"formulation": "joint-qp", "sizes": [12, 16], "budgets": [0.3, 0.6]},
            # the whole digits MLP (6,464 weights), FALCON's block-diagonal Fisher: the methods
            # against exact's certified bound (DESIGN §2a', issue 12)
            {"formulation": "joint-qp", "sizes": ["digits-mlp"], "budgets": [0.35],
             "keep_nnz": 0.4, "samples": 128, "block_size": 128, "time_limit": 180.0,
             "solvers": ["exact", "falcon", "chita", "woodfisher", "magnitude"]},
            {"formulation": "allocation", "sizes": [20, 100], "budgets": [0.3, 0.5, 0.7]},
            {"formulation": "channels", "sizes": [6, 12, 24], "budgets": [0.3, 0.5, 0.7]},
        ]
        methods = ["magnitude", "chita", "woodfisher", "falcon", "falcon++", "autobot", "fair",
                   "relaxation"]
        networks = [{"model": m, "flops": [0.3, 0.5, 0.7], "tolerances": list(FAIR_TOLERANCES),
                     "finetune_epochs": FINETUNE_EPOCHS, "methods": methods, "stages": 5}
                    for m in ("digits-mlp", "digits-cnn")]
        limit = 20.0
    return {"study": {"name": "default-quick" if quick else "default", "seed": seed,
                      "time_limit": limit},
            "instances": instances, "networks": networks}


__all__ = ["FAIR_TOLERANCES", "FINETUNE_EPOCHS", "NETWORK_MODELS", "StudyConfig",
           "default_study_config", "load_config", "parse_config"]
