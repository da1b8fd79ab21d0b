"""FaustStore: held writes (one table write per key per batch) and line
locations kept per claim. Plain dicts stand in for the Faust tables."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from helpers import cl, parse, void

from stream_app.alerts import build_alert
from stream_app.engine import Engine
from stream_app.events import Invalid, parse_event
from stream_app.faust_store import FaustStore
from stream_app.model import LineLocation
from stream_app.store import MemoryStore
from stream_app.synth import Synth, generate_lines
from stream_app.worker.routing import patient_partition


class CountingTable(dict[bytes, bytes | None]):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def __setitem__(self, key: bytes, value: bytes | None) -> None:
        self.writes += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: bytes) -> None:
        self.writes += 1
        super().__delitem__(key)


def tables() -> tuple[CountingTable, CountingTable, CountingTable, CountingTable]:
    return CountingTable(), CountingTable(), CountingTable(), CountingTable()


@contextmanager
def record_partition(seen: list[int], partition: int) -> Iterator[None]:
    seen.append(partition)
    yield


def test_held_writes_reach_the_tables_once_per_key_at_flush() -> None:
    patients, courses, days, locations = tables()
    store = FaustStore(patients, courses, days, locations)
    store.hold_writes()
    engine = Engine(store)
    for number, code in enumerate(["77412", "77387", "77014"], start=1):
        engine.apply(parse(cl("C", number, code)))
    assert (patients.writes, courses.writes, days.writes, locations.writes) == (0, 0, 0, 0)
    assert store.get_location(("P1", "C", 2)) == LineLocation("C1", "prostate", "2024-03-04")

    seen: list[int] = []
    written = store.flush(lambda partition: record_partition(seen, partition))
    assert seen == [0]
    assert (patients.writes, courses.writes, days.writes, locations.writes) == (1, 1, 1, 1)
    assert written == 4
    assert store.flush(lambda partition: record_partition(seen, partition)) == 0


def test_a_key_created_and_deleted_in_one_batch_never_reaches_the_table() -> None:
    days = CountingTable()
    store = FaustStore(CountingTable(), CountingTable(), days, CountingTable())
    store.hold_writes()
    store._set(2, b"k", b"v")
    store._set(2, b"k", None)
    store.flush(lambda partition: record_partition([], partition))
    assert days == {} and days.writes == 0


def test_held_writes_are_flushed_per_partition() -> None:
    store = FaustStore(*tables())
    store.hold_writes()
    engine = Engine(store)
    patients = ("P1", "P2", "P3", "P4")
    for patient in patients:
        store.partition = patient_partition(patient.encode(), 8)
        engine.apply(parse(cl(f"C-{patient}", 1, "77412", patient=patient)))
    seen: list[int] = []
    store.flush(lambda partition: record_partition(seen, partition))
    assert sorted(seen) == sorted({patient_partition(p.encode(), 8) for p in patients})


def test_line_locations_are_one_record_per_claim() -> None:
    locations = CountingTable()
    store = FaustStore(CountingTable(), CountingTable(), CountingTable(), locations)
    engine = Engine(store)
    engine.apply(parse(cl("C", 1, "77412")))
    engine.apply(parse(cl("C", 2, "77014")))
    assert len(locations) == 1
    assert store.get_location(("P1", "C", 1)) == LineLocation("C1", "prostate", "2024-03-04")
    before = locations.writes
    engine.apply(parse(cl("C", 2, "77014")))  # a duplicate: its location is unchanged
    assert locations.writes == before
    store.del_location(("P1", "C", 1))
    assert store.get_location(("P1", "C", 1)) is None
    assert store.get_location(("P1", "C", 2)) is not None
    store.del_location(("P1", "C", 2))
    assert locations == {}


def test_a_void_finds_its_line_through_the_claim_record() -> None:
    store = FaustStore(*tables())
    engine = Engine(store)
    engine.apply(parse(cl("C", 1, "77412")))
    engine.apply(parse(cl("C", 2, "77014")))
    assert engine.apply(parse(void("C", 2))).outcome == "void"


@pytest.mark.parametrize("batch", [1, 7, 500])
def test_batched_store_gives_the_same_alerts_as_replay(batch: int) -> None:
    """The worker's store, flushed every `batch` events, against MemoryStore."""
    synth = Synth(60, seed=11, violation_rate=0.5, void_rate=0.1, span_days=200)
    events = [e for e in map(parse_event, generate_lines(synth)) if not isinstance(e, Invalid)]
    replayed = Engine(MemoryStore())
    store = FaustStore(*tables())
    store.hold_writes()
    batched = Engine(store)
    expected, got = [], []
    for index, event in enumerate(events, start=1):
        expected += [build_alert(t, "") for t in replayed.apply(event).transitions]
        got += [build_alert(t, "") for t in batched.apply(event).transitions]
        if index % batch == 0:
            store.flush(lambda partition: record_partition([], partition))
    assert got == expected
    assert len(expected) > 20


