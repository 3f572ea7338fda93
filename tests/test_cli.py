"""The ``pruneopt`` command line, run as ``python -m pruneopt`` in a subprocess."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import brute_force

import pruneopt
from pruneopt import JointBudgetProblem


def cli(*args, cwd=None, timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pruneopt", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, field: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert re.match(rf"^pruneopt: error: {field}:", lines[0]), lines[0]
    assert proc.stdout == ""


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    """A generated instance written by the CLI (small enough for brute force)."""
    d = tmp_path_factory.mktemp("cli")
    path = d / "inst.npz"
    proc = cli("generate", "joint", "--layers", 3, "--items", 14, "--dist", "ties", "--seed", 5,
               "--out", path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    return path


def test_generate_writes_the_same_instance_as_the_api(instance):
    from pruneopt.formulations.joint.generate import generate_joint

    p = JointBudgetProblem.load(instance)
    q = generate_joint(layers=3, items=14, dist="ties", seed=5)
    np.testing.assert_array_equal(p.scores, q.scores)
    np.testing.assert_array_equal(p.group_ptr, q.group_ptr)
    np.testing.assert_array_equal(p.flop_cost, q.flop_cost)
    assert (p.nnz_budget, p.flop_budget, p.names) == (q.nnz_budget, q.flop_budget, q.names)


def test_generate_joint_qp_from_a_trained_network(tmp_path):
    """``generate joint-qp`` writes the API's network instance, and ``exact`` proves it."""
    from pruneopt.models.joint_qp_instances import network_problem

    path = tmp_path / "mlp.npz"
    proc = cli("generate", "joint-qp", "--model", "digits-mlp", "--layers", "fc2,fc3",
               "--items", 60, "--calibration", 8, "--block-size", 16, "--seed", 3,
               "--out", path)
    assert proc.returncode == 0, proc.stderr
    p = pruneopt.load_problem(path)
    q = network_problem("digits-mlp", layers=["fc2", "fc3"], items=60, calibration=8,
                        block_size=16, seed=3)
    for name in ("X", "w_bar", "group_ptr", "flop_cost", "block_ptr"):
        np.testing.assert_array_equal(getattr(p, name), getattr(q, name))
    assert (p.nnz_budget, p.flop_budget, p.ridge) == (q.nnz_budget, q.flop_budget, q.ridge)
    assert p.nnz_budget == 30 and p.num_samples == 8
    exact = pruneopt.solve(p, "exact", time_limit=60)
    oa = pruneopt.solve(p, "oa-highs", time_limit=60)
    assert exact.proven_optimal
    assert exact.objective <= oa.objective * (1 + 1e-9) + 1e-12
    if oa.proven_optimal:
        assert exact.objective == pytest.approx(oa.objective, rel=1e-8)


@pytest.mark.parametrize("args, field", [
    (["generate", "joint-qp", "--model", "digits-mlp", "--layers", "nope"], "layers"),
    (["generate", "joint-qp", "--model", "digits-mlp", "--items", "100000"], "items"),
    (["generate", "joint", "--model", "digits-mlp"], "generate"),
    (["generate", "joint", "--layers", "fc1"], "layers"),
])
def test_generate_joint_qp_bad_input(tmp_path, args, field):
    proc = cli(*args, "--seed", 0, "--out", tmp_path / "g.npz")
    assert_one_line_error(proc, field)
    assert list(tmp_path.iterdir()) == []


def test_solve_json_and_save_solution(instance, tmp_path):
    out = tmp_path / "sol.npz"
    proc = cli("solve", instance, "--solver", "highs", "--json", "--save-solution", out)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert isinstance(data, dict)
    for key in ("solver", "status", "objective", "bound", "gap", "proven_optimal", "seconds",
                "nnz_used", "flops_used"):
        assert key in data, key
    problem = JointBudgetProblem.load(instance)
    optimum = brute_force(problem).optimum
    assert data["solver"] == "highs" and data["status"] == "optimal"
    assert data["proven_optimal"] is True
    assert data["objective"] == pytest.approx(optimum, rel=1e-9)
    assert data["bound"] >= optimum - 1e-9 * optimum
    with np.load(out, allow_pickle=False) as npz:
        x = npz["x"]
        saved_objective = float(npz["objective"])
    assert x.shape == (problem.num_items,)
    assert set(np.unique(x).tolist()) <= {0, 1}
    ev = problem.evaluate(x.astype(bool))
    assert ev.objective == pytest.approx(data["objective"], rel=1e-12)
    assert saved_objective == data["objective"]
    assert ev.usage["nnz"] == data["nnz_used"] and ev.usage["flops"] == data["flops_used"]
    assert problem.is_feasible(x)


