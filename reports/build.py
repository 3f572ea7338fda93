"""``pruneopt report``: run the study and write the report files.

:func:`build_report` runs the joint-ILP study (:mod:`pruneopt.reports.studies.joint_study`) and
the sweep part (:func:`~pruneopt.reports.studies.sweep.run_sweep` of the default study or of a
``--config`` TOML), then renders them (:mod:`pruneopt.reports.rendering`) into ``rows.csv``,
``rows.parquet``, ``report.md``, a standalone ``index.html`` and the plots as PNG — each written
by :func:`~pruneopt.formulations.files.atomic_write` (a temporary file renamed into place), so a
crash leaves no half-written file — next to ``sweep-rows.csv``, the sweep's resumable rows file.
"""

from __future__ import annotations

import os
import platform
import time

import matplotlib
import numpy as np
import pandas as pd

import pruneopt
from pruneopt.formulations.files import atomic_write
from pruneopt.reports.rendering.html import render_html
from pruneopt.reports.rendering.markdown import render_markdown
from pruneopt.reports.rendering.plots import make_plots, study_plots
from pruneopt.reports.rendering.sections import study_sections
from pruneopt.reports.studies.config import default_study_config, load_config, parse_config
from pruneopt.reports.studies.joint_study import ROW_COLUMNS, as_sweep_rows, build_study, run_study
from pruneopt.reports.studies.sweep import run_sweep


def environment() -> dict[str, str]:
    """The versions the report records (``meta["versions"]``)."""
    return {"pruneopt": pruneopt.__version__, "python": platform.python_version(),
            "numpy": np.__version__, "pandas": pd.__version__,
            "matplotlib": matplotlib.__version__}


def build_report(out_dir, *, quick: bool = False, seed: int = 0, progress: bool = True,
                 workers: int | None = None, time_limit: float | None = None,
                 config: str | os.PathLike | None = None, resume: bool = False
                 ) -> dict[str, str]:
    """Run the study and write ``rows.csv`` (and ``rows.parquet``), ``report.md``,
    ``index.html`` and the PNG plots.

    Without ``config``: the joint-ILP study
    (:func:`~pruneopt.reports.studies.joint_study.build_study`) and the default study of every
    other formulation and every pruning method
    (:func:`~pruneopt.reports.studies.config.default_study_config`). With ``config`` (a TOML file
    in the ``pruneopt sweep`` schema, validated before anything runs): that study only. The sweep
    part's rows go to ``DIR/sweep-rows.csv`` as each job finishes; ``resume`` keeps the jobs
    already there (otherwise the file is started afresh). Returns the paths written, by key.
    """
    study = (parse_config(default_study_config(quick=quick, seed=seed)) if config is None
             else load_config(config))  # a bad config fails here, before any job
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    start = time.perf_counter()
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    if config is None:
        jobs = build_study(quick=quick, seed=seed, time_limit=time_limit)
        rows = run_study(jobs, progress=progress, workers=workers)
    else:
        jobs, rows = [], pd.DataFrame(columns=ROW_COLUMNS)
    sweep_path = os.path.join(out_dir, "sweep-rows.csv")
    if not resume and os.path.exists(sweep_path):
        os.remove(sweep_path)
    sweep_rows = run_sweep(study.jobs, sweep_path, executor="local", workers=workers,
                           progress=progress)
    meta = {
        "quick": quick, "seed": seed if config is None else study.seed,
        "study": study.name, "workers": max(1, min(workers, len(jobs) or 1)),
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "versions": environment(),
    }
    paths = {"html": os.path.join(out_dir, "index.html"),
             "markdown": os.path.join(out_dir, "report.md"),
             "rows": os.path.join(out_dir, "rows.csv"),
             "rows_parquet": os.path.join(out_dir, "rows.parquet"),
             "sweep_rows": sweep_path}
    all_rows = pd.concat([as_sweep_rows(rows), sweep_rows], ignore_index=True,
                         sort=False) if len(rows) else sweep_rows
    atomic_write(paths["rows"], all_rows.to_csv(index=False))
    table = all_rows.astype({c: "string" for c in all_rows.columns
                             if all_rows[c].dtype == object})
    atomic_write(paths["rows_parquet"], lambda fh: table.to_parquet(fh, index=False))
    plots = make_plots(rows) if len(rows) else {}
    plots.update(study_plots(sweep_rows))
    for key, png in plots.items():
        paths[f"plot_{key}"] = atomic_write(os.path.join(out_dir, f"{key}.png"), png)
    meta["wall_seconds"] = time.perf_counter() - start
    plot_files = {key: paths[f"plot_{key}"] for key in plots}
    extra = study_sections(sweep_rows, meta)
    atomic_write(paths["markdown"], render_markdown(rows, meta, plot_files, extra))
    atomic_write(paths["html"], render_html(rows, meta, plots, extra))
    return paths


__all__ = ["build_report", "environment"]
