"""Solvers of the channels formulation: ``registrations`` (imported lazily by the registry) and the backend glue they use."""
