"""Deleted codes: billing a code on or after the date it was deleted."""

from __future__ import annotations

from collections.abc import Iterator

from stream_app.core.rules import citations
from stream_app.core.rules.base import FINAL, DayView, Violation, rule


@rule(
    "deleted-code",
    title="Deleted code billed",
    severity="deny",
    carc="181",
    citation=citations.STANDARD,
    finality=FINAL,
    applies_to=(),
    on_deleted=True,
)
def deleted_code(day: DayView) -> Iterator[Violation]:
    """A code billed on or after the day its last entry in the code data ends:
    76950, 77421 and 0197T from 2015 (replaced by 77387); 77385, 77386 and
    G6003-G6016 from 2026 (delivery is 77402, 77407, 77412); 77014, G6001,
    G6002 and G6017 from 2026 (image guidance is 77387, professional only).
    The engine hides such a line from every other rule."""
    for line, entry in day.deleted:
        yield Violation(
            "deleted-code",
            line.key,
            f"{line.hcpcs} was deleted effective {entry.deleted_from} and is not billable "
            f"on {line.date_of_service}; {entry.note}",
        )
