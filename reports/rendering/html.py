"""The standalone HTML page (``index.html``): :func:`render_html` of the report's sections, with
inline CSS, tables and base64 PNG plots.

Nothing on the page is fetched from anywhere: no scripts, fonts, style sheets or image links.
Plots are embedded as ``<img src="data:image/png;base64,...">``. The text of a section is the
small Markdown subset that :mod:`pruneopt.reports.rendering.sections` writes (``**bold**``,
```code```, paragraphs, ``- `` bullet lists, ``> `` call-outs); it is escaped first, then
converted.
"""

from __future__ import annotations

import base64
import html
import re

import pandas as pd

from pruneopt.reports.rendering.formatting import numeric_columns
from pruneopt.reports.rendering.sections import TITLE, Section, report_sections

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.7em; border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { font-size: 1.3em; margin-top: 1.8em; border-bottom: 1px solid #eee; }
code { background: #f3f3f3; padding: 0 .25em; border-radius: 3px; font-size: .92em; }
table { border-collapse: collapse; margin: .8em 0 1.2em; font-size: .88em; }
th, td { border: 1px solid #d0d0d0; padding: .25em .6em; text-align: left; white-space: nowrap; }
th { background: #f0f2f5; }
.num { text-align: right; }
tr:nth-child(even) td { background: #fafafa; }
.alert { border: 2px solid #c62828; background: #ffebee; color: #8e0000; padding: .6em 1em;
         border-radius: 4px; font-weight: 600; }
.okay { border: 1px solid #2e7d32; background: #e8f5e9; color: #1b5e20; padding: .6em 1em;
        border-radius: 4px; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .9em; color: #555; }
.tablewrap { overflow-x: auto; }
"""

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")


def inline(text: str) -> str:
    """Escape ``text`` and turn ``**bold**`` and ```code``` into HTML."""
    out = html.escape(text, quote=False)
    out = _CODE.sub(r"<code>\1</code>", out)
    return _BOLD.sub(r"<strong>\1</strong>", out)


def markdown_block(text: str) -> str:
    """Paragraphs, ``- `` lists and ``> `` call-outs (``> **...`` reads as an alert)."""
    parts = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.splitlines()
        if all(line.startswith("- ") for line in lines):
            items = "".join(f"<li>{inline(line[2:])}</li>" for line in lines)
            parts.append(f"<ul>{items}</ul>")
        elif all(line.startswith(">") for line in lines):
            body = " ".join(line.lstrip(">").strip() for line in lines)
            css = "alert" if body.startswith("**") else "okay"
            parts.append(f'<div class="{css}">{inline(body)}</div>')
        else:
            parts.append(f"<p>{inline(' '.join(lines))}</p>")
    return "\n".join(parts)


def table(df: pd.DataFrame) -> str:
    """A DataFrame of display strings as an escaped HTML table (numbers right-aligned)."""
    numeric = numeric_columns(df)
    head = "".join(f'<th{" class=num" if c in numeric else ""}>{html.escape(str(c))}</th>'
                   for c in df.columns)
    rows = []
    for rec in df.itertuples(index=False):
        cells = "".join(f'<td{" class=num" if c in numeric else ""}>{inline(str(v))}</td>'
                        for c, v in zip(df.columns, rec, strict=True))
        rows.append(f"<tr>{cells}</tr>")
    return (f'<div class="tablewrap"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def png_img(png: bytes, alt: str) -> str:
    """An ``<img>`` with the PNG embedded as a data URI."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def page(title: str, sections: list[Section], images: dict[str, bytes]) -> str:
    """The whole page of ``sections`` (their plots from ``images``: PNG bytes by key)."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    for sec in sections:
        if sec.heading:
            body.append(f"<h2>{html.escape(sec.heading)}</h2>")
        if sec.text:
            body.append(markdown_block(sec.text))
        for caption, df in sec.tables:
            if caption:
                body.append(f"<p><strong>{inline(caption)}</strong></p>")
            body.append(table(df))
        for key, caption in sec.images:
            if key in images:
                body.append(f"<figure>{png_img(images[key], caption)}"
                            f"<figcaption>{inline(caption)}</figcaption></figure>")
        if sec.after:
            body.append(markdown_block(sec.after))
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def render_html(rows: pd.DataFrame, meta: dict | None = None,
                plots: dict[str, bytes] | None = None, extra=None) -> str:
    """The standalone HTML page of a rows DataFrame (plots as PNG bytes, embedded); ``extra``:
    more sections (the sweep part of the study)."""
    return page(TITLE, report_sections(rows, meta or {}, extra), plots or {})


__all__ = ["markdown_block", "page", "render_html", "table"]
