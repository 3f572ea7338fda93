"""The contract every formulation keeps (DESIGN §2), and the field schema that coerces, checks,
saves and loads its data.

A formulation is a frozen dataclass that subclasses :class:`Formulation` and owns

* ``kind`` — its exchange tag ("joint", "joint-qp", "allocation", "channels") — and ``sense``
  ("maximize" or "minimize");
* its data fields, each declared with :func:`datum` (the schema, below);
* ``validate()``, raising ``ValueError("field: message")`` when the data do not define a
  problem (NaN/inf, negative scores or budgets, shape mismatch, empty groups, ...);
* ``evaluate(x) -> Evaluation`` (objective and per-constraint usage, recomputed in numpy) and
  ``canonical(x)`` (a decision in its stored form; by default a 0/1 vector of ``num_items``
  entries as a bool array); ``is_feasible(x, tol)`` is written here once: x is a decision and
  ``evaluate(x)`` meets every limit within ``tol`` relative;
* ``save(path)`` / ``load(path)`` in the exchange format, written here once from the schema;
* the declarations ``to_pyomo()`` and, where CP-SAT applies, ``to_cpsat()``, which import their
  modules lazily (the data layer needs neither Pyomo nor OR-Tools).

**The schema.** ``name: type = datum(dtype, ndim, ...)`` declares one field:

* ``dtype`` "real" (stored float64), "int" (int64) or "names" (a tuple of str, stored str[L]);
  ``ndim`` 0 for a scalar, else the number of axes;
* ``per`` — the dimension the first axis runs over ("layer", "option", "group", ...): the field
  needs one entry per element of it (sizes from ``dimensions()``);
* ``bound`` — ">= 0" or "> 0" for every entry; real data are always checked finite;
* ``optional`` — the field may be None and absent from the exchange file; ``fill(problem)``
  computes the value given for None from the fields before it (a default that depends on the
  data, e.g. no first-order term); ``coerce(value, name)`` replaces the standard coercion;
  other keyword arguments go to :func:`dataclasses.field` (e.g. ``default``).

**Construction.** ``__post_init__`` takes the fields in declaration order: None becomes
``fill(self)`` where there is one, and stays None where the field is optional; everything else
is coerced — by ``coerce`` where given (it may accept None), else to read-only float64 / int64
arrays with the declared ``ndim``, Python int / float scalars or a tuple of names, a None being
"field: is required". Then ``validate()``, then ``_derive()`` (read-only arrays the class
computes once).

**Validation.** ``check_values()`` checks each field alone (finite, ``bound``);
``check_lengths()`` checks every ``per`` field against ``dimensions()``. The default
``validate()`` runs both; a class with structure of its own (pointers, edges, big-M) overrides
it as: ``check_values()``, its structure checks (that define the dimensions), ``check_lengths()``,
then whatever else it needs.

**The exchange file** holds one array per field under the field's name — arrays as stored,
scalars as 0-d float64 / int64, names as str[...]; a None optional field is left out — and
``formulation`` = ``kind``. ``load`` refuses a missing required key ("field: missing from
<path>"), an array whose dtype kind is not the field's, a non-scalar where a scalar belongs and
names that are not a 1-D str array, then builds the problem (which validates it). A file
without a tag is accepted (the first exchange files had none) unless ``requires_tag``.

**The registry.** Every subclass that sets ``kind`` is entered in ``Formulation.registry``
when its module is imported; :func:`pruneopt.formulations.io.load_problem` imports the module
of a tag only when a file asks for it.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import math
import os
from collections.abc import Callable
from typing import ClassVar

import numpy as np

from pruneopt.formulations.checks import (
    check_finite,
    check_finite_nonnegative,
    int_array,
    int_scalar,
    names_tuple,
    real_array,
    real_scalar,
    require_dtype,
)
from pruneopt.formulations.common import Evaluation, as_binary_vector
from pruneopt.formulations.exchange import load_npz_strict, read_scalar, save_npz_atomic

_BOUNDS = {">= 0": lambda v: v >= 0, "> 0": lambda v: v > 0}


@dataclasses.dataclass(frozen=True)
class Datum:
    """The schema of one field (see the module docstring); ``name`` is the field's."""

    dtype: str
    ndim: int = 1
    per: str | None = None
    bound: str | None = None
    optional: bool = False
    fill: Callable | None = None
    coerce: Callable | None = None
    axes: str = ""
    name: str = ""

    def read(self, value):
        """The stored form of a constructor argument."""
        if self.coerce is not None:
            return self.coerce(value, self.name)
        if value is None:
            raise ValueError(f"{self.name}: is required")
        if self.dtype == "names":
            return names_tuple(value, self.name, unit=self.per)
        if self.ndim == 0:
            return real_scalar(value, self.name) if self.dtype == "real" else int_scalar(
                value, self.name)
        if self.dtype == "real":
            return real_array(value, self.name, self.ndim, axes=self.axes)
        return int_array(value, self.name, self.ndim)

    def check(self, value) -> None:
        """The checks of the field alone: real data finite, and ``bound``."""
        name = self.name
        if self.dtype == "names":
            return
        if self.ndim == 0:
            if self.bound is not None and not (math.isfinite(value)
                                               and _BOUNDS[self.bound](value)):
                finite = "finite and " if self.dtype == "real" else ""
                raise ValueError(f"{name}: must be {finite}{self.bound}, got {value}")
            return
        if self.bound == ">= 0":
            check_finite_nonnegative(value, name)
        elif self.dtype == "real":
            check_finite(value, name)
        if self.bound == "> 0" and np.any(value <= 0):
            raise ValueError(f"{name}: must be > 0 for every {self.per}")

    def to_file(self, value) -> np.ndarray:
        if self.dtype == "names":
            return np.array(value, dtype=np.str_)
        if self.ndim == 0:
            return np.float64(value) if self.dtype == "real" else np.int64(value)
        return value

    def from_file(self, arr: np.ndarray):
        """A constructor argument from an array read from an exchange file."""
        if self.dtype == "names":
            if arr.dtype.kind != "U" or arr.ndim != 1:
                raise ValueError(f"{self.name}: must be a 1-D array of strings")
            return tuple(arr.tolist())
        if self.ndim == 0:
            return read_scalar(arr, self.name, "iuf" if self.dtype == "real" else "iu")
        require_dtype(arr, self.name, "f" if self.dtype == "real" else "iu")
        return arr


