"""pruneopt.reports — optimality-gap studies and their reports: running studies (generated
instances cross-checked by every practical solver, pruning methods on networks) and rendering
their rows as tables, plots, Markdown and a standalone HTML page.

    studies/     running studies: the TOML schema (config), jobs with stable ids, the executors
                 (a local process pool or Dask), the resumable rows file, run_sweep, and the
                 joint-ILP study of ``pruneopt report``
    rendering/   the report from rows: tables, plots, sections, Markdown, HTML (no torch, no
                 models, no runner)
    build.py     ``pruneopt report``: build_report runs the studies and writes rows.csv,
                 rows.parquet, report.md, index.html and the plots

Imports run one way: studies ← build → rendering (studies and rendering never import each other).
Torch is imported only when a study runs a network job (``pruneopt.models.study_jobs``).
"""
