"""Solvers of the allocation formulation.

``registrations`` (imported lazily by the registry) registers them; ``highs_arrays`` is the
highspy array model with reduced-cost fixing, and ``polish`` checks every float answer by
improving moves against the LP dual bound.
"""
