"""Structured channel selection (DESIGN §2c) with bilinear FLOPs: ``problem``, ``pyomo_model``
(layered-graph and McCormick MILPs), ``cpsat_model`` and ``generate``."""

from pruneopt.formulations.channels.problem import ChannelProblem

__all__ = ["ChannelProblem"]
