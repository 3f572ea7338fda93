"""pruneopt — exact mathematical programming for neural-network pruning.

    >>> import pruneopt
    >>> problem = pruneopt.JointBudgetProblem.load("instance.npz")      # doctest: +SKIP
    >>> pruneopt.available_solvers(problem)                              # doctest: +SKIP
    >>> result = pruneopt.solve(problem, "highs", time_limit=60)         # doctest: +SKIP
    >>> pruneopt.crosscheck(problem, ["highs", "cpsat", "falcon"])       # doctest: +SKIP
"""

from pruneopt.formulations import JointBudgetProblem, load_problem
from pruneopt.formulations.allocation.problem import AllocationProblem
from pruneopt.formulations.channels.problem import ChannelProblem
from pruneopt.formulations.joint_qp.problem import JointQuadraticProblem
from pruneopt.solvers import SolveResult, available_solvers, crosscheck, solve

__version__ = "0.1.0"
__all__ = ["AllocationProblem", "ChannelProblem", "JointBudgetProblem", "JointQuadraticProblem",
           "SolveResult", "available_solvers", "crosscheck", "load_problem", "solve",
           "__version__"]
