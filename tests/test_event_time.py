from typing import Any

from helpers import cl, parse, run

from stream_app.core.engine import Engine, EngineSettings
from stream_app.core.event_time import LowWatermark, Report, SourceClocks
from stream_app.core.store import MemoryStore


def test_low_watermark_waits_for_every_source_and_takes_the_minimum() -> None:
    low = LowWatermark(sources=2)
    low.update(0, Report("2025-03-01", False))
    assert low.low == ""
    low.update(1, Report("2025-01-15", False))
    assert low.low == "2025-01-15"
    low.update(0, Report("2025-04-01", False))
    assert low.low == "2025-01-15"  # the slower source holds it back
    low.update(1, Report("2025-01-10", False))
    assert low.low == "2025-01-15"  # a source never goes back
    low.update(1, Report("2025-05-01", False))
    assert low.low == "2025-04-01"
    again = LowWatermark.decode(2, low.encode())
    assert again.low == "2025-04-01" and again.reported == low.reported


def test_an_idle_source_does_not_hold_the_others_back() -> None:
    low = LowWatermark(sources=3)
    low.update(0, Report("2025-02-01", False))
    low.update(1, Report("2025-01-01", True))
    low.update(2, Report("", True))  # an empty partition
    assert low.low == "2025-02-01"
    low.update(0, Report("2025-02-01", True))
    assert low.low == "2025-02-01"  # all idle: the latest anyone saw
    low.update(1, Report("2025-01-05", False))  # wakes up with old data
    assert low.low == "2025-01-05"


def test_source_clocks_tell_each_target_every_change_once() -> None:
    clocks = SourceClocks(targets=3)
    assert clocks.observe(0, "2025-01-02") == "2025-01-02"
    assert clocks.observe(0, "") == "2025-01-02"  # a void without a date
    clocks.told(0, 1, Report("2025-01-02", False), clocks.generation)
    assert sorted(t for _, t, _ in clocks.untold()) == [0, 2]
    for source, target, report in list(clocks.untold()):
        clocks.told(source, target, report, clocks.generation)
    assert list(clocks.untold()) == []
    clocks.set_idle(0, True)
    assert len(list(clocks.untold())) == 3


def test_after_a_rebalance_every_target_is_told_again() -> None:
    """A re-keyed partition forgets event time on a rebalance; a source that
    has finished must still be heard again, or courses never close."""
    clocks = SourceClocks(targets=2)
    clocks.observe(0, "2025-03-01")
    clocks.set_idle(0, True)
    for source, target, report in list(clocks.untold()):
        clocks.told(source, target, report, clocks.generation)
    assert list(clocks.untold()) == []
    clocks.forget_told()
    assert sorted(t for _, t, _ in clocks.untold()) == [0, 1]


def test_a_send_begun_before_a_rebalance_does_not_count_as_told() -> None:
    clocks = SourceClocks(targets=1)
    clocks.observe(0, "2025-03-01")
    generation = clocks.generation
    clocks.forget_told()  # the rebalance happens while the tick is in flight
    clocks.told(0, 0, clocks.reports[0], generation)
    assert len(list(clocks.untold())) == 1


def test_lines_seen_before_event_time_is_known_close_by_their_date_when_it_arrives() -> None:
    """Whether a course closes depends on its dates and event time, not on
    whether its lines reached the worker before event time was known (the
    line's rule is held by default: no hold here, tests/test_holds.py)."""
    engine = Engine(MemoryStore(), settings=EngineSettings(hold_days=0))
    event = parse(_line("P", "2025-01-06"))
    opened = engine.apply(event, scope=1, watermark="")  # the worker knows no event time yet
    assert [t.finality for t in opened.transitions] == ["provisional"]
    # Event time turns out to be 44 days after the line's date: still open...
    assert engine.tick(1, "2025-02-19") == []
    # ...and at 45 days it closes.
    closed = engine.tick(1, "2025-02-20")
    assert [(t.status, t.finality) for t in closed] == [("open", "final")]


def _line(patient: str, date: str) -> dict[str, Any]:
    """An IGRT professional line with no fraction that day: provisional."""
    return cl(f"C-{patient}", 1, "77387", date, mods=["26"], patient=patient, course="K", site="s")


def _folded_finality(docs: list[dict[str, Any]]) -> dict[str, str]:
    return {aid: a["finality"] for aid, a in run(docs).open.items()}


def test_a_course_closes_by_its_dates_whatever_the_arrival_order() -> None:
    """SPEC 2's order independence, for closing: a line that reaches the
    processor late does not keep its course open longer than its date does."""
    early, late = _line("P1", "2025-01-10"), _line("P2", "2025-03-01")
    finality = _folded_finality([early, late])
    assert finality == _folded_finality([late, early])
    assert finality["igrt-without-fraction:P1:C-P1:1"] == "final"
    assert finality["igrt-without-fraction:P2:C-P2:1"] == "provisional"


def test_a_source_that_moved_to_another_worker_is_no_longer_told() -> None:
    clocks = SourceClocks(targets=1)
    clocks.observe(0, "2025-03-01")
    clocks.observe(1, "2025-03-02")
    clocks.set_idle(1, True)
    clocks.keep_only({0})  # partition 1 is now another worker's
    clocks.forget_told()
    assert [source for source, _, _ in clocks.untold()] == [0]


def test_a_course_is_pruned_by_when_its_lines_arrived_in_the_whole_stream() -> None:
    """In the worker the low watermark can be far behind the rest of the
    stream (a partition still reading old data). A course's last arrival is
    stamped with the latest date the stream has reached, so a course whose
    lines are still coming is not pruned when the slow partition catches up."""
    store = MemoryStore()
    engine = Engine(store, settings=EngineSettings(retain_days=120))
    event = parse(_line("P1", "2025-02-10"))
    # Low watermark 2025-02-28, but another partition is at 2025-10-28 already.
    engine.apply(event, 1, watermark="2025-02-28", settled="2025-02-28", latest="2025-10-28")
    engine.tick(1, "2025-10-28", settled="2025-10-28", latest="2025-10-28")
    assert store.get_patient("P1") is not None, "pruned while its lines may still arrive"
    engine.tick(1, "2026-02-25", settled="2026-02-25", latest="2026-02-25")
    assert store.get_patient("P1") is None  # 120 days after the stream's latest date
