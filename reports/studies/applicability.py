"""Which solvers apply to an instance: a check made before a study runs a solver, so that a
solver that does not apply to an instance *by design* is recorded as **refused** rather than
run into an error that reads like a failure.

A refused run is a row with ``status`` ``error`` (the documented statuses stay
optimal | feasible | infeasible | time_limit | error), ``refused`` true, ``verdict``
``not-checked`` and the reason in ``message`` (``refused: ...``). The report counts refusals
apart from failures.

The checks (each the solver's own test, run without solving):

* channels ``dp`` — exact on chains only:
  :func:`~pruneopt.solvers.fast.channels.chain_dp.chain_order` finds no chain order of the
  coupling graph;
* allocation ``dp`` — its state space exceeds its limits (or a budget row has non-integer
  coefficients): :func:`~pruneopt.solvers.fast.allocation.dp.plan_dp` says ``refuse``;
* joint-qp ``enumerate`` — p above :data:`~pruneopt.solvers.joint_qp.enumerate.MAX_ITEMS`.

A run that raised one of the solvers' refusal errors anyway (:func:`is_refusal_message`: the
same tests, made by the solver) is counted as refused too.
"""

from __future__ import annotations

import math

from pruneopt.solvers.crosscheck import crosscheck

#: The verdict of a row without a result (an error or a refusal): nothing was cross-checked.
NOT_CHECKED = "not-checked"

#: Message beginnings of the solvers' own refusals (``"<ExceptionType>: <message>"`` as
#: :func:`~pruneopt.solvers.crosscheck.run_solvers` writes them).
REFUSAL_MARKERS = ("DpRefused: ", "is exact on chains only", "enumerate refuses p=")


def refusal(problem, solver: str) -> str | None:
    """Why ``solver`` does not apply to ``problem`` by design; ``None`` when it applies."""
    kind = getattr(problem, "kind", "")
    if kind == "channels" and solver == "dp":
        from pruneopt.solvers.fast.channels.chain_dp import chain_order

        order, why = chain_order(problem)
        if order is None:
            return (f"dp is exact on chains only, and this coupling graph is not one ({why}); "
                    "exact and pyomo-highs solve it")
    elif kind == "allocation" and solver == "dp":
        from pruneopt.solvers.fast.allocation.dp import plan_dp

        plan = plan_dp(problem)
        if plan.kind == "refuse":
            return f"dp's limits: {plan.reason}; exact and highs solve it"
    elif kind == "joint-qp" and solver == "enumerate":
        from pruneopt.solvers.joint_qp.enumerate import MAX_ITEMS

        if problem.num_items > MAX_ITEMS:
            return (f"enumerate scans 2^p supports and stops at p = {MAX_ITEMS}; this instance "
                    f"has p = {problem.num_items}")
    return None


def refusals(problem, solvers) -> dict[str, str]:
    """``{solver: reason}`` for the solvers of ``solvers`` that do not apply to ``problem``."""
    out = {}
    for name in solvers:
        why = refusal(problem, name)
        if why is not None:
            out[name] = why
    return out


def is_refusal_message(message) -> bool:
    """Whether an error row's message is a solver's own refusal (see :data:`REFUSAL_MARKERS`)."""
    return isinstance(message, str) and any(m in message for m in REFUSAL_MARKERS)


def refused_row(solver: str, reason: str) -> dict:
    """The crosscheck-shaped fields of a refused run (no result, nothing to cross-check)."""
    return {"solver": solver, "status": "error", "refused": True, "proven_optimal": False,
            "objective": math.nan, "bound": math.nan, "gap": math.nan,
            "gap_to_best_bound": math.nan, "seconds": math.nan, "feasible": False,
            "verdict": NOT_CHECKED, "message": f"refused: {reason}"}


def checked_runs(problem, solvers, *, time_limit=None, options=None
                 ) -> tuple[list[dict], list]:
    """Cross-check the solvers of ``solvers`` that apply to ``problem`` (one
    :func:`~pruneopt.solvers.crosscheck.crosscheck`) and record the others as refused.

    Returns one crosscheck row per solver, in the order of ``solvers``, each with ``refused``
    set, and the :class:`~pruneopt.solvers.result.SolveResult` of each row (``None`` for a
    refused one). A run without a result (status ``error``) reads ``verdict`` ``not-checked``:
    there was nothing to cross-check."""
    names = list(solvers)
    refused = refusals(problem, names)
    run = [n for n in names if n not in refused]
    got: dict[str, tuple[dict, object]] = {}
    if run:
        df = crosscheck(problem, run, time_limit=time_limit, options=options or None)
        for rec, res in zip(df.to_dict("records"), df.attrs["results"], strict=True):
            error = rec["status"] == "error"
            rec["refused"] = bool(error and is_refusal_message(rec.get("message")))
            if error and rec["verdict"] == "ok":
                rec["verdict"] = NOT_CHECKED
            got[rec["solver"]] = (rec, res)
    rows, results = [], []
    for name in names:
        rec, res = got.get(name) or (refused_row(name, refused[name]), None)
        rows.append(rec)
        results.append(res)
    return rows, results


__all__ = ["NOT_CHECKED", "REFUSAL_MARKERS", "checked_runs", "is_refusal_message", "refusal",
           "refusals", "refused_row"]
