"""The one result type of every solve, and the checks that make its fields trustworthy.

Every backend hands its raw answer (a decision x, a dual bound, its status word — mapped from
its own termination code by its adapter's ``STATUS_MAP``) to :func:`finalize`, which recomputes
the objective and the constraint usage in numpy, checks feasibility, computes the gap, and
decides the status (the words of :class:`~pruneopt.solvers.constants.Status`):

* ``optimal``     — x is feasible and the bound meets the objective within 1e-9 relative
                    (``proven_optimal`` is then True; nothing else is called optimal);
* ``feasible``    — x is feasible, the gap is open (a heuristic, or a backend that stopped short);
* ``time_limit``  — the time limit was hit; x (if any) is the best feasible one found;
* ``infeasible``  — the backend proved that no decision meets the constraints;
* ``error``       — the backend failed, or returned an x that violates the constraints.

The gap is |bound − objective| / max(|bound|, |objective|, 1e-300) (0 when both are 0).

``summary()`` gives the result without x as plain Python values; its scalar fields (objective,
bound, gap, seconds, the ``*_used`` usage) stay floats even when they are not finite (a NaN bound
of a heuristic, an infinite one of an infeasible problem), since callers format and save them as
numbers. ``to_json()`` is strict JSON: there, as everywhere in JSON output, NaN and ±inf are
``null`` (:func:`pruneopt.formulations.files.to_jsonable`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pruneopt.formulations.files import to_jsonable
from pruneopt.solvers.constants import STATUSES, Status

PROOF_TOL = 1e-9  # relative: a bound within this of the objective proves optimality
FEAS_TOL = 1e-9  # relative slack allowed on a constraint when checking a returned x
_FLOAT_FIELDS = ("objective", "bound", "gap", "seconds")


@dataclass(frozen=True, eq=False)
class SolveResult:
    solver: str
    formulation: str
    status: str
    x: np.ndarray | None
    objective: float
    bound: float
    gap: float
    seconds: float
    proven_optimal: bool
    backend: str
    backend_version: str
    options: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    sense: str = "maximize"
    feasible: bool = False
    usage: dict[str, float] = field(default_factory=dict)
    limits: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The result without x, as plain Python values (the scalar floats kept as floats, NaN
        and ±inf included)."""
        d = asdict(self)
        d.pop("x")
        for key, val in self.usage.items():
            d[f"{key}_used"] = val
        plain = to_jsonable(d)
        for key in _FLOAT_FIELDS + tuple(f"{k}_used" for k in self.usage):
            value = d[key]
            if isinstance(value, float | np.floating) and not math.isfinite(value):
                plain[key] = float(value)  # to_jsonable made it None
        return plain

    def to_json(self) -> str:
        """The summary as strict JSON (NaN and ±inf become null)."""
        return json.dumps(to_jsonable(self.summary()), allow_nan=False)

    def replace(self, **changes) -> SolveResult:
        from dataclasses import replace

        return replace(self, **changes)


def relative_gap(bound: float, objective: float) -> float:
    if math.isnan(bound) or math.isnan(objective):
        return math.nan
    if math.isinf(bound):
        return math.inf
    scale = max(abs(bound), abs(objective))
    return 0.0 if scale == 0.0 else abs(bound - objective) / max(scale, 1e-300)


def finalize(
    problem,
    *,
    solver: str,
    x,
    bound: float,
    backend_status: str,
    backend: str,
    backend_version: str,
    options: dict[str, Any],
    message: str = "",
    info: dict[str, Any] | None = None,
    seconds: float = math.nan,
) -> SolveResult:
    """Check a backend's raw answer against the problem and build the :class:`SolveResult`.

    ``backend_status`` is a :class:`~pruneopt.solvers.constants.Status` word: ``optimal`` (the
    backend claims a proof), ``feasible``, ``time_limit``, ``infeasible`` or ``error``.
    """
    if backend_status not in STATUSES:
        raise ValueError(f"unknown backend status {backend_status!r}")
    maximize = problem.sense == "maximize"
    bound = float(bound) if bound is not None else math.nan
    notes = [message] if message else []
    usage: dict[str, float] = {}
    limits: dict[str, float] = {}
    objective = math.nan
    feasible = False
    xb = None
    if x is not None:
        ev = problem.evaluate(x)
        xb = problem.canonical(x)
        objective, usage, limits = ev.objective, dict(ev.usage), dict(ev.limits)
        violated = ev.violations(FEAS_TOL)
        feasible = not violated
        if violated:
            notes.append(
                "returned x violates "
                + ", ".join(f"{k} by {v:.6g}" for k, v in sorted(violated.items()))
            )
    gap = relative_gap(bound, objective)
    bound_ok = not math.isnan(bound) and (
        bound >= objective - PROOF_TOL * max(1.0, abs(objective))
        if maximize
        else bound <= objective + PROOF_TOL * max(1.0, abs(objective))
    )
    proven = bool(feasible and bound_ok and gap <= PROOF_TOL)

    if backend_status == Status.INFEASIBLE:
        status = Status.INFEASIBLE
    elif backend_status == Status.ERROR or (x is not None and not feasible):
        status = Status.ERROR
    elif proven:
        status = Status.OPTIMAL
    elif backend_status == Status.TIME_LIMIT:
        status = Status.TIME_LIMIT
    elif x is None:
        status = Status.ERROR
        notes.append("the backend returned no decision")
    else:
        status = Status.FEASIBLE
        if backend_status == Status.OPTIMAL:
            notes.append(
                f"the backend reported optimal but its bound {bound:.12g} does not meet the "
                f"recomputed objective {objective:.12g} (gap {gap:.3g}): not proven"
            )
    if x is not None and not bound_ok and not math.isnan(bound):
        notes.append("warning: the reported bound is worse than the returned objective")
    return SolveResult(
        solver=solver,
        formulation=problem.kind,
        status=str(status),  # the plain word
        x=xb,
        objective=objective,
        bound=bound,
        gap=gap,
        seconds=seconds,
        proven_optimal=proven,
        backend=backend,
        backend_version=backend_version,
        options=dict(options),
        message="; ".join(notes),
        sense=problem.sense,
        feasible=feasible,
        usage=usage,
        limits=limits,
        info=dict(info or {}),
    )

