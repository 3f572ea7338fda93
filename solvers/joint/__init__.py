"""Solvers of the joint formulation.

``registrations`` (imported lazily by the registry) registers them; ``highs_arrays`` is the
highspy array model with reduced-cost fixing (``reduced_cost``), and ``polish`` checks a float
MIP answer by exchange moves.
"""
