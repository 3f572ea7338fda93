"""Pruning real PyTorch models: per-sample gradients, schedules, every method under both
budgets (recounted on the model itself), FALCON++ masks, fine-tuning, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pruneopt.models.costs import prunable_layers, sparse_macs
from pruneopt.models.digits import trained_model
from pruneopt.models.finetune import fine_tune
from pruneopt.models.fisher import block_pointer, per_sample_gradients, quadratic_problem
from pruneopt.models.pruning import (
    METHODS,
    PruneSettings,
    budgets,
    check_budgets,
    cubic_schedule,
    masks_of,
    prune_network,
)
from pruneopt.models.workflows.loading import dataset_for, resolve_model
from pruneopt.models.workflows.prune import run_prune


@pytest.fixture(scope="module")
def mlp():
    return trained_model("digits-mlp")


def digits_calibration(n=64):
    data = dataset_for(resolve_model("digits-mlp"), n_train=n, seed=0)
    return data, data.X_train[:n], data.y_train[:n]


def test_per_sample_gradients_match_autograd_one_sample_at_a_time(mlp):
    data, X, y = digits_calibration(16)
    layers = prunable_layers(mlp, X[:1])
    G = per_sample_gradients(mlp, layers, X, y, chunk=5)
    assert G.shape == (16, sum(layer.numel for layer in layers)) and G.dtype == np.float64
    for j in (0, 7, 15):
        loss = torch.nn.functional.cross_entropy(mlp(X[j:j + 1]), y[j:j + 1])
        grads = torch.autograd.grad(loss, [layer.weight for layer in layers])
        row = torch.cat([g.reshape(-1) for g in grads]).double().numpy()
        np.testing.assert_allclose(G[j], row, rtol=1e-5, atol=1e-7)


def test_quadratic_problem_scaling_follows_falcons_convention(mlp):
    _, X, y = digits_calibration(32)
    layers = prunable_layers(mlp, X[:1])
    P = quadratic_problem(mlp, layers, X, y, nnz_budget=100, flop_budget=100.0, l2=1e-3,
                          first_order=0.5, block_size=1000)
    G = per_sample_gradients(mlp, layers, X, y)
    assert P.ridge == pytest.approx(1e-3 * 32)
    np.testing.assert_allclose(P.linear, 0.5 * G.sum(axis=0), rtol=1e-12)
    # blocks never straddle layers and are at most 1000 long
    ptr = np.array([0, 4096, 6144, 6464])
    np.testing.assert_array_equal(block_pointer(ptr, 1000),
                                  [0, 1000, 2000, 3000, 4000, 4096, 5096, 6096, 6144, 6464])
    np.testing.assert_array_equal(P.block_ptr, block_pointer(ptr, 1000))


def test_cubic_schedule_hand_values():
    s = cubic_schedule(0.8, 0.2, 4)  # s_t = 0.8 + (0.2-0.8)(1 - t/3)^3
    np.testing.assert_allclose(s, [0.2, 0.8 - 0.6 * 8 / 27, 0.8 - 0.6 / 27, 0.8])
    np.testing.assert_allclose(cubic_schedule(0.1, 0.2, 3), [0.1, 0.1, 0.1])  # base above target
    assert cubic_schedule(0.5, 0.2, 1).tolist() == [0.5]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_meets_both_budgets_on_the_digits_mlp(method):
    model = trained_model("digits-mlp")
    data, X, y = digits_calibration(48)
    layers = prunable_layers(model, X[:1])
    settings = PruneSettings(method=method, keep_flops=0.3, keep_nnz=0.35, stages=3,
                             max_iter=3)
    out = prune_network(model, layers, X, y, settings)
    check = check_budgets(layers, 0.3, 0.35)
    K, F = budgets(layers, 0.3, 0.35)
    nnz = sum(int((layer.weight != 0).sum()) for layer in layers)
    assert check["met"] and nnz <= K and sparse_macs(layers) <= F
    assert nnz == check["nnz"] > 0
    for layer, mask in zip(layers, out.masks):
        np.testing.assert_array_equal(layer.weight.detach().numpy() != 0, mask)
    assert len(out.stages) == (3 if method == "falcon++" else 1)


def test_falcon_plus_plus_masks_shrink_stage_by_stage_and_fine_tuning_keeps_zeros():
    model = trained_model("digits-mlp")
    data, X, y = digits_calibration(48)
    layers = prunable_layers(model, X[:1])
    settings = PruneSettings(method="falcon++", keep_flops=0.25, keep_nnz=0.3, stages=4,
                             max_iter=2, finetune_epochs=1)
    out = prune_network(model, layers, X, y, settings, train_data=(data.X_train, data.y_train))
    nnz = [s["nnz"] for s in out.stages]
    assert nnz == sorted(nnz, reverse=True)
    assert all(s["nnz"] <= s["nnz_budget"] and s["macs"] <= s["flop_budget"] for s in out.stages)
    assert all("finetune_loss" in s for s in out.stages[:-1])
    assert check_budgets(layers, 0.25, 0.3)["met"]


def test_fine_tune_never_revives_a_pruned_weight():
    model = trained_model("digits-mlp")
    data, X, y = digits_calibration(64)
    layers = prunable_layers(model, X[:1])
    masks = [np.random.default_rng(i).random(layer.shape) < 0.5 for i, layer in
             enumerate(layers)]
    for layer, m in zip(layers, masks):
        with torch.no_grad():
            layer.weight.mul_(torch.as_tensor(m, dtype=layer.weight.dtype))
    losses = fine_tune(model, layers, masks, data.X_train, data.y_train, epochs=2, lr=0.05)
    assert len(losses) == 2 and all(np.isfinite(losses))
    for layer, m in zip(layers, masks):
        assert not layer.weight.detach().numpy()[~m].any()
    assert masks_of(layers)[0].sum() <= masks[0].sum()


def test_falcon_beats_magnitude_on_the_quadratic_model_and_on_accuracy():
    records = {}
    for method in ("magnitude", "falcon"):
        _, rec = run_prune("digits-mlp", PruneSettings(method=method, keep_flops=0.2,
                                                       keep_nnz=0.25))
        records[method] = rec
    assert records["falcon"]["stages"][0]["quadratic_objective"] < \
        records["magnitude"]["stages"][0]["quadratic_objective"]
    assert records["falcon"]["accuracy_after"] > records["magnitude"]["accuracy_after"]


def test_synthetic_data_for_models_without_a_data_set():
    resolved, rec = run_prune("toy_models:tiny_cnn", PruneSettings(method="falcon",
                              keep_flops=0.5, keep_nnz=0.6), input_shape=(3, 8, 8),
                              n_calibration=16)
    assert rec["data"] == "synthetic" and rec["accuracy_before"] == 1.0
    assert rec["budgets_met"] and rec["macs_after"] <= 0.5 * rec["macs_dense"]


@pytest.mark.parametrize("spec, shape, message", [
    ("toy_models:no_prunable_layers", (3, 8, 8), "no prunable layers"),
    ("toy_models:nan_weights", (3, 8, 8), "not finite"),
    ("toy_models:not_a_module", (3, 8, 8), "not an nn.Module"),
    ("toy_models:tiny_cnn", (1, 8, 8), "input_shape"),
    ("toy_models:tiny_cnn", None, "input_shape"),
    ("no_such_module:f", (3, 8, 8), "cannot import"),
    ("not-a-model", None, "not a zoo model"),
])
def test_bad_models_are_refused(spec, shape, message):
    with pytest.raises(ValueError, match=message):
        run_prune(spec, PruneSettings(keep_flops=0.5), input_shape=shape, n_calibration=8)


@pytest.mark.parametrize("field, value", [("keep_flops", 0.0), ("keep_flops", 1.5),
                                          ("keep_nnz", -0.1), ("keep_nnz", float("nan"))])
def test_budgets_outside_the_unit_interval_are_refused(field, value):
    with pytest.raises(ValueError, match="fraction kept"):
        PruneSettings(**{field: value}).validate()
