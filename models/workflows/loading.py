"""What every pipeline starts from: the network named by ``--model`` and the data it is scored on.

A model is named by
* a zoo name: the digits MLP/CNN are trained (and cached) on scikit-learn's bundled digits and
  scored on its held-out split; the real-scale architectures (ResNet-20/56, MobileNetV1,
  ResNet-50) run on random weights with synthetic data;
* a checkpoint written by ``pruneopt prune`` (:func:`pruneopt.models.workflows.records.
  checkpoint`), which names the architecture it was built from; or a whole pickled
  ``nn.Module`` (``torch.save(model)``, as ``pruneopt channels`` and the structured pruners
  write it);
* ``module:function``, a callable returning an ``nn.Module`` (with ``--input-shape C,H,W``).

**Data.** ``--data FILE.npz`` (arrays ``X`` (N, C, H, W) and integer ``y`` (N,)) is split 80/20
with the seed; the digits models get the digits split; every other model gets **synthetic
data**: standard-normal inputs of the input shape labelled by the dense model's own predictions,
so "accuracy" is the agreement of the pruned model with the dense one on fresh inputs (1.0 before
pruning). ``Dataset.kind`` (``file``, ``digits``, ``synthetic``) goes into every record.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pruneopt.models import zoo
from pruneopt.models.defaults import SYNTHETIC_EVAL
from pruneopt.models.digits import (
    DIGITS_MODELS,
    evaluate_accuracy,
    load_digits_split,
    trained_model,
)

CHECKPOINT_FORMAT = "pruneopt-checkpoint-v1"
# torchvision.models:NAME without --input-shape: ImageNet's (ViTs are built for 224 × 224)
TORCHVISION_INPUT_SHAPE = (3, 224, 224)
# Per-sample gradients are n × p float64; refuse before allocating more than this.
MAX_GRADIENT_BYTES = 8 * 2**30


@dataclass
class Dataset:
    """Calibration/training inputs and an evaluation split; ``kind`` is file, digits or
    synthetic."""

    kind: str
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_eval: torch.Tensor
    y_eval: torch.Tensor

    def accuracy(self, model: nn.Module) -> float:
        """Top-1 accuracy of ``model`` on the evaluation split."""
        return evaluate_accuracy(model, self.X_eval, self.y_eval)


@dataclass
class ResolvedModel:
    model: nn.Module
    spec: str  # what rebuilds the architecture: a zoo name or module:function
    input_shape: tuple[int, int, int]
    data: Dataset | None = None

    def example_input(self) -> torch.Tensor:
        """A zero batch of one input: what the cost extraction and the tracer run on."""
        return torch.zeros((1, *self.input_shape))


def parse_input_shape(text: str | None) -> tuple[int, int, int] | None:
    if text is None:
        return None
    try:
        dims = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"input_shape: must be C,H,W integers, got {text!r}") from None
    if len(dims) != 3 or any(d < 1 for d in dims):
        raise ValueError(f"input_shape: must be three positive integers C,H,W, got {text!r}")
    return dims  # type: ignore[return-value]


@contextlib.contextmanager
def _cwd_on_path():
    """The current directory on ``sys.path`` while a user's module is imported (the
    ``pruneopt`` console script, unlike ``python -m``, does not put it there)."""
    cwd = os.getcwd()
    added = "" not in sys.path and cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def _from_callable(spec: str) -> nn.Module:
    module_name, _, func_name = spec.partition(":")
    if not module_name or not func_name:
        raise ValueError(f"model: expected module:function, got {spec!r}")
    if module_name == "torchvision" or module_name.startswith("torchvision."):
        from pruneopt.models.vision import import_torchvision

        import_torchvision()  # the CPU torch needs the shim (models/vision.py)
    try:
        with _cwd_on_path():
            module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module itself failing as it runs
        raise ValueError(f"model: cannot import module '{module_name}': "
                         f"{type(exc).__name__}: {exc}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ValueError(f"model: '{module_name}' has no callable '{func_name}'")
    try:
        with _cwd_on_path():  # it may import more of the user's modules as it runs
            model = func()
    except Exception as exc:  # the user's code: its failure is bad input, not our crash
        raise ValueError(f"model: {spec}() raised {type(exc).__name__}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: {spec} returned {type(model).__name__}, not an nn.Module")
    return model


def resolve_model(spec: str, *, input_shape: tuple[int, int, int] | None = None,
                  seed: int = 0) -> ResolvedModel:
    """Turn ``--model`` (zoo name, checkpoint path or module:function) into a model."""
    if spec in zoo.ZOO_NAMES:
        model = trained_model(spec, seed=seed) if spec in DIGITS_MODELS else zoo.build_model(
            spec, seed=seed)
        shape = input_shape or zoo.input_shape(spec)
        return ResolvedModel(model, spec, tuple(shape))
    if os.path.exists(spec):
        return _load_checkpoint(spec, input_shape, seed)
    if ":" in spec:
        if input_shape is None and spec.startswith("torchvision."):
            input_shape = TORCHVISION_INPUT_SHAPE  # what torchvision's builders are sized for
        if input_shape is None:
            raise ValueError("input_shape: --input-shape C,H,W is required with module:function")
        return ResolvedModel(_from_callable(spec), spec, input_shape)
    raise ValueError(f"model: '{spec}' is not a zoo model ({', '.join(zoo.ZOO_NAMES)}), "
                     "an existing checkpoint, or module:function")


def open_model(spec: str, *, input_shape=None, seed: int = 0) -> ResolvedModel:
    """The start of every pipeline: seed torch, resolve ``spec``, put the model in eval mode."""
    torch.manual_seed(seed)
    resolved = resolve_model(spec, input_shape=input_shape, seed=seed)
    resolved.model.eval()
    return resolved


def _load_checkpoint(path: str, input_shape, seed: int) -> ResolvedModel:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a plain-data checkpoint: maybe a pickled module
        try:
            with _cwd_on_path():  # a pickled module's classes may live in the user's module
                obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise ValueError(f"model: cannot read checkpoint {path}: {exc}") from None
    if isinstance(obj, nn.Module):
        if input_shape is None:
            raise ValueError("input_shape: --input-shape C,H,W is required for a pickled module")
        return ResolvedModel(obj.eval(), path, input_shape)
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"model: {path} is neither a pruneopt checkpoint nor a pickled nn.Module")
    arch = str(obj["model"])
    model = zoo.build_model(arch, seed=seed) if arch in zoo.ZOO_NAMES else _from_callable(arch)
    try:
        model.load_state_dict(obj["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"model: checkpoint {path} does not fit {arch}: {exc}") from None
    shape = input_shape or tuple(int(v) for v in obj["input_shape"])
    return ResolvedModel(model.eval(), arch, shape)


def dense_labels(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    """The model's own predicted classes on X (eval mode, no grad; every module's training flag
    is restored afterwards)."""
    saved = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            out = torch.cat([model(X[i:i + 256]) for i in range(0, X.shape[0], 256)])
    finally:
        for m, mode in saved:
            m.training = mode
    if out.ndim != 2:
        raise ValueError(f"model: output must be (batch, classes) logits, got shape "
                         f"{tuple(out.shape)}")
    return out.argmax(dim=1)


def load_data_file(path: str | os.PathLike, input_shape, seed: int) -> Dataset:
    """A user's data set: an ``.npz`` with ``X`` (N, C, H, W) and integer labels ``y`` (N,);
    a seeded 80/20 split gives the calibration/training part and the evaluation part."""
    try:
        with np.load(path, allow_pickle=False) as f:
            X, y = np.asarray(f["X"]), np.asarray(f["y"])
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"data: cannot read X and y from {path}: {exc}") from None
    if X.ndim < 2 or tuple(X.shape[1:]) != tuple(input_shape):
        raise ValueError(f"data: X has shape {X.shape}, the model takes (N, "
                         f"{', '.join(map(str, input_shape))})")
    if y.ndim != 1 or y.shape[0] != X.shape[0] or y.dtype.kind not in "iu":
        raise ValueError(f"data: y must be {X.shape[0]} integer labels, got {y.dtype} {y.shape}")
    if X.dtype.kind not in "iuf" or not np.all(np.isfinite(X)):
        raise ValueError("data: X must hold finite numbers")
    if X.shape[0] < 2:
        raise ValueError("data: needs at least 2 samples")
    order = np.random.default_rng(seed).permutation(X.shape[0])
    cut = max(1, int(0.8 * X.shape[0]))
    Xt = torch.as_tensor(X[order], dtype=torch.float32)
    yt = torch.as_tensor(y[order], dtype=torch.int64)
    return Dataset("file", Xt[:cut], yt[:cut], Xt[cut:], yt[cut:])


def dataset_for(resolved: ResolvedModel, *, n_train: int, seed: int,
                data_file: str | None = None, n_eval: int = SYNTHETIC_EVAL) -> Dataset:
    """The user's file if given, the digits split for digits models, else synthetic data
    (``n_train`` and ``n_eval`` inputs) labelled by the dense model."""
    if data_file is not None:
        return load_data_file(data_file, resolved.input_shape, seed)
    if resolved.spec in DIGITS_MODELS:
        d = load_digits_split(seed=0)  # one split for every seed: accuracies stay comparable
        return Dataset("digits", d.X_train, d.y_train, d.X_test, d.y_test)
    gen = torch.Generator().manual_seed(seed)
    X_train = torch.randn((n_train, *resolved.input_shape), generator=gen)
    X_eval = torch.randn((n_eval, *resolved.input_shape), generator=gen)
    return Dataset("synthetic", X_train, dense_labels(resolved.model, X_train),
                   X_eval, dense_labels(resolved.model, X_eval))


def calibration_batch(data: Dataset, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` training samples drawn without replacement with the seed."""
    if n < 1:
        raise ValueError(f"calibration: must be >= 1 samples, got {n}")
    if n > data.X_train.shape[0]:
        raise ValueError(f"calibration: asked for {n} samples, the data set has "
                         f"{data.X_train.shape[0]}")
    idx = torch.randperm(data.X_train.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    return data.X_train[idx], data.y_train[idx]


def gradient_data(resolved: ResolvedModel, num_weights: int, n_calibration: int, seed: int, *,
                  data_file: str | None = None) -> tuple[Dataset, torch.Tensor, torch.Tensor]:
    """The data set of a quadratic-model pipeline (FALCON & co., allocation) and its calibration
    batch; refuses a gradient matrix (n × p float64) larger than ``MAX_GRADIENT_BYTES``."""
    if n_calibration * num_weights * 8 > MAX_GRADIENT_BYTES:
        raise ValueError(f"calibration: {n_calibration} samples × {num_weights} weights of "
                         f"float64 gradients need {n_calibration * num_weights * 8 / 2**30:.1f} "
                         "GiB; use fewer")
    data = dataset_for(resolved, n_train=max(n_calibration, 256), seed=seed, data_file=data_file)
    resolved.data = data
    X, y = calibration_batch(data, n_calibration, seed)
    return data, X, y


__all__ = ["CHECKPOINT_FORMAT", "Dataset", "ResolvedModel", "calibration_batch", "dataset_for",
           "dense_labels", "gradient_data", "load_data_file", "open_model", "parse_input_shape",
           "resolve_model"]
