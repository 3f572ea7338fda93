"""Layer budget allocation (DESIGN §2b), a multiple-choice knapsack: ``problem``,
``pyomo_model``, ``cpsat_model`` and ``generate``."""

from pruneopt.formulations.allocation.problem import AllocationProblem

__all__ = ["AllocationProblem"]
