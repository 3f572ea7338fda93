"""scikit-learn's bundled 8×8 digits: the data split, a training loop, and cached trained models.

The digits set (1,797 images, 10 classes) ships inside scikit-learn, so it needs no download, and
the two digits models of the zoo train on it in seconds on a laptop CPU. That makes it the one
place where the whole pipeline — scores, exact pruning, accuracy after pruning — can be run end to
end in a test.

Trained weights are cached under :func:`cache_dir` (``$PRUNEOPT_CACHE`` or ``~/.cache/pruneopt``)
as ``{name}-seed{seed}-v1.pt`` (a ``state_dict``); the ``v1`` names the training recipe and is
bumped whenever the recipe changes. Files are written atomically (a temporary file in the same
folder, then ``os.replace``) because several test processes may train the same model at once, and
an unreadable cache file is retrained over, with a warning, rather than raised.
"""

from __future__ import annotations

import numbers
import os
import pathlib
import tempfile
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pruneopt.models.zoo import build_model

DIGITS_MODELS = ("digits-mlp", "digits-cnn")
CACHE_VERSION = "v1"

# Training recipes (Adam with cosine decay, full passes over the 1,347 training images); on
# seeds 0-5 they reach test accuracy >= 0.973 (MLP, ~0.8 s) and >= 0.982 (CNN, ~1.1 s)
# on 2 CPU threads. Changing one changes the cached weights: bump CACHE_VERSION with it.
_RECIPES: dict[str, dict] = {
    "digits-mlp": {"epochs": 40, "lr": 1e-2, "batch_size": 64, "weight_decay": 0.0},
    "digits-cnn": {"epochs": 15, "lr": 1e-2, "batch_size": 64, "weight_decay": 0.0},
}


@dataclass(frozen=True, eq=False)
class DigitsData:
    """A train/test split: X float32 (N, 1, 8, 8) in [0, 1], y int64 (N,) class labels."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor


def load_digits_split(seed: int = 0, test_fraction: float = 0.25) -> DigitsData:
    """The digits set split into train and test, stratified by class, reproducibly for ``seed``.

    Pixel values (0..16 in scikit-learn) are divided by 16 to lie in [0, 1].
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    try:
        tf = float(test_fraction)
    except (TypeError, ValueError):
        raise ValueError(f"test_fraction: must be a number in (0, 1), got {test_fraction!r}") \
            from None
    if not 0.0 < tf < 1.0:
        raise ValueError(f"test_fraction: must be in (0, 1), got {test_fraction!r}")
    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=tf, stratify=y,
                                              random_state=seed)
    return DigitsData(
        X_train=torch.from_numpy(np.ascontiguousarray(X_tr)),
        y_train=torch.from_numpy(np.ascontiguousarray(y_tr)),
        X_test=torch.from_numpy(np.ascontiguousarray(X_te)),
        y_test=torch.from_numpy(np.ascontiguousarray(y_te)),
    )


def cache_dir() -> pathlib.Path:
    """Where trained weights are cached: ``$PRUNEOPT_CACHE`` if set, else ``~/.cache/pruneopt``."""
    env = os.environ.get("PRUNEOPT_CACHE")
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path.home() / ".cache" / "pruneopt"


