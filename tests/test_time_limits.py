"""Time limits hold: ``solve(problem, name, time_limit=T)`` returns within 1.1·T + 2 s, for every
registered solver of every formulation (exact, fast and baseline), model building and the final
checks included (issue 15; DESIGN §3).

The solvers come from the registry (``solver_specs(kind)``): a new solver is held to the promise
just by registering it. Each runs under a 1 s limit on an instance where that limit binds for
the exact solvers (``INSTANCES``: a ResNet-20-shaped joint ILP of 268,336 items, a random joint
MIQP with p = 500, an allocation over 900 layers × 30 options, a random channel DAG of 300
groups), and its answer must still be an answer: a status from the documented set
(``time_limit``, or a proven or feasible answer if it finished), a feasible x, and a bound on
the right side of its objective and of the reference fast solver's feasible objective.

Wall time is measured around ``pruneopt.solve`` (what a user sees), in this process. The 2 s of
slack of the promise absorb the noise of a loaded machine; an overrun of the old kind (a worker
ended 5 s after the limit, a search that did not look at the clock, a model built before the
time was counted) is seconds to minutes. Some overruns grow with the load of the machine (a
step that does not look at the clock is slow only when the machine is): the tests below the
battery make such a step slow on purpose (a projection, the LP dual before the backend, the
model building), so that they catch them on an idle machine too.
"""

from __future__ import annotations

import math
import time
from functools import cache

import pytest
from solver_test_helpers import KINDS, REFERENCE, better_or_equal, random_qp

import pruneopt
from pruneopt.formulations.allocation.generate import generate_allocation
from pruneopt.formulations.channels.generate import generate_channels
from pruneopt.formulations.joint.generate import generate_joint
from pruneopt.solvers.constants import Status
from pruneopt.solvers.registry import solver_specs

pytestmark = pytest.mark.wall_clock  # run alone by make test (see the Makefile)

LIMIT = 1.0
ALLOWED = 1.1 * LIMIT + 2.0  # the promise: 10 % + 2 s

# Exact solvers that may end short of a proof in another way than the time limit (every other
# check still applies): SCIP's MIQP stall guard ('feasible') or a SCIP LP failure ('error', the
# incumbent returned); see solvers/joint_qp/registrations.py.
MAY_STOP_SHORT = {("joint-qp", "pyomo-scip")}


INSTANCES = {
    "joint": lambda: generate_joint(shape="resnet20", keep_nnz=0.48, keep_flops=0.4, seed=0),
    "joint-qp": random_qp,
    # 900 layers × 30 options: the improving moves' exchange search (up to 3000² pairs a round)
    # ran 5 – 6 s at this size before it looked at the clock (measured, issue 15)
    "allocation": lambda: generate_allocation(900, 30, 1),
    "channels": lambda: generate_channels("random", seed=0, groups=300, channels=64,
                                          keep_flops=0.4),
}


@cache
def instance(kind: str):
    return INSTANCES[kind]()


@cache
def reference(kind: str):
    """The fast solver's answer (under the same limit: its bound is certified either way): a
    feasible objective every bound must cover, and a bound no objective may pass."""
    return pruneopt.solve(instance(kind), REFERENCE[kind], time_limit=LIMIT)


def _params():
    params = []
    for kind in KINDS:
        for spec in solver_specs(kind):
            marks = () if spec.available() else (pytest.mark.skip(
                reason=f"{kind} solver '{spec.name}' is not available here"),)
            params.append(pytest.param(kind, spec, id=f"{kind}/{spec.name}", marks=marks))
    return params


def test_every_formulation_has_an_instance():
    assert set(INSTANCES) == set(KINDS)


@pytest.mark.parametrize("kind, spec", _params())
def test_time_limit_holds(kind, spec):
    problem, ref = instance(kind), reference(kind)
    start = time.perf_counter()
    try:
        r = pruneopt.solve(problem, spec.name, time_limit=LIMIT)
    except ValueError as exc:  # outside the solver's scope (dp off a chain, a state space too
        wall = time.perf_counter() - start  # large): a refusal naming it, in time too
        assert spec.name in str(exc), exc
        assert wall <= ALLOWED, f"refused after {wall:.2f} s"
        return
    wall = time.perf_counter() - start
    assert wall <= ALLOWED, (f"{kind}/{spec.name}: {wall:.2f} s under a {LIMIT:g} s limit "
                             f"(allowed {ALLOWED:.2f} s): {r.status}, {r.message}")
    assert r.seconds <= wall
    assert r.options.get("time_limit") == LIMIT
    if spec.exact and (kind, spec.name) not in MAY_STOP_SHORT:
        assert r.status in (Status.TIME_LIMIT, Status.OPTIMAL), (r.status, r.message)
    else:
        assert r.status in (Status.TIME_LIMIT, Status.OPTIMAL, Status.FEASIBLE,
                            *((Status.ERROR,) if (kind, spec.name) in MAY_STOP_SHORT else ())), \
            (r.status, r.message)
    assert r.x is not None, r.message  # every formulation here has a cheap feasible answer
    assert r.feasible and problem.is_feasible(r.x), r.message
    tol = 1e-9 * max(1.0, abs(r.objective), abs(ref.objective))
    if not math.isnan(r.bound):
        # a valid bound: on the right side of this answer and of the reference's
        assert better_or_equal(problem, r.bound, r.objective, tol), (r.bound, r.objective)
        assert better_or_equal(problem, r.bound, ref.objective, tol), (r.bound, ref.objective)
    if not math.isnan(ref.bound):
        assert better_or_equal(problem, ref.bound, r.objective, tol), (ref.bound, r.objective)


