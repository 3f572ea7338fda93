"""Study configs: validation before any job runs (one clear line naming the key), job expansion,
stable ids, and the ``pruneopt sweep`` command's exit codes."""

from __future__ import annotations

import copy
import json
import time

import pytest

from pruneopt.cli import main
from pruneopt.models.defaults import METHODS
from pruneopt.reports.studies.config import NETWORK_MODELS, load_config, parse_config
from pruneopt.reports.studies.instances import build_instance
from pruneopt.reports.studies.networks import known_methods

GOOD = {
    "study": {"name": "t", "seed": 0, "time_limit": 5.0},
    "instances": [
        {"formulation": "joint", "sizes": [20, 50], "budgets": [0.3, 0.5], "count": 2,
         "solvers": ["exact", "falcon"], "keep_nnz": 0.5},
        {"formulation": "allocation", "sizes": [5], "budgets": [0.4], "solvers": ["exact"]},
    ],
    "networks": [{"model": "digits-mlp", "methods": ["magnitude"], "flops": [0.5]}],
}


def _with(path: str, value):
    """GOOD with the value at a dotted path (``instances.1.solvers``) set (or, for the
    sentinel DELETE, removed)."""
    data = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return data


DELETE = object()

BAD = [
    ("bogus", 1, r"config: bogus: unknown key"),
    ("study.nmae", "x", r"config: study\.nmae: unknown key"),
    ("study.seed", -1, r"config: study\.seed: must be >= 0"),
    ("study.seed", True, r"config: study\.seed: must be an integer"),
    ("study.time_limit", 0, r"config: study\.time_limit: must be a positive number"),
    ("study.name", "", r"config: study\.name: must be a non-empty string"),
    ("instances", {"formulation": "joint"}, r"config: instances: must be an array of tables"),
    ("instances.0.formulation", "knapsack", r"config: instances\[0\]\.formulation: unknown "
                                            r"formulation 'knapsack' \(known: joint, joint-qp"),
    ("instances.0.formulation", DELETE, r"config: instances\[0\]\.formulation: is required"),
    ("instances.1.solvers", ["exact", "foo"],
     r"config: instances\[1\]\.solvers\[1\]: unknown solver 'foo' for the allocation "
     r"formulation \(known: .*exact.*\)"),
    ("instances.0.solvers", [], r"config: instances\[0\]\.solvers: must not be empty"),
    ("instances.0.solvers", [1], r"config: instances\[0\]\.solvers\[0\]: must be a string"),
    ("instances.0.solvers", ["exact", "exact"], r"config: instances\[0\]\.solvers: repeats"),
    ("instances.0.budgets", [0.3, 0.0], r"config: instances\[0\]\.budgets\[1\]: must be a "
                                        r"fraction kept in \(0, 1\]"),
    ("instances.0.budgets", [1.5], r"config: instances\[0\]\.budgets\[0\]: must be a fraction"),
    ("instances.0.budgets", ["half"], r"config: instances\[0\]\.budgets\[0\]: must be a fraction"),
    ("instances.0.budgets", DELETE, r"config: instances\[0\]\.budgets: is required"),
    ("instances.0.count", 0, r"config: instances\[0\]\.count: must be >= 1"),
    ("instances.0.count", 1.5, r"config: instances\[0\]\.count: must be an integer"),
    ("instances.0.sizes", [20, "big"], r"config: instances\[0\]\.sizes\[1\]: unknown size 'big'"),
    ("instances.0.sizes", [0], r"config: instances\[0\]\.sizes\[0\]: must be >= 1"),
    ("instances.0.sizes", [True], r"config: instances\[0\]\.sizes\[0\]: must be an integer"),
    ("instances.0.time_limit", -1, r"config: instances\[0\]\.time_limit: must be a positive"),
    ("instances.0.keep_nnz", 2, r"config: instances\[0\]\.keep_nnz: must be a fraction"),
    ("instances.0.dist", "cauchy", r"config: instances\[0\]\.dist: unknown distribution"),
    ("instances.1.dist", "kaiming", r"config: instances\[1\]\.dist: unknown key \(known: "),
    ("instances.0.colour", "red", r"config: instances\[0\]\.colour: unknown key"),
    ("networks.0.model", "vgg16", r"config: networks\[0\]\.model: unknown model 'vgg16'"),
    ("networks.0.methods", ["magnitude", "lottery"],
     r"config: networks\[0\]\.methods\[1\]: unknown method 'lottery' \(known: falcon"),
    ("networks.0.flops", [0.5, 1.2], r"config: networks\[0\]\.flops\[1\]: must be a fraction"),
    ("networks.0.flops", DELETE, r"config: networks\[0\]\.flops: is required"),
    ("networks.0.nnz", 0, r"config: networks\[0\]\.nnz: must be a fraction"),
    ("networks.0.count", 0, r"config: networks\[0\]\.count: must be >= 1"),
    ("networks.0.epochs", 3, r"config: networks\[0\]\.epochs: unknown key"),
]


