"""Purpose-built algorithms of the channels formulation, in vectorised numpy: the Lagrangian
(``lagrangian``) over the count DP (``elimination_plan``: variables, order, relaxations;
``elimination``: its evaluation at a multiplier), and the exact Pareto DP on chains
(``chain_dp``)."""
