"""crosscheck / verdicts: a clean run reads 'ok'; each planted lie is flagged on its own row."""

from __future__ import annotations

import dataclasses
import importlib
import math

import numpy as np
import pytest
from conftest import brute_force

import pruneopt
from pruneopt import JointBudgetProblem
from pruneopt.formulations.joint.generate import generate_joint
from pruneopt.solvers import registry
from pruneopt.solvers.crosscheck import verdicts

crosscheck_module = importlib.import_module("pruneopt.solvers.crosscheck")

SCORES = np.array([5.0, 1.0, 3.0, 4.0, 0.0, 2.0, 6.0])
OPT_X = np.array([1, 0, 0, 1, 0, 1, 1], dtype=bool)  # objective 17 (checked below)
WORSE_X = np.array([1, 0, 0, 1, 0, 0, 1], dtype=bool)  # objective 15, feasible
OVER_FLOPS_X = np.array([1, 1, 1, 0, 0, 0, 0], dtype=bool)  # 3 items, 12 MACs > 10


def hand_problem(scale: float = 1.0) -> JointBudgetProblem:
    return JointBudgetProblem(SCORES * scale, [0, 3, 5, 7], [4.0, 2.0, 1.0], 4, 10.0)


@pytest.fixture(scope="module")
def honest():
    p = hand_problem()
    assert brute_force(p).optimum == 17.0 and p.evaluate(OPT_X).objective == 17.0
    assert p.is_feasible(WORSE_X) and p.evaluate(WORSE_X).objective == 15.0
    assert not p.is_feasible(OVER_FLOPS_X) and p.evaluate(OVER_FLOPS_X).usage["nnz"] <= 4
    return p, {name: pruneopt.solve(p, name) for name in ("highs", "cpsat", "falcon", "ratio")}


def verdict_of(df, solver: str) -> str:
    rows = df[df["solver"] == solver]
    assert len(rows) == 1
    return rows["verdict"].iloc[0]


# ------------------------------------------------------------------------------------ clean
def test_clean_crosscheck_is_all_ok():
    p = generate_joint(layers=5, items=120, dist="lognormal", keep_nnz=0.4, keep_flops=0.3, seed=3)
    names = pruneopt.available_solvers(p)
    df = pruneopt.crosscheck(p, names)
    assert list(df["solver"]) == names
    assert list(df["verdict"]) == ["ok"] * len(names)
    assert df["feasible"].all()
    specs = {s.name: s for s in registry.solver_specs(p)}
    exact = df[df["solver"].map(lambda name: specs[name].exact)]
    assert len(exact) >= 4  # pyomo-highs, highs, cpsat, exact (+ pyomo-scip where installed)
    assert exact["proven_optimal"].all() and (exact["status"] == "optimal").all()
    opt = exact["objective"].max()
    assert exact["objective"].min() >= opt * (1 - 1e-9)
    assert df.attrs["best_feasible"] == df["objective"].max() == opt
    assert df.attrs["best_bound"] == pytest.approx(opt, rel=1e-9)
    assert (df["gap_to_best_bound"][exact.index] <= 1e-9).all()
    heur = df.set_index("solver").loc[[n for n in names if not specs[n].exact]]
    assert len(heur) >= 3  # falcon, magnitude, ratio
    assert (heur["objective"] <= opt * (1 + 1e-9)).all()
    assert (heur["bound"] >= opt * (1 - 1e-9)).all()
    results = df.attrs["results"]
    assert [r.solver for r in results] == names


def test_verdicts_of_honest_results_are_ok(honest):
    p, res = honest
    df = verdicts(p, list(res.values()))
    assert list(df["verdict"]) == ["ok"] * 4
    assert df.attrs["best_feasible"] == 17.0


# ------------------------------------------------------------------------------------ planted
def test_beaten_optimum_flag_is_on_the_liar(honest):
    p, res = honest
    liar = res["cpsat"].replace(x=WORSE_X, objective=15.0, proven_optimal=True, status="optimal",
                                bound=17.0)
    df = verdicts(p, [res["highs"], liar, res["falcon"]])
    v = verdict_of(df, "cpsat")
    assert "beaten-optimum(highs)" in v and "beaten-optimum(falcon)" in v
    assert "beaten-optimum" not in verdict_of(df, "highs")
    assert verdict_of(df, "falcon") == "ok"


def test_beaten_optimum_by_a_heuristic_only(honest):
    p, res = honest
    liar = res["cpsat"].replace(x=WORSE_X, objective=15.0, proven_optimal=True, status="optimal",
                                bound=17.0)
    df = verdicts(p, [liar, res["falcon"]])  # falcon's x has objective 17 > 15
    assert pruneopt.solve(p, "falcon").objective == 17.0
    assert verdict_of(df, "cpsat") == "beaten-optimum(falcon)"
    assert verdict_of(df, "falcon") == "ok"


