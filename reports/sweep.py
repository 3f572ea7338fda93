"""Run a list of :class:`~pruneopt.reports.study_config.SweepJob` on a local process pool or on
Dask, appending result rows to one CSV file as each job finishes, so that a killed sweep resumes
where it stopped (DESIGN §6).

**The rows file.** A fixed header (:data:`SWEEP_COLUMNS`, a superset of every job's fields;
a missing value is an empty cell) so that appends always line up. Only the driver process
writes: each job's rows go out in ONE ``write`` call, then ``flush`` and ``fsync``. Every row
carries ``job_id`` and ``job_rows`` (how many rows its job wrote), so a job counts as done only
when all its rows are in the file. Newlines inside values are replaced by spaces, so one row is
one line.

**Resume.** On start the file is read; a truncated last line (a crash mid-write), a row that does
not parse, and the rows of a job that has fewer rows than its ``job_rows`` are dropped and the
file is rewritten cleanly (to a temporary file, then renamed). Jobs whose ``job_id`` has all its
rows are skipped; the rest run. A file with a different header is refused (``ValueError``).

**Errors.** A job that raises (or whose worker process died) is recorded as ``error`` rows
(``job_status`` = error, the exception in ``message``), one per solver of an instance job. Error
rows count as done, so that a failing job does not rerun on every resume; ``retry_errors=True``
(``pruneopt sweep --retry-errors``) drops them on start and runs those jobs again.

**Executors.**

* ``local`` — a ``ProcessPoolExecutor`` of spawned processes (``workers``, default min(2, CPUs));
  ``workers=1`` runs the jobs in this process. If a worker process dies the pool is rebuilt and
  the unfinished jobs resubmitted (at most :data:`MAX_POOL_RESTARTS` times; after that they become
  error rows).
* ``dask`` — ``distributed.Client(scheduler)`` when a scheduler address is given (reached within
  :data:`CONNECT_TIMEOUT` seconds, else ``ValueError("scheduler: cannot reach ...")`` before any
  job starts), else a ``LocalCluster(n_workers=workers, threads_per_worker=1, processes=True)``
  started and closed here. Tasks are submitted with ``key=f"sweep-{job_id}"``, ``pure=False`` and
  consumed with ``distributed.as_completed``. A killed worker's tasks are rescheduled by Dask;
  the driver releases each future as soon as its rows are written (so a finished job is not
  recomputed when the worker holding its result dies) and ignores any second result for a
  ``job_id`` already written. Dask runs a task at least once: a job that finished on a worker
  killed before its result was fetched runs again, but its rows are written once.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import io
import math
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable, Sequence

import pandas as pd

from pruneopt.reports.study_config import SweepJob, error_rows, run_sweep_job

SWEEP_COLUMNS = [
    "job_id", "job_key", "job_kind", "job_status", "job_rows",
    # instance jobs
    "formulation", "size", "p", "budget", "keep_nnz", "seed", "sense", "nnz_budget",
    "flop_budget", "time_limit", "solver", "kind", "status", "proven_optimal", "objective",
    "bound", "gap", "gap_to_best_bound", "feasible", "verdict",
    # network jobs
    "model", "method", "flops", "tolerance", "nnz", "accuracy_before", "accuracy_after",
    "accuracy_finetuned", "macs_kept", "nnz_kept", "budgets_met", "data", "kept_fractions",
    "gaps",
    "seconds", "message",
]

CONNECT_TIMEOUT = 3.0  # seconds to reach a Dask scheduler
MAX_POOL_RESTARTS = 3


# ----------------------------------------------------------------------------- the rows file
def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        return _cell(value.item())
    text = str(value)
    return " ".join(text.split()) if ("\n" in text or "\r" in text) else text


def format_rows(rows: Sequence[dict]) -> str:
    """CSV text of ``rows`` in the :data:`SWEEP_COLUMNS` order (one line per row)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for row in rows:
        writer.writerow([_cell(row.get(col)) for col in SWEEP_COLUMNS])
    return buf.getvalue()


class RowsFile:
    """The append-only rows file of a sweep (one writer: the driver)."""

    def __init__(self, path: str | os.PathLike, *, retry_errors: bool = False) -> None:
        self.path = os.fspath(path)
        self.header = ",".join(SWEEP_COLUMNS) + "\n"
        self.done: set[str] = set()  # job ids with all their rows in the file
        self.dropped = 0  # lines dropped on load (truncated, unparsable, incomplete jobs)
        self._load(retry_errors)
        self._fh = open(self.path, "a", encoding="utf-8", newline="")

    def _load(self, retry_errors: bool) -> None:
        if not os.path.exists(self.path):
            self._rewrite([])
            return
        with open(self.path, encoding="utf-8", newline="", errors="replace") as fh:
            text = fh.read()
        if not text:
            self._rewrite([])
            return
        lines = text.split("\n")
        tail = lines.pop()  # "" when the file ends in a newline, else a partial line
        clean = tail == ""
        if not lines:  # only a header cut short (a crash while creating the file)
            if not self.header.startswith(tail):
                raise ValueError(f"out: {self.path} is not a sweep rows file (its header "
                                 "differs); give another --out")
            self._rewrite([])
            return
        if lines[0] + "\n" != self.header:
            raise ValueError(f"out: {self.path} is not a sweep rows file of this version "
                             "(its header differs); give another --out")
        # (job_id, solver) identifies a row: a repeated one (two writers) is kept once
        first: dict[tuple[str, str], tuple[int, str, str]] = {}
        for line in lines[1:]:
            try:
                fields = next(csv.reader([line]))
            except (csv.Error, StopIteration):
                fields = []
            if len(fields) != len(SWEEP_COLUMNS) or not fields[0]:
                clean = False
                continue
            rec = dict(zip(SWEEP_COLUMNS, fields))
            try:
                n = int(rec["job_rows"])
            except ValueError:
                clean = False
                continue
            first.setdefault((rec["job_id"], rec["solver"]), (n, rec["job_status"], line))
        count: dict[str, int] = {}
        expect: dict[str, int] = {}
        errored: set[str] = set()
        for (job_id, _), (n, status, _) in first.items():
            count[job_id] = count.get(job_id, 0) + 1
            expect[job_id] = n
            if status == "error":
                errored.add(job_id)
        keep_ids = {j for j, c in count.items() if c == expect[j]}
        if retry_errors:
            keep_ids -= errored
        kept = [line for (job_id, _), (_, _, line) in first.items() if job_id in keep_ids]
        self.dropped = (len(lines) - 1) - len(kept) + (0 if tail == "" else 1)
        self.done = keep_ids
        if not clean or len(kept) != len(lines) - 1:
            self._rewrite(kept)

    def _rewrite(self, lines: list[str]) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        tmp = os.path.join(directory, f".{os.path.basename(self.path)}.tmp")
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(self.header + "".join(line + "\n" for line in lines))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def append(self, job_id: str, rows: Sequence[dict]) -> bool:
        """Write a job's rows in one call (flushed and fsynced); False if it was already done."""
        if job_id in self.done:
            return False
        self._fh.write(format_rows(rows))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.done.add(job_id)
        return True

    def close(self) -> None:
        self._fh.close()


