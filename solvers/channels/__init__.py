"""Solvers of the channels formulation: ``registrations`` (imported lazily by the registry),
with its value scaling and the exchange-move check of MILP answers."""
