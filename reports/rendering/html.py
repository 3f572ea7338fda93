"""The standalone HTML page (``index.html``): :func:`render_html` of the report's sections, with
inline CSS, tables and base64 PNG plots.

Nothing on the page is fetched from anywhere: no scripts, fonts, style sheets or image links.
Plots are embedded as ``<img src="data:image/png;base64,...">``. The text of a section is the
small Markdown subset that :mod:`pruneopt.reports.rendering.sections` writes (``**bold**``,
```code```, paragraphs, ``- `` bullet lists, ``> `` call-outs); it is escaped first, then
converted. Wide tables fit the page: long text columns wrap (``td.txt``), headers wrap, and the
page is checked in a real browser at 1400 px (``tests/test_report_browser.py``).
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
       max-width: 1320px; margin: 2em auto; padding: 0 1.5em; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.7em; border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { font-size: 1.3em; margin-top: 1.8em; border-bottom: 1px solid #eee; }
code { background: #f3f3f3; padding: 0 .25em; border-radius: 3px; font-size: .92em;
       overflow-wrap: anywhere; }
table { border-collapse: collapse; margin: .8em 0 1.2em; font-size: .85em; max-width: 100%; }
th, td { border: 1px solid #d0d0d0; padding: .25em .5em; text-align: left; vertical-align: top; }
td { white-space: nowrap; }
th { background: #f0f2f5; white-space: normal; min-width: 3em; }
td.txt { white-space: normal; overflow-wrap: anywhere; min-width: 14em; }
td.mid { white-space: normal; min-width: 7em; }
.num { text-align: right; }
tr:nth-child(even) td { background: #fafafa; }
.alert { border: 2px solid #c62828; background: #ffebee; color: #8e0000; padding: .6em 1em;
         border-radius: 4px; font-weight: 600; margin: .6em 0; }
.note { border: 1px solid #b08900; background: #fff8e1; color: #5d4200; padding: .6em 1em;
        border-radius: 4px; margin: .6em 0; }
.okay { border: 1px solid #2e7d32; background: #e8f5e9; color: #1b5e20; padding: .6em 1em;
        border-radius: 4px; margin: .6em 0; }
section { overflow-wrap: break-word; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .9em; color: #555; }
.tablewrap { max-width: 100%; overflow-x: auto; }
"""

#: A text column (not numeric) whose longest cell has more characters than this wraps
#: (``td.txt``); one longer than :data:`MID_TEXT` may wrap at spaces (``td.mid``).
LONG_TEXT = 48
MID_TEXT = 32

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")


def inline(text: str) -> str:
    """Escape ``text`` and turn ``**bold**`` and ```code``` into HTML."""
    out = html.escape(text, quote=False)
    out = _CODE.sub(r"<code>\1</code>", out)
    return _BOLD.sub(r"<strong>\1</strong>", out)


def markdown_block(text: str) -> str:
    """Paragraphs, ``- `` lists and ``> `` call-outs (``> **...`` reads as an alert,
    ``> Note: ...`` as a note, any other as an all-clear)."""
    parts = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.splitlines()
        if all(line.startswith("- ") for line in lines):
            items = "".join(f"<li>{inline(line[2:])}</li>" for line in lines)
            parts.append(f"<ul>{items}</ul>")
        elif all(line.startswith(">") for line in lines):
            body = " ".join(line.lstrip(">").strip() for line in lines)
            css = ("alert" if body.startswith("**") else
                   "note" if body.startswith("Note:") else "okay")
            parts.append(f'<div class="{css}">{inline(body)}</div>')
        else:
            parts.append(f"<p>{inline(' '.join(lines))}</p>")
    return "\n".join(parts)


def _column_class(df: pd.DataFrame, column, numeric: set) -> str:
    """``num`` (right-aligned), ``txt`` (long text: wraps anywhere), ``mid`` (wraps at spaces)
    or ``""`` for a column of the display table."""
    if column in numeric:
        return "num"
    longest = max((len(str(v)) for v in df[column]), default=0)
    return "txt" if longest > LONG_TEXT else ("mid" if longest > MID_TEXT else "")


def table(df: pd.DataFrame) -> str:
    """A DataFrame of display strings as an escaped HTML table (numbers right-aligned, long
    text wrapped so that the table fits the page)."""
    numeric = numeric_columns(df)
    css = {c: _column_class(df, c, numeric) for c in df.columns}
    head = "".join(f'<th{" class=num" if css[c] == "num" else ""}>{html.escape(str(c))}</th>'
                   for c in df.columns)
    rows = []
    for rec in df.itertuples(index=False):
        cells = "".join(f'<td{f" class={css[c]}" if css[c] else ""}>{inline(str(v))}</td>'
                        for c, v in zip(df.columns, rec, strict=True))
        rows.append(f"<tr>{cells}</tr>")
    return (f'<div class="tablewrap"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def png_img(png: bytes, alt: str) -> str:
    """An ``<img>`` with the PNG embedded as a data URI."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _anchor(heading: str, i: int) -> str:
    """A section's id: its heading in lower case, words joined by ``-`` (``s<i>`` without one)."""
    slug = re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")
    return slug or f"s{i}"


def page(title: str, sections: list[Section], images: dict[str, bytes]) -> str:
    """The whole page of ``sections`` (their plots from ``images``: PNG bytes by key)."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    for i, sec in enumerate(sections):
        part = []
        if sec.heading:
            part.append(f"<h2>{html.escape(sec.heading)}</h2>")
        if sec.text:
            part.append(markdown_block(sec.text))
        for caption, df in sec.tables:
            if not len(df):
                continue
            if caption:
                part.append(f"<p><strong>{inline(caption)}</strong></p>")
            part.append(table(df))
        for key, caption in sec.images:
            if key in images:
                part.append(f"<figure>{png_img(images[key], caption)}"
                            f"<figcaption>{inline(caption)}</figcaption></figure>")
        if sec.after:
            part.append(markdown_block(sec.after))
        body.append(f'<section id="{_anchor(sec.heading, i)}">' + "\n".join(part)
                    + "</section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def render_html(rows: pd.DataFrame, meta: dict | None = None,
                plots: dict[str, bytes] | None = None, extra=None, every=None) -> str:
    """The standalone HTML page of a rows DataFrame (plots as PNG bytes, embedded); ``extra``:
    more sections (the sweep part of the study); ``every``: all rows of the report, for the
    headline's count of runs that did not solve (default ``rows``)."""
    return page(TITLE, report_sections(rows, meta or {}, extra, every), plots or {})


__all__ = ["markdown_block", "page", "render_html", "table"]
