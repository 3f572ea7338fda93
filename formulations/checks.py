"""Input checks shared by every formulation and the layers above it.

Each check raises ``ValueError("field: what is wrong")`` naming the offending field (the
message convention of the whole project), and the coercions return read-only float64 / int64
arrays or plain Python scalars:

* ``real_array`` / ``int_array`` / ``real_scalar`` / ``int_scalar`` / ``names_tuple`` — turn
  user input into the stored form of a field;
* ``require_dtype`` — an array read from an exchange file has the dtype kind the format says;
* ``check_finite`` / ``check_finite_nonnegative`` / ``check_pointer`` — value checks;
* ``fraction`` — the one check of a fraction such as a kept share of FLOPs or weights, used by
  the formulations, the model pipelines, the study configuration and the CLI alike.
"""

from __future__ import annotations

import math

import numpy as np


# --------------------------------------------------------------------------------- coercion
def frozen(arr: np.ndarray) -> np.ndarray:
    """``arr`` made read-only (returned for chaining)."""
    arr.setflags(write=False)
    return arr


def real_array(value, name: str, ndim: int = 1, *, axes: str = "") -> np.ndarray:
    """A read-only C-ordered float64 copy of an ``ndim``-D array of real numbers (bool, int or
    float dtype; ``axes`` describes the axes in the error message)."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name}: must be an array of real numbers, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        shape = f" ({axes})" if axes else ""
        raise ValueError(f"{name}: must be {ndim}-D{shape}, got shape {arr.shape}")
    return frozen(np.array(arr, dtype=np.float64, order="C"))


def int_array(value, name: str, ndim: int = 1) -> np.ndarray:
    """A read-only int64 copy of an ``ndim``-D array of integers (integral floats accepted)."""
    arr = np.asarray(value)
    if arr.ndim != ndim:
        raise ValueError(f"{name}: must be {ndim}-D, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"{name}: must hold integers")
    elif arr.dtype.kind not in "iu":
        raise ValueError(f"{name}: must be an array of integers, got dtype {arr.dtype}")
    return frozen(np.array(arr, dtype=np.int64))


def int_scalar(value, name: str) -> int:
    """An integer (an integral float is accepted; a bool is not)."""
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"{name}: must be an integer, got a bool")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: must be an integer, got {value!r}") from None
    if not np.isfinite(f) or f != np.floor(f):
        raise ValueError(f"{name}: must be an integer, got {value!r}")
    return int(value) if isinstance(value, int | np.integer) else int(f)


def real_scalar(value, name: str) -> float:
    """A number as a Python float (a bool is refused; NaN and inf pass: callers check them)."""
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"{name}: must be a number, got a bool")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: must be a number, got {value!r}") from None


def names_tuple(value, name: str = "names", *, unit: str = "layer") -> tuple[str, ...]:
    """A sequence of names (one per ``unit``) as a tuple of str; one bare string is refused."""
    if isinstance(value, str):
        raise ValueError(f"{name}: must be a sequence of {unit} names, not one string")
    return tuple(str(n) for n in value)


def require_dtype(arr: np.ndarray, name: str, kinds: str) -> None:
    """An array read from a file must have a dtype of the given kinds ("f" or "iu")."""
    if arr.dtype.kind not in kinds:
        want = {"f": "float", "iu": "integer"}.get(kinds, kinds)
        raise ValueError(f"{name}: must have a {want} dtype, has {arr.dtype}")


# --------------------------------------------------------------------------------- values
def check_finite(arr: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or inf")


def check_finite_nonnegative(arr: np.ndarray, name: str) -> None:
    check_finite(arr, name)
    if np.any(arr < 0):
        low = arr.min()
        found = int(low) if arr.dtype.kind in "iu" else f"{float(low):.6g}"
        raise ValueError(f"{name}: must be >= 0 (found {found})")


def check_pointer(ptr: np.ndarray, name: str, total: int, *, of: str, part: str = "layer",
                  count: str = "L", members: str | None = None) -> None:
    """``ptr`` (int64[count+1]) cuts 0..total into contiguous parts: part g owns
    ptr[g]:ptr[g+1]. It must start at 0, never decrease and end at ``total`` (``of`` names
    that total, e.g. "scores p"). With ``members`` (what a part holds, e.g. "options") every
    part must be non-empty, so there is at least one part and ptr is strictly increasing."""
    need = 1 if members is None else 2
    if ptr.size < need:
        at_least = "" if members is None else f" (at least one {part})"
        raise ValueError(f"{name}: must have {count}+1 >= {need} entries{at_least}")
    if ptr[0] != 0:
        raise ValueError(f"{name}: must start at 0, starts at {int(ptr[0])}")
    sizes = np.diff(ptr)
    if members is not None and np.any(sizes <= 0):
        g = int(np.flatnonzero(sizes <= 0)[0])
        raise ValueError(f"{name}: {part} {g} has no {members} (every {part} needs one or "
                         "more; the pointer must be strictly increasing)")
    if np.any(sizes < 0):
        raise ValueError(f"{name}: must be non-decreasing")
    if ptr[-1] != total:
        raise ValueError(f"{name}: must end at the number of {of}={total}, ends at {int(ptr[-1])}")


# --------------------------------------------------------------------------------- fractions
def fraction(value, name: str | None = None, *, low_open: bool = True, optional: bool = False,
             what: str = "a fraction", got: str | None = None,
             error: type[Exception] = ValueError) -> float | None:
    """``value`` as a float in (0, 1] (in [0, 1] when ``low_open`` is false).

    A fraction is a real number: a bool or a string is refused, and so are NaN and ±inf. With
    ``optional``, None passes through (and the message says "or None"). Otherwise raises
    ``error("name: must be <what> in (0, 1], got <got>")`` — ``name`` is left out when None
    (an argparse type says no field), ``got`` defaults to ``repr(value)``.
    """
    if optional and value is None:
        return None
    x = math.nan
    if not isinstance(value, bool | np.bool_ | str | bytes):
        try:
            x = float(value)
        except (TypeError, ValueError):
            pass
    if math.isfinite(x) and (0.0 < x if low_open else 0.0 <= x) and x <= 1.0:
        return x
    prefix = "" if name is None else f"{name}: "
    interval = "(0, 1]" if low_open else "[0, 1]"
    none = " or None" if optional else ""
    shown = repr(value) if got is None else got
    raise error(f"{prefix}must be {what} in {interval}{none}, got {shown}")
