"""Cell formatting and row selection shared by the tables, plots and pages of a report.

Rows come from a study's rows file (every value may be a string: ``"True"``, ``"1.0"``, an empty
cell), so numbers and booleans are read leniently (:func:`as_number`, :func:`as_bool`). Display
tables are DataFrames of strings; :func:`numeric_columns` says which of their columns are
right-aligned (in Markdown and in HTML alike).
"""

from __future__ import annotations

import json
import math
import re

import pandas as pd

from pruneopt.solvers.registry import solver_specs


def as_number(series) -> pd.Series:
    """The series as floats (NaN where a value is not a number)."""
    return pd.to_numeric(series, errors="coerce")


def as_bool(series) -> pd.Series:
    """The series as booleans (``True``/``1``/``1.0`` in any case are true)."""
    return series.astype(str).str.lower().isin(("true", "1", "1.0"))


def instance_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of instance jobs (``job_kind == "instance"``)."""
    if "job_kind" not in rows.columns:
        return rows.iloc[0:0]
    return rows[rows["job_kind"] == "instance"].copy()


def network_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of network jobs (``job_kind == "network"``)."""
    if "job_kind" not in rows.columns:
        return rows.iloc[0:0]
    return rows[rows["job_kind"] == "network"].copy()


def solver_order(rows: pd.DataFrame) -> list[str]:
    """The joint solvers present in ``rows``: registry order first, then any others."""
    known = [s.name for s in solver_specs("joint")]
    present = list(dict.fromkeys(rows["solver"].astype(str)))
    return [n for n in known if n in present] + [n for n in present if n not in known]


def fmt(v, spec: str = ".3g") -> str:
    """A number formatted with ``spec``; ``—`` for NaN or anything that is not a number."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "—"
    return "—" if math.isnan(v) else format(v, spec)


def fmt_gap(v) -> str:
    """A relative gap: ``0``, ``1.23e-04`` or ``—``."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return "0" if v == 0 else f"{v:.2e}"


def fmt_seconds(v) -> str:
    """Seconds: three significant digits below 10 s, one decimal above; ``—`` for none."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.3g}" if v < 10 else f"{v:.1f}"


def asked(rec: dict) -> str:
    """What a network run asked for: FAIR's tolerance ``α=…``, else the FLOP fraction kept."""
    return (f"α={fmt(rec.get('tolerance'), 'g')}" if rec.get("method") == "fair"
            else fmt(rec.get("flops"), "g"))


def json_cell(v):
    """A JSON cell of the rows file (a list or dict), or None where it is empty or not JSON."""
    if isinstance(v, list | dict):
        return v
    if not isinstance(v, str) or not v.strip():
        return None
    try:
        return json.loads(v)
    except ValueError:
        return None


_NUMBER = re.compile(r"[-+]?(\d[\d,]*\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _numeric_cell(text: str) -> bool:
    t = text.strip().strip("*").strip()
    if t in ("", "—", "nan", "not run", "no feasible x"):
        return True
    first = t.split(" (")[0]  # "median (max)" cells
    return bool(_NUMBER.fullmatch(first))


def numeric_columns(df: pd.DataFrame) -> set:
    """Columns whose display strings are all numbers (or placeholders): right-aligned."""
    return {c for c in df.columns
            if len(df) and all(_numeric_cell(str(v)) for v in df[c])
            and not all(str(v).strip() in ("", "—") for v in df[c])}


__all__ = ["as_bool", "as_number", "asked", "fmt", "fmt_gap", "fmt_seconds", "instance_rows",
           "json_cell", "network_rows", "numeric_columns", "solver_order"]
