"""pruneopt.formulations — problem data, validation, evaluation and model declarations.

Nothing here imports a solver (import direction: formulations ← solvers ← models ← reports).
"""

from pruneopt.formulations.base import Formulation
from pruneopt.formulations.common import Evaluation
from pruneopt.formulations.io import load_problem
from pruneopt.formulations.joint.problem import JointBudgetProblem

__all__ = ["Evaluation", "Formulation", "JointBudgetProblem", "load_problem"]
