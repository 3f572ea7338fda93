"""Channel-selection instances with the group structure and bilinear MAC coefficients of real
networks, reproducible by seed.

Shapes (``shape``):

* ``chain``    — a plain CNN on 32×32 inputs: ``groups`` convs of 3×3 in a chain, widths
                 ``channels``·(1, 2, 4) by thirds, the resolution halving at each third; the
                 input conv (3 channels) and the classifier (10 classes) are linear terms.
* ``resnet20``, ``resnet56`` — CIFAR ResNets with option-A (parameter-free) shortcuts. Each
                 stage's residual stream is ONE group of 16 / 32 / 64 channels (the stem conv
                 and every block's conv2 write into it, tied by the residual adds); each block's
                 conv1 output is its own group. conv1 reads the previous stage's stream in the
                 first block of a stage (stride 2). Coupling graph: a tree.
* ``resnet50`` — torchvision ResNet-50 v1.5 at 224×224: the stem output (64) is a group; each
                 stage's residual stream (256, 512, 1024, 2048: conv3 of every block and the
                 downsample conv, tied) is one group; each bottleneck's conv1 and conv2 outputs are
                 groups (64..512). Coupling graph: a triangle per block (stream–conv1–conv2) and a
                 4-cycle per stage transition (downsample).
* ``random``   — a random DAG of ``groups`` groups of 2..``channels`` channels: a random tree of
                 3×3 convs plus extra edges (cycles) and random collapsible blocks; min-keep 0..2.

Every conv from group g to group h costs a = K²·H_out·W_out MACs per kept pair (k_g·k_h); a conv
from the network input (3 channels) costs b_h = 3·K²·H·W per kept output channel, a classifier
b_g = (classes) per kept input channel; c₀ = 0. BatchNorm, bias, pooling and the residual adds
are not counted.

``collapse=True`` marks each residual block's inner group(s) as one collapsible block (the
branch may be removed whole); min-keep is 1 everywhere (except ``random``).

Scores (``dist``): ``kaiming`` — the squared L2 norm of a fresh Kaiming-normal filter of each
conv writing the group, summed over the tied convs (a Gamma variable); ``uniform``;
``lognormal`` (exp N(0, 2²)); ``exponential``; ``ties`` (integers 0..9).
The FLOP budget is F = ⌊keep_flops · FLOPs(all channels)⌋.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pruneopt.formulations.channels.problem import ChannelProblem
from pruneopt.formulations.checks import fraction
from pruneopt.formulations.sampling import DISTRIBUTIONS, random_scores

SHAPES = ("chain", "resnet20", "resnet56", "resnet50", "random")


@dataclass
class _Builder:
    """Collects groups, convs and linear terms while a network is described."""

    names: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    fan_in: list[list[int]] = field(default_factory=list)  # per group: fan-ins of its writers
    linear: list[float] = field(default_factory=list)
    edges: list[tuple[int, int]] = field(default_factory=list)
    coef: list[float] = field(default_factory=list)
    blocks: list[int] = field(default_factory=list)

    def group(self, name: str, size: int, block: int = -1) -> int:
        self.names.append(name)
        self.sizes.append(int(size))
        self.fan_in.append([])
        self.linear.append(0.0)
        self.blocks.append(block)
        return len(self.names) - 1

    def conv(self, src: int, dst: int, kernel: int, out_res: int) -> None:
        """A conv from group src to group dst: K²·H·W MACs per kept (input, output) pair."""
        self.edges.append((src, dst))
        self.coef.append(float(kernel * kernel * out_res * out_res))
        self.fan_in[dst].append(kernel * kernel * self.sizes[src])

    def input_conv(self, dst: int, in_channels: int, kernel: int, out_res: int) -> None:
        self.linear[dst] += float(in_channels * kernel * kernel * out_res * out_res)
        self.fan_in[dst].append(in_channels * kernel * kernel)

    def classifier(self, src: int, classes: int) -> None:
        self.linear[src] += float(classes)


def _chain(bld: _Builder, groups: int, channels: int) -> None:
    if groups < 1:
        raise ValueError(f"groups: must be >= 1, got {groups}")
    prev = -1
    for i in range(groups):
        stage = min(3 * i // groups, 2)
        res = 32 >> stage
        g = bld.group(f"conv{i + 1}", channels << stage)
        if prev < 0:
            bld.input_conv(g, 3, 3, res)
        else:
            bld.conv(prev, g, 3, res)
        prev = g
    bld.classifier(prev, 10)


def _cifar_resnet(bld: _Builder, depth: int, collapse: bool) -> None:
    blocks_per_stage = (depth - 2) // 6
    streams = [bld.group(f"layer{s + 1}", w) for s, w in enumerate((16, 32, 64))]
    bld.input_conv(streams[0], 3, 3, 32)  # the stem writes into stage 1's stream
    n_blocks = 0
    for s, (width, res) in enumerate(((16, 32), (32, 16), (64, 8))):
        for j in range(blocks_per_stage):
            src = streams[s - 1] if (j == 0 and s > 0) else streams[s]
            inner = bld.group(f"layer{s + 1}.{j}.conv1", width, n_blocks if collapse else -1)
            n_blocks += 1
            bld.conv(src, inner, 3, res)
            bld.conv(inner, streams[s], 3, res)
    bld.classifier(streams[2], 10)


def _resnet50(bld: _Builder, collapse: bool) -> None:
    stem = bld.group("conv1", 64)
    bld.input_conv(stem, 3, 7, 112)
    prev, res, n_blocks = stem, 56, 0  # after the max-pool
    for s, (width, blocks, stride) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2),
                                                 (512, 3, 2))):
        stream = bld.group(f"layer{s + 1}", 4 * width)
        for j in range(blocks):
            st = stride if j == 0 else 1
            out_res = res // st
            src = prev if j == 0 else stream
            blk = n_blocks if collapse else -1
            n_blocks += 1
            g1 = bld.group(f"layer{s + 1}.{j}.conv1", width, blk)
            g2 = bld.group(f"layer{s + 1}.{j}.conv2", width, blk)
            bld.conv(src, g1, 1, res)
            bld.conv(g1, g2, 3, out_res)  # v1.5: the stride sits on the 3×3 conv
            bld.conv(g2, stream, 1, out_res)
            if j == 0:
                bld.conv(src, stream, 1, out_res)  # downsample, tied with the stream
            res = out_res
        prev = stream
    bld.classifier(prev, 1000)


def _random(bld: _Builder, rng: np.random.Generator, groups: int, channels: int,
            collapse: bool) -> tuple[np.ndarray, np.ndarray]:
    if groups < 1:
        raise ValueError(f"groups: must be >= 1, got {groups}")
    if channels < 1:
        raise ValueError(f"channels: must be >= 1, got {channels}")
    res = rng.choice([4, 8, 16], size=groups)
    for g in range(groups):
        bld.group(f"g{g}", int(rng.integers(min(2, channels), channels + 1)))
    bld.input_conv(0, 3, 3, int(res[0]))
    for g in range(1, groups):
        bld.conv(int(rng.integers(0, g)), g, 3, int(res[g]))
    for _ in range(int(rng.integers(0, groups))):  # extra edges close cycles
        g, h = sorted(rng.choice(groups, size=2, replace=groups < 2).tolist())
        if g != h:
            bld.conv(g, h, 1, int(res[h]))
    bld.classifier(groups - 1, 10)
    sizes = np.array(bld.sizes)
    min_keep = np.minimum(rng.integers(0, 3, size=groups), sizes)
    blocks = np.full(groups, -1, dtype=np.int64)
    if collapse and groups > 1:
        members = rng.permutation(np.arange(1, groups))[: max(1, (groups - 1) // 2)]
        n_blocks = int(rng.integers(1, members.size + 1))
        ids = np.concatenate((np.arange(n_blocks), rng.integers(0, n_blocks,
                                                                members.size - n_blocks)))
        blocks[members] = ids
    return min_keep, blocks


def _scores(rng: np.random.Generator, dist: str, bld: _Builder) -> np.ndarray:
    sizes = np.array(bld.sizes, dtype=np.int64)
    N = int(sizes.sum())
    if dist == "kaiming":
        out = []
        for n, fans in zip(bld.sizes, bld.fan_in, strict=True):
            fans = fans or [1]
            # ‖w‖² of a filter with fan_in weights ~ N(0, 2/fan_in): Gamma(fan_in/2, 4/fan_in)
            s = np.zeros(n)
            for f in fans:
                s += rng.gamma(f / 2.0, 4.0 / f, size=n)
            out.append(s)
        return np.concatenate(out)
    return random_scores(rng, dist, N)


def generate_channels(shape: str = "resnet20", seed: int = 0, keep_flops: float = 0.5,
                      dist: str = "kaiming", *, groups: int = 6, channels: int = 16,
                      collapse: bool = False) -> ChannelProblem:
    """A channel-selection instance (see the module docstring); ``groups`` and ``channels``
    size the ``chain`` and ``random`` shapes only."""
    if shape not in SHAPES:
        raise ValueError(f"shape: unknown shape '{shape}' (known: {', '.join(SHAPES)})")
    if dist not in DISTRIBUTIONS:
        raise ValueError(f"dist: unknown distribution '{dist}' (known: {', '.join(DISTRIBUTIONS)})")
    fraction(keep_flops, "keep_flops", low_open=False, got=f"{keep_flops}")
    rng = np.random.default_rng(seed)
    bld = _Builder()
    min_keep = blocks = None
    if shape == "chain":
        _chain(bld, groups, channels)
    elif shape == "resnet20":
        _cifar_resnet(bld, 20, collapse)
    elif shape == "resnet56":
        _cifar_resnet(bld, 56, collapse)
    elif shape == "resnet50":
        _resnet50(bld, collapse)
    else:
        min_keep, blocks = _random(bld, rng, groups, channels, collapse)
    scores = _scores(rng, dist, bld)
    sizes = np.array(bld.sizes, dtype=np.int64)
    if min_keep is None:
        min_keep = np.ones(sizes.size, dtype=np.int64)
        blocks = np.array(bld.blocks, dtype=np.int64)
    problem = ChannelProblem(
        scores=scores, channel_ptr=np.concatenate(([0], np.cumsum(sizes))),
        edges=np.array(bld.edges, dtype=np.int64).reshape(-1, 2),
        edge_coef=np.array(bld.coef, dtype=np.float64),
        linear_coef=np.array(bld.linear, dtype=np.float64), const=0.0, flop_budget=0.0,
        min_keep=min_keep, blocks=blocks, names=bld.names,
    )
    return problem.replace(flop_budget=float(np.floor(keep_flops * problem.dense_flops)))
