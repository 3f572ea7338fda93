"""The sweep runner: rows appended once per job, resume after a crash, error rows, the local pool,
and a 200-job Dask sweep that survives a worker killed mid-sweep."""

from __future__ import annotations

import os
import signal
import threading
import time

import pandas as pd
import pytest
from sweep_helpers import RecordingRunner, side_counts, side_entries, tiny_jobs

from pruneopt.reports.studies.jobs import SweepJob
from pruneopt.reports.studies.networks import NETWORK_RUNNERS
from pruneopt.reports.studies.rows import SWEEP_COLUMNS, RowsFile, read_rows
from pruneopt.reports.studies.sweep import run_sweep


def _check_once(out, jobs) -> pd.DataFrame:
    """Every job's rows are in the file exactly once, and nothing else is."""
    df = read_rows(out)
    assert list(df.columns) == SWEEP_COLUMNS
    per_job = df.groupby("job_id").size()
    assert set(per_job.index) == {j.job_id for j in jobs}
    expected = {j.job_id: len(j.solvers) if j.kind == "instance" else 1 for j in jobs}
    assert all(per_job[j] == n for j, n in expected.items()), "a job's rows missing or repeated"
    assert not df.duplicated(["job_id", "solver"]).any()
    with open(out, encoding="utf-8") as fh:
        text = fh.read()
    assert text.endswith("\n") and text.count("\n") == len(df) + 1
    return df


def test_job_ids_are_stable_and_distinct():
    a, b = tiny_jobs(40), tiny_jobs(40)
    assert [j.job_id for j in a] == [j.job_id for j in b]
    assert len({j.job_id for j in a}) == 40
    assert {j.job_id for j in tiny_jobs(40, seed=1)}.isdisjoint({j.job_id for j in a})


def test_resume_after_truncated_last_line(tmp_path):
    jobs = tiny_jobs(40)
    out, side = tmp_path / "rows.csv", str(tmp_path / "side.txt")
    runner = RecordingRunner(side)
    first = run_sweep(jobs[:20], out, workers=1, progress=False, runner=runner)
    assert first.attrs["summary"]["run"] == 20 and len(first) == 40
    # a crash in the middle of writing the last row: its job (2 rows) is incomplete
    size = os.path.getsize(out)
    with open(out, "r+b") as fh:
        fh.truncate(size - 25)
    df = run_sweep(jobs, out, workers=1, progress=False, runner=runner)
    summary = df.attrs["summary"]
    assert summary["skipped"] == 19 and summary["run"] == 21 and summary["errors"] == 0
    _check_once(out, jobs)
    counts = side_counts(side)
    assert set(counts) == {j.job_id for j in jobs}
    assert counts[jobs[19].job_id] == 2  # the job whose row was cut ran again ...
    assert all(counts[j.job_id] == 1 for j in jobs if j is not jobs[19])  # ... and no other
    # a third run finds everything done and runs nothing
    again = run_sweep(jobs, out, workers=1, progress=False, runner=runner)
    assert again.attrs["summary"]["run"] == 0 and len(again) == 80
    assert side_counts(side) == counts


def test_rows_file_drops_garbage_and_refuses_foreign_files(tmp_path):
    jobs = tiny_jobs(3)
    out = tmp_path / "rows.csv"
    run_sweep(jobs, out, workers=1, progress=False)
    with open(out, "a") as fh:
        fh.write("not,a,row\n" + out.read_text().splitlines()[1] + "\n")  # junk + a duplicate
    rows = RowsFile(out)
    rows.close()
    assert rows.done == {j.job_id for j in jobs}
    _check_once(out, jobs)
    foreign = tmp_path / "other.csv"
    foreign.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="out: .*header differs"):
        run_sweep(jobs, foreign, workers=1, progress=False)
    assert foreign.read_text() == "a,b\n1,2\n"


def test_error_rows_count_as_done_unless_retried(tmp_path):
    jobs = tiny_jobs(4)
    out, side = tmp_path / "rows.csv", str(tmp_path / "side.txt")
    bad = jobs[1].job_id
    df = run_sweep(jobs, out, workers=1, progress=False,
                   runner=RecordingRunner(side, fail=frozenset({bad})))
    assert df.attrs["summary"]["errors"] == 1
    err = df[df["job_id"] == bad]
    assert len(err) == 2 and (err["status"] == "error").all()
    assert err["message"].str.contains("planned failure").all()
    df = run_sweep(jobs, out, workers=1, progress=False, runner=RecordingRunner(side))
    assert df.attrs["summary"]["run"] == 0
    df = run_sweep(jobs, out, workers=1, progress=False, runner=RecordingRunner(side),
                   retry_errors=True)
    assert df.attrs["summary"]["run"] == 1 and df.attrs["summary"]["errors"] == 0
    _check_once(out, jobs)
    assert side_counts(side) == {j.job_id: 1 for j in jobs}


