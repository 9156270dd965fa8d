"""argparse value types shared by the ``nstcourse`` commands: each raises
``argparse.ArgumentTypeError`` with a message naming the bad text."""

from __future__ import annotations

import argparse
import math


def items(text: str) -> list[str]:
    """'a,b,c' → ['a', 'b', 'c']; an empty item is an error."""
    parts = [part.strip() for part in text.split(",")]
    if not all(parts):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty item; write e.g. 'a,b,c'")
    return parts


def number(text: str, kind: type, low: float, high: float = math.inf) -> float:
    try:
        value = kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not (low <= value <= high and math.isfinite(value)):  # also refuses nan
        bound = f"at least {low:g}" if high == math.inf else f"from {low:g} to {high:g}"
        raise argparse.ArgumentTypeError(f"{text!r} must be {bound}")
    return value


def positive(text: str) -> float:
    value = number(text, float, 0.0)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value
