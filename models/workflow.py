"""``pruneopt prune`` end to end: resolve a model, pick data, prune, check, record, save.

A model is named by
* a zoo name: the digits MLP/CNN are trained (and cached) on scikit-learn's bundled digits and
  scored on its held-out split; the real-scale architectures (ResNet-20/56, MobileNetV1,
  ResNet-50) run on random weights with synthetic data;
* a checkpoint written by ``pruneopt prune`` (or :func:`save_checkpoint`), which names the
  architecture it was built from; or a whole pickled ``nn.Module`` (``torch.save(model)``);
* ``module:function``, a callable returning an ``nn.Module`` (with ``--input-shape C,H,W``).

**Synthetic data.** Where a model has no data set, inputs are standard normal of the input shape
and the labels are the dense model's own predictions, so "accuracy" is the agreement of the pruned
model with the dense one on fresh inputs (1.0 before pruning). The record says which.

The record (JSON) holds at least: method, model, flops_asked, nnz_asked (fractions kept),
macs_before, macs_after, nnz_before, nnz_after, accuracy_before, accuracy_after, seconds, and the
per-stage solver summaries. Budgets are recounted on the pruned model itself; a checkpoint that
would violate them is never written.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import pathlib
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from pruneopt.models import zoo
from pruneopt.models.costs import (
    prunable_layers,
    sparse_macs,
    total_macs,
    total_weights,
)
from pruneopt.models.defaults import DEFAULT_CALIBRATION
from pruneopt.models.digits import DIGITS_MODELS, evaluate_accuracy, load_digits_split, trained_model
from pruneopt.models.pruning import PruneSettings, check_budgets, prune_network

CHECKPOINT_FORMAT = "pruneopt-checkpoint-v1"
# torchvision.models:NAME without --input-shape: ImageNet's (ViTs are built for 224 × 224)
TORCHVISION_INPUT_SHAPE = (3, 224, 224)
SYNTHETIC_EVAL = 512
# Per-sample gradients are n × p float64; refuse before allocating more than this.
MAX_GRADIENT_BYTES = 8 * 2**30


@dataclass
class Dataset:
    """Calibration/training inputs and an evaluation split; ``kind`` is digits or synthetic."""

    kind: str
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_eval: torch.Tensor
    y_eval: torch.Tensor


@dataclass
class ResolvedModel:
    model: nn.Module
    spec: str  # what rebuilds the architecture: a zoo name or module:function
    input_shape: tuple[int, int, int]
    data: Dataset | None = None


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


def _import_user_module(module_name: str):
    """Import a user's module, finding it in the current directory too (as ``python -m`` does),
    and torchvision through :func:`~pruneopt.models.vision.import_torchvision`."""
    if module_name == "torchvision" or module_name.startswith("torchvision."):
        from pruneopt.models.vision import import_torchvision

        import_torchvision()
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"model: cannot import module '{module_name}': {exc}") from None
    except Exception as exc:  # the module itself raises at import
        raise ValueError(f"model: importing '{module_name}' raised {type(exc).__name__}: "
                         f"{exc}") from None
    finally:
        if added and sys.path and sys.path[0] == cwd:
            sys.path.pop(0)


def _from_callable(spec: str) -> nn.Module:
    module_name, _, func_name = spec.partition(":")
    if not module_name or not func_name:
        raise ValueError(f"model: expected module:function, got {spec!r}")
    module = _import_user_module(module_name)
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ValueError(f"model: '{module_name}' has no callable '{func_name}'")
    try:
        model = func()
    except Exception as exc:
        raise ValueError(f"model: {spec} raised {type(exc).__name__}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: {spec} returned {type(model).__name__}, not an nn.Module")
    return model


def _build(spec: str, seed: int) -> nn.Module:
    if spec in DIGITS_MODELS:
        return trained_model(spec, seed=seed)
    if spec in zoo.ZOO_NAMES:
        return zoo.build_model(spec, seed=seed)
    return _from_callable(spec)


def resolve_model(spec: str, *, input_shape: tuple[int, int, int] | None = None,
                  seed: int = 0) -> ResolvedModel:
    """Turn ``--model`` (zoo name, checkpoint path or module:function) into a model."""
    if spec in zoo.ZOO_NAMES:
        model = _build(spec, seed)
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


def _load_checkpoint(path: str, input_shape, seed: int) -> ResolvedModel:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a plain-data checkpoint: maybe a pickled module
        try:
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


def _dense_predictions(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    was = model.training
    model.eval()
    with torch.no_grad():
        out = torch.cat([model(X[i:i + 256]) for i in range(0, X.shape[0], 256)])
    model.train(was)
    if out.ndim != 2:
        raise ValueError(f"model: output must be (batch, classes) logits, got shape {tuple(out.shape)}")
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
                data_file: str | None = None) -> Dataset:
    """The user's file if given, the digits split for digits models, else synthetic data
    labelled by the dense model."""
    if data_file is not None:
        return load_data_file(data_file, resolved.input_shape, seed)
    if resolved.spec in DIGITS_MODELS:
        d = load_digits_split(seed=0)  # one split for every seed: accuracies stay comparable
        return Dataset("digits", d.X_train, d.y_train, d.X_test, d.y_test)
    gen = torch.Generator().manual_seed(seed)
    X_train = torch.randn((n_train, *resolved.input_shape), generator=gen)
    X_eval = torch.randn((SYNTHETIC_EVAL, *resolved.input_shape), generator=gen)
    return Dataset("synthetic", X_train, _dense_predictions(resolved.model, X_train),
                   X_eval, _dense_predictions(resolved.model, X_eval))


def calibration_batch(data: Dataset, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if n < 1:
        raise ValueError(f"calibration: must be >= 1 samples, got {n}")
    if n > data.X_train.shape[0]:
        raise ValueError(f"calibration: asked for {n} samples, the data set has "
                         f"{data.X_train.shape[0]}")
    idx = torch.randperm(data.X_train.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    return data.X_train[idx], data.y_train[idx]


def run_prune(spec: str, settings: PruneSettings, *, input_shape=None, n_calibration: int =
              DEFAULT_CALIBRATION, data_file: str | None = None,
              progress: bool = False) -> tuple[ResolvedModel, dict]:
    """Prune the named model; returns it (pruned in place) and the JSON-ready record."""
    settings.validate()
    start = time.perf_counter()
    torch.manual_seed(settings.seed)
    resolved = resolve_model(spec, input_shape=input_shape, seed=settings.seed)
    model = resolved.model.eval()
    example = torch.zeros((1, *resolved.input_shape))
    layers = prunable_layers(model, example)
    p = total_weights(layers)
    if n_calibration * p * 8 > MAX_GRADIENT_BYTES:
        raise ValueError(f"calibration: {n_calibration} samples × {p} weights of float64 "
                         f"gradients need {n_calibration * p * 8 / 2**30:.1f} GiB; use fewer")
    data = dataset_for(resolved, n_train=max(n_calibration, 256), seed=settings.seed,
                       data_file=data_file)
    resolved.data = data
    calib_X, calib_y = calibration_batch(data, n_calibration, settings.seed)
    macs_before, nnz_before = sparse_macs(layers), sum(
        int(torch.count_nonzero(layer.weight)) for layer in layers)
    acc_before = evaluate_accuracy(model, data.X_eval, data.y_eval)

    bar = None
    if progress:
        from tqdm import tqdm

        total = settings.stages if settings.method == "falcon++" else 1
        bar = tqdm(total=total, desc=f"{settings.method} on {spec}", file=sys.stderr,
                   leave=False)
    try:
        outcome = prune_network(model, layers, calib_X, calib_y, settings,
                                train_data=(data.X_train, data.y_train), progress=bar)
    finally:
        if bar is not None:
            bar.close()
    check = check_budgets(layers, settings.keep_flops, settings.keep_nnz)
    record = {
        "method": settings.method,
        "model": spec,
        "flops_asked": settings.keep_flops,
        "nnz_asked": settings.keep_nnz,
        "macs_dense": total_macs(layers),
        "macs_before": macs_before,
        "macs_after": check["macs"],
        "nnz_dense": p,
        "nnz_before": nnz_before,
        "nnz_after": check["nnz"],
        "flop_budget": check["flop_budget"],
        "nnz_budget": check["nnz_budget"],
        "budgets_met": check["met"],
        "macs_kept": check["macs"] / total_macs(layers),
        "nnz_kept": check["nnz"] / p,
        "accuracy_before": acc_before,
        "accuracy_after": evaluate_accuracy(model, data.X_eval, data.y_eval),
        "data": data.kind,
        "n_calibration": n_calibration,
        "settings": asdict(settings),
        "stages": outcome.stages,
        "seconds": time.perf_counter() - start,
    }
    if not check["met"]:
        raise RuntimeError(f"budgets: the pruned model violates its budgets ({check}); "
                           "nothing written")
    return resolved, _jsonable(record)


def save_checkpoint(resolved: ResolvedModel, record: dict, out_dir: str | os.PathLike) -> dict:
    """Write ``model.pt`` (architecture name + state_dict) and ``record.json`` into out_dir."""
    ckpt = {"format": CHECKPOINT_FORMAT, "model": resolved.spec,
            "input_shape": list(resolved.input_shape),
            "state_dict": resolved.model.state_dict(), "record": json.dumps(record)}
    return write_model_and_record(ckpt, record, out_dir)


def write_model_and_record(obj, record: dict, out_dir) -> dict:
    """``torch.save(obj)`` to DIR/model.pt (atomically) and the record to DIR/record.json;
    refuses a record whose budgets were not met."""
    if not record.get("budgets_met", False):
        raise RuntimeError("budgets: refusing to write a checkpoint that violates its budgets")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"checkpoint": str(out / "model.pt"), "record": str(out / "record.json")}
    tmp = out / ".model.pt.tmp"
    torch.save(obj, tmp)
    os.replace(tmp, paths["checkpoint"])
    (out / "record.json").write_text(json.dumps(record, indent=2, allow_nan=True) + "\n")
    return paths


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray | torch.Tensor):
        return _jsonable(value.tolist())
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
