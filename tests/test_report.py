"""The optimality-gap report: ``build_report`` writes rows.csv, report.md and a standalone page.

One quick report is built per test module (module-scoped fixture, about 20-40 s); the other tests
check the study definition and the best-bound arithmetic on hand-made rows, without solvers.
"""

from __future__ import annotations

import base64
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pruneopt
from pruneopt.formulations.files import atomic_write
from pruneopt.reports.build import build_report
from pruneopt.reports.rendering.html import render_html
from pruneopt.reports.rendering.markdown import render_markdown
from pruneopt.reports.studies.jobs import SOLVER_MAX_ITEMS
from pruneopt.reports.studies.joint_study import (
    BUDGETS,
    ROW_COLUMNS,
    add_best_bound_gaps,
    build_study,
)
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
    # every run that returned something passed the cross-check; the others were refused by
    # design (dp off chains or beyond its state space), not run, and say why
    checked = inst["verdict"] == "ok"
    refused = inst["refused"].astype(bool)
    assert (checked | refused).all(), inst.loc[~(checked | refused), ["solver", "message"]]
    assert (inst.loc[refused, "verdict"] == "not-checked").all()
    assert (inst.loc[refused, "status"] == "error").all()
    assert inst.loc[refused, "message"].str.startswith("refused: ").all()
    assert (inst["status"] != "error").sum() == (~refused).sum()
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
    assert "CROSS-CHECK FAILED" not in md  # no flag in the quick study
    every = report[3]
    refused = every["refused"].astype(bool)
    if refused.any():  # dp refused off chains: counted apart, each with its reason
        assert "errored or were refused" in md and "passed the cross-check" not in md
        assert "## Runs that did not solve" in md and "| refused |" in md
    else:
        assert "passed the cross-check" in md


def test_rows_carry_only_the_documented_statuses(report):
    from pruneopt.solvers.constants import STATUSES

    _, _, _, every = report
    assert set(every["status"].dropna()) <= set(STATUSES), set(every["status"])
    assert set(every["job_status"]) <= {"ok", "error"}
    assert set(every["verdict"].dropna()) <= {"ok", "not-checked"}  # no flag, or no result
    net = every[every["job_kind"] == "network"]
    assert net["verdict"].isna().all()  # a pruning run is not cross-checked
    assert (net["status"] == np.where(net["budgets_met"].astype(bool), "feasible", "error")).all()


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
            "size": "digits-mlp", "p": 6464.0, "keep_nnz": 0.4, "budget": 0.35, "feasible": True}
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
    assert set(table["weights"]) == {"6,464"}  # a count, though read back from CSV as float


# ------------------------------------------------------------------------------ every failure shown
def _outcome_rows() -> pd.DataFrame:
    """Sweep rows of one instance: solved runs, an error, a refusal and a time limit."""
    base = {"job_id": "j", "job_key": "channels/12/F0.5/#0", "job_kind": "instance",
            "job_status": "ok", "formulation": "channels", "size": "12", "p": 96,
            "budget": 0.5, "time_limit": 20.0, "feasible": True, "verdict": "ok",
            "refused": False, "seconds": 0.1, "message": ""}
    none = {"feasible": False, "verdict": "not-checked", "proven_optimal": False,
            "objective": math.nan, "bound": math.nan, "gap_to_best_bound": math.nan}
    return pd.DataFrame([
        {**base, "solver": "exact", "kind": "exact", "status": "optimal",
         "proven_optimal": True, "objective": 1.0, "bound": 1.0, "gap_to_best_bound": 0.0},
        {**base, "solver": "fast", "kind": "fast", "status": "feasible", "objective": 0.9,
         "bound": 1.1, "gap_to_best_bound": 0.1},
        {**base, **none, "solver": "cpsat", "kind": "exact", "status": "error",
         "message": "RuntimeError: the backend crashed (planted)"},
        {**base, **none, "solver": "dp", "kind": "exact", "status": "error", "refused": True,
         "seconds": math.nan, "message": "refused: dp is exact on chains only (planted)"},
        {**base, "solver": "pyomo-scip", "kind": "exact", "status": "time_limit",
         "proven_optimal": False, "objective": 0.95, "bound": 1.2, "gap_to_best_bound": 0.05,
         "message": "SCIP: time limit (planted)"},
    ])


def test_headline_counts_errors_and_refusals_never_all_passed():
    from pruneopt.reports.rendering.sections import outcome_callouts, report_sections

    rows = _outcome_rows()
    text = outcome_callouts(rows)
    assert "passed the cross-check" not in text and "All " not in text
    assert "2 of 5 runs errored or were refused (1 errored, 1 refused by design)" in text
    assert "Failures: `cpsat` (channels ×1)" in text
    assert "refused by design" in text and "`dp` (channels ×1)" in text
    assert "1 run(s) stopped at their time limit" in text and "`pyomo-scip`" in text
    md = render_markdown(pd.DataFrame(), {"study": "s"}, every=rows)
    assert "errored or were refused" in md and "passed the cross-check" not in md
    # an error is an alert, a refusal and a time limit are notes; nothing reads all-clear
    page = render_html(pd.DataFrame(), {"study": "s"}, every=rows)
    assert 'class="alert"' in page and 'class="note"' in page and 'class="okay"' not in page
    # the sweep part's own line says so too
    secs = report_sections(pd.DataFrame(), {}, extra=None, every=rows)
    assert [s.heading for s in secs][:2] == ["", "Runs that did not solve"]


