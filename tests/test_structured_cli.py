"""``pruneopt prune --method autobot|fair|relaxation``: the record, its gaps, the checkpoint and
the cross-check of the method's decision, and the errors for bad flags."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pruneopt.cli import main
from pruneopt.formulations.channels.problem import ChannelProblem

REQUIRED = {"method", "model", "flops_asked", "nnz_asked", "macs_before", "macs_after",
            "nnz_before", "nnz_after", "accuracy_before", "accuracy_after", "seconds", "gaps",
            "budgets_met", "kept_fractions", "macs_predicted"}


def run_json(capsys, *argv):
    code = main(["prune", *argv, "--json", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def _gap(rec, measure):
    rows = [g for g in rec["gaps"] if g["measure"] == measure]
    assert len(rows) == 1, rec["gaps"]
    return rows[0]


def test_autobot_record_gaps_and_crosscheck(tmp_path, capsys):
    out = tmp_path / "ab"
    rec = run_json(capsys, "--model", "digits-mlp", "--method", "autobot", "--flops", "0.5",
                   "--out", str(out), "--finetune-epochs", "1")
    assert REQUIRED <= set(rec)
    assert rec["macs_after"] == rec["macs_predicted"]  # FlopCounterMode on the shrunk model
    assert rec["budgets_met"] and rec["macs_after"] <= rec["flop_budget"]
    assert rec["accuracy_finetuned"] is not None
    for row in rec["gaps"]:
        assert {"measure", "method_value", "exact_value", "gap"} <= set(row)
        assert row["gap"] >= -1e-9
    assert [g["measure"] for g in rec["gaps"]] == ["G0", "G1", "G2"]
    g1 = _gap(rec, "G1")
    assert g1["proven_optimal"] and g1["exact_value"] >= g1["method_value"] - 1e-9
    # the saved problem and decision: the method's row beside the solvers in crosscheck
    problem = ChannelProblem.load(out / "channels.npz")
    keep = np.load(out / "keep.npy")
    assert problem.evaluate(keep).objective == pytest.approx(g1["method_value"], rel=1e-9)
    code = main(["crosscheck", str(out / "channels.npz"), "--solvers", "exact,fast",
                 "--decision", f"autobot={out / 'keep.npy'}", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert code == 0
    rows = {r["solver"]: r for r in res["rows"]}
    assert rows["autobot"]["feasible"] and rows["autobot"]["verdict"] == "ok"
    assert rows["autobot"]["gap_to_best_bound"] == pytest.approx(g1["gap"], rel=1e-6, abs=1e-12)


def test_fair_tolerance_and_global_gap(capsys):
    rec = run_json(capsys, "--model", "digits-mlp", "--method", "fair", "--tolerance", "0.1")
    assert rec["flops_asked"] is None and rec["tolerance"] == 0.1
    assert [g["measure"] for g in rec["gaps"]] == ["F3", "F4", "F5"]
    f4 = _gap(rec, "F4")
    assert f4["exact_value"] >= f4["method_value"]  # per-layer choices are globally feasible
    assert rec["macs_after"] == rec["macs_predicted"] < rec["macs_dense"]


def test_relaxation_runs_with_its_gaps(capsys):
    rec = run_json(capsys, "--model", "digits-mlp", "--method", "relaxation", "--flops", "0.5",
                   "--no-gaps")
    assert rec["gaps"] == [] and rec["macs_after"] < rec["macs_dense"]
    assert set(rec["kept_fractions"]) == {"fc1", "fc2"}


@pytest.mark.parametrize("argv, word", [
    (["--method", "fair", "--flops", "0.5"], "flops"),
    (["--method", "autobot"], "flops"),
    (["--method", "autobot", "--flops", "0.5", "--tolerance", "0.1"], "tolerance"),
    (["--method", "fair", "--tolerance", "1.5"], "tolerance"),
    (["--method", "relaxation", "--flops", "0.5", "--nnz", "0.5"], "nnz"),
    (["--method", "falcon"], "flops"),
])
def test_bad_flags_exit_2_with_one_line(argv, word, capsys):
    try:
        code = main(["prune", "--model", "digits-mlp", *argv, "--no-progress"])
    except SystemExit as exc:  # argparse's own value checks
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert word in err and len(err.splitlines()) == 1
