"""stream_app.sink.apply without a database: what counts as a valid alert
(SPEC 11), how a batch is folded, and which messages count as applied."""

from __future__ import annotations

from datetime import date

import orjson

from stream_app.sink.apply import ALERT_COLUMNS, Batch, parse


def message(alert_id: str = "r:M1:C1:1", sequence: object = 1, **extra: object) -> bytes:
    return orjson.dumps({"alert_id": alert_id, "status": "open", "sequence": sequence, **extra})


def test_valid_alerts_and_not() -> None:
    assert parse(message(), 0, 0) is not None
    for raw in (
        None,
        b"",
        b"not json",
        b"[1, 2]",
        message(sequence="1"),
        message(sequence=True),
        message(sequence=1.5),
        message(sequence=2**63),
        message(alert_id=""),
        message(alert_id=7),
        message(status="closed"),
        orjson.dumps({"alert_id": "a", "sequence": 1}),
        message(message="a\u0000b"),
    ):
        assert parse(raw, 0, 0) is None, raw


def test_columns_of_the_wrong_type_are_null() -> None:
    parsed = parse(
        message(line_number="3", date_of_service="2026-02-30", modifiers=[1], detected_at="x"),
        2,
        9,
    )
    assert parsed is not None
    row = dict(zip(ALERT_COLUMNS, parsed.values, strict=True))
    assert row["line_number"] is None and row["date_of_service"] is None
    assert row["modifiers"] is None and row["detected_at"] is None
    assert (row["applied_partition"], row["applied_offset"]) == (2, 9)
    good = parse(message(line_number=3, date_of_service="2026-03-02"), 0, 0)
    assert good is not None
    row = dict(zip(ALERT_COLUMNS, good.values, strict=True))
    assert row["line_number"] == 3 and row["date_of_service"] == date(2026, 3, 2)


def test_a_batch_keeps_the_first_of_the_highest_sequence() -> None:
    batch = Batch()
    stream = [
        (message(sequence=1), 0, 10),
        (message(sequence=2, finality="final"), 0, 11),
        (message(sequence=1), 0, 12),  # a stale re-send
        (message(sequence=2, finality="other"), 0, 13),  # same sequence: nothing
        (b"junk", 1, 4),
        (message("r:M2:C2:1", 5), 1, 5),
    ]
    for raw, partition, offset in stream:
        batch.add(parse(raw, partition, offset), partition, offset)
    assert batch.next_offsets == {0: 14, 1: 6}
    assert (batch.valid, batch.invalid) == (5, 1)
    kept = batch.latest["r:M1:C1:1"]
    assert kept.sequence == 2 and kept.values[-1] == 11
    assert batch.read == {"r:M1:C1:1": 4, "r:M2:C2:1": 1}
    assert batch.raisers == {"r:M1:C1:1": [1, 2], "r:M2:C2:1": [5]}
    assert len(batch.rows()) == 2
