"""Load any formulation's exchange file by its ``formulation`` tag."""

from __future__ import annotations

import importlib
import os

from pruneopt.formulations.base import Formulation
from pruneopt.formulations.exchange import read_formulation_tag

# tag -> the module that defines (and so registers) its Formulation class, imported only when
# a file of that tag is read. Files without a tag are joint problems: the original exchange
# format had no tag.
MODULES = {
    "joint": "pruneopt.formulations.joint.problem",
    "joint-qp": "pruneopt.formulations.joint_qp.problem",
    "allocation": "pruneopt.formulations.allocation.problem",
    "channels": "pruneopt.formulations.channels.problem",
}


def load_problem(path: str | os.PathLike):
    """Read an exchange ``.npz`` and return the problem object it holds."""
    tag = read_formulation_tag(path) or "joint"
    if tag not in Formulation.registry and tag in MODULES:
        importlib.import_module(MODULES[tag])
    if tag not in Formulation.registry:
        known = sorted(set(MODULES) | set(Formulation.registry))
        raise ValueError(
            f"formulation: unknown formulation '{tag}' in {os.fspath(path)} "
            f"(known: {', '.join(known)})"
        )
    return Formulation.registry[tag].load(path)
