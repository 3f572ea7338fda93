"""Files that are never half written, and values turned into JSON: one writer and one converter
for every command, formulation, model pipeline and report.

``atomic_write(path, data)`` writes through a temporary file in the target's own directory
(so the final ``os.replace`` is a rename on one file system), flushes and fsyncs it, gives it
the permissions a plain ``open(path, "w")`` would (0666 minus the umask: ``mkstemp`` makes
0600), and renames it into place; on any failure the temporary file is removed and the target
is untouched. ``data`` is text, bytes, or a callable that writes to an open binary file (so
``np.savez``, ``torch.save`` and ``DataFrame.to_csv`` stream straight into it).

``check_output_file(path, field)`` and ``check_output_dir(path, field)`` say, before any work,
whether a command will be able to write there: the parent is an existing directory in which a
file can really be created (a probe file, created and removed: permission bits say nothing for
root or for read-only mounts), the target is not a directory where a file is wanted nor a file
where a directory is wanted. They raise ``ValueError("<field>: <what is wrong>")``, the CLI's
one-line error (exit 2); they create nothing (a missing ``--out DIR`` is created later, by the
writer, with its missing parents, as ``mkdir -p`` would: it is refused only when the nearest
existing ancestor is not a directory or cannot be written).

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
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory, not a file")
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


def _probe(directory: str) -> str | None:
    """None when a file can be created (and removed) in ``directory``, else why not."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".pruneopt-probe-", suffix=".tmp", dir=directory)
    except OSError as exc:
        return f"cannot create files in {directory} ({exc.strerror or exc})"
    os.close(fd)
    os.remove(tmp)
    return None


def _parent_problem(parent: str) -> str | None:
    """Why files cannot be written in ``parent`` (a directory path as the user gave it)."""
    if parent == os.curdir:
        parent = os.getcwd()  # say which one
    absolute = os.path.abspath(parent)
    if os.path.isdir(absolute):
        return _probe(parent)
    if os.path.exists(absolute):
        return f"{parent} is not a directory"
    ancestor = os.path.dirname(absolute)
    while not os.path.exists(ancestor):  # ends at the root at the latest
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        return f"{ancestor} is not a directory"
    return f"directory {parent} does not exist"


def check_output_file(path: str | os.PathLike, field: str) -> str:
    """Check, creating nothing, that a file can be written at ``path``; returns the path.
    Raises ``ValueError("<field>: ...")`` when the parent is missing, is not a directory or
    cannot be written, or when ``path`` is a directory or another non-regular file."""
    path = os.fspath(path)
    if not path:
        raise ValueError(f"{field}: the output path is empty")
    if os.path.isdir(path):
        raise ValueError(f"{field}: {path} is a directory; give a file name")
    if os.path.exists(path) and not os.path.isfile(path):
        raise ValueError(f"{field}: {path} exists and is not a regular file")
    parent = os.path.dirname(path) or os.curdir
    problem = _parent_problem(parent)
    if problem is not None:
        raise ValueError(f"{field}: cannot write {path}: {problem}")
    return path


def check_output_dir(path: str | os.PathLike, field: str) -> str:
    """Check, creating nothing, that files can be written in the directory ``path``, or that it
    can be created with its missing parents (the nearest existing one is a directory that can be
    written); returns the path. Raises ``ValueError("<field>: ...")`` otherwise, or when ``path``
    is a file."""
    path = os.fspath(path)
    if not path:
        raise ValueError(f"{field}: the output directory is empty")
    if os.path.isdir(path):
        problem = _probe(path)
        if problem is not None:
            raise ValueError(f"{field}: {problem}")
        return path
    if os.path.exists(path):
        raise ValueError(f"{field}: {path} is a file, not a directory")
    ancestor = os.path.dirname(os.path.abspath(path))  # created with its missing parents,
    while not os.path.exists(ancestor):  # as ``mkdir -p`` would: the first existing one
        ancestor = os.path.dirname(ancestor)  # must be a directory we can write in
    problem = (_probe(ancestor) if os.path.isdir(ancestor)
               else f"{ancestor} is not a directory")
    if problem is not None:
        raise ValueError(f"{field}: cannot create directory {path}: {problem}")
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
