"""The Formulation base (schema-driven save/load, registry, is_feasible), the shared input checks
(``fraction`` above all) and the exchange file writer."""

from __future__ import annotations

import argparse
import ast
import math
import os
import pathlib
import sys
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

import pruneopt
from pruneopt.formulations import io
from pruneopt.formulations.allocation.generate import generate_allocation
from pruneopt.formulations.base import Formulation, datum
from pruneopt.formulations.channels.generate import generate_channels
from pruneopt.formulations.checks import check_pointer, fraction, int_array, real_array
from pruneopt.formulations.common import Evaluation
from pruneopt.formulations.exchange import save_npz_atomic
from pruneopt.formulations.files import current_umask
from pruneopt.formulations.joint.generate import generate_joint
from pruneopt.formulations.joint_qp.problem import JointQuadraticProblem

FORMULATIONS = pathlib.Path(pruneopt.formulations.__file__).parent


def _joint_qp() -> JointQuadraticProblem:
    rng = np.random.default_rng(0)
    return JointQuadraticProblem(
        X=rng.standard_normal((3, 5)), w_bar=rng.standard_normal(5), ridge=0.1,
        group_ptr=[0, 2, 5], flop_cost=[4.0, 1.0], nnz_budget=3, flop_budget=6.0,
        block_ptr=[0, 2, 5], names=("a", "b"))


INSTANCES = {
    "joint": lambda: generate_joint(items=40, layers=3),
    "joint-qp": _joint_qp,
    "allocation": lambda: generate_allocation(4, 3),
    "channels": lambda: generate_channels("resnet20", collapse=True),
}

# The exchange formats of the README / module docstrings: key -> (dtype, ndim).
FORMATS = {
    "joint": dict(scores=("float64", 1), group_ptr=("int64", 1), flop_cost=("float64", 1),
                  nnz_budget=("int64", 0), flop_budget=("float64", 0), names=("U", 1)),
    "joint-qp": dict(X=("float64", 2), w_bar=("float64", 1), ridge=("float64", 0),
                     linear=("float64", 1), group_ptr=("int64", 1), flop_cost=("float64", 1),
                     nnz_budget=("int64", 0), flop_budget=("float64", 0),
                     block_ptr=("int64", 1), names=("U", 1)),
    "allocation": dict(loss=("float64", 1), nnz=("int64", 1), flops=("float64", 1),
                       option_ptr=("int64", 1), nnz_budget=("int64", 0),
                       flop_budget=("float64", 0), names=("U", 1),
                       option_labels=("float64", 1)),
    "channels": dict(scores=("float64", 1), channel_ptr=("int64", 1), edges=("int64", 2),
                     edge_coef=("float64", 1), linear_coef=("float64", 1),
                     const=("float64", 0), flop_budget=("float64", 0), min_keep=("int64", 1),
                     blocks=("int64", 1), names=("U", 1)),
}


# ------------------------------------------------------------------------------------ exchange
@pytest.mark.parametrize("tag", sorted(INSTANCES))
def test_saved_keys_and_dtypes_follow_the_documented_format(tag, tmp_path):
    problem = INSTANCES[tag]()
    path = tmp_path / "p.npz"
    problem.save(path)
    with np.load(path, allow_pickle=False) as npz:
        assert list(npz.files) == ["formulation", *FORMATS[tag]]  # in the documented order
        assert str(npz["formulation"]) == tag
        for key, (dtype, ndim) in FORMATS[tag].items():
            arr = npz[key]
            assert (arr.dtype.kind if dtype == "U" else str(arr.dtype)) == dtype, key
            assert arr.ndim == ndim, key
    for loaded in (type(problem).load(path), pruneopt.load_problem(path)):
        assert type(loaded) is type(problem)
        for d in type(problem).schema():
            a, b = getattr(problem, d.name), getattr(loaded, d.name)
            if isinstance(a, np.ndarray):
                assert a.dtype == b.dtype and np.array_equal(a, b), d.name
            else:
                assert a == b and type(a) is type(b), d.name


