"""Days of a synthetic stream, as ordinals (date.toordinal()): ISO text, month,
weekday, the US federal holidays a clinic closes for, and treatment days
(weekdays that are not holidays). Lookups are memoized; a stream asks about
the same few hundred days millions of times."""

from __future__ import annotations

from datetime import date

_ISO: dict[int, str] = {}


def iso(day: int) -> str:
    text = _ISO.get(day)
    if text is None:
        text = _ISO[day] = date.fromordinal(day).isoformat()
    return text


_MONTH: dict[int, int] = {}


def month_index(day: int) -> int:
    found = _MONTH.get(day)
    if found is None:
        d = date.fromordinal(day)
        found = _MONTH[day] = d.year * 12 + d.month
    return found


def week_end(day: int) -> int:
    """The Sunday that ends the (Monday to Sunday) week of a day."""
    return day + 6 - weekday(day)


def month_end(day: int) -> int:
    """The last day of the month of a day."""
    d = date.fromordinal(day)
    return date(d.year + (d.month == 12), d.month % 12 + 1, 1).toordinal() - 1


def weekday(day: int) -> int:
    """0 = Monday (ordinal 1, 0001-01-01, was a Monday)."""
    return (day - 1) % 7


def _observed(d: date) -> int:
    wd = d.weekday()
    return d.toordinal() + (-1 if wd == 5 else 1 if wd == 6 else 0)


def _nth_weekday(year: int, month: int, wd: int, n: int) -> int:
    first = date(year, month, 1).toordinal()
    return first + (wd - weekday(first)) % 7 + 7 * (n - 1)


def _last_weekday(year: int, month: int, wd: int) -> int:
    nxt = date(year + (month == 12), month % 12 + 1, 1).toordinal()
    last = nxt - 1
    return last - (weekday(last) - wd) % 7


_HOLIDAYS: dict[int, frozenset[int]] = {}


def holidays(year: int) -> frozenset[int]:
    """US federal holidays a clinic closes for (observed dates)."""
    found = _HOLIDAYS.get(year)
    if found is None:
        found = _HOLIDAYS[year] = frozenset(
            {
                _observed(date(year, 1, 1)),
                _last_weekday(year, 5, 0),  # Memorial Day
                _observed(date(year, 7, 4)),
                _nth_weekday(year, 9, 0, 1),  # Labor Day
                _nth_weekday(year, 11, 3, 4),  # Thanksgiving
                _observed(date(year, 12, 25)),
            }
        )
    return found


_TREATMENT_DAY: dict[int, bool] = {}


def is_treatment_day(day: int) -> bool:
    """A weekday that is not a holiday."""
    found = _TREATMENT_DAY.get(day)
    if found is None:
        year = date.fromordinal(day).year
        found = _TREATMENT_DAY[day] = (
            weekday(day) < 5 and day not in holidays(year) and (day not in holidays(year + 1))
        )
    return found


def next_treatment_day(day: int, skip: int = 0) -> int:
    """The first treatment day >= day, then `skip` more treatment days."""
    while not is_treatment_day(day):
        day += 1
    for _ in range(skip):
        day += 1
        while not is_treatment_day(day):
            day += 1
    return day
