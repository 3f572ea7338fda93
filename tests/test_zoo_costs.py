"""The model zoo and cost extraction (pruneopt.models.zoo, pruneopt.models.costs).

Costs are checked three independent ways: against ``torch.utils.flop_counter.FlopCounterMode``
on every zoo model, against the published totals and layer tables of FALCON's networks
(``formulations/network_shapes.py``), and against small modules whose costs are worked out by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from pruneopt.formulations import network_shapes  # noqa: E402
from pruneopt.models.costs import (  # noqa: E402
    PrunableLayer,
    assign_weights,
    flatten_weights,
    flop_counter_macs,
    joint_problem,
    layer_ptr,
    prunable_layers,
    sparse_macs,
    total_macs,
    total_weights,
)
from pruneopt.models.zoo import (  # noqa: E402
    ZOO_NAMES,
    build_model,
    input_shape,
    num_classes,
)

# (prunable weights, MACs per sample). ResNet-20/56: conv1 432 weights at 32²; per stage 2n convs
# of 9·w² (the first of stages 2 and 3 has 9·w²/2) at 32², 16², 8²; fc 640 at 1.
# digits-cnn: 144 + 4608 weights at 8², 9216 at 4², fc 320 at 1.
KNOWN_TOTALS = {
    "digits-mlp": (64 * 64 + 64 * 32 + 32 * 10, 6464),
    "digits-cnn": (14288, 144 * 64 + 4608 * 64 + 9216 * 16 + 320),
    "resnet20": (268_336, 40_551_040),
    "resnet56": (848_944, 125_485_696),
    "mobilenetv1": (4_209_088, 568_740_352),
    "resnet50": (25_502_912, 4_089_184_256),
}


@pytest.fixture(scope="module")
def zoo():
    """Every zoo model built once (random weights, seed 0) with its batch-1 layers."""
    out = {}
    for name in ZOO_NAMES:
        model = build_model(name, seed=0)
        x = torch.randn(1, *input_shape(name), generator=torch.Generator().manual_seed(1))
        out[name] = (model, prunable_layers(model, x))
    return out


# ------------------------------------------------------------------------------------ zoo
@pytest.mark.parametrize("name", ZOO_NAMES)
def test_layer_macs_equal_flop_counter(zoo, name):
    model, layers1 = zoo[name]
    gen = torch.Generator().manual_seed(2)
    for batch in (1, 2):
        x = torch.randn(batch, *input_shape(name), generator=gen)
        layers = layers1 if batch == 1 else prunable_layers(model, x)
        assert total_macs(layers) == flop_counter_macs(model, x)
        # per-sample costs do not depend on the batch size
        assert [(lay.name, lay.macs_per_weight) for lay in layers] == \
            [(lay.name, lay.macs_per_weight) for lay in layers1]


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_known_totals(zoo, name):
    _, layers = zoo[name]
    assert (total_weights(layers), total_macs(layers)) == KNOWN_TOTALS[name]


def _table_name(model_name: str, layer_name: str) -> str:
    # ResNet-50 keeps torchvision's module names: its downsample conv is "downsample.0"
    if model_name == "resnet50" and layer_name.endswith(".downsample.0"):
        return layer_name[: -len(".0")]
    return layer_name


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv1", "resnet50"])
def test_layers_match_reference_tables(zoo, name):
    _, layers = zoo[name]
    ours = [(_table_name(name, lay.name), lay.numel, lay.macs_per_weight) for lay in layers]
    assert ours == network_shapes.NETWORKS[name]()


def test_resnet50_is_torchvision_compatible():
    model = build_model("resnet50")
    keys = set(model.state_dict())
    # torchvision's ResNet-50 has 25,557,032 parameters and these key names
    assert sum(p.numel() for p in model.parameters()) == 25_557_032
    assert {"conv1.weight", "bn1.running_var", "layer1.0.downsample.0.weight",
            "layer1.0.downsample.1.running_mean", "layer4.2.conv3.weight", "fc.bias"} <= keys
    assert not any(k.startswith("layer1.1.downsample") for k in keys)
    assert model.layer2[0].conv2.stride == (2, 2) and model.layer2[0].conv1.stride == (1, 1)


def test_cifar_resnet_option_a_shortcut():
    """The stage-changing shortcut subsamples by 2 and zero-pads channels (8 on each side)."""
    model = build_model("resnet20")
    block = model.layer2[0]
    x = torch.randn(2, 16, 32, 32)
    y = block.shortcut(x)
    assert y.shape == (2, 32, 16, 16)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert not y[:, :8].any() and not y[:, 24:].any()
    assert torch.equal(model.layer1[0].shortcut(x), x)


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_output_shape_and_fx_trace(zoo, name):
    model, _ = zoo[name]
    model.eval()
    x = torch.randn(2, *input_shape(name), generator=torch.Generator().manual_seed(3))
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        y = model(x)
        assert y.shape == (2, num_classes(name))
        assert torch.isfinite(y).all()
        torch.testing.assert_close(traced(x), y)


def test_build_model_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = build_model("resnet20", seed=5).state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    b = build_model("resnet20", seed=5).state_dict()
    c = build_model("resnet20", seed=6).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["layer1.0.conv1.weight"], c["layer1.0.conv1.weight"])


def test_zoo_metadata_and_unknown_name():
    assert [input_shape(n) for n in ZOO_NAMES] == [(1, 8, 8), (1, 8, 8), (3, 32, 32),
                                                   (3, 32, 32), (3, 224, 224), (3, 224, 224)]
    assert [num_classes(n) for n in ZOO_NAMES] == [10, 10, 10, 10, 1000, 1000]
    for fn in (build_model, input_shape, num_classes):
        with pytest.raises(ValueError, match=r"model: unknown model 'vgg16' \(known: digits-mlp"):
            fn("vgg16")


# ------------------------------------------------------------------------------------ costs by hand
def _only(model, x) -> PrunableLayer:
    layers = prunable_layers(model, x)
    assert len(layers) == 1
    return layers[0]


def test_depthwise_conv_cost():
    conv = nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False)
    lay = _only(conv, torch.randn(3, 4, 6, 6))
    assert (lay.numel, lay.shape, lay.macs_per_weight, lay.macs) == (36, (4, 1, 3, 3), 36, 1296)
    assert flop_counter_macs(conv, torch.randn(3, 4, 6, 6)) == 1296


def test_strided_conv_cost():
    # H_out = (9 - 3) // 2 + 1 = 4, W_out = (11 - 3) // 2 + 1 = 5
    conv = nn.Conv2d(2, 5, 3, stride=2)
    lay = _only(conv, torch.randn(2, 2, 9, 11))
    assert (lay.numel, lay.macs_per_weight) == (90, 20)


def test_linear_on_3d_and_4d_input():
    lin = nn.Linear(5, 4)
    assert _only(lin, torch.randn(2, 7, 5)).macs_per_weight == 7
    assert _only(lin, torch.randn(2, 3, 7, 5)).macs_per_weight == 21
    assert _only(lin, torch.randn(6, 5)).macs_per_weight == 1
    assert flop_counter_macs(lin, torch.randn(2, 7, 5)) == 20 * 7


class _Shared(nn.Module):
    """conv applied at 8×8 and again at 4×4; fc applied twice; fc_tied shares fc's weight;
    ``unused`` never runs."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1, bias=False)
        self.unused = nn.Linear(3, 3)
        self.fc = nn.Linear(3, 3, bias=False)
        self.fc_tied = nn.Linear(3, 3, bias=False)
        self.fc_tied.weight = self.fc.weight
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        x = self.conv(self.pool(self.conv(x)))
        v = x.mean(dim=(2, 3))
        return self.fc_tied(self.fc(self.fc(v)))


