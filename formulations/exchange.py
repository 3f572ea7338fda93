"""The exchange file: one ``.npz`` per problem, no pickles, tagged with its formulation.

``save_npz_atomic`` writes it through :func:`pruneopt.formulations.files.atomic_write` (never
half written, the usual permissions); ``load_npz_strict`` reads it back into a dict, refusing
pickles and a file of another formulation; ``read_scalar`` turns a stored 0-d array back into a
Python scalar. What each formulation stores is its field schema
(:mod:`pruneopt.formulations.base`).
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from pruneopt.formulations.files import atomic_write


def save_npz_atomic(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as an uncompressed ``.npz`` at exactly ``path`` (no suffix added)."""
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def load_npz_strict(path: str | os.PathLike, formulation: str | None) -> dict[str, np.ndarray]:
    """Read an exchange file into a dict, refusing pickles, and check its formulation tag
    (skipped when ``formulation`` is None)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"file: {path} does not exist")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ValueError(f"file: {path} is not a readable .npz exchange file ({exc})") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"file: {path} holds a single array (.npy), not an .npz exchange file")
    try:
        with loaded as npz:
            data = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ValueError(f"file: {path} is not a readable .npz exchange file ({exc})") from None
    tag = data.get("formulation")
    if formulation is not None and tag is not None and str(tag) != formulation:
        raise ValueError(f"formulation: {path} holds a '{tag}' problem, not '{formulation}'")
    return data


def read_formulation_tag(path: str | os.PathLike) -> str | None:
    """The ``formulation`` entry of an exchange file, or None when the file has none."""
    data = load_npz_strict(path, formulation=None)
    tag = data.get("formulation")
    return None if tag is None else str(tag)


def read_scalar(arr: np.ndarray, name: str, kinds: str):
    """A 0-d (or one-element) array from a file as a Python scalar of an allowed dtype kind."""
    if arr.size != 1 or arr.ndim > 1:
        raise ValueError(f"{name}: must be a scalar, got shape {arr.shape}")
    if arr.dtype.kind not in kinds:
        raise ValueError(f"{name}: has dtype {arr.dtype}, which is not allowed here")
    return arr.reshape(()).item()