@pytest.mark.parametrize("tag", sorted(INSTANCES))
def test_schema_is_the_dataclass_fields_in_order(tag):
    cls = Formulation.registry[tag]
    names = [d.name for d in cls.schema()]
    assert names == [k for k in FORMATS[tag]]
    assert cls.kind == tag and cls.sense in ("maximize", "minimize")


def test_save_npz_atomic_writes_the_exact_path_with_umask_permissions(tmp_path):
    path = tmp_path / "no-suffix"
    save_npz_atomic(path, {"a": np.arange(3)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no-suffix"]
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~current_umask()
    with np.load(path) as npz:
        np.testing.assert_array_equal(npz["a"], np.arange(3))


def test_unknown_tag_names_the_known_ones(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, formulation=np.array("nope"))
    with pytest.raises(ValueError) as err:
        pruneopt.load_problem(path)
    assert str(err.value) == (f"formulation: unknown formulation 'nope' in {path} "
                              "(known: allocation, channels, joint, joint-qp)")


def test_every_tag_is_registered_by_the_module_that_load_problem_imports():
    import importlib

    for tag, module in io.MODULES.items():
        cls = Formulation.registry[tag]
        assert cls.__module__ == module and importlib.import_module(module) is sys.modules[module]


@pytest.fixture
def toy_class(monkeypatch):
    """A two-field formulation declared only through its schema (maximize Σ v x, Σ x ≤ k),
    registered for the test only."""
    monkeypatch.setattr(Formulation, "registry", dict(Formulation.registry))

    @dataclass(frozen=True, eq=False)
    class Toy(Formulation):
        values: np.ndarray = datum("real", bound=">= 0")
        k: int = datum("int", 0, bound=">= 0")
        names: tuple[str, ...] | None = datum("names", per="item", optional=True)

        kind: ClassVar[str] = "toy-test"
        sense: ClassVar[str] = "maximize"

        def dimensions(self):
            return {"item": ("p", self.num_items)}

        @property
        def num_items(self) -> int:
            return int(self.values.size)

        def evaluate(self, x) -> Evaluation:
            xb = self.canonical(x)
            return Evaluation(float(self.values[xb].sum()), {"k": float(xb.sum())},
                              {"k": float(self.k)})

    return Toy


def test_a_new_formulation_gets_checks_exchange_and_loading_from_its_schema(toy_class, tmp_path):
    Toy = toy_class
    toy = Toy(values=[1, 2, 3], k=2.0, names=["a", "b", "c"])
    assert toy.values.dtype == np.float64 and not toy.values.flags.writeable
    assert type(toy.k) is int and toy.names == ("a", "b", "c")
    assert toy.is_feasible([1, 1, 0]) and not toy.is_feasible([1, 1, 1])
    assert not toy.is_feasible([1, 2, 0])  # not a decision: False, not an exception
    for bad, message in [
        (dict(values=[1.0, -1.0, 2.0]), "values: must be >= 0 (found -1)"),
        (dict(values=[1.0, np.nan, 2.0]), "values: contains NaN or inf"),
        (dict(values=None), "values: is required"),
        (dict(k=-1), "k: must be >= 0, got -1"),
        (dict(names=["a"]), "names: needs one name per item (p=3), has 1"),
        (dict(names="abc"), "names: must be a sequence of item names, not one string"),
    ]:
        with pytest.raises(ValueError) as err:
            Toy(**{**dict(values=[1, 2, 3], k=2), **bad})
        assert str(err.value) == message
    path = tmp_path / "toy.npz"
    toy.save(path)
    with np.load(path) as npz:
        assert list(npz.files) == ["formulation", "values", "k", "names"]
    back = pruneopt.load_problem(path)
    assert isinstance(back, Toy) and back.names == toy.names and back.k == 2
    assert toy.replace(k=3).k == 3 and toy.replace(k=3).values is not toy.values


def test_is_feasible_and_save_load_are_written_once():
    for cls in [Formulation.registry[t] for t in io.MODULES]:
        for name in ("is_feasible", "save", "load", "__post_init__", "replace"):
            assert name not in cls.__dict__, (cls.__name__, name)


def test_no_private_name_is_imported_across_formulation_modules():
    for path in FORMULATIONS.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pruneopt"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, (path.name, node.module, private)


# ------------------------------------------------------------------------------------ checks
@pytest.mark.parametrize("value", [0.5, 1, 1.0, np.float64(0.25), np.float32(0.5), np.int64(1),
                                   np.array(0.5)])
def test_fraction_accepts_real_numbers_in_the_half_open_interval(value):
    x = fraction(value, "f")
    assert type(x) is float and x == float(value)


@pytest.mark.parametrize("value", [0, 0.0, -0.1, 1.5, math.nan, math.inf, -math.inf, True,
                                   np.bool_(True), "0.5", None, [0.5], object()])
def test_fraction_refuses_the_rest_with_the_field_and_value(value):
    with pytest.raises(ValueError) as err:
        fraction(value, "keep")
    assert str(err.value) == f"keep: must be a fraction in (0, 1], got {value!r}"


def test_fraction_variants_keep_their_messages():
    assert fraction(0, "k", low_open=False) == 0.0
    assert fraction(None, "k", low_open=False, optional=True) is None
    with pytest.raises(ValueError, match=r"^k: must be a fraction in \[0, 1\] or None, got 2$"):
        fraction(2, "k", low_open=False, optional=True)
    with pytest.raises(ValueError,
                       match=r"^keep_flops: must be a fraction of the dense MACs in \(0, 1\], "):
        fraction(0.0, "keep_flops", what="a fraction of the dense MACs")
    with pytest.raises(argparse.ArgumentTypeError) as err:
        fraction(1.5, None, what="a fraction kept", got="'1.5'", error=argparse.ArgumentTypeError)
    assert str(err.value) == "must be a fraction kept in (0, 1], got '1.5'"


def test_array_coercions_are_read_only_copies_with_field_messages():
    src = np.array([1, 2, 3])
    out = real_array(src, "s")
    assert out.dtype == np.float64 and not out.flags.writeable and src.flags.writeable
    assert int_array([0.0, 2.0], "p").dtype == np.int64
    with pytest.raises(ValueError, match=r"^X: must be 2-D \(n × p\), got shape \(3,\)$"):
        real_array(src, "X", 2, axes="n × p")
    with pytest.raises(ValueError, match="^p: must hold integers$"):
        int_array([0.0, 1.5], "p")
    with pytest.raises(ValueError, match="^p: must be an array of integers, got dtype bool$"):
        int_array([True, False], "p")


@pytest.mark.parametrize("ptr, message", [
    ([], "ptr: must have G+1 >= 2 entries (at least one group)"),
    ([1, 3], "ptr: must start at 0, starts at 1"),
    ([0, 2, 2, 3], "ptr: group 1 has no channels (every group needs one or more; the pointer "
                   "must be strictly increasing)"),
    ([0, 4], "ptr: must end at the number of scores N=3, ends at 4"),
])
def test_check_pointer_names_the_fault(ptr, message):
    with pytest.raises(ValueError) as err:
        check_pointer(np.array(ptr, dtype=np.int64), "ptr", 3, of="scores N", part="group",
                      count="G", members="channels")
    assert str(err.value) == message
    check_pointer(np.array([0, 3, 3]), "ptr", 3, of="scores p")  # empty layers are allowed
    with pytest.raises(ValueError, match="^ptr: must be non-decreasing$"):
        check_pointer(np.array([0, 2, 1, 3]), "ptr", 3, of="scores p")
