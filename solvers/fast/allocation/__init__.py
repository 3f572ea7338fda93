"""Purpose-built algorithms of the allocation formulation, in vectorised numpy: the Lagrangian
over convex hulls (``hull``), the DP over integer budgets (``dp``) and the uniform baseline
(``baselines``)."""
