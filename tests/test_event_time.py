from stream_app.event_time import LowWatermark, Report, SourceClocks


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
    clocks.told(0, 1, Report("2025-01-02", False))
    assert sorted(t for _, t, _ in clocks.untold()) == [0, 2]
    for source, target, report in list(clocks.untold()):
        clocks.told(source, target, report)
    assert list(clocks.untold()) == []
    clocks.set_idle(0, True)
    assert len(list(clocks.untold())) == 3


def test_lines_seen_before_event_time_is_known_are_not_closed_when_it_arrives() -> None:
    from stream_app.engine import Engine
    from stream_app.events import ClaimLineEvent, parse_event
    from stream_app.store import MemoryStore

    engine = Engine(MemoryStore())
    event = parse_event(
        b'{"claim_id":"C","line_number":1,"patient_id":"P","course_id":"K","site":"s",'
        b'"date_of_service":"2025-01-06","hcpcs":"77387","modifiers":["26"],'
        b'"claim_type":"professional"}'
    )
    assert isinstance(event, ClaimLineEvent)
    opened = engine.apply(event, scope=1, watermark="")  # the worker knows no event time yet
    assert [t.finality for t in opened.transitions] == ["provisional"]
    # Event time turns out to be a year later: the course was just seen, so it stays open...
    assert engine.tick(1, "2026-01-06") == []
    # ...until it has been idle for 45 days of event time.
    closed = engine.tick(1, "2026-02-20")
    assert [(t.status, t.finality) for t in closed] == [("open", "final")]
