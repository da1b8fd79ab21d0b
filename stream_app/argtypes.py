"""Option types for the command line: each checks its value and, when it is
wrong, says what it must be, so argparse prints one line and exits 2."""

from __future__ import annotations

import math
import re
from argparse import ArgumentTypeError
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Final

_RFC3339: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)

_DATE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """A whole number in [minimum, maximum] (either end may be open)."""
    if minimum is not None and maximum is not None:
        bounds = f" between {minimum} and {maximum}"
    elif minimum is not None:
        bounds = f" >= {minimum}"
    else:
        bounds = f" <= {maximum}" if maximum is not None else ""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ArgumentTypeError(f"expected a whole number{bounds}, got {text!r}") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise ArgumentTypeError(f"expected a whole number{bounds}, got {text}")
        return value

    parse.__name__ = "integer"
    return parse


def _finite(text: str, wanted: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
    if not math.isfinite(value):
        raise ArgumentTypeError(f"expected {wanted}, got {text}")
    return value


def positive(text: str) -> float:
    """A finite number > 0 (seconds, lines per second)."""
    value = _finite(text, "a number > 0")
    if value <= 0:
        raise ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def rate(text: str) -> float:
    """A share, between 0 and 1."""
    value = _finite(text, "a number between 0 and 1")
    if not 0.0 <= value <= 1.0:
        raise ArgumentTypeError(f"expected a number between 0 and 1, got {text}")
    return value


def rfc3339(text: str) -> str:
    """An RFC 3339 timestamp with Z or an offset, in UTC with milliseconds as
    every `detected_at` is: `2026-01-01T01:00:00+01:00` -> `2026-01-01T00:00:00.000Z`."""
    wanted = "an RFC 3339 timestamp with a UTC offset, such as 2026-01-01T00:00:00Z"
    if not _RFC3339.fullmatch(text):
        raise ArgumentTypeError(f"expected {wanted}, got {text!r}")
    try:
        moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00")).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ArgumentTypeError(f"{text!r} is not a valid time: {exc}") from None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def day(first: date, last: date) -> Callable[[str], date]:
    """A calendar date YYYY-MM-DD in [first, last]."""

    def parse(text: str) -> date:
        if not _DATE.fullmatch(text):
            raise ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}")
        try:
            value = date.fromisoformat(text)
        except ValueError:
            raise ArgumentTypeError(f"{text} is not a calendar date") from None
        if not first <= value <= last:
            raise ArgumentTypeError(f"expected a date between {first} and {last}, got {text}")
        return value

    parse.__name__ = "date"
    return parse
