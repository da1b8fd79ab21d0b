"""Guidance per fraction: one localization per external-beam fraction, and
none on a day without a fraction."""

from __future__ import annotations

from collections.abc import Iterator

from stream_app.core import codes
from stream_app.core.model import Line
from stream_app.core.rules import citations
from stream_app.core.rules.base import (
    PROVISIONAL_UNTIL_CLOSED,
    DayView,
    Violation,
    evidence_of,
    latest_excess,
    plural,
    rule,
    units_over,
)


def _delivery_lines(day: DayView) -> list[Line]:
    return [line for line in day.lines if line.fractions() > 0]


@rule(
    "igrt-per-fraction",
    title="More localization units than fractions on a day",
    severity="deny",
    carc="151",
    citation=citations.STANDARDS_77387,
    finality=PROVISIONAL_UNTIL_CLOSED,
    applies_to=codes.LOCALIZATION_CODES,
    uses=codes.DELIVERY_CODES,
)
def igrt_per_fraction(day: DayView) -> Iterator[Violation]:
    """One IGRT procedure is allowed per external-beam fraction: on a day with
    fractions, the professional (or technical) units of 77014, 77387, G6001
    and G6002 may not exceed the fractions of that day."""
    if day.fractions == 0:
        return
    localization = [line for line in day.lines if line.hcpcs in codes.LOCALIZATION_CODES]
    excess: dict[tuple[str, int], int] = {}
    totals = []
    for component, name in ((0, "professional"), (1, "technical")):
        holdings = [(line.key, line.units) for line in localization if line.components()[component]]
        total = sum(units for _, units in holdings)
        if total > day.fractions:
            totals.append(f"{total} {name}")
            for key, units in latest_excess(holdings, total - day.fractions).items():
                excess[key] = max(units, excess.get(key, 0))
    if not excess:
        return
    message = (
        f"{' and '.join(totals)} localization units for {plural(day.fractions, 'fraction')} "
        f"on {day.date_of_service}; {day.fractions} allowed"
    )
    context = localization + _delivery_lines(day)
    for line in localization:
        if line.key in excess:
            yield Violation(
                "igrt-per-fraction",
                line.key,
                message,
                excess[line.key],
                evidence_of(context, exclude=line),
            )


@rule(
    "intrafraction-per-fraction",
    title="More intrafraction tracking units than fractions on a day",
    severity="deny",
    carc="151",
    citation=citations.INTRAFRACTION_G6017,
    finality=PROVISIONAL_UNTIL_CLOSED,
    applies_to=[codes.INTRAFRACTION],
    uses=codes.DELIVERY_CODES,
)
def intrafraction_per_fraction(day: DayView) -> Iterator[Violation]:
    """G6017 is billed per fraction of treatment: its units on a day may not
    exceed the fractions of that day."""
    tracking = day.coded(codes.INTRAFRACTION)
    return units_over(
        "intrafraction-per-fraction",
        tracking,
        day.fractions,
        lambda total: (
            f"{plural(total, 'G6017 unit')} for {plural(day.fractions, 'fraction')} "
            f"on {day.date_of_service}; {day.fractions} allowed"
        ),
        tracking + _delivery_lines(day) if tracking else [],
    )


@rule(
    "igrt-without-fraction",
    title="IGRT on a day without a treatment fraction",
    severity="review",
    carc="107",
    citation=citations.STANDARDS_77387,
    finality=PROVISIONAL_UNTIL_CLOSED,
    applies_to=codes.IGRT_NEEDING_FRACTION,
    uses=codes.DELIVERY_CODES,
    held_while="always",
)
def igrt_without_fraction(day: DayView) -> Iterator[Violation]:
    """77387, G6001, G6002 and G6017 guide an external-beam fraction; billed on
    a day with none, the related delivery is missing (or not billed yet)."""
    if day.fractions > 0:
        return
    for line in day.lines:
        if line.hcpcs in codes.IGRT_NEEDING_FRACTION:
            yield Violation(
                "igrt-without-fraction",
                line.key,
                f"{line.hcpcs} billed on {day.date_of_service} with no external-beam "
                f"treatment fraction that day",
            )
