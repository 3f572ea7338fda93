"""The status words of a solve, in one place.

Every backend adapter (:mod:`pruneopt.solvers.backends`) maps its own termination codes to
these words through a ``STATUS_MAP``, and :func:`~pruneopt.solvers.result.finalize` decides the
final word of a :class:`~pruneopt.solvers.result.SolveResult` among them:

* ``optimal``    — a proof: x is feasible and the bound meets the objective within 1e-9 relative;
* ``feasible``   — x is feasible, the gap is open (a heuristic, or a backend that stopped short);
* ``infeasible`` — the backend proved that no decision meets the constraints;
* ``time_limit`` — the time limit was hit; x (if any) is the best feasible one found;
* ``error``      — the backend failed, or returned an x that violates the constraints.

``Status`` is a :class:`~enum.StrEnum`: its members are the plain words (``Status.OPTIMAL ==
"optimal"``), so results, JSON and tables carry strings.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    OPTIMAL = "optimal"
    FEASIBLE = "feasible"
    INFEASIBLE = "infeasible"
    TIME_LIMIT = "time_limit"
    ERROR = "error"


STATUSES = tuple(s.value for s in Status)  # the documented set, in this order
