"""Test helpers for the sweep tests, importable by spawned workers (tests/ is on sys.path, which
spawned processes and Dask worker processes inherit)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from pruneopt.reports.studies.config import parse_config
from pruneopt.reports.studies.runner import run_sweep_job


@dataclass(frozen=True)
class RecordingRunner:
    """Runs a sweep job, then appends "job_id pid" to ``side_file`` (one O_APPEND write per job,
    so concurrent workers never interleave); ``sleep`` seconds of padding make jobs last long
    enough to kill a worker mid-sweep; jobs in ``fail`` raise instead; jobs in ``crash_once``
    end their process abruptly on their first run."""

    side_file: str
    sleep: float = 0.0
    fail: frozenset = frozenset()
    crash_once: frozenset = frozenset()  # these jobs kill their process the first time

    def __call__(self, job):
        if job.job_id in self.fail:
            raise RuntimeError(f"planned failure of {job.job_id}")
        if job.job_id in self.crash_once:
            marker = f"{self.side_file}.crashed-{job.job_id}"
            if not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(13)
        rows = run_sweep_job(job)
        if self.sleep:
            time.sleep(self.sleep)
        fd = os.open(self.side_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{job.job_id} {os.getpid()}\n".encode())
        finally:
            os.close(fd)
        return rows


def tiny_jobs(n: int, *, seed: int = 0):
    """n tiny joint instances (p = 20, exact + falcon: a few ms each)."""
    budgets = [0.2, 0.3, 0.4, 0.5]
    count = -(-n // len(budgets))
    config = parse_config({
        "study": {"seed": seed, "time_limit": 5.0},
        "instances": [{"formulation": "joint", "sizes": [20], "budgets": budgets,
                       "count": count, "keep_nnz": 0.5, "solvers": ["exact", "falcon"]}],
    })
    return list(config.jobs[:n])


def side_entries(path) -> list[tuple[str, int]]:
    """(job_id, pid) of every completed run recorded by :class:`RecordingRunner`."""
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return [(job_id, int(pid)) for job_id, pid in (line.split() for line in fh if line.strip())]


def side_counts(path) -> dict[str, int]:
    """How many times each job ran to completion."""
    counts: dict[str, int] = {}
    for job_id, _ in side_entries(path):
        counts[job_id] = counts.get(job_id, 0) + 1
    return counts