def test_bound_below_feasible_flag_is_on_the_row_with_the_bad_bound(honest):
    p, res = honest
    bad = res["falcon"].replace(bound=16.5)
    df = verdicts(p, [res["highs"], bad, res["ratio"]])
    assert "bound-below-feasible(highs)" in verdict_of(df, "falcon")
    assert verdict_of(df, "highs") == "ok"
    assert verdict_of(df, "ratio") == "ok"
    # ratio's selection is optimal too (17 > 16.5): both feasible rows beat the bad bound
    assert res["ratio"].objective == 17.0
    assert verdict_of(df, "falcon") == "bound-below-feasible(highs) bound-below-feasible(ratio)"


def test_infeasible_x_flag(honest):
    p, res = honest
    cheat = res["ratio"].replace(x=OVER_FLOPS_X, objective=9.0)
    df = verdicts(p, [res["highs"], cheat])
    assert verdict_of(df, "ratio") == "infeasible-x"
    assert verdict_of(df, "highs") == "ok"
    assert not df.set_index("solver").loc["ratio", "feasible"]


def test_optima_differ_flag_on_both_proven_rows(honest):
    p, res = honest
    other = res["cpsat"].replace(x=WORSE_X, objective=15.0, bound=15.0, proven_optimal=True)
    df = verdicts(p, [res["highs"], other])
    assert "optima-differ(cpsat)" in verdict_of(df, "highs")
    assert "optima-differ(highs)" in verdict_of(df, "cpsat")
    # only the worse one is beaten, and its bound 15 is below highs' feasible 17
    assert "beaten-optimum" not in verdict_of(df, "highs")
    assert "bound-below-feasible" not in verdict_of(df, "highs")
    assert "beaten-optimum(highs)" in verdict_of(df, "cpsat")
    assert "bound-below-feasible(highs)" in verdict_of(df, "cpsat")


def test_equal_proven_optima_within_tolerance_are_ok(honest):
    p, res = honest
    twin = res["cpsat"].replace(bound=17.0 * (1 + 1e-12))
    df = verdicts(p, [res["highs"], twin])
    assert list(df["verdict"]) == ["ok", "ok"]


@pytest.mark.parametrize("scale", [1.0, 2.0**-20, 2.0**-32])
def test_verdicts_do_not_depend_on_the_unit_of_the_scores(scale):
    """Multiplying every score by a power of two scales all objectives exactly: the flags (which
    compare with a *relative* tolerance) must stay the same. A proven optimum 12 % worse than
    another solver's selection is a bug at any score scale (e.g. w² ~ 1e-9)."""
    p = hand_problem(scale)
    h = pruneopt.solve(p, "highs")
    f = pruneopt.solve(p, "falcon")
    assert h.objective == 17.0 * scale
    liar = h.replace(solver="cpsat", x=WORSE_X, objective=15.0 * scale, bound=15.0 * scale,
                     proven_optimal=True)
    low = f.replace(bound=16.0 * scale)
    df = verdicts(p, [h, liar, low])
    assert "beaten-optimum(highs)" in verdict_of(df, "cpsat")
    assert "optima-differ(highs)" in verdict_of(df, "cpsat")
    assert "bound-below-feasible(highs)" in verdict_of(df, "falcon")


# ------------------------------------------------------------------------------------ failures
def test_a_solver_that_raises_becomes_an_error_row(monkeypatch):
    p = hand_problem()
    spec = registry.get_solver(p, "magnitude")

    def boom(problem, **kwargs):
        raise RuntimeError("backend exploded")

    monkeypatch.setitem(registry._REGISTRY, ("joint", "magnitude"),
                        dataclasses.replace(spec, run=boom))
    df = pruneopt.crosscheck(p, ["highs", "magnitude", "falcon"])
    assert list(df["solver"]) == ["highs", "magnitude", "falcon"]
    row = df.set_index("solver").loc["magnitude"]
    assert row["status"] == "error"
    assert "backend exploded" in row["message"]
    assert not row["feasible"] and not row["proven_optimal"]
    assert math.isnan(row["objective"])
    hrow = df.set_index("solver").loc["highs"]
    assert hrow["status"] == "optimal" and hrow["objective"] == 17.0
    assert verdict_of(df, "highs") == "ok" and verdict_of(df, "falcon") == "ok"


def test_unknown_solver_fails_before_any_solve(monkeypatch):
    p = hand_problem()
    calls = []
    real = crosscheck_module.solve

    def spy(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(crosscheck_module, "solve", spy)
    with pytest.raises(ValueError, match=r"^solver:.*no-such-solver"):
        pruneopt.crosscheck(p, ["highs", "no-such-solver"])
    assert calls == []
    df = pruneopt.crosscheck(p, ["ratio"])  # the spy does see real solves
    assert calls == ["ratio"] and list(df["verdict"]) == ["ok"]
