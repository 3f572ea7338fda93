"""Layer tables of real networks: (name, prunable weights, MACs per weight) for each layer.

MACs per weight follow FALCON's tables: a Conv2d weight costs H_out·W_out (one MAC per output
position for a batch of one), a Linear weight 1; biases and BatchNorm are not counted. Known
totals (../shared/references/falcon.md §1): ResNet-20 268,336 weights / 40.55M MACs;
MobileNetV1 4,209,088 / 568.7M; ResNet-50 with downsample convs 25,502,912 / 4.089G.
"""

from __future__ import annotations

import numpy as np

Layer = tuple[str, int, int]


def resnet20() -> list[Layer]:
    """CIFAR ResNet-20 (32×32 inputs, option-A shortcuts: no downsample weights)."""
    layers: list[Layer] = [("conv1", 3 * 16 * 9, 32 * 32)]
    c_in = 16
    for stage, (width, res) in enumerate([(16, 32), (32, 16), (64, 8)], start=1):
        for block in range(3):
            layers.append((f"layer{stage}.{block}.conv1", c_in * width * 9, res * res))
            layers.append((f"layer{stage}.{block}.conv2", width * width * 9, res * res))
            c_in = width
    layers.append(("fc", 64 * 10, 1))
    return layers


def mobilenet_v1() -> list[Layer]:
    """MobileNetV1 at 224×224, width 1.0, 1000 classes (depthwise + pointwise pairs)."""
    layers: list[Layer] = [("conv1", 3 * 32 * 9, 112 * 112)]
    plan = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1),
            (256, 512, 2)] + [(512, 512, 1)] * 5 + [(512, 1024, 2), (1024, 1024, 1)]
    res = 112
    for i, (c_in, c_out, stride) in enumerate(plan):
        res //= stride
        layers.append((f"dw{i + 1}", c_in * 9, res * res))
        layers.append((f"pw{i + 1}", c_in * c_out, res * res))
    layers.append(("fc", 1024 * 1000, 1))
    return layers


def resnet50(downsample: bool = True) -> list[Layer]:
    """torchvision ResNet-50 v1.5 at 224×224 (stride on the 3×3 conv), optionally without
    the downsample convs (FALCON's two variants)."""
    layers: list[Layer] = [("conv1", 3 * 64 * 49, 112 * 112)]
    c_in, res = 64, 56
    for stage, (width, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2),
                                                     (512, 3, 2)], start=1):
        for b in range(blocks):
            s = stride if b == 0 else 1
            out_res = res // s
            name = f"layer{stage}.{b}"
            layers.append((f"{name}.conv1", c_in * width, res * res))
            layers.append((f"{name}.conv2", width * width * 9, out_res * out_res))
            layers.append((f"{name}.conv3", width * width * 4, out_res * out_res))
            if b == 0 and downsample:
                layers.append((f"{name}.downsample", c_in * width * 4, out_res * out_res))
            c_in, res = width * 4, out_res
    layers.append(("fc", 2048 * 1000, 1))
    return layers


NETWORKS = {"resnet20": resnet20, "mobilenetv1": mobilenet_v1, "resnet50": resnet50}


def layer_arrays(layers: list[Layer]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(names, sizes int64[L], MACs per weight float64[L])."""
    names = [n for n, _, _ in layers]
    sizes = np.array([s for _, s, _ in layers], dtype=np.int64)
    costs = np.array([c for _, _, c in layers], dtype=np.float64)
    return names, sizes, costs