def test_solve_plain_text(instance):
    proc = cli("solve", instance, "--solver", "cpsat")
    assert proc.returncode == 0, proc.stderr
    optimum = brute_force(JointBudgetProblem.load(instance)).optimum
    assert proc.stdout.startswith("cpsat: optimal")
    assert f"objective {optimum:.12g}" in proc.stdout


def test_solve_options_and_time_limit_are_passed(instance):
    proc = cli("solve", instance, "--solver", "highs", "--option", "fixing=false", "--option",
               "seed=3", "--time-limit", "30", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["options"]["fixing"] is False and data["options"]["seed"] == 3
    assert data["options"]["time_limit"] == 30.0
    assert data["options"]["mip_rel_gap"] == 0.0
    optimum = brute_force(JointBudgetProblem.load(instance)).optimum
    assert data["status"] == "optimal" and data["objective"] == pytest.approx(optimum, rel=1e-9)


def test_crosscheck_json(instance):
    proc = cli("crosscheck", instance, "--solvers", "highs,cpsat,falcon,ratio", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    rows = data["rows"]
    assert [r["solver"] for r in rows] == ["highs", "cpsat", "falcon", "ratio"]
    assert all(r["verdict"] == "ok" for r in rows)
    assert data["flagged"] is False
    optimum = brute_force(JointBudgetProblem.load(instance)).optimum
    assert data["best_feasible"] == pytest.approx(optimum, rel=1e-9)
    assert rows[0]["objective"] == pytest.approx(optimum, rel=1e-9)
    assert rows[1]["objective"] == pytest.approx(optimum, rel=1e-9)


def test_crosscheck_csv(instance, tmp_path):
    out = tmp_path / "cc.csv"
    proc = cli("crosscheck", instance, "--solvers", "pyomo-highs,magnitude", "--csv", out)
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(out)
    assert list(df["solver"]) == ["pyomo-highs", "magnitude"]
    assert {"status", "objective", "bound", "gap", "verdict", "feasible"} <= set(df.columns)
    assert list(df["verdict"]) == ["ok", "ok"]
    optimum = brute_force(JointBudgetProblem.load(instance)).optimum
    assert df["objective"].iloc[0] == pytest.approx(optimum, rel=1e-9)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cc.csv"]


@pytest.mark.parametrize("fmt", ["lp", "mps"])
def test_export(instance, tmp_path, fmt):
    out = tmp_path / f"model.{fmt}"
    proc = cli("export", instance, "--format", fmt, "--out", out)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "nnz" in text and "flops" in text  # the constraint names of the declaration
    problem = JointBudgetProblem.load(instance)
    # every item variable appears (x(i) with symbolic labels)
    for i in range(problem.num_items):
        assert f"x({i})" in text or f"x[{i}]" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_exported_lp_solves_to_the_same_optimum(instance, tmp_path):
    import highspy

    out = tmp_path / "model.lp"
    assert cli("export", instance, "--format", "lp", "--out", out).returncode == 0
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", 0.0)
    h.readModel(str(out))
    h.run()
    optimum = brute_force(JointBudgetProblem.load(instance)).optimum
    assert h.getInfo().objective_function_value == pytest.approx(optimum, rel=1e-9)


# ------------------------------------------------------------------------------------ layering
NO_TORCH = "import sys; sys.modules['torch'] = None  # any `import torch` now fails\n"


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=180)


@pytest.mark.parametrize("argv", [None, ["--help"], ["prune", "--help"], ["channels", "--help"],
                                  ["allocate", "--help"], ["sweep", "--help"]])
def test_the_cli_does_not_import_torch(argv):
    """Only models imports torch: the CLI module, its parser and its help pages never do."""
    code = "import sys, pruneopt.cli\n"
    if argv is not None:
        code += (f"try:\n    pruneopt.cli.main({argv!r})\nexcept SystemExit as e:\n"
                 "    assert e.code == 0, e.code\n")
    proc = python(code + "assert 'torch' not in sys.modules, 'torch was imported'\n")
    assert proc.returncode == 0, proc.stderr
    assert argv is None or "usage: pruneopt" in proc.stdout


def test_allocate_from_a_table_runs_without_torch(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("layer,option,loss,nnz,flops\na,0.5,0.5,5,10\na,1.0,0,10,20\n"
                   "b,0.5,3,5,20\nb,1.0,0,10,40\n")
    out = tmp_path / "o"
    proc = python(NO_TORCH + "from pruneopt.cli import main\nraise SystemExit(main(['allocate', "
                  f"'--table', {str(csv)!r}, '--flops', '0.75', '--solver', 'dp', '--json', "
                  f"'--out', {str(out)!r}]))\n")
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)
    assert rec["proven_optimal"] and rec["objective"] == pytest.approx(3.0)
    assert json.loads((out / "record.json").read_text()) == rec
    assert sorted(p.name for p in out.iterdir()) == ["problem.npz", "record.json"]


def test_solvers_lists_every_solver():
    proc = cli("solvers")
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.strip().splitlines()]
    assert names == pruneopt.available_solvers("joint")
    assert "not installed" not in proc.stdout