def datum(dtype: str, ndim: int = 1, *, per: str | None = None, bound: str | None = None,
          optional: bool = False, fill: Callable | None = None, coerce: Callable | None = None,
          axes: str = "", **field_options):
    """A dataclass field carrying its :class:`Datum` (an optional or filled field defaults to
    None unless ``default`` says otherwise)."""
    if (optional or fill is not None) and "default" not in field_options:
        field_options["default"] = None
    spec = Datum(dtype, ndim, per, bound, optional, fill, coerce, axes)
    return dataclasses.field(metadata={"datum": spec}, **field_options)


@functools.cache
def _schema(cls) -> tuple[Datum, ...]:
    return tuple(dataclasses.replace(f.metadata["datum"], name=f.name)
                 for f in dataclasses.fields(cls) if "datum" in f.metadata)


class Formulation(abc.ABC):
    """Base of the problem dataclasses (see the module docstring for the contract)."""

    kind: ClassVar[str]
    sense: ClassVar[str]
    requires_tag: ClassVar[bool] = False
    registry: ClassVar[dict[str, type[Formulation]]] = {}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            Formulation.registry[cls.kind] = cls

    @classmethod
    def schema(cls) -> tuple[Datum, ...]:
        """The data fields in declaration order (the order of the exchange file)."""
        return _schema(cls)

    def __post_init__(self) -> None:
        for d in self.schema():
            value = getattr(self, d.name)
            if value is None and d.fill is not None:
                value = d.fill(self)
            if value is None and d.optional:
                continue
            object.__setattr__(self, d.name, d.read(value))
        self.validate()
        self._derive()

    def _derive(self) -> None:
        """Compute the read-only arrays the class caches (called once, after validation)."""

    # ----------------------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise ``ValueError`` ("field: message") if the data do not define a problem."""
        self.check_values()
        self.check_lengths()

    def dimensions(self) -> dict[str, tuple[str, int]]:
        """The sizes the ``per`` fields run over: {"layer": ("L", L), ...}."""
        return {}

    def check_values(self) -> None:
        for d in self.schema():
            value = getattr(self, d.name)
            if value is not None:
                d.check(value)

    def check_lengths(self) -> None:
        sizes = self.dimensions()
        for d in self.schema():
            value = getattr(self, d.name)
            if d.per is None or value is None:
                continue
            symbol, n = sizes[d.per]
            if len(value) != n:
                entry = "name" if d.dtype == "names" else "entry"
                raise ValueError(f"{d.name}: needs one {entry} per {d.per} ({symbol}={n}), "
                                 f"has {len(value)}")

    # ----------------------------------------------------------------------------- decisions
    @abc.abstractmethod
    def evaluate(self, x) -> Evaluation:
        """Objective and per-constraint usage of a decision, recomputed in float64."""

    def canonical(self, x) -> np.ndarray:
        """A 0/1 decision as a bool array of ``num_items`` entries (``ValueError`` otherwise)."""
        return as_binary_vector(x, self.num_items)

    def is_feasible(self, x, tol: float = 1e-9) -> bool:
        """True when x is a decision of this problem that meets every limit (relative tol)."""
        try:
            ev = self.evaluate(x)
        except ValueError:
            return False
        return ev.is_feasible(tol)

    def replace(self, **changes):
        """A copy with some fields changed (coerced and validated again)."""
        return dataclasses.replace(self, **changes)

    # ----------------------------------------------------------------------------- exchange
    def save(self, path: str | os.PathLike) -> None:
        """Write the exchange ``.npz`` (see the module docstring)."""
        arrays = {"formulation": np.array(self.kind)}
        for d in self.schema():
            value = getattr(self, d.name)
            if value is not None:
                arrays[d.name] = d.to_file(value)
        save_npz_atomic(path, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike):
        """Read an exchange ``.npz`` written by ``save`` (or by hand in the same format)."""
        data = load_npz_strict(path, cls.kind)
        if cls.requires_tag and "formulation" not in data:
            raise ValueError(f"formulation: {os.fspath(path)} has no '{cls.kind}' tag")
        missing = [d.name for d in cls.schema() if not d.optional and d.name not in data]
        if missing:
            raise ValueError(f"{missing[0]}: missing from {os.fspath(path)}")
        return cls(**{d.name: d.from_file(data[d.name])
                      for d in cls.schema() if d.name in data})
