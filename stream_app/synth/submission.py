"""When a payer receives what a course sends: a claim is submitted once its
period is over (a professional claim's Monday-Sunday week, an institutional
claim's month), SUBMISSION_LAGS days later, at a time between 06:00 and 22:00
UTC; a course end arrives COURSE_END_LAG days after the last treatment. All
drawn from a course's own timing generator, apart from what it bills, so the
lags can change without changing the claims."""

from __future__ import annotations

from random import Random
from typing import Final

from stream_app.synth.calendar import iso, month_end, next_treatment_day, week_end
from stream_app.synth.catalog import INST, PROF

# Days from the end of a claim's period (Sunday of a professional claim's
# week, the last day of an institutional claim's month) to its submission,
# uniform over the range, at a uniform time between 06:00 and 22:00 UTC.
SUBMISSION_LAGS: Final = {PROF: (1, 6), INST: (5, 30)}
# Days from the last treatment to a course end's arrival.
COURSE_END_LAG: Final = (0, 5)
_CLOCK: list[str] = []


def _clock() -> list[str]:
    """HH:MM:SS from 06:00:00, one per second of 16 hours."""
    if not _CLOCK:
        _CLOCK.extend(
            f"{h:02d}:{m:02d}:{sec:02d}"
            for h in range(6, 22)
            for m in range(60)
            for sec in range(60)
        )
    return _CLOCK


def received_at(timing: Random, day: int, low: int, high: int) -> str:
    """A time `low` to `high` days (uniform) after a day, 06:00 to 22:00 UTC."""
    lag = timing.randint(low, high)
    return f"{iso(day + lag)}T{_clock()[timing.randrange(57_600)]}Z"


def claim_submitted(timing: Random, day: int, claim_type: str) -> str:
    """When the claim of this claim type that bills `day` is submitted."""
    end = week_end(day) if claim_type == PROF else month_end(day)
    return received_at(timing, end, *SUBMISSION_LAGS[claim_type])


def earliest_received(start: int, timing: Random) -> str:
    """A lower bound of the received_at of every message of a course that
    starts on `start`, given a fresh copy of its timing generator. The course
    (course.py) first bills the consult, on a professional claim, so that
    claim's time is the generator's first draws; an institutional claim comes
    5 days or more after the end of the consult's month, and the course end
    on or after the fourth treatment day after the consult (simulation,
    planning, first fraction); everything else comes after these."""
    consult = next_treatment_day(start)
    first_claim = claim_submitted(timing, consult, PROF)
    institutional = iso(month_end(consult) + SUBMISSION_LAGS[INST][0])
    return min(first_claim, institutional, iso(next_treatment_day(consult, 4)))
