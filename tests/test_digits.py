"""The digits split, the training loop and the trained-weights cache (pruneopt.models.digits)."""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
from torch import nn  # noqa: E402

from pruneopt.models import digits  # noqa: E402
from pruneopt.models.digits import (  # noqa: E402
    DigitsData,
    cache_dir,
    evaluate_accuracy,
    load_digits_split,
    train,
    trained_model,
)
from pruneopt.models.zoo import build_model  # noqa: E402

ACCURACY_FLOOR = {"digits-mlp": 0.95, "digits-cnn": 0.97}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEOPT_CACHE", str(tmp_path))
    return tmp_path


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------------ data
def test_split_shapes_and_scaling():
    d = load_digits_split()
    assert isinstance(d, DigitsData)
    assert d.X_train.shape == (1347, 1, 8, 8) and d.X_test.shape == (450, 1, 8, 8)
    assert d.X_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert d.y_test.shape == (450,)
    both = torch.cat([d.X_train, d.X_test])
    assert both.min() == 0.0 and both.max() == 1.0
    # the scaling is /16 of scikit-learn's 0..16 pixel values
    assert torch.equal(both * 16, torch.round(both * 16))


def test_split_is_deterministic_and_stratified():
    a, b, c = load_digits_split(0), load_digits_split(0), load_digits_split(1)
    assert torch.equal(a.X_train, b.X_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.y_test, c.y_test)
    y_all = torch.cat([a.y_train, a.y_test])
    for frac in (0.25, 0.5):
        d = load_digits_split(3, test_fraction=frac)
        per_class = torch.bincount(y_all, minlength=10).numpy()
        test_class = torch.bincount(d.y_test, minlength=10).numpy()
        # every class is represented in proportion (within one sample)
        assert np.all(np.abs(test_class - frac * per_class) <= 1.0)
        assert torch.equal(torch.bincount(torch.cat([d.y_train, d.y_test]), minlength=10),
                           torch.bincount(y_all, minlength=10))


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.2, "a"])
def test_split_rejects_bad_fraction(bad):
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits_split(0, test_fraction=bad)


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNEOPT_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("PRUNEOPT_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "pruneopt"


# ------------------------------------------------------------------------------------ training
def test_train_is_reproducible_and_leaves_global_rng_alone():
    d = load_digits_split(0)
    X, y = d.X_train[:256], d.y_train[:256]
    torch.manual_seed(7)
    state = torch.get_rng_state()
    a = train(build_model("digits-cnn", seed=1), X, y, epochs=2, lr=1e-2, seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    b = train(build_model("digits-cnn", seed=1), X, y, epochs=2, lr=1e-2, seed=4)
    c = train(build_model("digits-cnn", seed=1), X, y, epochs=2, lr=1e-2, seed=5)
    assert _same_weights(a, b)
    assert not _same_weights(a, c)  # the seed sets the mini-batch order
    assert a.training  # the training flag the model came with


def test_train_rejects_bad_arguments():
    d = load_digits_split(0)
    m = build_model("digits-mlp")
    with pytest.raises(ValueError, match="y: must be a vector"):
        train(m, d.X_train, d.y_test, epochs=1, lr=1e-3, seed=0)
    with pytest.raises(ValueError, match="lr"):
        train(m, d.X_train, d.y_train, epochs=1, lr=0.0, seed=0)
    with pytest.raises(ValueError, match="epochs"):
        train(m, d.X_train, d.y_train, epochs=-1, lr=1e-3, seed=0)


class _Constant(nn.Module):
    """Always predicts class 3; carries a flag to check that eval mode is used and undone."""

    def __init__(self):
        super().__init__()
        self.seen_training = []

    def forward(self, x):
        self.seen_training.append(self.training)
        out = torch.zeros(x.shape[0], 10)
        out[:, 3] = 1.0
        return out


def test_evaluate_accuracy_by_hand():
    y = torch.tensor([3, 1, 3, 3, 0, 9, 3])
    model = _Constant()
    model.train()
    assert evaluate_accuracy(model, torch.zeros(7, 1, 8, 8), y, batch_size=2) == 4 / 7
    assert model.seen_training == [False] * 4 and model.training


# ------------------------------------------------------------------------------------ cache
@pytest.mark.parametrize("name", ["digits-mlp", "digits-cnn"])
def test_trained_model_accuracy_and_cache(cache, monkeypatch, name):
    model = trained_model(name, seed=0)
    assert not model.training
    d = load_digits_split(0)
    acc = evaluate_accuracy(model, d.X_test, d.y_test)
    assert acc >= ACCURACY_FLOOR[name], acc
    path = cache / f"{name}-seed0-v1.pt"
    assert path.is_file()
    assert sorted(os.listdir(cache)) == [path.name]  # no temporary file left behind

    def no_training(*args, **kwargs):
        raise AssertionError("the second call must load from the cache, not train")

    monkeypatch.setattr(digits, "train", no_training)
    again = trained_model(name, seed=0)
    assert again is not model and not again.training
    assert _same_weights(model, again)


def test_corrupt_cache_is_retrained(cache):
    first = trained_model("digits-mlp", seed=0)
    path = cache / "digits-mlp-seed0-v1.pt"
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # a truncated file
    with pytest.warns(UserWarning, match="unreadable cached weights"):
        again = trained_model("digits-mlp", seed=0)
    assert _same_weights(first, again)  # training is deterministic
    assert torch.load(path, weights_only=True).keys() == first.state_dict().keys()

    # a readable file holding another model's weights is just as unusable
    torch.save(build_model("digits-cnn").state_dict(), path)
    with pytest.warns(UserWarning, match="unreadable cached weights"):
        third = trained_model("digits-mlp", seed=0)
    assert _same_weights(first, third)


def test_no_cache_writes_nothing(cache):
    model = trained_model("digits-mlp", seed=1, cache=False)
    assert list(cache.iterdir()) == []
    d = load_digits_split(1)
    assert evaluate_accuracy(model, d.X_test, d.y_test) >= ACCURACY_FLOOR["digits-mlp"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    path.write_bytes(b"old contents")

    def half_write(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_write)
    with pytest.raises(OSError, match="disk full"):
        digits._save_atomic({"w": torch.zeros(2)}, path)
    assert path.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_trained_model_rejects_other_names(cache):
    with pytest.raises(ValueError, match="name: trained models exist for digits-mlp, digits-cnn"):
        trained_model("resnet20")
    with pytest.raises(ValueError, match="name"):
        trained_model("nope")