# ------------------------------------------------------------------------------------ training
def _check_xy(X: torch.Tensor, y: torch.Tensor) -> None:
    if not isinstance(X, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ValueError("X: X and y must be torch tensors")
    if X.dim() < 1 or y.dim() != 1 or X.shape[0] != y.shape[0]:
        raise ValueError(
            f"y: must be a vector with one label per row of X, got X {tuple(X.shape)} "
            f"and y {tuple(y.shape)}"
        )


def train(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float,
          seed: int, batch_size: int = 64, weight_decay: float = 0.0,
          progress: bool = False) -> nn.Module:
    """Train ``model`` in place with Adam on cross-entropy; return it.

    Mini-batches are drawn from a fresh permutation each epoch. Everything random (the order, and
    dropout if the model has any) comes from the CPU RNG seeded with ``seed`` inside
    ``torch.random.fork_rng``, so the run is reproducible and the caller's RNG is untouched.
    Each module's training flag is restored at the end (BatchNorm statistics stay updated).
    """
    _check_xy(X, y)
    if isinstance(epochs, bool) or not isinstance(epochs, int | np.integer) or epochs < 0:
        raise ValueError(f"epochs: must be an integer >= 0, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) \
            or batch_size < 1:
        raise ValueError(f"batch_size: must be an integer >= 1, got {batch_size!r}")
    if isinstance(lr, bool) or not (isinstance(lr, numbers.Real) and np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr: must be a positive number, got {lr!r}")
    if isinstance(weight_decay, bool) or not (isinstance(weight_decay, numbers.Real)
                                              and np.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay: must be a number >= 0, got {weight_decay!r}")

    n = int(X.shape[0])
    saved = [(m, m.training) for m in model.modules()]
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    # cosine decay to zero over the run: the last epochs settle instead of ending on a noisy step
    steps = max(1, int(epochs) * -(-n // batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    loss_fn = nn.CrossEntropyLoss()
    epoch_iter = range(int(epochs))
    if progress:
        from tqdm.auto import tqdm

        epoch_iter = tqdm(epoch_iter, desc="train", unit="epoch")
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model.train()
            for _ in epoch_iter:
                order = torch.randperm(n)
                total = 0.0
                for start in range(0, n, batch_size):
                    idx = order[start:start + batch_size]
                    opt.zero_grad(set_to_none=True)
                    loss = loss_fn(model(X[idx]), y[idx])
                    loss.backward()
                    opt.step()
                    sched.step()
                    total += float(loss.detach()) * idx.numel()
                if progress:
                    epoch_iter.set_postfix(loss=f"{total / n:.4f}")
    finally:
        for m, mode in saved:
            m.training = mode
    return model


def evaluate_accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor,
                      batch_size: int = 1024) -> float:
    """Top-1 accuracy of ``model`` on (X, y), in eval mode without gradients; every module's
    training flag is restored afterwards."""
    _check_xy(X, y)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) \
            or batch_size < 1:
        raise ValueError(f"batch_size: must be an integer >= 1, got {batch_size!r}")
    n = int(X.shape[0])
    if n == 0:
        raise ValueError("X: no samples to evaluate on")
    saved = [(m, m.training) for m in model.modules()]
    correct = 0
    try:
        model.eval()
        with torch.no_grad():
            for start in range(0, n, batch_size):
                pred = model(X[start:start + batch_size]).argmax(dim=1)
                correct += int((pred == y[start:start + batch_size]).sum())
    finally:
        for m, mode in saved:
            m.training = mode
    return correct / n


# ------------------------------------------------------------------------------------ cache
def _cache_path(name: str, seed: int) -> pathlib.Path:
    return cache_dir() / f"{name}-seed{seed}-{CACHE_VERSION}.pt"


def _load_cached(model: nn.Module, path: pathlib.Path) -> bool:
    """Load ``path`` into ``model``; False (with a warning) if it cannot be used."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
        if not all(bool(torch.isfinite(t).all()) for t in model.state_dict().values()
                   if t.is_floating_point()):
            raise ValueError("non-finite values")
    except Exception as exc:  # a truncated, foreign or damaged file: retrain over it
        warnings.warn(f"pruneopt: ignoring unreadable cached weights {path} ({exc}); retraining",
                      UserWarning, stacklevel=3)
        return False
    return True


def _save_atomic(state: dict, path: pathlib.Path) -> None:
    """Write ``state`` so that a reader sees either the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def trained_model(name: str, *, seed: int = 0, cache: bool = True) -> nn.Module:
    """A digits model trained on ``load_digits_split(seed)``'s training part, in eval mode.

    Initial weights come from ``build_model(name, seed=seed)`` and the training order from
    ``seed``. With ``cache`` the weights are loaded from ``cache_dir()`` when present and saved
    there after training; a cache that cannot be read or written only costs a warning.
    """
    if name not in DIGITS_MODELS:
        raise ValueError(f"name: trained models exist for {', '.join(DIGITS_MODELS)} only, "
                         f"got {name!r}")
    model = build_model(name, seed=seed)
    path = _cache_path(name, seed)
    if cache and path.exists() and _load_cached(model, path):
        return model.eval()
    if cache:
        # a failed load may have written part of the file's tensors: start from a clean init
        model = build_model(name, seed=seed)
    data = load_digits_split(seed)
    train(model, data.X_train, data.y_train, seed=seed, **_RECIPES[name])
    if cache:
        try:
            _save_atomic(model.state_dict(), path)
        except OSError as exc:
            warnings.warn(f"pruneopt: could not cache trained weights at {path} ({exc})",
                          UserWarning, stacklevel=2)
    return model.eval()
