"""State stays bounded: two years of claims for 10,000 patients, and the
number of patients, courses, days and line locations held levels off
instead of growing with the stream."""

from __future__ import annotations

from datetime import date

import pytest

from stream_app.core.engine import Engine
from stream_app.core.events import Invalid, parse_event
from stream_app.core.store import MemoryStore
from stream_app.synth.stream import Synth, generate_lines

PATIENTS = 10_000
SPAN_DAYS = 730


def held(store: MemoryStore) -> dict[str, int]:
    return {
        "patients": len(store.patients),
        "courses": len(store.courses),
        "days": len(store.days),
        "locations": sum(len(claim) for claim in store.locations.values()),
    }


@pytest.mark.slow
def test_two_years_of_claims_level_off() -> None:
    store = MemoryStore()
    engine = Engine(store)
    samples: dict[str, dict[str, int]] = {}  # month -> sizes at its end
    current = ""
    synth = Synth(PATIENTS, seed=3, start=date(2025, 1, 1), span_days=SPAN_DAYS, void_rate=0.02)
    for raw in generate_lines(synth):
        event = parse_event(raw)
        assert not isinstance(event, Invalid)
        engine.apply(event)
        month = engine.watermark()[:7]
        if month != current:  # the sizes as the month before ended
            if current:
                samples[current] = held(store)
            current = month
    samples[current] = held(store)
    months = sorted(samples)
    assert len(months) >= 24
    sizes = [samples[m] for m in months]
    print("\n".join(f"{m} {samples[m]}" for m in months))  # shown with pytest -s
    # Courses start evenly over the two years, so after the first months the
    # state must stay flat: the last year holds no more than 1.5x the median
    # of the months in the middle, and far fewer than all courses ever seen.
    middle = sorted(s["days"] for s in sizes[6:18])[6]
    for size in sizes[12:-2]:
        assert size["days"] <= 1.5 * middle, (size, middle)
    assert max(s["courses"] for s in sizes[12:]) < PATIENTS / 3
    assert engine.pruned_courses > PATIENTS / 2