# ------------------------------------------------------------------------------------ bad input
@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    good = dict(scores=np.array([1.0, 2.0, 3.0]), group_ptr=np.array([0, 3]),
                flop_cost=np.array([1.0]), nnz_budget=np.int64(2), flop_budget=np.float64(2.0))
    np.savez(d / "nokey.npz", **{k: v for k, v in good.items() if k != "flop_budget"})
    np.savez(d / "nan.npz", **{**good, "scores": np.array([1.0, np.nan, 2.0])})
    np.savez(d / "good.npz", **good)
    np.save(d / "array.npy", np.ones(3))
    return d


@pytest.mark.parametrize("case, field", [
    ("missing", "file"),
    ("nokey", "flop_budget"),
    ("nan", "scores"),
    ("npy", "file"),
    ("solver", "solver"),
    ("time", "(--)?time[-_]limit"),
    ("zero-time", "(--)?time[-_]limit"),
])
def test_solve_bad_input(bad_files, tmp_path, case, field):
    f = {"missing": bad_files / "nope.npz", "nokey": bad_files / "nokey.npz",
         "nan": bad_files / "nan.npz", "npy": bad_files / "array.npy"}.get(
        case, bad_files / "good.npz")
    args = ["solve", f, "--solver", "nope" if case == "solver" else "highs", "--json",
            "--save-solution", tmp_path / "out.npz"]
    if case == "time":
        args += ["--time-limit", "-1"]
    if case == "zero-time":
        args += ["--time-limit", "0"]
    proc = cli(*args)
    assert_one_line_error(proc, field)
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("args, field, out", [
    (["crosscheck", "{bad}/nokey.npz", "--solvers", "highs", "--csv", "{tmp}/o.csv"],
     "flop_budget", "o.csv"),
    (["crosscheck", "{bad}/good.npz", "--solvers", "highs,nope", "--csv", "{tmp}/o.csv"],
     "solver", "o.csv"),
    (["export", "{bad}/nan.npz", "--format", "lp", "--out", "{tmp}/m.lp"], "scores", "m.lp"),
    (["generate", "joint", "--layers", "4", "--items", "2", "--seed", "1", "--out",
      "{tmp}/g.npz"], "items", "g.npz"),
])
def test_other_commands_bad_input(bad_files, tmp_path, args, field, out):
    args = [a.format(bad=bad_files, tmp=tmp_path) for a in args]
    proc = cli(*args)
    assert_one_line_error(proc, field)
    assert list(tmp_path.iterdir()) == []


def test_crosscheck_csv_matches_the_api_table(tmp_path):
    """The CSV written by crosscheck reads back with the same rows as the API's table."""
    p = JointBudgetProblem([5.0, 1.0, 3.0], [0, 3], [1.0], 2, 10.0)
    path = tmp_path / "p.npz"
    p.save(path)
    out = tmp_path / "t.csv"
    assert cli("crosscheck", path, "--solvers", "falcon,ratio", "--csv", out).returncode == 0
    df = pd.read_csv(io.StringIO(out.read_text()))
    api = pruneopt.crosscheck(p, ["falcon", "ratio"])
    assert list(df["objective"]) == list(api["objective"]) == [8.0, 8.0]
    assert list(df["bound"]) == pytest.approx(list(api["bound"]))
