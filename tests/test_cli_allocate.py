"""``pruneopt allocate``: a hand-checked CSV table, a loss table from a model, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pruneopt.cli import main
from pruneopt.models.allocation_tables import allocation_table, layer_masks
from pruneopt.models.small_instances import sampled_problem
from pruneopt.solvers.fast.joint_qp.backsolve import quadratic_objective, restricted_ridge


def test_csv_table_hand_checked(tmp_path, capsys):
    # Two layers, options keep 0.5 / 1.0: a costs 10/20 MACs (loss 0.5/0), b 20/40 (loss 3/0).
    # Dense flops 60. F = 0.75·60 = 45 admits (a.5, b.5) = 30 (loss 3.5) and (a1, b.5) = 40
    # (loss 3); (a.5, b1) = 50 does not fit. F = 50/60 admits it: loss 0.5.
    csv = tmp_path / "t.csv"
    csv.write_text("layer,option,loss,nnz,flops\n"
                   "a,0.5,0.5,5,10\na,1.0,0,10,20\nb,0.5,3,5,20\nb,1.0,0,10,40\n")
    assert main(["allocate", "--table", str(csv), "--flops", "0.75", "--solver", "exact",
                 "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["proven_optimal"] and rec["objective"] == pytest.approx(3.0)
    assert [layer["keep"] for layer in rec["layers"]] == [1.0, 0.5]
    assert main(["allocate", "--table", str(csv), "--flops", str(50 / 60), "--solver", "dp",
                 "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["proven_optimal"] and rec["objective"] == pytest.approx(0.5)
    assert [layer["keep"] for layer in rec["layers"]] == [0.5, 1.0]


def test_table_from_a_quadratic_model_is_the_per_layer_backsolve():
    P = sampled_problem(p=18, seed=4)
    A = allocation_table(P, (0.0, 0.5, 1.0), keep_flops=0.5)
    g = 1
    a, b = int(P.group_ptr[g]), int(P.group_ptr[g + 1])
    k = int(round(0.5 * (b - a)))
    X, wb = P.X[:, a:b], P.w_bar[a:b]
    w = restricted_ridge(X, wb, P.ridge, None, layer_masks(wb, k))
    j = int(np.flatnonzero(A.nnz[A.option_ptr[g]:A.option_ptr[g + 1]] == k)[0])
    assert A.loss[A.option_ptr[g] + j] == pytest.approx(quadratic_objective(X, wb, P.ridge,
                                                                            None, w), rel=1e-12)
    full = A.option_ptr[g + 1] - 1  # keep everything: no loss
    assert A.loss[full] == pytest.approx(0.0, abs=1e-15)


def test_model_allocation_meets_budgets(tmp_path, capsys):
    assert main(["allocate", "--model", "digits-mlp", "--flops", "0.4", "--nnz", "0.45",
                 "--solver", "exact", "--json", "--calibration", "32",
                 "--out", str(tmp_path / "o")]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["budgets_met"] and rec["proven_optimal"]
    assert rec["macs_after"] <= 0.4 * rec["macs_dense"]
    assert rec["nnz_after"] <= int(0.45 * rec["nnz_dense"])
    assert (tmp_path / "o" / "problem.npz").exists() and (tmp_path / "o" / "model.pt").exists()


def test_missing_table_is_one_line_error(tmp_path, capsys):
    code = main(["allocate", "--table", str(tmp_path / "none.csv"), "--flops", "0.5"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("pruneopt: error: file:") and err.count("\n") == 1
