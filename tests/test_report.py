"""The optimality-gap report: ``build_report`` writes rows.csv, report.md and a standalone page.

One quick report is built per test module (module-scoped fixture, about 20-40 s); the other tests
check the study definition and the best-bound arithmetic on hand-made rows, without solvers.
"""

from __future__ import annotations

import base64
import math
import os
import re

import numpy as np
import pandas as pd
import pytest

import pruneopt
from pruneopt.formulations.files import atomic_write
from pruneopt.reports.build import build_report
from pruneopt.reports.rendering.html import render_html
from pruneopt.reports.rendering.markdown import render_markdown
from pruneopt.reports.studies.jobs import SOLVER_MAX_ITEMS
from pruneopt.reports.studies.joint_study import (BUDGETS, ROW_COLUMNS, add_best_bound_gaps,
                                                  build_study)
from pruneopt.solvers.registry import solver_specs

EXPECTED_COLUMNS = {
    "instance", "p", "layers", "dist", "shape", "keep_nnz", "keep_flops", "solver", "status",
    "proven_optimal", "objective", "bound", "gap", "gap_to_best_bound", "seconds", "feasible",
    "verdict", "nnz_used", "flops_used", "backend_version",
}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "nested" / "out"  # created by build_report
    paths = build_report(out, quick=True, progress=False)
    every = pd.read_csv(paths["rows"], keep_default_na=True, low_memory=False)
    # the joint-ILP study's rows; the other formulations and the networks are checked below
    rows = every[every["formulation"] == "joint"].reset_index(drop=True)
    rows = rows[[c for c in every.columns if c in ROW_COLUMNS]]
    return out, paths, rows, every


def _joint_solvers() -> list[str]:
    return pruneopt.available_solvers("joint")


