"""Running jobs: what a worker runs for one sweep job, and the executors that run many — a local
process pool or Dask — handing each job's rows to a ``finish`` callback in the driver.

* :func:`run_sweep_job` — one :class:`~pruneopt.reports.studies.jobs.SweepJob` in any process (a
  local worker, a Dask worker): an instance job's cross-check or a network job's pruning run.
* :func:`run_local` — a ``ProcessPoolExecutor`` of spawned processes (``workers=1`` runs the jobs
  in this process). If a worker process dies the pool is rebuilt and the unfinished jobs
  resubmitted (at most :data:`MAX_POOL_RESTARTS` times; after that they become error rows).
* :func:`run_dask` — ``distributed.Client(scheduler)`` (:func:`connect`: reached within
  :data:`CONNECT_TIMEOUT` seconds, else ``ValueError("scheduler: cannot reach ...")``), or a
  ``LocalCluster(n_workers=workers, threads_per_worker=1, processes=True)`` started and closed
  here. Tasks are submitted with ``key=f"sweep-{job_id}"``, ``pure=False`` and consumed with
  ``distributed.as_completed``; each future is released as soon as its rows are handed over.
* :func:`run_guarded` — the joint-ILP study's pool (:mod:`pruneopt.reports.studies.joint_study`):
  largest jobs first, and if no job finishes for ``stall`` seconds the jobs still out become
  error rows and their workers are ended.

A job that raises becomes the rows of its ``error_rows(job, message)``. Where the rows go (the
sweep's rows file, a list in memory) is the ``finish`` callback's business.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
from collections.abc import Callable, Sequence

from pruneopt.reports.studies.instances import run_instance_job
from pruneopt.reports.studies.jobs import SweepJob
from pruneopt.reports.studies.networks import run_network_job

CONNECT_TIMEOUT = 3.0  # seconds to reach a Dask scheduler
MAX_POOL_RESTARTS = 3


def run_sweep_job(job: SweepJob) -> list[dict]:
    """Run one job (in any process) and return its rows; exceptions propagate to the caller."""
    if job.kind == "instance":
        return run_instance_job(job)
    if job.kind == "network":
        return run_network_job(job)
    raise ValueError(f"job: unknown kind {job.kind!r}")


def failure_message(exc: BaseException) -> str:
    """The message of the error rows of a job that raised ``exc``."""
    return f"job failed: {type(exc).__name__}: {exc}"


def run_or_error_rows(run: Callable, job, error_rows: Callable) -> list[dict]:
    """``run(job)``, or its error rows if it raises (one bad job must not end a study)."""
    try:
        return run(job)
    except Exception as exc:  # noqa: BLE001
        return error_rows(job, failure_message(exc))


def _spawn_pool(workers: int) -> cf.ProcessPoolExecutor:
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))


# ----------------------------------------------------------------------------- the sweep's
def run_local(todo: Sequence, runner: Callable, workers: int, finish: Callable,
              error_rows: Callable) -> None:
    """Run ``runner`` on each job of ``todo`` in a pool of ``workers`` spawned processes
    (``workers == 1``: here), calling ``finish(job, rows)`` as each one ends."""
    if workers == 1:
        for job in todo:
            finish(job, run_or_error_rows(runner, job, error_rows))
        return
    remaining = list(todo)
    restarts = 0
    while remaining:
        executor = _spawn_pool(workers)
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
                    rows = error_rows(job, failure_message(exc))
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


def connect(scheduler: str):
    """A Dask client of the scheduler at ``scheduler`` (``ValueError`` when it cannot be
    reached within :data:`CONNECT_TIMEOUT` seconds or the address is bad)."""
    from distributed import Client  # the [dask] extra: only for Dask sweeps

    try:
        return Client(scheduler, timeout=f"{CONNECT_TIMEOUT}s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ValueError(f"scheduler: cannot reach {scheduler}: "
                         f"{' '.join(str(exc).split()) or type(exc).__name__}") from None
    except ValueError as exc:
        raise ValueError(f"scheduler: bad address {scheduler!r}: {exc}") from None


def run_dask(todo: Sequence, runner: Callable, workers: int, retries: int, finish: Callable,
             error_rows: Callable, client=None) -> None:
    """Run the jobs on Dask (``client``, or a LocalCluster of ``workers`` processes started and
    closed here); the client is closed on return. ``finish(job, rows)`` as each one ends."""
    from distributed import Client, LocalCluster, as_completed  # the [dask] extra

    cluster = None
    try:
        if client is None:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
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
                rows = error_rows(job, failure_message(exc))
            fut.release()
            del fut, entry
            finish(job, rows)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


# ----------------------------------------------------------------------------- the joint study's
def _kill_pool(executor: cf.ProcessPoolExecutor) -> None:
    for proc in list((getattr(executor, "_processes", None) or {}).values()):
        try:
            proc.kill()
        except Exception:  # noqa: BLE001 — already gone
            pass
    executor.shutdown(wait=False, cancel_futures=True)


def run_guarded(jobs: Sequence, run: Callable, *, workers: int, finish: Callable,
                error_rows: Callable, stall: float, order: Sequence[int]) -> None:
    """Run ``run(jobs[i])`` for each i of ``order`` in a pool of ``workers`` spawned processes
    (``workers == 1``: here, in job order), calling ``finish(i, rows)`` as each one ends; if no
    job finishes for ``stall`` seconds, the jobs still out get
    ``error_rows(job, "not finished: ...")`` and the pool's workers are killed."""
    if workers == 1:
        for i, job in enumerate(jobs):
            finish(i, run_or_error_rows(run, job, error_rows))
        return
    executor = _spawn_pool(workers)
    futures = {executor.submit(run, jobs[i]): i for i in order}
    pending = set(futures)
    try:
        while pending:
            finished, pending = cf.wait(pending, timeout=stall, return_when=cf.FIRST_COMPLETED)
            if not finished:
                for fut in pending:
                    i = futures[fut]
                    finish(i, error_rows(jobs[i], f"not finished: no job returned for "
                                                  f"{stall:.0f} s; worker ended"))
                pending = set()
                _kill_pool(executor)
                break
            for fut in finished:
                i = futures[fut]
                try:
                    rows = fut.result()
                except Exception as exc:  # noqa: BLE001 — incl. a broken pool
                    rows = error_rows(jobs[i], failure_message(exc))
                finish(i, rows)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


__all__ = ["CONNECT_TIMEOUT", "MAX_POOL_RESTARTS", "connect", "failure_message", "run_dask",
           "run_guarded", "run_local", "run_or_error_rows", "run_sweep_job"]