@pytest.mark.parametrize(("path", "value", "pattern"), BAD, ids=[b[0] for b in BAD])
def test_bad_config_names_the_key(path, value, pattern):
    with pytest.raises(ValueError, match=pattern) as err:
        parse_config(_with(path, value))
    assert "\n" not in str(err.value)


def test_other_bad_configs(tmp_path):
    with pytest.raises(ValueError, match=r"config: instances: the config defines no job"):
        parse_config({"study": {"name": "empty"}})
    twice = copy.deepcopy(GOOD)
    twice["instances"].append(copy.deepcopy(GOOD["instances"][0]))
    with pytest.raises(ValueError, match=r"config: instances\[2\]: repeats the job "
                                         r"joint/20/F0.3/#0 of instances\[0\]"):
        parse_config(twice)
    with pytest.raises(ValueError, match=r"config: .*missing\.toml: no such file"):
        load_config(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[study\nname = 1\n")
    with pytest.raises(ValueError, match=r"config: .*broken\.toml: not valid TOML"):
        load_config(broken)


def test_jobs_expand_and_ids_are_stable():
    config = parse_config(GOOD)
    kinds = [j.kind for j in config.jobs]
    assert kinds.count("instance") == 2 * 2 * 2 + 1 and kinds.count("network") == 1
    again = parse_config(copy.deepcopy(GOOD))
    assert [j.job_id for j in config.jobs] == [j.job_id for j in again.jobs]
    assert len({j.job_id for j in config.jobs}) == len(config.jobs)
    # the name does not enter the ids; the seed does, and adding a size leaves others alone
    renamed = parse_config(_with("study.name", "other"))
    assert [j.job_id for j in renamed.jobs] == [j.job_id for j in config.jobs]
    reseeded = parse_config(_with("study.seed", 1))
    assert {j.job_id for j in reseeded.jobs}.isdisjoint(j.job_id for j in config.jobs)
    grown = parse_config(_with("instances.0.sizes", [20, 50, 80]))
    assert {j.job_id for j in config.jobs} <= {j.job_id for j in grown.jobs}
    joint = config.jobs[0]
    assert joint.solvers == ("exact", "falcon") and joint.time_limit == 5.0
    assert build_instance(joint).num_items == 20


def test_defaults_every_formulation_builds():
    config = parse_config({"instances": [
        {"formulation": "joint", "sizes": [30, "resnet20"], "budgets": [0.5]},
        {"formulation": "joint-qp", "sizes": [8], "budgets": [0.5], "keep_nnz": 0.5},
        {"formulation": "allocation", "sizes": [4, "resnet20"], "budgets": [0.5]},
        {"formulation": "channels", "sizes": [5, "resnet20"], "budgets": [0.5]},
    ]})
    assert config.name == "study" and config.time_limit == 10.0
    for job in config.jobs:
        problem = build_instance(job)
        assert problem.kind == job.formulation
        assert job.solvers  # every available solver of the formulation by default
    # same job → same instance
    a, b = build_instance(config.jobs[2]), build_instance(config.jobs[2])
    assert (a.X == b.X).all()


def test_joint_qp_of_a_whole_network_is_the_models_instance():
    """A joint-qp block sized by a network name builds network_problem's instance."""
    from pruneopt.models.joint_qp_instances import network_problem

    config = parse_config({"instances": [
        {"formulation": "joint-qp", "sizes": ["digits-mlp"], "budgets": [0.35],
         "keep_nnz": 0.4, "samples": 8, "block_size": 64, "solvers": ["falcon"]}]})
    (job,) = config.jobs
    problem = build_instance(job)
    expect = network_problem("digits-mlp", calibration=8, block_size=64, keep_nnz=0.4,
                             keep_flops=0.35, seed=job.seed)
    assert problem.num_items == expect.num_items == 6464 and problem.num_samples == 8
    assert (problem.X == expect.X).all() and (problem.block_ptr == expect.block_ptr).all()
    with pytest.raises(ValueError, match=r"instances\[0\]\.sizes"):
        parse_config({"instances": [{"formulation": "joint-qp", "sizes": ["resnet20"],
                                     "budgets": [0.5]}]})


def test_network_defaults_accept_every_method():
    config = parse_config({"networks": [{"model": "digits-cnn", "flops": 0.5}]})
    assert sorted(j.method for j in config.jobs) == sorted(known_methods())
    assert set(METHODS) <= set(known_methods())  # run_prune's methods are always runnable
    assert len({j.seed for j in config.jobs}) == 1  # one seed for every method of a replicate


def test_network_models_match_the_zoo():
    zoo = pytest.importorskip("pruneopt.models.zoo")
    assert tuple(NETWORK_MODELS) == tuple(zoo.ZOO_NAMES)


# ---------------------------------------------------------------------------------- the CLI
CONFIG = """
[study]
name = "cli"
time_limit = 5.0
[[instances]]
formulation = "joint"
sizes = [20]
budgets = [0.4]
count = 2
solvers = {solvers}
"""


def _config(tmp_path, solvers='["exact", "falcon"]'):
    path = tmp_path / "study.toml"
    path.write_text(CONFIG.format(solvers=solvers))
    return path


def test_cli_unknown_solver_exits_2_before_any_job(tmp_path, capsys):
    out = tmp_path / "rows.csv"
    code = main(["sweep", str(_config(tmp_path, '["exact", "nosuch"]')), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("pruneopt: error: config: instances[0]")
    assert "unknown solver 'nosuch'" in err and "known: " in err
    assert not out.exists()


def test_cli_unreachable_scheduler_exits_2_quickly(tmp_path, capsys):
    out = tmp_path / "rows.csv"
    start = time.perf_counter()
    code = main(["sweep", str(_config(tmp_path)), "--executor", "dask",
                 "--scheduler", "tcp://127.0.0.1:1", "--out", str(out), "--no-progress"])
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    assert code == 2 and elapsed < 15
    assert err.strip().splitlines()[-1].startswith(
        "pruneopt: error: scheduler: cannot reach tcp://127.0.0.1:1")
    assert not out.exists()


def test_cli_scheduler_needs_dask(tmp_path, capsys):
    code = main(["sweep", str(_config(tmp_path)), "--executor", "local",
                 "--scheduler", "tcp://127.0.0.1:1"])
    assert code == 2 and "scheduler: only with --executor dask" in capsys.readouterr().err


def test_cli_sweep_runs_and_resumes(tmp_path, capsys):
    out = tmp_path / "rows.csv"
    argv = ["sweep", str(_config(tmp_path)), "--out", str(out), "--workers", "1",
            "--no-progress", "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == {**summary, "jobs": 2, "skipped": 0, "run": 2, "errors": 0, "rows": 4,
                       "study": "cli"}
    assert main(argv[:-1]) == 0
    text = capsys.readouterr().out
    assert "2 jobs, 2 skipped as done, 0 run, 0 errors" in text and str(out) in text


def test_documented_examples_parse():
    import textwrap

    from pruneopt.reports.studies import config as study_config

    doc = study_config.__doc__
    block = doc[doc.index("::\n\n") + 4:doc.index("**Size parameter")]
    config = parse_config(__import__("tomllib").loads(textwrap.dedent(block)))
    assert config.name == "my-study" and len(config.jobs) == 2 * 2 * 2 + 2 * 2
    example = load_config("examples/sweep_small.toml")
    assert example.name == "sweep-small" and len(example.jobs) == 15
