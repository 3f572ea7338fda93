"""The rows file of a sweep: one CSV file that the driver appends each finished job's rows to,
so that a killed sweep resumes where it stopped (DESIGN §6).

A fixed header (:data:`SWEEP_COLUMNS`, a superset of every job's fields; a missing value is an
empty cell) so that appends always line up. Only the driver process writes: each job's rows go
out in ONE ``write`` call, then ``flush`` and ``fsync``. Every row carries ``job_id`` and
``job_rows`` (how many rows its job wrote), so a job counts as done only when all its rows are
in the file. Newlines inside values are replaced by spaces, so one row is one line.

**Resume.** On start the file is read; a truncated last line (a crash mid-write), a row that does
not parse, and the rows of a job that has fewer rows than its ``job_rows`` are dropped and the
file is rewritten cleanly (:func:`~pruneopt.formulations.files.atomic_write`: a temporary file,
then a rename). Jobs whose ``job_id`` has all its rows are skipped; the rest run. Error rows count
as done, unless ``retry_errors`` drops them. A file with a different header is refused
(``ValueError``).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence

import pandas as pd

from pruneopt.formulations.files import atomic_write

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
        atomic_write(self.path, self.header + "".join(line + "\n" for line in lines))

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


__all__ = ["SWEEP_COLUMNS", "RowsFile", "format_rows", "read_rows"]
