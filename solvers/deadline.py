"""Run a function in a worker process that is ended at a deadline.

HiGHS 1.13.1 did not return within 40 minutes on a 1.4M-binary joint instance despite a 600 s time
limit (DESIGN §7): a time limit that must hold needs a guard outside the solver. The worker is a
fresh interpreter (``python -m pruneopt.solvers.deadline``), not a fork (a process whose solver
threads may hold locks must not fork) and not multiprocessing's spawn (which re-imports the
caller's ``__main__`` and breaks scripts without a main guard). The function (importable by
module and name), its keyword arguments and its result travel as pickle files in a private
temporary directory.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any


class DeadlineExceeded(Exception):
    """The worker was still running at the deadline and has been ended."""


def grace(time_limit: float) -> float:
    """How long past its own time limit a guarded solver may run: max(5 s, 25 %)."""
    return max(5.0, 0.25 * time_limit)


def call_guarded(fn: Callable[..., Any], kwargs: dict[str, Any], time_limit: float | None,
                 guard: bool, on_deadline: Callable[[DeadlineExceeded], Any]) -> Any:
    """``fn(**kwargs)``: in this process, or — when ``guard`` holds and there is a time limit —
    in a worker ended at the limit plus :func:`grace`, answering ``on_deadline(exc)`` then."""
    if time_limit is None or not guard:
        return fn(**kwargs)
    try:
        return call_with_deadline(fn, kwargs, time_limit + grace(time_limit))
    except DeadlineExceeded as exc:
        return on_deadline(exc)


def call_with_deadline(fn: Callable[..., Any], kwargs: dict[str, Any], seconds: float) -> Any:
    """``fn(**kwargs)`` in a worker process; raise :class:`DeadlineExceeded` after ``seconds``."""
    with tempfile.TemporaryDirectory(prefix="pruneopt-worker-") as tmp:
        job, out = os.path.join(tmp, "job.pkl"), os.path.join(tmp, "result.pkl")
        with open(job, "wb") as fh:
            pickle.dump((fn.__module__, fn.__qualname__, kwargs), fh,
                        protocol=pickle.HIGHEST_PROTOCOL)
        proc = subprocess.Popen([sys.executable, "-m", "pruneopt.solvers.deadline", job, out],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        try:
            _, err = proc.communicate(timeout=seconds)
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
        module, name, kwargs = pickle.load(fh)
    fn = importlib.import_module(module)
    for part in name.split("."):
        fn = getattr(fn, part)
    result = fn(**kwargs)
    with open(out + ".tmp", "wb") as fh:
        pickle.dump(result, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(out + ".tmp", out)


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2])