def test_shared_module_and_tied_weights_accumulate():
    model = _Shared()
    x = torch.randn(2, 3, 8, 8)
    layers = prunable_layers(model, x)
    # conv: 64 + 16 positions; fc: twice, fc_tied: once more on the same weights
    assert [(lay.name, lay.macs_per_weight) for lay in layers] == [("conv", 80), ("fc", 3)]
    assert total_macs(layers) == 81 * 80 + 9 * 3 == flop_counter_macs(model, x)
    assert total_weights(layers) == flatten_weights(layers).size == 81 + 9


def test_no_prunable_layers():
    with pytest.raises(ValueError, match=r"model: has no prunable layers \(Conv2d or Linear\)"):
        prunable_layers(nn.Sequential(nn.ReLU(), nn.Flatten()), torch.randn(1, 4))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights(bad):
    model = build_model("digits-cnn")
    with torch.no_grad():
        model.conv2.weight[3, 1, 0, 2] = bad
    with pytest.raises(ValueError, match="model: weights of layer conv2 are not finite"):
        prunable_layers(model, torch.zeros(1, 1, 8, 8))


def test_wrong_input_shape():
    model = build_model("resnet20")
    with pytest.raises(ValueError, match=r"input_shape: the model does not accept inputs of "
                                         r"shape \(1, 1, 32, 32\): .*channels"):
        prunable_layers(model, torch.zeros(1, 1, 32, 32))
    # the hooks were removed and the model still works
    assert total_macs(prunable_layers(model, torch.zeros(1, 3, 32, 32))) == 40_551_040


def test_modes_and_statistics_are_restored():
    model = build_model("digits-cnn")
    model.train()
    model.bn2.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prunable_layers(model, torch.randn(4, 1, 8, 8))
    flop_counter_macs(model, torch.randn(4, 1, 8, 8))
    assert model.training and model.bn1.training and not model.bn2.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # eval: no BN update


