"""Solvers of the joint-qp formulation: ``registrations`` (the exact ones and the magnitude
backsolve) and ``heuristics`` (the fast ones), imported lazily by the registry; ``enumerate``
and ``outer_approximation`` are the exact algorithms."""
