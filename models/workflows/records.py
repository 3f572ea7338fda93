"""The one writer of a pipeline's ``--out DIR``: the model, the side files and ``record.json``.

:func:`write_run` creates DIR, writes ``model.pt`` (``torch.save`` straight into the open
temporary file), each side file (an exchange-format problem through its own ``save``, arrays
through :func:`npz` / :func:`npy`), and ``record.json`` last, every one through
:func:`pruneopt.formulations.files.atomic_write`: a file is there whole or not at all, and a
``record.json`` means the run's files are complete. The record is strict JSON (NaN/inf → null,
:func:`~pruneopt.formulations.files.to_jsonable`), indented, with a final newline.

What ``model.pt`` holds differs by pipeline: FALCON & co. and ``allocate`` keep the
architecture, so they write a :func:`checkpoint` (format ``pruneopt-checkpoint-v1``:
architecture name, input shape, state_dict and the record as JSON; loads with
``weights_only=True``); the channel pruners change the architecture, so they write the whole
shrunk module (``torch.load(..., weights_only=False)``). Both are read back by
:func:`pruneopt.models.workflows.loading.resolve_model`.

Importing this module does not import torch (``pruneopt allocate --table`` runs without it).
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Callable

import numpy as np

from pruneopt.formulations.files import atomic_write, to_jsonable

MODEL_FILE = "model.pt"
RECORD_FILE = "record.json"


def record_text(record: dict) -> str:
    """``record.json``'s text: strict JSON, two-space indent, final newline."""
    return json.dumps(to_jsonable(record), indent=2, allow_nan=False) + "\n"


def refuse_unmet(record: dict) -> None:
    """A model that violates its budgets is never written."""
    if not record.get("budgets_met", False):
        raise RuntimeError("budgets: refusing to write a checkpoint that violates its budgets")


def checkpoint(resolved, record: dict) -> dict:
    """The ``pruneopt-checkpoint-v1`` object of a model whose architecture did not change."""
    from pruneopt.models.workflows.loading import CHECKPOINT_FORMAT

    return {"format": CHECKPOINT_FORMAT, "model": resolved.spec,
            "input_shape": list(resolved.input_shape),
            "state_dict": resolved.model.state_dict(),
            "record": json.dumps(to_jsonable(record), allow_nan=False)}


def npz(**arrays) -> Callable:
    """A side file: the arrays as one ``.npz``."""
    return lambda fh: np.savez(fh, **arrays)


def npy(array) -> Callable:
    """A side file: one array as ``.npy``."""
    return lambda fh: np.save(fh, array)


def write_run(out_dir: str | os.PathLike, record: dict, *, model=None,
              model_key: str = "checkpoint", files: dict | None = None,
              files_in_record: bool = False) -> dict[str, str]:
    """Write ``model`` (if given) to DIR/model.pt, each ``files`` entry ``key: (name, data)``
    to DIR/name and the record to DIR/record.json; returns ``{key: path}`` in the order
    model, record, files. ``data`` is what :func:`atomic_write` takes (text, bytes, a writer
    callable) or an exchange-format problem (its ``save(path)``). With ``files_in_record`` the
    written record lists the paths under ``files``."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = dict(files or {})
    paths = {model_key: str(out / MODEL_FILE)} if model is not None else {}
    paths["record"] = str(out / RECORD_FILE)
    paths.update({key: str(out / name) for key, (name, _) in files.items()})
    if model is not None:
        import torch

        atomic_write(paths[model_key], lambda fh: torch.save(model, fh))
    for key, (_, data) in files.items():
        if hasattr(data, "save"):
            data.save(paths[key])
        else:
            atomic_write(paths[key], data)
    atomic_write(paths["record"], record_text({**record, "files": paths} if files_in_record
                                              else record))
    return paths


__all__ = ["checkpoint", "npy", "npz", "record_text", "refuse_unmet", "write_run"]