# ------------------------------------------------------------------------------------ flat vector
def test_layer_ptr_and_order():
    layers = prunable_layers(build_model("digits-mlp"), torch.zeros(1, 1, 8, 8))
    assert [lay.name for lay in layers] == ["fc1", "fc2", "fc3"]
    ptr = layer_ptr(layers)
    assert ptr.dtype == np.int64 and ptr.tolist() == [0, 4096, 6144, 6464]


def test_flatten_assign_round_trip():
    model = build_model("resnet20", seed=3)
    layers = prunable_layers(model, torch.zeros(1, 3, 32, 32))
    w = flatten_weights(layers)
    ptr = layer_ptr(layers)
    assert w.dtype == np.float64 and w.shape == (268_336,)
    # row-major per layer, in layer order
    g = 7
    np.testing.assert_array_equal(w[ptr[g]:ptr[g + 1]],
                                  layers[g].weight.detach().numpy().ravel().astype(np.float64))
    new = np.arange(w.size, dtype=np.float64) / 1024.0  # exactly representable in float32
    assign_weights(layers, new)
    assert all(lay.weight.dtype == torch.float32 for lay in layers)
    np.testing.assert_array_equal(flatten_weights(layers), new)
    assert model.layer1[0].conv1.weight[0, 0, 0, 1].item() == (ptr[1] + 1) / 1024.0
    with pytest.raises(ValueError, match=r"w: must be a vector of length p=268336"):
        assign_weights(layers, new[:-1])
    with pytest.raises(ValueError, match=r"w: must be a vector"):
        assign_weights(layers, new.reshape(2, -1))


def test_assign_keeps_each_layers_dtype():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))
    model[1].double()
    model[0].register_forward_hook(lambda m, i, o: o.double())
    layers = prunable_layers(model, torch.zeros(1, 3))
    w = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 1 / 3, 0.25, 0.75, 0.125])
    assign_weights(layers, w)
    assert model[0].weight.dtype == torch.float32 and model[1].weight.dtype == torch.float64
    assert model[1].weight[0, 0].item() == 1 / 3  # not rounded through float32


# ------------------------------------------------------------------------------------ problems
def test_sparse_macs_by_hand():
    model = build_model("digits-cnn", seed=1)
    layers = prunable_layers(model, torch.zeros(1, 1, 8, 8))
    assert sparse_macs(layers) == 451_904  # random init: no zeros
    with torch.no_grad():
        model.conv1.weight.view(-1)[:10] = 0   # 10 weights at 8·8
        model.fc.weight.view(-1)[-5:] = 0      # 5 weights at 1
        model.conv3.weight.zero_()             # 9216 weights at 4·4
    assert sparse_macs(layers) == 451_904 - 10 * 64 - 5 - 9216 * 16 == 303_803
    # the joint problem's FLOP count of the nonzero pattern is the same number
    w = flatten_weights(layers)
    prob = joint_problem(layers, w**2, keep_flops=1.0, keep_nnz=1.0)
    assert prob.evaluate(w != 0).usage["flops"] == 303_803


def test_joint_problem_budgets():
    model = build_model("digits-cnn")
    layers = prunable_layers(model, torch.zeros(1, 1, 8, 8))
    w = flatten_weights(layers)
    prob = joint_problem(layers, w**2, keep_flops=0.25, keep_nnz=0.5)
    assert prob.nnz_budget == 7144 and prob.flop_budget == 112_976.0
    assert prob.group_ptr.tolist() == [0, 144, 4752, 13968, 14288]
    assert prob.flop_cost.tolist() == [64.0, 64.0, 16.0, 1.0]
    assert prob.names == ("conv1", "conv2", "conv3", "fc")
    np.testing.assert_array_equal(prob.scores, w**2)
    assert prob.total_flops == 451_904


def test_joint_problem_budget_is_the_decimal_fraction():
    layers = prunable_layers(nn.Linear(10, 10, bias=False), torch.zeros(1, 10))
    assert math.floor(0.29 * 100) == 28  # the float product falls just below 29
    prob = joint_problem(layers, np.ones(100), keep_flops=0.29, keep_nnz=0.29)
    assert prob.nnz_budget == 29 and prob.flop_budget == 29.0


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan"), float("inf"), "half", True])
def test_joint_problem_rejects_bad_fractions(bad):
    layers = prunable_layers(nn.Linear(4, 2), torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"flops: must be a fraction in \(0, 1\], got"):
        joint_problem(layers, np.ones(8), keep_flops=bad, keep_nnz=0.5)
    with pytest.raises(ValueError, match=r"nnz: must be a fraction in \(0, 1\], got"):
        joint_problem(layers, np.ones(8), keep_flops=0.5, keep_nnz=bad)


def test_joint_problem_rejects_wrong_scores():
    layers = prunable_layers(nn.Linear(4, 2), torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"scores: must be a vector of length p=8"):
        joint_problem(layers, np.ones(7), keep_flops=0.5, keep_nnz=0.5)
    with pytest.raises(ValueError, match="scores"):
        joint_problem(layers, -np.ones(8), keep_flops=0.5, keep_nnz=0.5)
