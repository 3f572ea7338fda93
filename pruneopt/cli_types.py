"""argparse value types shared by the subcommands (errors become one-line CLI errors)."""

from __future__ import annotations

import argparse
import math

from pruneopt.formulations.checks import fraction


def _number(text: str, kind=float):
    try:
        return kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None


def positive_float(text: str) -> float:
    val = _number(text)
    if not (val > 0 and math.isfinite(val)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return val


def kept_fraction(text: str) -> float:
    return fraction(_number(text), None, what="a fraction kept", got=repr(text),
                    error=argparse.ArgumentTypeError)


def positive_int(text: str) -> int:
    val = _number(text, int)
    if val < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return val


def unit_interval(text: str) -> float:
    val = _number(text)
    if not (math.isfinite(val) and 0.0 <= val <= 1.0):
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return val
