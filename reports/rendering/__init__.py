"""pruneopt.reports.rendering — the report from rows: tables (pandas), plots (matplotlib),
Markdown and a standalone HTML page. Reads rows DataFrames (and a small ``meta`` dict) only:
never imports torch, ``pruneopt.models`` or the study runner.

    formatting.py   cell formats, lenient number/boolean reading, row selection, alignment
    tables.py       per-solver summaries, gap by size, instances, flags, versions; network runs
    plots.py        PNG plots: gap vs budget, time vs size, accuracy vs MACs, kept fractions
    sections.py     Section and the report's content (joint-ILP sections, then the sweep part)
    markdown.py     render_markdown → report.md
    html.py         render_html → index.html (inline CSS, PNGs embedded as data URIs)

Imports run one way: formatting ← tables, plots ← sections ← markdown, html.
"""
