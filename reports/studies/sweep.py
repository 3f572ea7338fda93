"""``run_sweep``: run a list of :class:`~pruneopt.reports.studies.jobs.SweepJob` on a local
process pool or on Dask (:mod:`~pruneopt.reports.studies.runner`), appending each job's rows to
one CSV file as it finishes (:mod:`~pruneopt.reports.studies.rows`), so that a killed sweep
resumes where it stopped (DESIGN §6).

**Resume.** Jobs whose rows are all in the file already are skipped; the rest run (a half-written
last line and the rows of unfinished jobs are dropped first). ``retry_errors=True`` (``pruneopt
sweep --retry-errors``) runs again the jobs recorded as errors.

**Errors.** A job that raises (or whose worker process died) is recorded as ``error`` rows
(``job_status`` = error, the exception in ``message``), one per solver of an instance job.

**Dask.** A killed worker's tasks are rescheduled by Dask; the driver releases each future as
soon as its rows are written (so a finished job is not recomputed when the worker holding its
result dies) and ignores any second result for a ``job_id`` already written. Dask runs a task at
least once: a job that finished on a worker killed before its result was fetched runs again, but
its rows are written once. An unreachable scheduler is a ``ValueError`` before any file is
touched or any job starts.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence

import pandas as pd
from tqdm.auto import tqdm

from pruneopt.reports.studies.jobs import SweepJob, error_rows
from pruneopt.reports.studies.rows import RowsFile, read_rows
from pruneopt.reports.studies.runner import connect, run_dask, run_local, run_sweep_job


def run_sweep(jobs: Sequence[SweepJob], out_path: str | os.PathLike, *,
              executor: str = "local", scheduler: str | None = None,
              workers: int | None = None, progress: bool = True, retry_errors: bool = False,
              retries: int = 0, runner: Callable[[SweepJob], list[dict]] | None = None
              ) -> pd.DataFrame:
    """Run the jobs not yet in ``out_path`` and return the rows of all ``jobs`` (job order).

    ``executor`` "local" or "dask"; ``scheduler`` a Dask address (dask only); ``workers`` the
    local pool size or the LocalCluster's worker count (default min(2, CPUs)); ``retries``
    Dask's retries of a task that raised; ``runner`` the function run on each job (default
    :func:`~pruneopt.reports.studies.runner.run_sweep_job`; it must be importable by the workers).
    The returned DataFrame's ``attrs["summary"]`` holds jobs, skipped, run, errors, rows_file.
    """
    if executor not in ("local", "dask"):
        raise ValueError(f"executor: must be local or dask, got {executor!r}")
    if scheduler is not None and executor != "dask":
        raise ValueError("scheduler: only with the dask executor")
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    if workers < 1:
        raise ValueError(f"workers: must be >= 1, got {workers}")
    runner = run_sweep_job if runner is None else runner
    out_path = os.fspath(out_path)
    directory = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(directory):
        raise ValueError(f"out: directory {directory} does not exist")
    unique: dict[str, SweepJob] = {}
    for job in jobs:
        unique.setdefault(job.job_id, job)

    client = connect(scheduler) if scheduler is not None else None  # before any file or job
    try:
        rows_file = RowsFile(out_path, retry_errors=retry_errors)
    except BaseException:
        if client is not None:
            client.close()
        raise
    todo = [job for job in unique.values() if job.job_id not in rows_file.done]
    stats = {"jobs": len(unique), "skipped": len(unique) - len(todo), "run": 0, "errors": 0,
             "duplicates_ignored": 0, "rows_file": out_path}
    bar = tqdm(total=len(unique), initial=stats["skipped"], desc="sweep", unit="job",
               file=sys.stderr, disable=not progress, dynamic_ncols=True)

    def finish(job: SweepJob, rows: list[dict]) -> None:
        if not rows_file.append(job.job_id, rows):
            stats["duplicates_ignored"] += 1
            return
        stats["run"] += 1
        if any(r.get("job_status") == "error" for r in rows):
            stats["errors"] += 1
        bar.set_postfix_str(job.label, refresh=False)
        bar.update(1)

    start = time.perf_counter()
    try:
        if todo:
            if executor == "local":
                run_local(todo, runner, max(1, min(workers, len(todo))), finish, error_rows)
            else:
                run_dask(todo, runner, workers, retries, finish, error_rows, client=client)
                client = None  # closed there
    finally:
        bar.close()
        rows_file.close()
        if client is not None:
            client.close()
    stats["seconds"] = time.perf_counter() - start
    df = read_rows(out_path)
    order = {job_id: i for i, job_id in enumerate(unique)}
    df = df[df["job_id"].isin(order)]
    df = df.iloc[df["job_id"].map(order).argsort(kind="stable")].reset_index(drop=True)
    df.attrs["summary"] = stats
    return df


__all__ = ["run_sweep"]
