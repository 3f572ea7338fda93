"""Load any formulation's exchange file by its ``formulation`` tag."""

from __future__ import annotations

import importlib
import os

from pruneopt.formulations.common import read_formulation_tag

# tag -> (module, class) whose ``load`` reads it. Files without a tag are joint problems: the
# original exchange format had no tag.
_LOADERS = {
    "joint": ("pruneopt.formulations.joint.problem", "JointBudgetProblem"),
    "joint-qp": ("pruneopt.formulations.joint_qp.problem", "JointQuadraticProblem"),
    "allocation": ("pruneopt.formulations.allocation.problem", "AllocationProblem"),
    "channels": ("pruneopt.formulations.channels.problem", "ChannelProblem"),
}


def load_problem(path: str | os.PathLike):
    """Read an exchange ``.npz`` and return the problem object it holds."""
    tag = read_formulation_tag(path) or "joint"
    try:
        module, cls = _LOADERS[tag]
    except KeyError:
        raise ValueError(
            f"formulation: unknown formulation '{tag}' in {os.fspath(path)} "
            f"(known: {', '.join(sorted(_LOADERS))})"
        ) from None
    return getattr(importlib.import_module(module), cls).load(path)
