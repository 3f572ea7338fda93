"""The model zoo: small networks for the digits data set and real-scale architecture definitions.

Two kinds of networks live here, both built on random weights by :func:`build_model`:

* ``digits-mlp`` and ``digits-cnn`` — small enough to train in seconds on scikit-learn's bundled
  8×8 digits (see :mod:`pruneopt.models.digits`), so that exact solvers can prune them whole and a
  pruned model's accuracy can be measured;
* ``resnet20`` / ``resnet56`` (CIFAR, 32×32), ``mobilenetv1`` and ``resnet50`` (ImageNet, 224×224) —
  the architectures of FALCON's experiments, at their real sizes, so that cost extraction and the
  fast solvers can be exercised on the true layer structure (no data set is needed for that; they
  run on synthetic inputs).

Layer names follow the reference tables of :mod:`pruneopt.formulations.network_shapes`
(``conv1``, ``layer1.0.conv1``, ``dw1``/``pw1``, ``fc``), except that ResNet-50 keeps torchvision's
module names and parameter keys (``layer1.0.downsample.0`` for the downsample conv), so that a
torchvision ``state_dict`` loads into it unchanged.

Every ``forward`` is straight-line code over fixed modules (no data-dependent control flow), so
the networks trace with ``torch.fx`` and their channels can be shrunk physically.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

ZOO_NAMES = ("digits-mlp", "digits-cnn", "resnet20", "resnet56", "mobilenetv1", "resnet50")

_INPUT_SHAPES: dict[str, tuple[int, int, int]] = {
    "digits-mlp": (1, 8, 8),
    "digits-cnn": (1, 8, 8),
    "resnet20": (3, 32, 32),
    "resnet56": (3, 32, 32),
    "mobilenetv1": (3, 224, 224),
    "resnet50": (3, 224, 224),
}
_NUM_CLASSES: dict[str, int] = {
    "digits-mlp": 10,
    "digits-cnn": 10,
    "resnet20": 10,
    "resnet56": 10,
    "mobilenetv1": 1000,
    "resnet50": 1000,
}


def _check_name(name: str) -> str:
    if name not in ZOO_NAMES:
        raise ValueError(f"model: unknown model {name!r} (known: {', '.join(ZOO_NAMES)})")
    return name


def input_shape(name: str) -> tuple[int, int, int]:
    """Shape (C, H, W) of one input sample of the named model."""
    return _INPUT_SHAPES[_check_name(name)]


def num_classes(name: str) -> int:
    """Number of output classes of the named model."""
    return _NUM_CLASSES[_check_name(name)]


# ------------------------------------------------------------------------------------ digits
def _digits_mlp() -> nn.Sequential:
    """64 → 64 → 32 → 10 with ReLU; a Sequential so that every layer has a plain name."""
    return nn.Sequential(OrderedDict([
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(64, 64)),
        ("relu1", nn.ReLU()),
        ("fc2", nn.Linear(64, 32)),
        ("relu2", nn.ReLU()),
        ("fc3", nn.Linear(32, 10)),
    ]))


def _digits_cnn() -> nn.Sequential:
    """Three 3×3 conv+BN+ReLU stages (16, 32, 32 channels) with one 2×2 max-pool, global
    average pooling and a linear classifier. Convs have no bias: the BN that follows has one."""
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 16, 3, padding=1, bias=False)),
        ("bn1", nn.BatchNorm2d(16)),
        ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(16, 32, 3, padding=1, bias=False)),
        ("bn2", nn.BatchNorm2d(32)),
        ("relu2", nn.ReLU()),
        ("pool", nn.MaxPool2d(2)),
        ("conv3", nn.Conv2d(32, 32, 3, padding=1, bias=False)),
        ("bn3", nn.BatchNorm2d(32)),
        ("relu3", nn.ReLU()),
        ("gap", nn.AdaptiveAvgPool2d(1)),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(32, 10)),
    ]))


# ------------------------------------------------------------------------------------ CIFAR ResNet
class ShortcutA(nn.Module):
    """He et al.'s option-A shortcut: identity, or (when the shape changes) stride-2 subsampling
    with the new channels zero-padded, half on each side. It has no weights, so a CIFAR ResNet's
    prunable weights are exactly its convs and its fc."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        extra = out_channels - in_channels
        self.pad_front = extra // 2
        self.pad_back = extra - extra // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad_front or self.pad_back:
            # F.pad's last pair pads dim 1 (channels) once W and H get (0, 0)
            x = F.pad(x, (0, 0, 0, 0, self.pad_front, self.pad_back))
        return x

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


