"""Which traced ops pass a channel layout through, reshape, reduce, join or concatenate it: the
op tables of the channel tracer (:mod:`pruneopt.models.channels.builder`). Anything not listed
is an unknown op: the groups it reads stay whole."""

from __future__ import annotations

import operator

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

PASS_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Identity,
    nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
PASS_FUNCTIONS = {
    F.relu, torch.relu, torch.relu_, F.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.gelu,
    F.silu, F.mish, F.hardswish, F.hardsigmoid, F.hardtanh, torch.sigmoid, F.sigmoid,
    torch.tanh, F.tanh, torch.clamp, torch.clip, F.dropout, F.dropout2d, F.alpha_dropout,
    F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, operator.neg,
}
PASS_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_",
                 "clip", "contiguous", "clone", "detach", "float", "neg", "to", "type_as",
                 "sigmoid", "hardsigmoid", "silu", "gelu"}
# Functions that multiply each sample by a random scalar in training and are the identity in
# eval mode (stochastic depth / drop path), matched by name: torchvision wraps its
# ``stochastic_depth`` for torch.fx, timm's ``drop_path`` likewise when wrapped.
PASS_FUNCTION_NAMES = {"stochastic_depth", "drop_path"}
RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape}
RESHAPE_METHODS = {"flatten", "view", "reshape"}
PERMUTE_FUNCTIONS = {torch.permute, torch.transpose, torch.swapaxes, torch.swapdims}
PERMUTE_METHODS = {"permute", "transpose", "swapaxes", "swapdims"}
SPLIT_FUNCTIONS = {torch.chunk, torch.split, torch.tensor_split, torch.unbind}
SPLIT_METHODS = {"chunk", "split", "tensor_split", "unbind"}
# A parameter or buffer reshaped or broadcast on its way to a channel-wise op stays one.
PARAM_METHODS = {"expand", "expand_as", "to", "type_as", "view", "reshape", "contiguous"}
REDUCE_FUNCTIONS = {torch.mean, torch.sum, torch.amax}
REDUCE_METHODS = {"mean", "sum", "amax"}
BINARY_FUNCTIONS = {operator.add, operator.iadd, torch.add, operator.sub, operator.isub,
                     torch.sub, operator.mul, operator.imul, torch.mul}
BINARY_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_"}
CAT_FUNCTIONS = {torch.cat, torch.concat, torch.concatenate}
META_METHODS = {"size", "dim"}
META_ATTRS = {"shape", "dtype", "device", "ndim"}


def target_name(node: fx.Node) -> str:
    t = node.target
    if node.op == "call_module":
        return str(t)
    return getattr(t, "__name__", str(t))