def read_rows(path: str | os.PathLike) -> pd.DataFrame:
    """The rows file as a DataFrame (columns :data:`SWEEP_COLUMNS`)."""
    return pd.read_csv(path, dtype={"job_id": str, "size": str}, keep_default_na=True)


# ----------------------------------------------------------------------------- executors
def _connect(scheduler: str):
    from distributed import Client

    try:
        return Client(scheduler, timeout=f"{CONNECT_TIMEOUT}s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ValueError(f"scheduler: cannot reach {scheduler}: "
                         f"{' '.join(str(exc).split()) or type(exc).__name__}") from None
    except ValueError as exc:
        raise ValueError(f"scheduler: bad address {scheduler!r}: {exc}") from None


def _run_local(todo, runner, workers, finish) -> None:
    if workers == 1:
        for job in todo:
            try:
                rows = runner(job)
            except Exception as exc:  # noqa: BLE001 — one bad job must not end the sweep
                rows = error_rows(job, f"job failed: {type(exc).__name__}: {exc}")
            finish(job, rows)
        return
    remaining = list(todo)
    restarts = 0
    while remaining:
        executor = cf.ProcessPoolExecutor(max_workers=workers,
                                          mp_context=mp.get_context("spawn"))
        broken = []
        try:
            futures = {executor.submit(runner, job): job for job in remaining}
            for fut in cf.as_completed(futures):
                job = futures.pop(fut)
                try:
                    rows = fut.result()
                except cf.process.BrokenProcessPool:
                    broken.append(job)
                    continue
                except Exception as exc:  # noqa: BLE001
                    rows = error_rows(job, f"job failed: {type(exc).__name__}: {exc}")
                finish(job, rows)
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
        remaining = broken
        if remaining:
            restarts += 1
            if restarts > MAX_POOL_RESTARTS:
                for job in remaining:
                    finish(job, error_rows(job, "a worker process died "
                                                f"({MAX_POOL_RESTARTS} pool restarts)"))
                return


def _run_dask(todo, runner, workers, retries, finish, client=None) -> None:
    from distributed import LocalCluster, as_completed

    cluster = None
    try:
        if client is None:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            from distributed import Client

            client = Client(cluster, set_as_default=False)
        futures = {}
        for job in todo:
            fut = client.submit(runner, job, key=f"sweep-{job.job_id}", pure=False,
                                retries=retries)
            futures[fut.key] = (fut, job)
        stream = as_completed([f for f, _ in futures.values()], loop=client.loop)
        for fut in stream:
            entry = futures.pop(fut.key, None)
            if entry is None:
                continue
            job = entry[1]
            try:
                rows = fut.result()
            except Exception as exc:  # noqa: BLE001 — incl. KilledWorker
                rows = error_rows(job, f"job failed: {type(exc).__name__}: {exc}")
            fut.release()
            del fut, entry
            finish(job, rows)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


# ----------------------------------------------------------------------------- the sweep
def run_sweep(jobs: Sequence[SweepJob], out_path: str | os.PathLike, *,
              executor: str = "local", scheduler: str | None = None,
              workers: int | None = None, progress: bool = True, retry_errors: bool = False,
              retries: int = 0, runner: Callable[[SweepJob], list[dict]] | None = None
              ) -> pd.DataFrame:
    """Run the jobs not yet in ``out_path`` and return the rows of all ``jobs`` (job order).

    ``executor`` "local" or "dask"; ``scheduler`` a Dask address (dask only); ``workers`` the
    local pool size or the LocalCluster's worker count (default min(2, CPUs)); ``retries``
    Dask's retries of a task that raised; ``runner`` the function run on each job (default
    :func:`~pruneopt.reports.study_config.run_sweep_job`; it must be importable by the workers).
    The returned DataFrame's ``attrs["summary"]`` holds jobs, skipped, run, errors, rows_file.
    """
    from tqdm.auto import tqdm

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

    client = _connect(scheduler) if scheduler is not None else None  # before any file or job
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
                _run_local(todo, runner, max(1, min(workers, len(todo))), finish)
            else:
                _run_dask(todo, runner, workers, retries, finish, client=client)
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


__all__ = ["SWEEP_COLUMNS", "RowsFile", "format_rows", "read_rows", "run_sweep",
           "run_sweep_job"]