class BasicBlock(nn.Module):
    """Two 3×3 conv+BN with an option-A shortcut (the CIFAR ResNet block)."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = ShortcutA(in_channels, channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32×32 inputs: a 3×3 stem, three stages of n basic blocks with 16, 32
    and 64 channels (stride 2 at the start of stages 2 and 3), global pooling and a linear head."""

    def __init__(self, blocks_per_stage: int, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_ch = 16
        for stage, (width, stride) in enumerate([(16, 1), (32, 2), (64, 2)], start=1):
            blocks = []
            for b in range(blocks_per_stage):
                blocks.append(BasicBlock(in_ch, width, stride if b == 0 else 1))
                in_ch = width
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ------------------------------------------------------------------------------------ MobileNetV1
# (output channels, stride) of the 13 depthwise-separable blocks (Howard et al. 2017, Table 1)
_MOBILENET_PLAN = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 \
    + [(1024, 2), (1024, 1)]


class MobileNetV1(nn.Module):
    """MobileNetV1 (width 1.0): a 3×3 stride-2 stem and 13 blocks of a 3×3 depthwise conv and a
    1×1 pointwise conv, each followed by BN and ReLU, then global pooling and a linear head.

    Modules are flat attributes named as in the reference table (``conv1``, ``dw{i}``, ``pw{i}``,
    ``fc``; their BNs ``bn1``, ``dw{i}_bn``, ``pw{i}_bn``) so that cost tables and solver outputs
    carry the same layer names.
    """

    num_blocks = len(_MOBILENET_PLAN)

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        c_in = 32
        for i, (c_out, stride) in enumerate(_MOBILENET_PLAN, start=1):
            setattr(self, f"dw{i}", nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1,
                                              groups=c_in, bias=False))
            setattr(self, f"dw{i}_bn", nn.BatchNorm2d(c_in))
            setattr(self, f"pw{i}", nn.Conv2d(c_in, c_out, 1, bias=False))
            setattr(self, f"pw{i}_bn", nn.BatchNorm2d(c_out))
            c_in = c_out
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        # a loop over a fixed range: fx unrolls it into straight-line code
        for i in range(1, self.num_blocks + 1):
            x = F.relu(getattr(self, f"dw{i}_bn")(getattr(self, f"dw{i}")(x)))
            x = F.relu(getattr(self, f"pw{i}_bn")(getattr(self, f"pw{i}")(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ------------------------------------------------------------------------------------ ResNet-50
class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (carrying the stride: the "v1.5" layout), 1×1 expand (×4), each with BN;
    a 1×1 conv + BN downsample on the shortcut where the shape changes."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        if stride != 1 or in_channels != out_channels:
            # a Sequential (conv, bn), as in torchvision, so that its state_dict keys match
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.downsample = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))


class ResNet50(nn.Module):
    """ResNet-50 for 224×224 inputs: 7×7 stride-2 stem, 3×3 max-pool, four stages of
    (3, 4, 6, 3) bottlenecks of widths 64..512, global pooling and a 2048→classes head."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_ch = 64
        for stage, (width, blocks, stride) in enumerate(
                [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], start=1):
            layer = []
            for b in range(blocks):
                layer.append(Bottleneck(in_ch, width, stride if b == 0 else 1))
                in_ch = width * Bottleneck.expansion
            setattr(self, f"layer{stage}", nn.Sequential(*layer))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ------------------------------------------------------------------------------------ building
_BUILDERS = {
    "digits-mlp": _digits_mlp,
    "digits-cnn": _digits_cnn,
    "resnet20": lambda: CifarResNet(3),
    "resnet56": lambda: CifarResNet(9),
    "mobilenetv1": MobileNetV1,
    "resnet50": ResNet50,
}


def _init_weights(model: nn.Module) -> None:
    """He-normal convs (fan_out, as torchvision and the CIFAR ResNet reference do), BN at the
    identity; Linear layers keep PyTorch's default init (already drawn from the seeded RNG)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build_model(name: str, *, seed: int = 0) -> nn.Module:
    """A randomly initialised zoo model, the same for the same ``seed``.

    The weights are drawn inside ``torch.random.fork_rng`` from a freshly seeded CPU generator,
    so building a model neither depends on nor changes the caller's global RNG state.
    The model is returned in training mode, as ``nn.Module`` constructors do.
    """
    builder = _BUILDERS[_check_name(name)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = builder()
        _init_weights(model)
    return model
