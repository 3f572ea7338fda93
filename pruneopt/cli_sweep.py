"""``pruneopt sweep``: run a study config's jobs, appending rows to a CSV file as they finish.

    pruneopt sweep CONFIG.toml [--executor local|dask] [--scheduler tcp://HOST:PORT]
                   [--workers N] [--out FILE.csv] [--retry-errors] [--no-progress] [--json]

The config (see :mod:`pruneopt.reports.studies.config`) is validated before any job runs; a bad
config, an unreachable scheduler or a rows file of another format is a one-line error (exit 2)
and nothing is written. Rerunning the same command resumes: jobs already in the rows file are
skipped (error rows too, unless ``--retry-errors``). ``--out`` defaults to ``<study name>.csv``;
``--scheduler`` alone implies ``--executor dask``.
Prints a summary (jobs, skipped as done, run, errors, rows file), or one JSON object with
``--json``. Exit code 0, or 1 when some job failed (its error rows are in the file).
"""

from __future__ import annotations

import json
import sys


def add_parser(sub) -> None:
    from pruneopt.cli_types import positive_int

    p = sub.add_parser("sweep", help="run a study config (local pool or Dask), resumable")
    p.add_argument("config", metavar="CONFIG", help="a TOML study config")
    p.add_argument("--executor", choices=["local", "dask"], default=None,
                   help="default: dask when --scheduler is given, else local")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="a running Dask scheduler (default: a local cluster)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="local processes or local Dask workers (default min(2, CPUs))")
    p.add_argument("--out", metavar="FILE.csv", help="rows file (default <study name>.csv)")
    p.add_argument("--retry-errors", action="store_true",
                   help="run again the jobs recorded as errors")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args) -> int:
    from pruneopt.formulations.files import check_output_file
    from pruneopt.reports.studies.config import load_config
    from pruneopt.reports.studies.sweep import run_sweep

    executor = args.executor or ("dask" if args.scheduler else "local")
    if args.scheduler and executor != "dask":
        raise ValueError("scheduler: only with --executor dask")
    if args.out:
        check_output_file(args.out, "out")  # before any job runs (and before the config)
    config = load_config(args.config)
    out = args.out or check_output_file(f"{config.name}.csv", "out")
    df = run_sweep(config.jobs, out, executor=executor, scheduler=args.scheduler,
                   workers=args.workers, progress=not args.no_progress,
                   retry_errors=args.retry_errors)
    summary = dict(df.attrs["summary"])
    summary["study"] = config.name
    summary["rows"] = int(len(df))
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"study {config.name}: {summary['jobs']} jobs, {summary['skipped']} skipped as "
              f"done, {summary['run']} run, {summary['errors']} errors "
              f"({summary['seconds']:.1f} s)")
        print(f"rows: {summary['rows_file']} ({summary['rows']} rows)")
    if summary["errors"]:
        print(f"pruneopt: {summary['errors']} job(s) failed; see the error rows in "
              f"{summary['rows_file']}", file=sys.stderr)
        return 1
    return 0
