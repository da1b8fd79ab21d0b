"""Evaluation is proportional to what changed (issue 11): the engine counts
its rule invocations, and per line that count stays flat as a course grows.

A count, not a timer: `Engine.rule_runs` is the number of rule checks run."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from helpers import Run, cl, delivery, end


def course(
    fractions: int, *, igrt_units: int = 1, early_port: bool = False
) -> list[dict[str, Any]]:
    """A course billed day by day: a delivery and an IGRT line each fraction,
    port images every fifth fraction, then its end. `igrt_units=2` puts a
    provisional igrt-per-fraction alert on every day (final when the course
    ends); `early_port` a second port image on the first day (port-image
    alerts that later fractions resolve)."""
    start = date(2024, 3, 4)
    docs: list[dict[str, Any]] = []
    for n in range(fractions):
        day = (start + timedelta(days=n)).isoformat()
        claim = f"K{n}"
        docs.append(delivery(claim, 1, day, modality="IMRT"))
        docs.append(cl(claim, 2, "77387", day, mods=["26"], units=igrt_units))
        if n % 5 == 0:
            docs.append(cl(claim, 3, "77417", day, ctype="institutional"))
        if n == 0 and early_port:
            docs.append(cl("EARLY", 1, "77417", day, ctype="institutional"))
    docs.append(end((start + timedelta(days=fractions)).isoformat()))
    return docs


def runs_per_line(docs: list[dict[str, Any]]) -> float:
    r = Run()
    r.feed(*docs)
    r.close_all()
    return r.engine.rule_runs / len(docs)


@pytest.mark.parametrize(
    "shape",
    [
        {},  # a clean course
        {"igrt_units": 2},  # an open provisional alert on every day
        {"early_port": True},  # port-image alerts opened, then resolved
    ],
)
def test_rule_runs_per_line_stay_flat_as_the_course_grows(shape: dict[str, Any]) -> None:
    small = runs_per_line(course(10, **shape))
    large = runs_per_line(course(40, **shape))
    assert small > 0
    # Flat: a 4x longer course costs about the same per line (the engine that
    # re-checked every port day whenever the allowance changed: +12 %).
    assert large <= small * 1.05, (small, large)


def test_the_counter_counts() -> None:
    r = Run()
    r.feed(delivery("A", 1), cl("A", 2, "77387", mods=["26"]))
    assert r.engine.rule_runs > 0
