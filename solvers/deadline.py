"""Time limits that hold: the clock of a solve, and a worker process ended at a deadline.

**The promise.** ``solve(problem, name, time_limit=T)`` returns within 1.1·T + 2 s, model
building and the final checks (finalize, polish, backsolve) included. The clock starts when
``solve`` is called (:func:`limit`, entered by :func:`~pruneopt.solvers.registry.solve`): it sets
the *deadline* of the solve, start + T, in a context variable, so that every piece of work below
it — a registration, a fast algorithm's loop, a nested ``solve`` (a projection, an incumbent) —
reads the same deadline through a :class:`Clock` and is handed only the time that is *left*. A
nested solve with its own limit gets the earlier of the two deadlines. Work that runs past the
deadline is bounded by the slack of the promise: 0.1·T + 2 s for the final checks and for
ending a worker.

**The worker.** HiGHS 1.13.1 did not return within 40 minutes on a 1.4M-binary joint instance
despite a 600 s time limit, SCIP ran 400 s under a 60 s limit on 3e4 items, and Pyomo builds
about 1e5 constraints per second (DESIGN §7): in-process, neither the backend nor the model
building can be stopped. :func:`call_guarded` then runs the function in a worker process that
gets the solve's deadline (as wall-clock time, shared between processes) and is ended at the
deadline plus :func:`grace`; its start-up (a fresh interpreter importing pruneopt and the
backend) is counted, since the deadline was set when ``solve`` was called. The worker is a fresh
interpreter (``python -m pruneopt.solvers.deadline``), not a fork (a process whose solver threads
may hold locks must not fork) and not multiprocessing's spawn (which re-imports the caller's
``__main__`` and breaks scripts without a main guard). The function (importable by module and
name), its keyword arguments and its result travel as pickle files in a private temporary
directory.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

# (deadline on time.perf_counter, the nominal time limit it came from) of the innermost solve
# with a time limit, or None
_ACTIVE: ContextVar[tuple[float, float] | None] = ContextVar("pruneopt_deadline", default=None)

# Backends get at least this long (HiGHS and SCIP treat a zero limit as "stop now", CP-SAT
# treats it as no limit at all).
MIN_BACKEND_SECONDS = 1e-3


class DeadlineExceeded(Exception):
    """The worker was still running at the deadline and has been ended."""


def grace(time_limit: float) -> float:
    """How long past the deadline a guarded worker may run before it is ended: 0.04·T + 0.6 s,
    which leaves 0.06·T + 1.4 s of the promise's slack (0.1·T + 2 s) for the fallback answer
    and the final checks."""
    return 0.04 * time_limit + 0.6


@contextlib.contextmanager
def limit(time_limit: float | None, start: float | None = None):
    """The deadline of one solve: ``start`` (a ``time.perf_counter`` reading; default now) +
    ``time_limit``, or the enclosing solve's deadline if that is earlier, for the duration of
    the ``with`` block; no limit leaves the enclosing one in force."""
    if time_limit is None:
        yield
        return
    start = time.perf_counter() if start is None else start
    outer = _ACTIVE.get()
    ours = (start + float(time_limit), float(time_limit))
    token = _ACTIVE.set(ours if outer is None or ours[0] < outer[0] else outer)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


class Clock:
    """The time left to the current solve.

    ``Clock(time_limit)`` ends at the earlier of the active deadline (set by ``solve``, see
    :func:`limit`) and now + ``time_limit``; without either it never ends. ``time_limit`` is
    the nominal limit the deadline came from (the grace of a guarded worker is a share of it).
    """

    __slots__ = ("deadline", "time_limit")

    def __init__(self, time_limit: float | None = None):
        now = time.perf_counter()
        active = _ACTIVE.get()
        self.deadline: float | None = None
        self.time_limit: float | None = None
        if time_limit is not None:
            self.deadline, self.time_limit = now + float(time_limit), float(time_limit)
        if active is not None and (self.deadline is None or active[0] < self.deadline):
            self.deadline, self.time_limit = active

    @property
    def limited(self) -> bool:
        return self.deadline is not None

    def left(self) -> float:
        """Seconds to the deadline (negative past it; +inf without one)."""
        return math.inf if self.deadline is None else self.deadline - time.perf_counter()

    def expired(self) -> bool:
        return self.deadline is not None and time.perf_counter() >= self.deadline

    def backend_limit(self, reserve: float = 0.0) -> float | None:
        """The time limit to hand a backend now: what is left less ``reserve`` (the work still
        to come after it), at least :data:`MIN_BACKEND_SECONDS`; None without a deadline."""
        if self.deadline is None:
            return None
        return max(self.left() - reserve, MIN_BACKEND_SECONDS)

    def share(self, fraction: float, floor: float = MIN_BACKEND_SECONDS) -> float | None:
        """``fraction`` of the time left (at least ``floor``, at most what is left), for a
        nested step; None without a deadline."""
        if self.deadline is None:
            return None
        left = max(self.left(), MIN_BACKEND_SECONDS)
        return min(max(fraction * left, floor), left)


def remaining(time_limit: float | None = None) -> float | None:
    """The time limit to hand a backend now (see :meth:`Clock.backend_limit`)."""
    return Clock(time_limit).backend_limit()


def call_guarded(fn: Callable[..., Any], kwargs: dict[str, Any], clock: Clock | float | None,
                 guard: bool, on_deadline: Callable[[DeadlineExceeded], Any]) -> Any:
    """``fn(**kwargs)``: in this process, or — when ``guard`` holds and the clock has a deadline
    — in a worker that runs under the same deadline and is ended at the deadline plus
    :func:`grace`, answering ``on_deadline(exc)`` then (at once, when no time is left to start
    one). ``clock`` may be a time limit in seconds (a :class:`Clock` is made of it)."""
    if not isinstance(clock, Clock):
        clock = Clock(clock)
    if not guard or not clock.limited:
        return fn(**kwargs)
    if clock.left() <= 0:
        return on_deadline(DeadlineExceeded("no time left to start a worker"))
    try:
        return call_with_deadline(fn, kwargs, clock.left() + grace(clock.time_limit),
                                  deadline=clock)
    except DeadlineExceeded as exc:
        return on_deadline(exc)


def call_with_deadline(fn: Callable[..., Any], kwargs: dict[str, Any], seconds: float, *,
                       deadline: Clock | None = None) -> Any:
    """``fn(**kwargs)`` in a worker process; raise :class:`DeadlineExceeded` after ``seconds``.

    With ``deadline`` (a :class:`Clock`), the worker runs under it: its :class:`Clock` objects
    end where the caller's does, start-up included."""
    wall = None
    if deadline is not None and deadline.limited:
        wall = (time.time() + deadline.left(), deadline.time_limit)
    with tempfile.TemporaryDirectory(prefix="pruneopt-worker-") as tmp:
        job, out = os.path.join(tmp, "job.pkl"), os.path.join(tmp, "result.pkl")
        with open(job, "wb") as fh:
            pickle.dump((fn.__module__, fn.__qualname__, kwargs, wall), fh,
                        protocol=pickle.HIGHEST_PROTOCOL)
        proc = subprocess.Popen([sys.executable, "-m", "pruneopt.solvers.deadline", job, out],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        try:
            _, err = proc.communicate(timeout=max(seconds, 0.0))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise DeadlineExceeded(f"worker still running after {seconds:.1f} s; ended") from None
        if proc.returncode != 0 or not os.path.exists(out):
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
            raise RuntimeError(f"worker failed (exit {proc.returncode}): {tail[0]}")
        with open(out, "rb") as fh:
            return pickle.load(fh)


def _main(job: str, out: str) -> None:
    import importlib

    with open(job, "rb") as fh:
        module, name, kwargs, wall = pickle.load(fh)
    if wall is not None:  # the caller's deadline, on this process's clock, set in the module
        # the solvers import (run as ``-m``, this file is ``__main__``, a second copy)
        from pruneopt.solvers import deadline

        deadline._ACTIVE.set((time.perf_counter() + (wall[0] - time.time()), wall[1]))
    fn = importlib.import_module(module)
    for part in name.split("."):
        fn = getattr(fn, part)
    result = fn(**kwargs)
    with open(out + ".tmp", "wb") as fh:
        pickle.dump(result, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(out + ".tmp", out)


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2])
