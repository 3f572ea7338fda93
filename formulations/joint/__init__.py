"""The joint FLOP/NNZ selection ILP (DESIGN §2a): ``problem`` (data, validation, evaluation,
exchange file), ``pyomo_model`` and ``cpsat_model`` (the declarations), ``generate``."""

from pruneopt.formulations.joint.problem import JointBudgetProblem

__all__ = ["JointBudgetProblem"]
