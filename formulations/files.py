"""Files that are never half written, and values turned into JSON: one writer and one converter
for every command, formulation, model pipeline and report.

``atomic_write(path, data)`` writes through a temporary file in the target's own directory
(so the final ``os.replace`` is a rename on one file system), flushes and fsyncs it, gives it
the permissions a plain ``open(path, "w")`` would (0666 minus the umask: ``mkstemp`` makes
0600), and renames it into place; on any failure the temporary file is removed and the target
is untouched. ``data`` is text, bytes, or a callable that writes to an open binary file (so
``np.savez``, ``torch.save`` and ``DataFrame.to_csv`` stream straight into it).

``to_jsonable(value)`` turns numpy / torch scalars and arrays, tuples and dict keys into plain
JSON types; non-finite floats become ``None`` so that the output is strict JSON.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from typing import BinaryIO

import numpy as np


def current_umask() -> int:
    """The process umask (reading it means setting it; it is restored at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, data: str | bytes | Callable[[BinaryIO], object]) -> str:
    """Write ``data`` to ``path`` atomically with the usual permissions; returns the path."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def to_jsonable(value):
    """A copy of ``value`` made of dict/list/str/int/float/bool/None only (NaN, ±inf → None)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.ndarray) or hasattr(value, "tolist") and hasattr(value, "dtype"):
        return to_jsonable(value.tolist())  # numpy arrays and torch tensors
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value
