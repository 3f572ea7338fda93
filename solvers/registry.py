"""One entry point for every solver: ``solve(problem, solver, *, time_limit=None, **options)``.

A solver is registered for one formulation kind under a name; ``available_solvers(problem)``
lists those whose backend can run here (an optional extra may be missing). The registered
function receives the problem, the time limit and the options, and returns a
:class:`~pruneopt.solvers.result.SolveResult` built by :func:`~pruneopt.solvers.result.finalize`;
``solve`` adds the wall-clock seconds.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pruneopt.solvers.result import SolveResult


@dataclass(frozen=True)
class SolverSpec:
    name: str
    formulation: str
    run: Callable[..., SolveResult]
    exact: bool  # proves optimality when it finishes
    description: str
    available: Callable[[], bool] = lambda: True
    options: tuple[str, ...] = ()  # accepted keyword options besides time_limit


_REGISTRY: dict[tuple[str, str], SolverSpec] = {}


def register(spec: SolverSpec) -> SolverSpec:
    _REGISTRY[(spec.formulation, spec.name)] = spec
    return spec


def register_table(formulation: str, rows) -> None:
    """Register a formulation's solvers from rows ``(name, run, exact, options, description)``,
    with an ``available`` check as a sixth item where an optional extra is needed; the order of
    the rows is the order of :func:`available_solvers`."""
    for name, run, exact, options, description, *available in rows:
        register(SolverSpec(name, formulation, run, exact=exact, description=description,
                            options=tuple(options), **dict(zip(("available",), available))))


# One module of registrations per formulation; importing it registers its solvers.
BACKEND_MODULES = (
    "pruneopt.solvers.joint.registrations",
    "pruneopt.solvers.joint_qp.registrations",
    "pruneopt.solvers.joint_qp.heuristics",
    "pruneopt.solvers.allocation.registrations",
    "pruneopt.solvers.channels.registrations",
)


def _ensure_loaded() -> None:
    # Done lazily so that importing pruneopt stays cheap.
    import importlib
    import importlib.util

    for module in BACKEND_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


def solver_specs(problem_or_kind) -> list[SolverSpec]:
    """Every registered solver for a formulation, available here or not."""
    _ensure_loaded()
    kind = problem_or_kind if isinstance(problem_or_kind, str) else problem_or_kind.kind
    return [spec for (f, _), spec in _REGISTRY.items() if f == kind]


def available_solvers(problem_or_kind) -> list[str]:
    """Names of the solvers that accept this problem (or formulation kind) and can run here."""
    return [spec.name for spec in solver_specs(problem_or_kind) if spec.available()]


def get_solver(problem_or_kind, name: str) -> SolverSpec:
    _ensure_loaded()
    kind = problem_or_kind if isinstance(problem_or_kind, str) else problem_or_kind.kind
    spec = _REGISTRY.get((kind, name))
    if spec is None:
        known = ", ".join(s.name for s in solver_specs(kind)) or "none"
        raise ValueError(f"solver: unknown solver '{name}' for the {kind} formulation "
                         f"(known: {known})")
    if not spec.available():
        raise ValueError(f"solver: '{name}' is not available here ({spec.description})")
    return spec


def solve(problem, solver: str, *, time_limit: float | None = None, **options) -> SolveResult:
    """Solve ``problem`` with the named solver and return its checked :class:`SolveResult`."""
    spec = get_solver(problem, solver)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        allowed = ", ".join(spec.options) or "none"
        raise ValueError(f"options: '{solver}' does not take {unknown} (it takes: {allowed})")
    if time_limit is not None:
        if (isinstance(time_limit, bool | np.bool_) or not isinstance(time_limit, numbers.Real)
                or not time_limit > 0 or not math.isfinite(time_limit)):
            raise ValueError(
                f"time_limit: must be a positive number of seconds, got {time_limit!r}")
        time_limit = float(time_limit)
    start = time.perf_counter()
    result = spec.run(problem, time_limit=time_limit, **options)
    return result.replace(seconds=time.perf_counter() - start)