# ------------------------------------------------------------------------------------ the clock
def test_the_clock_of_a_solve_is_inherited_and_only_shortened():
    from pruneopt.solvers.deadline import Clock, limit

    assert not Clock().limited and Clock().backend_limit() is None and Clock().left() == math.inf
    with limit(10.0):
        outer = Clock()
        assert outer.limited and outer.time_limit == 10.0 and 9.0 < outer.left() <= 10.0
        assert Clock(100.0).deadline == outer.deadline  # a longer limit cannot extend it
        assert Clock(1.0).left() <= 1.0  # a shorter one wins
        with limit(None):  # a nested solve without a limit keeps the enclosing one
            assert Clock().deadline == outer.deadline
        with limit(2.0):
            assert Clock().left() <= 2.0
        assert Clock().deadline == outer.deadline
        assert outer.share(0.3) <= 3.0 and outer.backend_limit(reserve=9.5) <= 0.5
    assert not Clock().limited
    with limit(1.0, start=time.perf_counter() - 5.0):  # started long ago: no time left
        assert Clock().expired() and Clock().backend_limit() == pytest.approx(1e-3)


def sleeper(seconds: float) -> float:
    """Used by a guarded worker below (this module is importable from the tests folder)."""
    time.sleep(seconds)
    return seconds


def worker_time_left() -> float:
    from pruneopt.solvers.deadline import Clock

    return Clock().left()


def test_a_guarded_worker_is_ended_at_the_deadline_start_up_counted(monkeypatch):
    from pathlib import Path

    from pruneopt.solvers.deadline import Clock, DeadlineExceeded, call_guarded, limit

    monkeypatch.chdir(Path(__file__).parent)  # the worker imports this module by name
    start = time.perf_counter()
    with limit(LIMIT):
        out = call_guarded(sleeper, {"seconds": 60.0}, Clock(), True,
                           lambda exc: ("ended", exc))
    wall = time.perf_counter() - start
    assert out[0] == "ended" and isinstance(out[1], DeadlineExceeded)
    assert wall <= ALLOWED, wall
    # the worker runs under the caller's deadline: less than the caller had when it started
    with limit(30.0):
        before = Clock().left()
        left = call_guarded(worker_time_left, {}, Clock(), True, lambda exc: None)
    assert left is not None and 0 < left < before
    # without a deadline (or without the guard) the call runs here, as is
    assert call_guarded(sleeper, {"seconds": 0.0}, Clock(), True, lambda exc: None) == 0.0


# ------------------------------------------------------------------------------------ crosscheck
def test_crosscheck_time_limit_is_per_solver():
    problem = canonical_joint()
    df = pruneopt.crosscheck(problem, ["falcon", "exact", "ratio"],
                             time_limit={"exact": 2.5, "falcon": 1.5})
    limits = {r.solver: r.options.get("time_limit") for r in df.attrs["results"]}
    assert limits == {"falcon": 1.5, "exact": 2.5, "ratio": None}
    df = pruneopt.crosscheck(problem, ["falcon", "exact"], time_limit=3.0)
    assert {r.options.get("time_limit") for r in df.attrs["results"]} == {3.0}
    with pytest.raises(ValueError, match="^time_limit: names solvers that are not run"):
        pruneopt.crosscheck(problem, ["falcon"], time_limit={"exact": 1.0})
    with pytest.raises(ValueError, match="^time_limit: must be a positive number"):
        pruneopt.crosscheck(problem, ["falcon"], time_limit={"falcon": -1.0})


def canonical_joint():
    from solver_test_helpers import canonical

    return canonical("joint")[0].problem


