"""Load any formulation's exchange file by its ``formulation`` tag."""

from __future__ import annotations

import os

from pruneopt.formulations.common import read_formulation_tag
from pruneopt.formulations.joint import JointBudgetProblem

# Files without a tag are joint problems: the original exchange format had no tag.
_LOADERS = {"joint": JointBudgetProblem.load}


def load_problem(path: str | os.PathLike):
    """Read an exchange ``.npz`` and return the problem object it holds."""
    tag = read_formulation_tag(path) or "joint"
    try:
        loader = _LOADERS[tag]
    except KeyError:
        raise ValueError(
            f"formulation: unknown formulation '{tag}' in {os.fspath(path)} "
            f"(known: {', '.join(sorted(_LOADERS))})"
        ) from None
    return loader(path)
