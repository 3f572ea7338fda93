"""One adapter per backend: its status map as data, and one run of a declared model.

Each adapter module declares ``STATUS_MAP`` (the backend's termination code → a
:class:`~pruneopt.solvers.constants.Status` word; a code it does not name is ``feasible`` with a
solution and ``error`` without) and a ``run`` that solves a declared model at zero relative and
absolute gap with the seed and time limit and returns a
:class:`~pruneopt.solvers.backends.common.BackendRun` (status, the backend's own message, the raw
values or the solution loaded into the Pyomo model, the dual bound in the model's units, the
backend version):

* :mod:`~pruneopt.solvers.backends.pyomo_highs` — HiGHS on a Pyomo model (new interface);
* :mod:`~pruneopt.solvers.backends.pyomo_scip` — SCIP on a Pyomo model (``[scip]`` extra);
* :mod:`~pruneopt.solvers.backends.cpsat` — OR-Tools CP-SAT on a ``CpModel``;
* :mod:`~pruneopt.solvers.backends.highspy` — HiGHS from arrays (``HighsLp``).

highspy 1.13.1 and ortools 9.15 share one process (DESIGN §7; tests/test_coexistence.py).
"""