# ------------------------------------------------------------------------------------ report
def test_report_time_limit_reaches_every_study(monkeypatch, tmp_path):
    """``pruneopt report --time-limit S`` → build_report(time_limit=S) → the joint-ILP study
    and every instance job of the sweep run their solvers under S seconds each."""
    from pruneopt import cli
    from pruneopt.reports import build

    seen = {}
    monkeypatch.setattr(build, "build_report", lambda out, **kw: seen.update(kw) or {})
    assert cli.main(["report", "--out", str(tmp_path / "r"), "--quick", "--time-limit", "3.5",
                     "--no-progress"]) == 0
    assert seen["time_limit"] == 3.5
    monkeypatch.undo()

    class Stop(Exception):
        pass

    def fake_sweep(jobs, *args, **kwargs):
        seen["jobs"] = jobs
        raise Stop

    monkeypatch.setattr(build, "build_study",
                        lambda **kw: seen.update(study_limit=kw["time_limit"]) or [])
    monkeypatch.setattr(build, "run_study", lambda jobs, **kw: build.pd.DataFrame())
    monkeypatch.setattr(build, "run_sweep", fake_sweep)
    with pytest.raises(Stop):
        build.build_report(tmp_path / "r2", quick=True, time_limit=3.5, progress=False)
    instance_jobs = [j for j in seen["jobs"] if j.kind == "instance"]
    assert seen["study_limit"] == 3.5 and instance_jobs
    assert {j.time_limit for j in instance_jobs} == {3.5}


# ------------------------------------------------------------------------------------ slow steps
def _timed(problem, name: str, limit: float):
    start = time.perf_counter()
    r = pruneopt.solve(problem, name, time_limit=limit)
    wall = time.perf_counter() - start
    assert wall <= 1.1 * limit + 2.0, (f"{name}: {wall:.2f} s under a {limit:g} s limit "
                                       f"(allowed {1.1 * limit + 2.0:.2f} s): {r.message}")
    assert r.feasible, r.message
    return r


@pytest.mark.parametrize("name", ["falcon", "chita"])
def test_first_order_methods_check_the_clock_between_projections(monkeypatch, name):
    """FALCON and CHITA iterate projection → backsolve with a line search of several
    projections per step: the clock is read before each one (the old code read it once per
    step (falcon), or never (chita))."""
    from pruneopt.solvers.fast.joint_qp import falcon as falcon_module

    problem = instance("joint-qp")
    pruneopt.solve(problem, name, time_limit=0.2)  # imports and caches out of the way
    real = falcon_module.projection_problem

    def slow_projection(*args):
        time.sleep(0.35)
        return real(*args)

    monkeypatch.setattr(falcon_module, "projection_problem", slow_projection)
    r = _timed(problem, name, LIMIT)
    assert r.status == Status.TIME_LIMIT, r.message


def test_a_backend_gets_only_the_time_left(monkeypatch):
    """``highs`` on the joint ILP: what comes before HiGHS (the LP dual, here made 2 s slow)
    counts — HiGHS gets only the time left — and HiGHS, which spent 6.5 s in its root cut
    separation under a 2 s limit on this instance's core, runs in a worker ended at the
    deadline."""
    from pruneopt.solvers.joint import highs_arrays

    real = highs_arrays.solve_dual

    def slow_dual(*args, **kwargs):
        time.sleep(2.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(highs_arrays, "solve_dual", slow_dual)
    r = _timed(instance("joint"), "highs", 3.0)
    assert r.status in (Status.TIME_LIMIT, Status.OPTIMAL), r.message


def test_model_building_counts(monkeypatch):
    """``pyomo-highs`` on the allocation: building the Pyomo model (here made 2 s slow in this
    process) is part of the time limit; a large model is built in the guarded worker, and the
    fast solver's choice is returned when it has no answer at the deadline."""
    from pruneopt.formulations.allocation.problem import AllocationProblem

    real = AllocationProblem.to_pyomo

    def slow_build(self, *args, **kwargs):
        time.sleep(2.0)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(AllocationProblem, "to_pyomo", slow_build)
    r = _timed(instance("allocation"), "pyomo-highs", LIMIT)
    assert r.status == Status.TIME_LIMIT, r.message


def test_the_allocation_dp_reads_the_clock_within_a_layer(monkeypatch):
    """``dp`` on the allocation: a layer is one pass over the states per option, seconds each
    over 1e8 states; the clock is read between slabs of every pass (the old code read it once
    a layer and ran 14.7 s under a 10 s limit in benchmarks/reliability.py). Here each pass's
    ``np.copyto`` is made slow on purpose, over a small table (48 options, 4e6 states)."""
    import numpy as np
    from solver_test_helpers import A

    from pruneopt.solvers.fast.allocation import dp as dp_module

    class SlowCopy:
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def copyto(*args, **kwargs):
            time.sleep(0.05)
            return np.copyto(*args, **kwargs)

    m = 48
    flops = (np.arange(m) * 83_333 + 1).astype(float)  # gcd 1: a state per MAC
    problem = A([1.0 / (1.0 + np.arange(m)), [0.0, 1.0]], [np.ones(m, int), [1, 0]],
                [flops, [1.0, 0.0]], F=0.9 * float(flops[-1]))
    assert dp_module.plan_dp(problem).kind == "1d"
    monkeypatch.setattr(dp_module, "np", SlowCopy())
    r = _timed(problem, "dp", LIMIT)
    assert r.status == Status.TIME_LIMIT, r.message
