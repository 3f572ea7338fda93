"""``pruneopt prune`` from the command line: the JSON record, checkpoints, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pruneopt.cli import main

REQUIRED = {"method", "model", "flops_asked", "nnz_asked", "macs_before", "macs_after",
            "nnz_before", "nnz_after", "accuracy_before", "accuracy_after", "seconds"}


def call(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own errors
        return int(exc.code)


def run_json(capsys, *argv):
    code = main(["prune", *argv, "--json", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)  # the only thing on stdout


def test_json_record_and_checkpoint_round_trip(tmp_path, capsys):
    rec = run_json(capsys, "--model", "digits-mlp", "--flops", "0.3", "--nnz", "0.4",
                   "--method", "falcon", "--out", str(tmp_path / "a"), "--calibration", "64")
    assert REQUIRED <= set(rec)
    assert rec["macs_after"] <= 0.3 * rec["macs_before"]
    assert rec["nnz_after"] <= int(0.4 * rec["nnz_before"])
    assert 0.0 <= rec["accuracy_after"] <= rec["accuracy_before"] <= 1.0
    saved = json.loads((tmp_path / "a" / "record.json").read_text())
    assert saved["macs_after"] == rec["macs_after"]
    # The checkpoint is a model again: prune it further with another method.
    ckpt = tmp_path / "a" / "model.pt"
    state = torch.load(ckpt, weights_only=True)
    assert state["model"] == "digits-mlp"
    rec2 = run_json(capsys, "--model", str(ckpt), "--flops", "0.2", "--method", "magnitude")
    assert rec2["macs_before"] == rec["macs_after"]  # starts from the pruned weights
    assert rec2["macs_after"] <= 0.2 * rec2["macs_dense"]


def test_human_output_and_user_data(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, X=rng.normal(size=(40, 3, 8, 8)).astype(np.float32),
             y=rng.integers(0, 5, size=40))
    code = main(["prune", "--model", "toy_models:tiny_cnn", "--input-shape", "3,8,8",
                 "--flops", "0.5", "--method", "woodfisher", "--data", str(data),
                 "--calibration", "16", "--no-progress"])
    out, _ = capsys.readouterr()
    assert code == 0 and "woodfisher on toy_models:tiny_cnn" in out and "file data" in out


@pytest.mark.parametrize("argv, field", [
    (["--model", "digits-mlp", "--flops", "0"], "flops"),
    (["--model", "digits-mlp", "--flops", "1.5"], "flops"),
    (["--model", "digits-mlp", "--flops", "0.5", "--nnz", "0"], "nnz"),
    (["--model", "digits-mlp", "--flops", "0.5", "--method", "best"], "method"),
    (["--model", "toy_models:no_prunable_layers", "--input-shape", "3,8,8", "--flops", "0.5"],
     "model"),
    (["--model", "toy_models:tiny_cnn", "--input-shape", "3,8", "--flops", "0.5"],
     "input_shape"),
    (["--model", "digits-mlp", "--flops", "0.5", "--calibration", "100000"], "calibration"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, argv, field):
    code = call(["prune", *argv, "--out", str(tmp_path / "o"), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith(f"pruneopt: error: {field}") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_data_of_the_wrong_shape_is_refused(tmp_path, capsys):
    data = tmp_path / "d.npz"
    np.savez(data, X=np.zeros((10, 1, 8, 8), np.float32), y=np.zeros(10, np.int64))
    code = main(["prune", "--model", "toy_models:tiny_cnn", "--input-shape", "3,8,8",
                 "--flops", "0.5", "--data", str(data), "--no-progress"])
    _, err = capsys.readouterr()
    assert code == 2 and err.startswith("pruneopt: error: data: X has shape")
