"""Solvers of the joint-qp formulation: ``registrations`` (imported lazily by the registry) and the backend glue they use."""
