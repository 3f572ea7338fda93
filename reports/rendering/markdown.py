"""The Markdown report (``report.md``): :func:`render_markdown` of the report's sections, with
plots referenced by their PNG file names next to it."""

from __future__ import annotations

import os

import pandas as pd

from pruneopt.reports.rendering.formatting import numeric_columns
from pruneopt.reports.rendering.sections import TITLE, report_sections


def table(df: pd.DataFrame) -> str:
    """A DataFrame of display strings as a Markdown table (numbers right-aligned)."""

    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    numeric = numeric_columns(df)
    head = "| " + " | ".join(cell(c) for c in df.columns) + " |"
    sep = "|" + "|".join("---:" if c in numeric else "---" for c in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in rec) + " |" for rec in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def render_markdown(rows: pd.DataFrame, meta: dict | None = None,
                    plot_files: dict[str, str] | None = None, extra=None) -> str:
    """The Markdown report of a rows DataFrame (plots referenced by relative file name);
    ``extra``: more sections (the sweep part of the study)."""
    meta = meta or {}
    out = [f"# {TITLE}", ""]
    for sec in report_sections(rows, meta, extra):
        if sec.heading:
            out += [f"## {sec.heading}", ""]
        if sec.text:
            out += [sec.text, ""]
        for caption, df in sec.tables:
            if caption:
                out += [f"**{caption}**", ""]
            out += [table(df), ""]
        for key, caption in sec.images:
            if plot_files and key in plot_files:
                out += [f"![{caption}]({os.path.basename(plot_files[key])})", "", f"*{caption}*",
                        ""]
        if sec.after:
            out += [sec.after, ""]
    return "\n".join(out)


__all__ = ["render_markdown", "table"]
