"""Element-level readers for the 837 mapping: each returns a value or raises
`Rejected` with the segment that shows why."""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Final

from stream_app.intake.x12 import Segment

PAYER_TYPES: Final = {"MA": "medicare", "MB": "medicare", "MC": "medicaid"}
# SBR09 claim filing indicator codes of commercial plans (5010): BL Blue Cross
# Blue Shield, CI commercial insurance, HM HMO, 12-17 PPO/POS/EPO/indemnity/
# HMO Medicare risk/dental, LM liability medical, DS disability.
COMMERCIAL: Final = frozenset({"BL", "CI", "HM", "12", "13", "14", "15", "16", "17", "LM", "DS"})


class Rejected(Exception):
    """A claim that cannot be converted, with the segment that shows why."""

    def __init__(self, segment: Segment | None, message: str) -> None:
        super().__init__(message)
        self.segment = segment
        self.message = message


def components(value: str, separator: str) -> list[str]:
    return [part.strip() for part in value.split(separator)]


def payer_type(code: str) -> str:
    if code in PAYER_TYPES:
        return PAYER_TYPES[code]
    return "commercial" if code in COMMERCIAL else "other"


def line_number(lx: Segment) -> int:
    value = lx.get(1)
    if not value.isdigit() or not 1 <= int(value) <= 999:
        raise Rejected(lx, f"LX01 {value!r} is not a line number from 1 to 999")
    return int(value)


def units(service: Segment, index: int) -> int | None:
    value = service.get(index)
    if not value:
        return None
    whole, _, fraction = value.partition(".")
    if whole.isdigit() and (not fraction or fraction.strip("0") == "") and int(whole) >= 1:
        return int(whole)  # "1", "1.00"
    name = f"{service.sid}{index:02d}"
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise Rejected(service, f"{name} units {value!r} are not a number") from None
    if not number.is_finite() or number != number.to_integral_value():
        raise Rejected(service, f"{name} units {value!r} are not a whole number")
    if number < 1:
        raise Rejected(service, f"{name} units {value!r} are fewer than 1")
    return int(number)


def dtp_date(dtp: Segment) -> str:
    fmt, value = dtp.get(2), dtp.get(3)
    if fmt == "RD8":
        value = value.partition("-")[0]
    elif fmt != "D8":
        raise Rejected(dtp, f"DTP*{dtp.get(1)} date format {fmt!r} is neither D8 nor RD8")
    iso = _iso_date(value)
    if iso is None:
        raise Rejected(dtp, f"DTP*{dtp.get(1)} date {dtp.get(3)!r} is not a CCYYMMDD date")
    return iso


@lru_cache(maxsize=4096)
def _iso_date(value: str) -> str | None:
    if len(value) != 8 or not value.isdigit():
        return None
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:])).isoformat()
    except ValueError:
        return None