# ------------------------------------------------------------------------------ the quick report
def test_files_exist(report):
    out, paths, _, _ = report
    for key in ("html", "markdown", "rows"):
        assert key in paths
        assert os.path.isfile(paths[key]) and os.path.getsize(paths[key]) > 0
        assert os.path.dirname(os.path.abspath(paths[key])) == os.path.abspath(out)
    plots = [k for k in paths if k.startswith("plot_")]
    assert len(plots) >= 2
    for key in plots:
        with open(paths[key], "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    # nothing half-written left behind
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


def test_rows_columns_and_solvers(report):
    _, _, rows, _ = report
    assert EXPECTED_COLUMNS <= set(rows.columns)
    assert set(ROW_COLUMNS) <= set(rows.columns)
    assert len(rows) > 0
    ran = set(rows["solver"])
    for name in _joint_solvers():
        assert name in ran, f"no row for available solver {name}"
    # one row per instance x solver
    assert not rows.duplicated(["instance", "solver"]).any()
    assert rows["backend_version"].notna().all()
    assert (rows["backend_version"].astype(str).str.len() > 0).all()


def test_exact_solvers_proven_and_ok(report):
    _, _, rows, _ = report
    exact = {s.name for s in solver_specs("joint") if s.exact}
    ex = rows[rows["solver"].isin(exact)]
    assert len(ex) > 0
    bad = ex[~((ex["proven_optimal"] == True) & (ex["verdict"] == "ok"))]  # noqa: E712
    assert bad.empty, bad[["instance", "solver", "status", "verdict", "message"]].to_string()
    # and so their gap to the best bound is zero up to the proof tolerance
    assert (ex["gap_to_best_bound"] <= 1e-9).all()


def test_every_row_is_cross_checked_and_feasible(report):
    _, _, rows, _ = report
    assert (rows["verdict"] == "ok").all(), rows.loc[rows["verdict"] != "ok", "verdict"].tolist()
    assert rows["feasible"].all()
    assert (rows["gap_to_best_bound"] >= 0).all()
    assert (rows["nnz_used"] <= rows["nnz_budget"]).all()
    assert (rows["flops_used"] <= rows["flop_budget"] * (1 + 1e-9)).all()


def test_every_formulation_and_method_is_in_the_rows(report):
    from pruneopt.models.defaults import ALL_METHODS

    _, paths, _, every = report
    assert {"joint", "joint-qp", "allocation", "channels"} <= set(every["formulation"].dropna())
    inst = every[(every["job_kind"] == "instance") & (every["formulation"] != "joint")]
    assert (inst["verdict"] == "ok").all(), inst.loc[inst["verdict"] != "ok", "verdict"]
    exact = inst[inst["kind"] == "exact"]
    assert exact[exact["solver"] == "exact"]["proven_optimal"].astype(bool).all()
    net = every[every["job_kind"] == "network"]
    assert (net["job_status"] == "ok").all(), net["message"].tolist()
    # the quick study leaves out FALCON++ (20 gradient passes); every other method ran
    assert set(ALL_METHODS) - {"falcon++"} <= set(net["method"])
    structured = net[net["method"].isin(["autobot", "fair", "relaxation"])]
    assert structured["gaps"].str.contains('"measure"').all()
    assert pd.read_parquet(paths["rows_parquet"]).shape[0] == len(every)
    for key in ("plot_accuracy_vs_macs", "plot_kept_fractions", "plot_gap_vs_budget_all"):
        assert key in paths


def test_html_is_standalone(report):
    _, paths, _, _ = report
    with open(paths["html"], encoding="utf-8") as fh:
        page = fh.read()
    assert page.lstrip().lower().startswith("<!doctype html>")
    images = re.findall(r'<img\b[^>]*\bsrc="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) >= 2
    for data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    # no external resources: no script/link tags at all, no remote src/href anywhere
    for tag in re.findall(r"<(?:script|link|img|iframe|object|embed|source)\b[^>]*>", page, re.I):
        assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", tag, re.I), tag
    assert not re.search(r"<script\b", page, re.I)
    assert not re.search(r"<link\b", page, re.I)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(?:https?:)?//", page, re.I)
    assert not re.search(r"@import", page, re.I)
    # the same tables as the Markdown
    for name in _joint_solvers():
        assert name in page


def test_markdown_mentions_each_solver_and_units(report):
    _, paths, _, _ = report
    with open(paths["markdown"], encoding="utf-8") as fh:
        md = fh.read()
    for name in _joint_solvers():
        assert re.search(rf"\|\s*{re.escape(name)}\s*\|", md), f"{name} not in a table"
    assert "MACs" in md and "per input sample" in md
    assert "BatchNorm" in md and "not counted" in md
    assert "gap to the best bound" in md.lower()
    assert "passed the cross-check" in md  # no flag in the quick study
    assert "CROSS-CHECK FAILED" not in md


# ------------------------------------------------------------------------------ study definition
def test_study_is_seeded():
    a, b = build_study(quick=True, seed=3), build_study(quick=True, seed=3)
    assert a == b
    c = build_study(quick=True, seed=4)
    assert [j.instance.seed for j in a] != [j.instance.seed for j in c]
    pa, pb = a[0].instance.build(), b[0].instance.build()
    np.testing.assert_array_equal(pa.scores, pb.scores)
    assert len({j.instance.id for j in a}) == len(a)


def test_full_study_shape():
    jobs = build_study(quick=False, seed=0)
    sizes = {j.p for j in jobs}
    assert {300, 2000, 20000, 268_336} <= sizes
    for j in jobs:
        for name in j.solvers:
            cap = SOLVER_MAX_ITEMS.get(name)
            assert cap is None or j.p <= cap, (name, j.p)
        assert "falcon" in j.solvers
        if j.instance.shape == "random":
            assert 8 <= j.instance.layers <= 20
    assert {j.instance.dist for j in jobs if j.p == 300} == {"kaiming", "lognormal", "ties"}
    assert {(j.instance.keep_nnz, j.instance.keep_flops) for j in jobs} == set(BUDGETS)


# ------------------------------------------------------------------------------ best-bound arithmetic
def _rows(specs):
    base = {c: math.nan for c in ROW_COLUMNS}
    out = []
    for solver, proven, objective, bound, feasible, verdict in specs:
        out.append({**base, "instance": "i", "sense": "maximize", "solver": solver,
                    "proven_optimal": proven, "objective": objective, "bound": bound,
                    "feasible": feasible, "verdict": verdict})
    return pd.DataFrame(out, columns=ROW_COLUMNS)


def test_best_bound_is_the_proven_solvers_bound():
    rows = add_best_bound_gaps(_rows([
        ("exact", True, 100.0, 100.0, True, "ok"),
        ("fast", False, 90.0, 101.0, True, "ok"),
        ("none", False, math.nan, math.nan, False, "ok"),
    ]))
    assert (rows["best_bound"] == 100.0).all()
    assert rows["best_bound_source"].iloc[0] == "proven optimum (exact)"
    assert rows["gap_to_best_bound"].iloc[0] == 0.0
    assert rows["gap_to_best_bound"].iloc[1] == pytest.approx(0.1)
    assert math.isnan(rows["gap_to_best_bound"].iloc[2])


def test_best_bound_without_proof_is_the_tightest_valid_bound():
    rows = add_best_bound_gaps(_rows([
        ("exact", False, 95.0, 104.0, True, "ok"),
        ("fast", False, 90.0, 102.0, True, "ok"),
        ("liar", False, math.nan, 1.0, False, "bound-below-feasible(fast)"),
    ]))
    assert (rows["best_bound"] == 102.0).all()
    assert rows["best_bound_source"].iloc[0] == "tightest bound (fast)"
    assert rows["gap_to_best_bound"].iloc[0] == pytest.approx(7 / 102)


def test_flagged_rows_are_called_out():
    rows = add_best_bound_gaps(_rows([
        ("exact", True, 100.0, 100.0, True, "ok"),
        ("liar", False, math.nan, 1.0, False, "bound-below-feasible(exact)"),
    ]).assign(kind="exact", shape="random", p=10, layers=2, dist="kaiming", keep_nnz=0.5,
              keep_flops=0.4, time_limit=1.0, seconds=0.1, status="optimal", backend="b",
              backend_version="1"))
    md = render_markdown(rows, {"seed": 0})
    assert "CROSS-CHECK FAILED" in md and "Flagged runs" in md
    page = render_html(rows, {"seed": 0}, {})
    assert 'class="alert"' in page


def test_write_atomic_replaces_whole_file(tmp_path):
    target = tmp_path / "f.txt"
    atomic_write(str(target), "one")
    atomic_write(str(target), b"two")
    assert target.read_text() == "two"
    assert os.listdir(tmp_path) == ["f.txt"]


# ------------------------------------------------------------------------------ layout
def test_rendering_and_config_import_no_torch():
    """Rendering never imports torch or pruneopt.models; checking a config or running a sweep
    of instances does not import torch either (DESIGN §1)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import pruneopt.reports.rendering.html, pruneopt.reports.rendering.markdown\n"
        "assert not [m for m in sys.modules if m == 'torch' or m.startswith('pruneopt.models')]\n"
        "assert not [m for m in sys.modules if m.startswith('pruneopt.reports.studies')]\n"
        "import pruneopt.reports.studies.config, pruneopt.reports.studies.sweep\n"
        "import pruneopt.reports.studies.joint_study\n"
        "assert 'torch' not in sys.modules\n"
        "assert 'pruneopt.models.study_jobs' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_network_miqp_table_measures_each_method_against_the_best_bound():
    """Hand-computed: best Q 2.0 (exact), best certified bound 1.9 (exact's)."""
    from pruneopt.reports.rendering.tables import network_miqp_table

    base = {"job_id": "j", "job_kind": "instance", "formulation": "joint-qp",
            "size": "digits-mlp", "p": 6464, "keep_nnz": 0.4, "budget": 0.35, "feasible": True}
    rows = pd.DataFrame([
        {**base, "solver": "exact", "status": "time_limit", "objective": 2.0, "bound": 1.9,
         "seconds": 30.0},
        {**base, "solver": "falcon", "status": "feasible", "objective": 2.19, "bound": 1.0,
         "seconds": 0.2},
        {**base, "solver": "magnitude", "status": "feasible", "objective": 2.38,
         "bound": float("nan"), "seconds": 0.01},
        {**base, "job_id": "k", "size": "12", "solver": "exact", "status": "optimal",
         "objective": 1.0, "bound": 1.0, "seconds": 0.1},  # a numeric size: not a network
    ])
    table = network_miqp_table(rows)
    assert list(table["solver"]) == ["exact", "falcon", "magnitude"]
    assert list(table["excess over best Q"]) == ["0", "0.1", "0.2"]
    assert list(table["excess over certified bound"]) == ["0.053", "0.15", "0.25"]