def test_failure_table_lists_each_unsolved_run_with_its_reason():
    from pruneopt.reports.rendering.tables import outcome_counts, outcome_table, unsolved_runs

    rows = _outcome_rows()
    counts = outcome_counts(rows)
    assert (counts["solved"], counts["errored"], counts["refused"], counts["time limit"],
            counts["flagged"]) == (2, 1, 1, 1, 0)
    detail = unsolved_runs(rows)
    assert list(detail["solver / method"]) == ["cpsat", "pyomo-scip", "dp"]  # failures first
    assert list(detail["outcome"]) == ["**errored**", "time limit", "refused"]
    reasons = dict(zip(detail["solver / method"], detail["reason"], strict=True))
    assert reasons["cpsat"] == "RuntimeError: the backend crashed (planted)"
    assert reasons["dp"] == "dp is exact on chains only (planted)"
    assert reasons["pyomo-scip"] == "stopped at its time limit (20 s): SCIP: time limit (planted)"
    assert set(detail["run"]) == {"channels/12/F0.5/#0"}
    table = outcome_table(rows)
    assert list(table["solver / method"]) == ["cpsat", "dp", "pyomo-scip"]
    assert table.set_index("solver / method").loc["cpsat", "errored"] == "**1**"
    assert table.set_index("solver / method").loc["dp", "refused"] == "1"


def test_clean_rows_read_all_passed():
    from pruneopt.reports.rendering.sections import outcome_callouts, report_sections

    rows = _outcome_rows().iloc[:2]
    text = outcome_callouts(rows)
    assert text.startswith("> All 2 runs passed the cross-check")
    assert "errored" not in text.split("and none errored")[0]
    assert "Runs that did not solve" not in [s.heading for s in report_sections(
        pd.DataFrame(), {}, every=rows)]


def test_synthetic_report_shows_every_kind_of_unsolved_run(tmp_path):
    from report_rows import BUDGET_MISSED, ERROR, META, REFUSAL, joint_rows, sweep_rows

    from pruneopt.reports.build import write_report

    paths = write_report(tmp_path, joint_rows(), sweep_rows(), dict(META))
    md = Path(paths["markdown"]).read_text(encoding="utf-8")
    assert "8 of 285 runs errored or were refused (1 errored, 1 missed the budget asked, 6 " \
           "refused by design)" in md
    for reason in (ERROR, BUDGET_MISSED, REFUSAL[len("refused: "):]):
        assert reason in md
    assert "| digits-cnn | autobot | 0.7 | **0.908** |" in md  # the missed budget, in bold
    assert "**budget missed**" in md
    rows = pd.read_csv(paths["rows"], low_memory=False)
    from pruneopt.solvers.constants import STATUSES

    assert set(rows["status"].dropna()) <= set(STATUSES)


def test_refused_solver_is_not_run_and_says_why():
    """dp on a channel graph that is not a chain: recorded as refused before any solve."""
    from pruneopt.reports.studies.instances import run_instance_job
    from pruneopt.reports.studies.jobs import SweepJob

    job = SweepJob(kind="instance", formulation="channels", size=6, budget=0.5, seed=1,
                   solvers=("exact", "dp", "fast"), time_limit=5.0)
    rows = {r["solver"]: r for r in run_instance_job(job)}
    dp = rows["dp"]
    assert dp["status"] == "error" and dp["refused"] is True and dp["verdict"] == "not-checked"
    assert dp["message"].startswith("refused: dp is exact on chains only")
    assert math.isnan(dp["seconds"])  # never ran
    assert rows["exact"]["status"] == "optimal" and rows["exact"]["refused"] is False
    assert rows["exact"]["verdict"] == rows["fast"]["verdict"] == "ok"
    assert all(r["job_rows"] == 3 for r in rows.values())


def test_refusal_checks_match_the_solvers():
    from pruneopt.formulations.channels.generate import generate_channels
    from pruneopt.reports.studies.applicability import is_refusal_message, refusal
    from pruneopt.reports.studies.instances import random_joint_qp

    assert refusal(generate_channels(shape="chain", seed=1, groups=6), "dp") is None
    assert refusal(generate_channels(shape="random", seed=1, groups=6), "exact") is None
    assert "stops at p = 22" in refusal(random_joint_qp(p=30, keep_flops=0.5), "enumerate")
    assert refusal(random_joint_qp(p=10, keep_flops=0.5), "enumerate") is None
    # a refusal raised by the solver itself is recognised too
    problem = generate_channels(shape="random", seed=1, groups=6)
    with pytest.raises(ValueError) as exc:
        pruneopt.solve(problem, "dp")
    assert is_refusal_message(f"ValueError: {exc.value}")
    assert not is_refusal_message("RuntimeError: something else")


def test_missed_budget_is_an_error_status_with_its_reason():
    from pruneopt.reports.studies.jobs import SweepJob
    from pruneopt.reports.studies.networks import network_status

    job = SweepJob(kind="network", model="digits-cnn", method="autobot", budget=0.7, seed=0)
    assert network_status({"budgets_met": True, "macs_kept": 0.69}, job) == ("feasible", None)
    status, message = network_status({"budgets_met": False, "macs_kept": 0.908}, job)
    assert status == "error"
    assert message == "budget missed: autobot kept 0.908 of the dense MACs, asked 0.7"
