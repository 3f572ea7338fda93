"""The full joint problem (a'), a mixed-integer QP on the local quadratic model of the loss:
``problem`` (data, validation, evaluation, exchange file) and ``pyomo_model`` (the MIQP)."""

from pruneopt.formulations.joint_qp.problem import JointQuadraticProblem

__all__ = ["JointQuadraticProblem"]
