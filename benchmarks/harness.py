"""What the benchmark scripts share (a helper module, not a benchmark): progress lines on stderr,
JSON-ready values, the machine and package versions a result records, the load average, medians
and relative differences, and the extra memory of one call under tracemalloc.

The scripts run as ``python benchmarks/NAME.py``, so this directory is on ``sys.path`` (and on
that of the worker processes they spawn) and they import it as ``harness``.
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from importlib import metadata

import numpy as np


def logger(tag: str | None = None) -> Callable[[str], None]:
    """A progress printer to stderr; with ``tag`` each line starts ``[tag HH:MM:SS]``."""
    def log(msg: str) -> None:
        line = msg if tag is None else f"[{tag} {time.strftime('%H:%M:%S')}] {msg}"
        print(line, file=sys.stderr, flush=True)

    return log


def jsonable(value):
    """Plain JSON values; NaN becomes null and ±inf the strings 'inf' / '-inf'."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


def emit(report: dict, out: str | None = None, *, indent: int | None = 2) -> str:
    """Print ``report`` as JSON (through :func:`jsonable`: NaN null, inf a string) and, with
    ``out``, write the same text to that file; returns the text."""
    text = json.dumps(jsonable(report), indent=indent, allow_nan=False)
    if out:
        with open(out, "w") as fh:
            fh.write(text + "\n")
    print(text)
    return text


def median(xs) -> float:
    """The median of ``xs`` as a float (NaN for none)."""
    return float(statistics.median(xs)) if xs else math.nan


def rel_diff(a: float, b: float) -> float:
    """|a − b| / max(|a|, |b|): 0 when both are 0, NaN when either is."""
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def loadavg(ndigits: int | None = None) -> list[float] | None:
    """The 1/5/15-minute load averages (rounded to ``ndigits``), or None where unknown."""
    try:
        values = os.getloadavg()
    except OSError:
        return None
    return [round(x, ndigits) for x in values] if ndigits is not None else list(values)


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (None elsewhere)."""
    try:
        with open("/proc/cpuinfo") as fh:
            return next((ln.split(":", 1)[1].strip() for ln in fh
                         if ln.startswith("model name")), None)
    except OSError:
        return None


def git_state() -> dict | None:
    """HEAD and the modified files of the checkout the benchmark imports pruneopt from."""
    import pruneopt

    root = os.path.dirname(os.path.dirname(os.path.abspath(pruneopt.__file__)))
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "-C", root, "status", "--porcelain"], capture_output=True,
                                text=True, timeout=10).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"root": root, "head": head or None, "modified": [ln.strip() for ln in status]}


def environment(dists, *, detailed: bool = False) -> dict:
    """Python, platform, CPUs, the versions of ``dists`` (from package metadata: no backend is
    imported) and the CPU model; ``detailed`` adds the machine, the RAM and the git state."""
    env = {"python": sys.version.split()[0], "platform": platform.platform()}
    if detailed:
        env["machine"] = platform.machine()
    env["cpu_count"] = os.cpu_count()
    if detailed:
        try:
            env["ram_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                   / 2**30, 1)
        except (ValueError, OSError, AttributeError):
            env["ram_gib"] = None
    for dist in dists:
        try:
            env[dist.lower()] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            env[dist.lower()] = None
    env["cpu_model"] = cpu_model()
    if detailed:
        env["git"] = git_state()
    return env


def traced_peak(fn: Callable[[], object]) -> tuple[object, int, int]:
    """``fn()`` under tracemalloc: its value, the peak bytes above what was live before it, and
    the bytes it left allocated."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        value = fn()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return value, peak - before, current - before


__all__ = ["cpu_model", "environment", "git_state", "jsonable", "loadavg", "logger", "median",
           "rel_diff", "traced_peak"]
