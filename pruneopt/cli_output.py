"""Printing shared by the subcommands: a record as one JSON object, or as lines for a person
(with the files written listed on stderr)."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable


def fmt(value, spec: str) -> str:
    """``format(value, spec)``, with a JSON null (a NaN in the record) shown as nan."""
    return format(math.nan if value is None else value, spec)


def print_record(record: dict, as_json: bool, describe: Callable[[dict], list[str]]) -> None:
    """With ``as_json`` the record is the only thing on stdout; otherwise ``describe(record)``'s
    lines go to stdout and ``record["files"]`` (if any) to stderr."""
    if as_json:
        print(json.dumps(record, allow_nan=False))
        return
    for line in describe(record):
        print(line)
    for key, path in record.get("files", {}).items():
        print(f"{key}: {path}", file=sys.stderr)