def test_faust_internals_the_worker_relies_on_are_there() -> None:
    """worker.py sets faust.streams._current_event and wraps the consumer's
    force_commit; a Faust upgrade that drops either must fail here."""
    from contextvars import ContextVar

    from faust.streams import _current_event, current_event
    from faust.transport.consumer import Consumer

    from stream_app.worker.batching import as_current as _as_current

    assert isinstance(_current_event, ContextVar)
    assert callable(Consumer.force_commit)

    class Message:
        partition = 3

    class Event:
        message = Message()

    event = Event()
    with _as_current(event):
        assert current_event() is event
    assert current_event() is not event


async def test_a_commit_waits_for_the_batch_in_evaluation() -> None:
    import asyncio

    from stream_app.worker.batching import commit_between_batches as _commit_between_batches

    class Consumer:
        def __init__(self) -> None:
            self.commits = 0

        async def force_commit(self) -> bool:
            self.commits += 1
            return True

    consumer, batch_lock = Consumer(), asyncio.Lock()
    _commit_between_batches(consumer, batch_lock)
    _commit_between_batches(consumer, batch_lock)  # wraps once
    await batch_lock.acquire()
    commit = asyncio.ensure_future(consumer.force_commit())
    await asyncio.sleep(0.01)
    assert consumer.commits == 0
    batch_lock.release()
    assert await commit is True
    assert consumer.commits == 1


async def test_a_transactional_commit_waits_for_the_producer_buffer() -> None:
    """Table changelog writes wait in Faust's producer buffer; a commit under
    exactly-once must not run before they are handed to Kafka's producer."""
    import asyncio

    from stream_app.worker.batching import commit_between_batches as _commit_between_batches

    class Buffer:
        def __init__(self) -> None:
            self.size = 3
            self._stream_app_sending = 0

        async def flush(self) -> None:  # the buffer's sender, one message a call
            if self.size:
                self.size -= 1
                self._stream_app_sending = 1
            else:
                self._stream_app_sending = 0
            await asyncio.sleep(0)

    class App:
        producer = type("Producer", (), {"buffer": Buffer()})()

    class Consumer:
        in_transaction = True
        app = App()

        def __init__(self) -> None:
            self.buffered_at_commit: list[tuple[int, int]] = []

        async def force_commit(self) -> bool:
            buffer = self.app.producer.buffer
            self.buffered_at_commit.append((buffer.size, buffer._stream_app_sending))
            return True

    consumer = Consumer()
    _commit_between_batches(consumer, asyncio.Lock())
    assert await consumer.force_commit() is True
    assert consumer.buffered_at_commit == [(0, 0)]


def test_a_batch_cut_short_is_not_acknowledged() -> None:
    """Faust's take_events acknowledges a batch's events however its body
    ends; the worker adds a reference to each event of a batch cut short, so
    that acknowledgement does not make them committable (they are read
    again)."""
    import inspect

    from faust.streams import Stream
    from faust.types.tuples import ConsumerMessage

    from stream_app.worker.batching import keep_unacknowledged as _keep_unacknowledged

    source = inspect.getsource(Stream.take_events)
    assert "finally:" in source and "await self.ack(event)" in source

    class Consumer:
        def __init__(self) -> None:
            self.acked: list[int] = []

        def ack(self, message: ConsumerMessage) -> bool:
            self.acked.append(message.offset)
            return True

    def event(offset: int) -> Any:
        message = ConsumerMessage("t", 0, offset, 0.0, 0, None, b"k", b"v", None)
        message.incref()  # the stream's reference, as when delivered
        return type("Event", (), {"message": message})()

    consumer = Consumer()
    whole, cut = [event(1), event(2)], [event(3), event(4)]
    _keep_unacknowledged(cut)
    for e in whole + cut:  # what take_events' finally does
        e.message.ack(consumer)
    assert consumer.acked == [1, 2]
