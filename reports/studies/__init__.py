"""pruneopt.reports.studies — running studies: the schema of a study config, its jobs with their
stable ids, the executors (a local process pool or Dask), the resumable rows file, and the
joint-ILP study of ``pruneopt report``.

    jobs.py         SweepJob (stable job_id), instance seeds, solver size caps, a job's row fields
    config.py       the TOML schema: parse_config / load_config → StudyConfig; default_study_config
    instances.py    instance jobs: the generated problem of a job, cross-checked → rows
    networks.py     network jobs: NETWORK_RUNNERS (method → runner) over pruneopt.models.study_jobs
    runner.py       run_sweep_job (one job, any process); run_local / run_dask / run_guarded
    rows.py         the append-only rows file (SWEEP_COLUMNS, RowsFile: append + fsync, resume)
    sweep.py        run_sweep: jobs not yet in the rows file, on an executor, appended as they end
    joint_study.py  the joint-ILP study: build_study, run_study, add_best_bound_gaps

Imports run one way: jobs ← instances, networks ← config and runner; runner ← sweep (with rows)
and joint_study. Nothing here imports the rendering.
Torch is imported only by a network job's runner, when it runs (``pruneopt.models.study_jobs``).
"""
