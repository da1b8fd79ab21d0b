"""Deleted codes: billing a code on or after the date it was deleted."""

from __future__ import annotations

from collections.abc import Iterator

from .. import codes
from . import citations
from .base import FINAL, DayView, Violation, rule


@rule(
    "deleted-code",
    title="Deleted code billed",
    severity="deny",
    carc="181",
    citation=citations.STANDARD,
    finality=FINAL,
    applies_to=codes.DELETED_CODES,
)
def deleted_code(day: DayView) -> Iterator[Violation]:
    """76950, 77421 and 0197T were deleted in 2015 and replaced by 77387; 77385,
    77386 and G6003-G6016 are deleted from 2026 (the 2026 code changes)."""
    for line in day.lines:
        deleted_on = codes.DELETED_CODES.get(line.hcpcs)
        if deleted_on is not None and line.date_of_service >= deleted_on:
            yield Violation(
                "deleted-code",
                line.key,
                f"{line.hcpcs} was deleted effective {deleted_on} and is not billable "
                f"on {line.date_of_service}",
            )
