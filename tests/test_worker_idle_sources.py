"""Which input partitions (sources) the worker counts as idle, so that they
do not hold event time back (stream_app.stream.worker.routing.mark_idle_sources).

A source read to its end is idle. After a restart, a source with no new
input has nothing to read: its committed offset is its end. It must count as
idle then too, or every partition's event time stays unknown until a message
arrives on it, and no course closes and no hold ends (SPEC 4.1: a hold that
ends while no event arrives for its patient is published when event time
moves on)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import orjson
from faust.types import TP
from helpers import cl

from stream_app.core.event_time import LowWatermark, Report
from stream_app.stream.settings import WorkerSettings
from stream_app.stream.worker.routing import Routing, patient_partition

PARTITIONS = 2
TOPIC = "claim-lines"


class FakeConsumer:
    """What mark_idle_sources asks of Faust's consumer (`_committed_offset`
    holds, per partition, the next offset to read as Kafka counts it)."""

    def __init__(self, ends: dict[int, int], committed: dict[int, int | None]) -> None:
        self.ends = {TP(TOPIC, p): end for p, end in ends.items()}
        self._committed_offset = {TP(TOPIC, p): c for p, c in committed.items()}

    def assignment(self) -> set[TP]:
        return set(self.ends)

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        return {tp: self.ends[tp] for tp in tps}


def router(consumer: FakeConsumer) -> Routing:
    settings = WorkerSettings(partitions=PARTITIONS, input_topic=TOPIC)
    app = SimpleNamespace(consumer=consumer)
    return Routing(app, settings, None, None, direct=True)  # type: ignore[arg-type]


def idle_after_check(consumer: FakeConsumer, read: dict[int, int] | None = None) -> dict[int, bool]:
    routing = router(consumer)
    for partition, offset in (read or {}).items():
        routing.forwarded_offsets[partition] = offset
    asyncio.run(routing.mark_idle_sources())
    return {p: r.idle for p, r in routing.clocks.reports.items()}


def test_a_source_committed_to_its_end_is_idle_before_anything_is_read() -> None:
    """The restart case: partition 0 was read to its end (offset 1 committed,
    end 1) by the worker's previous run; partition 1 has a new message."""
    consumer = FakeConsumer(ends={0: 1, 1: 2}, committed={0: 1, 1: 1})
    assert idle_after_check(consumer) == {0: True, 1: False}


def test_a_source_with_messages_past_its_committed_offset_is_not_idle() -> None:
    consumer = FakeConsumer(ends={0: 5, 1: 3}, committed={0: 4, 1: None})
    assert idle_after_check(consumer) == {0: False, 1: False}


def test_an_empty_source_is_idle_and_what_was_read_still_decides() -> None:
    consumer = FakeConsumer(ends={0: 0, 1: 7}, committed={0: None, 1: 2})
    assert idle_after_check(consumer, read={1: 6}) == {0: True, 1: True}
    consumer = FakeConsumer(ends={0: 0, 1: 7}, committed={0: None, 1: 7})
    assert idle_after_check(consumer, read={1: 5}) == {0: True, 1: False}


def test_after_a_restart_another_partitions_line_moves_event_time() -> None:
    """Partition 0 has nothing new since the restart; a line on partition 1
    dated 2026-05-01 is event time on partition 0 as well once its source
    is read to its end."""
    consumer = FakeConsumer(ends={0: 1, 1: 2}, committed={0: 1, 1: 1})
    routing = router(consumer)
    patient = next(
        f"B{n}" for n in range(100) if patient_partition(f"B{n}".encode(), PARTITIONS) == 1
    )
    raw = orjson.dumps(cl("C1", 1, "77412", "2026-05-01", patient=patient))
    message = SimpleNamespace(topic=TOPIC, partition=1, offset=1, tp=(TOPIC, 1), headers=None)
    assert asyncio.run(routing.route(SimpleNamespace(key=None, value=raw, message=message)))
    asyncio.run(routing.mark_idle_sources())
    low = LowWatermark(PARTITIONS)
    for source, report in routing.clocks.reports.items():
        low.update(source, report)
    assert routing.clocks.reports[0] == Report("", True)
    assert low.low == "2026-05-01"
