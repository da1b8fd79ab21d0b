"""Holds (SPEC 4.1): publish what a claim still expected cannot cure.

A course is billed in claims that arrive weeks apart, so some violations look
real only until the next claim: a professional 77387-26 before the hospital's
claim with that day's fraction. A rule declared with `held_while` has its
violations held (kept in the day's memos with sequence 0, never published)
while that condition holds, and at most until event time reaches the line's
date of service plus the payer profile's `hold_days`:

- "always": the violation itself is what a later claim may cure (a day's
  fraction, or the fractions that allow more port images);
- "no-delivery": the line's day has no delivery yet (the course's modalities
  stand in for the day's).

Closing a course ends no hold. SPEC 4.1 ends a port-image-frequency hold when
the course closes, but a course closes on its `course_end` (or idle days),
which payers receive before the professional claim of the last week and the
hospital's claims of the last month(s): measured (benchmarks/README.md,
"Holds"), ending the hold there published alerts that those claims then
resolved or moved, 23 of 597 distinct alerts. So port-image-frequency is
held by time only, like the others.

Once an alert has been published it is never held again. A held violation
that disappears (cured) leaves nothing behind; one whose hold ends opens with
the values current at that moment.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from stream_app.core.model import DayState, Line, date_ordinal
from stream_app.core.profiles import Profile
from stream_app.core.rules.base import HeldWhile


@dataclass(slots=True)
class HoldCounts:
    """Holds started, cured (the violation went away while held) and
    published (the hold ended with the violation still there), by rule."""

    started: Counter[str] = field(default_factory=Counter)
    cured: Counter[str] = field(default_factory=Counter)
    published: Counter[str] = field(default_factory=Counter)

    def held(self) -> Counter[str]:
        """Held now, by rule (counted from an empty state)."""
        now = Counter(self.started)
        now.subtract(self.cured)
        now.subtract(self.published)
        return +now


class DayHolds:
    """What deciding a hold on one day needs: event time, the override of
    `hold_days`, whether every hold is being released (the end of a replay),
    and whether the day has a delivery (asked only when a rule needs it)."""

    __slots__ = ("_day", "_has_delivery", "hold_days", "now", "release")

    def __init__(self, now: int, hold_days: int | None, release: bool, day: DayState) -> None:
        self.now = now  # event time as a date ordinal, 0 while unknown
        self.hold_days = hold_days
        self.release = release
        self._day = day
        self._has_delivery: bool | None = None

    def until(self, line: Line, profile: Profile) -> int:
        """The date ordinal on which the line's hold ends by time; 0: no hold."""
        days = profile.hold_days if self.hold_days is None else self.hold_days
        return date_ordinal(line.date_of_service) + days if days > 0 else 0

    def holding(self, held_while: HeldWhile, until: int) -> bool:
        if self.release or not until or self.now >= until:
            return False
        if held_while == "no-delivery":
            return not self.has_delivery()
        return True

    def has_delivery(self) -> bool:
        if self._has_delivery is None:
            self._has_delivery = any(
                line.delivery_modality() is not None for line in self._day.lines.values()
            )
        return self._has_delivery


def next_look(day: DayState) -> int | None:
    """The earliest date ordinal on which a hold of the day ends by time."""
    found: int | None = None
    for memos in day.memos.values():
        for memo in memos.values():
            if memo.is_held and (found is None or memo.held_until < found):
                found = memo.held_until
    return found