def test_local_process_pool(tmp_path):
    jobs = tiny_jobs(6)
    out, side = tmp_path / "rows.csv", str(tmp_path / "side.txt")
    df = run_sweep(jobs, out, executor="local", workers=2, progress=False,
                   runner=RecordingRunner(side))
    assert df.attrs["summary"]["run"] == 6
    df = _check_once(out, jobs)
    assert (df["job_status"] == "ok").all() and (df["verdict"] == "ok").all()
    assert set(df["kind"]) == {"exact", "fast"}
    assert side_counts(side) == {j.job_id: 1 for j in jobs}


def test_local_pool_survives_a_dying_worker(tmp_path):
    jobs = tiny_jobs(6)
    out, side = tmp_path / "rows.csv", str(tmp_path / "side.txt")
    df = run_sweep(jobs, out, executor="local", workers=2, progress=False,
                   runner=RecordingRunner(side, crash_once=frozenset({jobs[2].job_id})))
    assert df.attrs["summary"]["run"] == 6 and df.attrs["summary"]["errors"] == 0
    _check_once(out, jobs)
    assert set(side_counts(side)) == {j.job_id for j in jobs}


def test_network_jobs_go_through_the_dispatch_point(tmp_path, monkeypatch):
    calls = []

    def fake(job):
        calls.append(job.method)
        return {"accuracy_before": 0.9, "accuracy_after": 0.8, "macs_kept": job.budget,
                "nnz_kept": 1.0}

    monkeypatch.setitem(NETWORK_RUNNERS, "magnitude", fake)
    job = SweepJob(kind="network", model="digits-mlp", method="magnitude", budget=0.5, seed=3,
                   params=(("calibration", 8), ("nnz", 1.0)))
    df = run_sweep([job], tmp_path / "rows.csv", workers=1, progress=False)
    assert calls == ["magnitude"]
    row = df.iloc[0]
    assert row["job_kind"] == "network" and row["accuracy_after"] == 0.8
    assert row["macs_kept"] == 0.5 and row["model"] == "digits-mlp"


def test_dask_local_cluster_small(tmp_path):
    pytest.importorskip("distributed")
    jobs = tiny_jobs(4)
    out = tmp_path / "rows.csv"
    df = run_sweep(jobs, out, executor="dask", workers=2, progress=False)
    assert df.attrs["summary"]["run"] == 4
    _check_once(out, jobs)


def test_dask_sweep_survives_a_killed_worker(tmp_path):
    """200 jobs on 2 Dask worker processes; one worker is SIGKILLed when about half the jobs'
    rows are in the file. Every job ends up in the file exactly once, and no job whose rows were
    written before the kill is computed again."""
    distributed = pytest.importorskip("distributed")
    jobs = tiny_jobs(200)
    out, side = tmp_path / "rows.csv", str(tmp_path / "side.txt")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    watcher_client = distributed.Client(cluster, set_as_default=False)
    state: dict = {}
    stop = threading.Event()

    def kill_at_half():
        pids = watcher_client.run(os.getpid)
        victim = sorted(pids.values())[0]
        while not stop.is_set():
            try:
                df = read_rows(out)
            except Exception:  # noqa: BLE001 — the file is being created
                time.sleep(0.05)
                continue
            done = set(df["job_id"])
            if len(done) >= 100:
                state["before_kill"] = done
                os.kill(victim, signal.SIGKILL)
                state["killed"] = victim
                time.sleep(0.2)  # the signal is delivered; the victim writes nothing more
                state["side_after_kill"] = side_entries(side)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=kill_at_half, daemon=True)
    start = time.perf_counter()
    try:
        thread.start()
        result = run_sweep(jobs, out, executor="dask", scheduler=cluster.scheduler_address,
                           progress=False, runner=RecordingRunner(side, sleep=0.03))
        state["seconds"] = time.perf_counter() - start
    finally:
        stop.set()
        thread.join(timeout=10)
        watcher_client.close()
        cluster.close()
    assert "killed" in state, "the sweep ended before half of it was in the file"
    assert len(state["before_kill"]) < 200, "the kill came after the sweep finished"
    summary = result.attrs["summary"]
    assert summary["run"] == 200 and summary["errors"] == 0
    df = _check_once(out, jobs)
    assert (df["job_status"] == "ok").all()
    counts = side_counts(side)
    assert set(counts) == {j.job_id for j in jobs}
    # jobs written before the kill were never computed again
    assert all(counts[j] == 1 for j in state["before_kill"])
    # Dask runs a task at least once: only a job that finished on the killed worker in the
    # moment before its result was fetched may have run twice (its rows are written once)
    assert sum(c - 1 for c in counts.values()) <= 2
    # the victim did work before the kill and none after it (the rest ran elsewhere)
    victim = state["killed"]
    by_victim = [e for e in side_entries(side) if e[1] == victim]
    assert by_victim and by_victim == [e for e in state["side_after_kill"] if e[1] == victim]
    print(f"200-job Dask sweep with a killed worker: {state['seconds']:.1f} s, "
          f"{len(state['before_kill'])} jobs in before the kill, "
          f"{sum(c - 1 for c in counts.values())} recomputed")
