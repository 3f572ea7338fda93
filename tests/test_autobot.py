"""AutoBot (pruneopt.models.autobot): the bisection, the trained gates and the decision record."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pruneopt.models.autobot import autobot, bisect_threshold, default_tolerance_macs
from pruneopt.models.channels import build_channel_graph
from pruneopt.models.structured_decision import StructuredDecision
from pruneopt.models.zoo import build_model, input_shape

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits(trained_digits_cnn):
    return trained_digits_cnn


def _macs(graph, keep):
    return graph.macs_of_counts(graph.counts(keep))


def _all_cuts(graph, lam):
    """Brute force: F of every cut 1[λ > t] over the N+1 distinct thresholds (argmax rule too)."""
    from pruneopt.models.autobot import mask_at

    vals = np.unique(lam[graph.prunable.repeat(graph.sizes)])
    ts = np.concatenate(([-1.0], vals))  # t = -1 keeps all; t = v drops every λ <= v
    return [(float(t), _macs(graph, mask_at(graph, lam, t))) for t in ts]


def _random_lambda(graph, seed):
    lam = np.random.default_rng(seed).uniform(0.02, 0.98, graph.num_channels)
    lam[np.repeat(graph.fixed, graph.sizes)] = 1.0
    return lam


# ------------------------------------------------------------------------------------ bisection
def test_bisection_hits_an_attainable_target_and_never_empties_a_group(digits):
    _model, graph, _data = digits
    for seed in range(5):
        lam = _random_lambda(graph, seed)
        cuts = _all_cuts(graph, lam)
        for j in (5, 30, 60):
            T = cuts[j][1]
            keep, t, it = bisect_threshold(graph, lam, T, tolerance_macs=0)
            assert _macs(graph, keep) == T and it < 50
            assert np.all(graph.counts(keep) >= 1)
            assert np.all(keep[np.repeat(graph.fixed, graph.sizes)])
            assert np.array_equal(keep, _mask_at_t(graph, lam, t))
        # a target below every mask: each group keeps its argmax channel, nothing empties
        keep, t, it = bisect_threshold(graph, lam, 0.0, tolerance_macs=0)
        k = graph.counts(keep)
        assert np.all(k[graph.prunable] == 1) and it == 50
        ptr = graph.channel_ptr
        for g in np.flatnonzero(graph.prunable):
            assert keep[ptr[g] + np.argmax(lam[ptr[g]:ptr[g + 1]])]


def _mask_at_t(graph, lam, t):
    from pruneopt.models.autobot import mask_at

    return mask_at(graph, lam, t)


def test_bisection_tolerance_stops_short_of_the_best_cut(digits):
    """Planted: the first threshold tested (0.5) lies within the tolerance but above T, while
    one more channel removed gives a feasible cut that is also closer to T. The reference's
    bisection stops at once; a scan over all N+1 cuts finds the better cut (the G0 gap)."""
    _model, graph, _data = digits
    lam = _random_lambda(graph, 7)
    F05 = _macs(graph, lam > 0.5)
    cuts = _all_cuts(graph, lam)
    below = [F for _t, F in cuts if F < F05]
    delta = F05 - max(below)  # the next step down from the cut at 0.5
    eps = 0.6 * delta
    T = F05 - eps
    keep, t, it = bisect_threshold(graph, lam, T, tolerance_macs=2 * eps)
    assert it == 1 and t == 0.5
    miss = _macs(graph, keep) - T
    assert miss == pytest.approx(eps) and miss > 0  # stopped above the target
    feasible = [F for _t, F in cuts if F <= T]
    best = max(feasible)
    assert T - best < miss  # a feasible cut, closer to T than the bisection's infeasible one


def test_bisection_runs_out_of_iterations_between_two_steps(digits):
    """With zero tolerance and T strictly between two attainable values, all 50 thresholds are
    tested and the result is one of the two cuts around T (it may lie above T)."""
    _model, graph, _data = digits
    lam = _random_lambda(graph, 3)
    values = sorted({F for _t, F in _all_cuts(graph, lam)})
    lo, hi = values[len(values) // 2], values[len(values) // 2 + 1]
    T = (lo + hi) / 2
    keep, _t, it = bisect_threshold(graph, lam, T, tolerance_macs=0)
    assert it == 50
    assert _macs(graph, keep) in (lo, hi)
    _keep3, _t3, it3 = bisect_threshold(graph, lam, T, tolerance_macs=0, max_iter=3)
    assert it3 == 3


def test_bisection_input_checks(digits):
    _model, graph, _data = digits
    lam = _random_lambda(graph, 0)
    with pytest.raises(ValueError, match="lam"):
        bisect_threshold(graph, lam[:-1], 1000.0)
    with pytest.raises(ValueError, match="target_macs"):
        bisect_threshold(graph, lam, -1.0)
    with pytest.raises(ValueError, match="max_iter"):
        bisect_threshold(graph, lam, 1000.0, max_iter=0)


# ------------------------------------------------------------------------------------ autobot
def test_autobot_on_trained_digits_cnn(digits):
    model, graph, data = digits
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    model.train()  # the caller's mode is restored
    dec = autobot(model, graph, data.X_train, data.y_train, keep_flops=0.5)
    assert model.training
    model.eval()
    assert isinstance(dec, StructuredDecision) and dec.method == "autobot"
    assert dec.model is model
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert [p.requires_grad for p in model.parameters()] == flags

    T = 0.5 * graph.dense_macs
    tol = default_tolerance_macs(graph)
    info = dec.info
    assert dec.target_macs == T
    assert info["steps"] == int(np.ceil(data.X_train.shape[0] / 64))  # one pass over X
    assert info["bisection_miss_macs"] == dec.achieved_macs - T
    # within the tolerance, or the bisection ran out of iterations at a step of F (then the
    # miss is at most the step's height at the final threshold)
    lam = dec.arrays["lambda"]
    t = info["threshold"]
    if abs(dec.achieved_macs - T) > tol:
        assert info["bisection_iterations"] == 50
        above = _macs(graph, _mask_at_t(graph, lam, t - 1e-9))
        below = _macs(graph, _mask_at_t(graph, lam, t + 1e-9))
        assert below <= T <= above  # t sits at the step of F that crosses T
        assert dec.achieved_macs in (below, above)
    # λ in (0, 1) on prunable channels, 1 on fixed ones; scores = order = λ
    fixed = np.repeat(graph.fixed, graph.sizes)
    assert np.all(lam[fixed] == 1.0) and np.all((lam[~fixed] > 0) & (lam[~fixed] < 1))
    assert np.array_equal(dec.scores, lam) and np.array_equal(dec.order, lam)
    assert np.array_equal(dec.keep, _mask_at_t(graph, lam, t))
    assert np.all(dec.counts >= 1)
    assert 0 < len(info["losses"]) <= 25
    # λ moved: the FLOP loss pulled gates down from the initial 0.9
    assert np.mean(lam[~fixed]) < 0.9

    # a looser tolerance (2 % of the dense MACs) is met
    dec2 = autobot(model, graph, data.X_train, data.y_train, keep_flops=0.5,
                   tolerance_macs=0.02 * graph.dense_macs)
    assert abs(dec2.achieved_macs - T) <= 0.02 * graph.dense_macs


def test_autobot_progress_steps_and_determinism(digits):
    model, graph, data = digits
    seen = []
    X, y = data.X_train[:256], data.y_train[:256]
    d1 = autobot(model, graph, X, y, keep_flops=0.3, steps=10, batch_size=32,
                 progress=seen.append)
    assert [r["step"] for r in seen] == list(range(1, 11))
    assert d1.info["best_step"] > 6  # the best loss is taken after 60 % of the steps
    d2 = autobot(model, graph, X, y, keep_flops=0.3, steps=10, batch_size=32)
    assert np.array_equal(d1.arrays["lambda"], d2.arrays["lambda"])
    one = autobot(model, graph, X, y, keep_flops=0.3, steps=1)  # no step after 60 %: final λ
    assert one.info["best_step"] == 1


def test_autobot_residual_network_runs():
    model = build_model("resnet20", seed=0).eval()
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(8, *input_shape("resnet20"), generator=gen)
    y = torch.randint(0, 10, (8,), generator=gen)
    graph = build_channel_graph(model, X[:1])
    dec = autobot(model, graph, X, y, keep_flops=0.5, steps=2, batch_size=4)
    assert dec.keep.shape == (graph.num_channels,)
    assert np.all(dec.counts >= 1)


def test_autobot_bad_input(digits):
    model, graph, data = digits
    X, y = data.X_train[:64], data.y_train[:64]
    for bad in (0.0, 1.5, -0.1, float("nan"), True, "half"):
        with pytest.raises(ValueError, match="keep_flops"):
            autobot(model, graph, X, y, keep_flops=bad)
    with pytest.raises(ValueError, match="X"):
        autobot(model, graph, X[:0], y[:0], keep_flops=0.5)
    with pytest.raises(ValueError, match="y"):
        autobot(model, graph, X, y[:10], keep_flops=0.5)
    with pytest.raises(ValueError, match="y"):
        autobot(model, graph, X, y.reshape(-1, 1), keep_flops=0.5)
    with pytest.raises(ValueError, match="y"):
        autobot(model, graph, X, y.float(), keep_flops=0.5)
    with pytest.raises(ValueError, match="X"):
        autobot(model, graph, torch.zeros(4, 1, 9, 9), y[:4], keep_flops=0.5)
    with pytest.raises(ValueError, match="model"):
        autobot(build_model("digits-mlp"), graph, X, y, keep_flops=0.5)
    with pytest.raises(ValueError, match="steps"):
        autobot(model, graph, X, y, keep_flops=0.5, steps=0)
    with pytest.raises(ValueError, match="lr"):
        autobot(model, graph, X, y, keep_flops=0.5, lr=0)
