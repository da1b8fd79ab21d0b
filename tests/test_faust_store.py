"""FaustStore: one table value per patient, held writes (one table write per
touched patient per batch) and line locations kept per claim. A plain dict
stands in for the Faust table."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from helpers import cl, parse, void

from stream_app.core.alerts import build_alert
from stream_app.core.engine import Engine
from stream_app.core.events import Invalid, parse_event
from stream_app.core.model import LineLocation
from stream_app.core.store import MemoryStore
from stream_app.stream.faust_store import (
    CLAIM_LOCATIONS,
    COURSE,
    DAY,
    PATIENT,
    FaustStore,
    decode_bundle,
)
from stream_app.stream.worker.routing import patient_partition
from stream_app.synth.stream import Synth, generate_lines


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


@contextmanager
def record_partition(seen: list[int], partition: int) -> Iterator[None]:
    seen.append(partition)
    yield


def held_store() -> tuple[CountingTable, FaustStore, Engine]:
    """A store that holds its writes until `flush`, as the worker's does."""
    state = CountingTable()
    store = FaustStore(state)
    store.hold_writes()
    return state, store, Engine(store)


def flush(store: FaustStore, seen: list[int] | None = None) -> int:
    return store.flush(lambda partition: record_partition([] if seen is None else seen, partition))


def test_held_writes_reach_the_table_once_per_patient_at_flush() -> None:
    state, store, engine = held_store()
    for number, code in enumerate(["77412", "77387", "77014"], start=1):
        engine.apply(parse(cl("C", number, code)))
    engine.apply(parse(cl("D", 1, "77412", "2024-03-05")))
    assert state.writes == 0
    assert store.get_location(("P1", "C", 2)) == LineLocation("C1", "prostate", "2024-03-04")

    seen: list[int] = []
    assert flush(store, seen) == 1
    assert seen == [0]
    assert state.writes == 1 and list(state) == [b"P1"]
    assert flush(store, seen) == 0
    # Read back from the table: the patient's records, all in one value.
    assert store.get_location(("P1", "C", 2)) == LineLocation("C1", "prostate", "2024-03-04")
    kinds = sorted(kind for kind, _ in decode_bundle(state[b"P1"] or b""))
    assert kinds == [PATIENT, COURSE, DAY, DAY, CLAIM_LOCATIONS, CLAIM_LOCATIONS]


def test_a_patient_created_and_deleted_in_one_batch_never_reaches_the_table() -> None:
    state, store, engine = held_store()
    engine.apply(parse(cl("C", 1, "77412")))
    store.del_patient("P1")
    store.del_course(("P1", "C1", "prostate"))
    store.del_day(("P1", "prostate", "2024-03-04"))
    store.del_location(("P1", "C", 1))
    flush(store)
    assert state == {} and state.writes == 0


def test_an_unchanged_record_is_not_written_again() -> None:
    state = CountingTable()
    store = FaustStore(state)  # writes through
    engine = Engine(store)
    engine.apply(parse(cl("C", 1, "77412")))
    before = state.writes
    assert engine.apply(parse(cl("C", 1, "77412"))).outcome == "duplicate"
    assert state.writes == before


def test_held_writes_are_flushed_per_partition() -> None:
    _, store, engine = held_store()
    patients = ("P1", "P2", "P3", "P4")
    for patient in patients:
        store.partition = patient_partition(patient.encode(), 8)
        engine.apply(parse(cl(f"C-{patient}", 1, "77412", patient=patient)))
    seen: list[int] = []
    assert flush(store, seen) == 4
    assert sorted(seen) == sorted({patient_partition(p.encode(), 8) for p in patients})


def test_a_batch_cut_short_leaves_the_table_as_it_was() -> None:
    _, store, engine = held_store()
    engine.apply(parse(cl("C", 1, "77412")))
    flush(store)
    engine.apply(parse(cl("C", 2, "77014")))
    store.discard_held()
    assert flush(store) == 0
    assert store.get_location(("P1", "C", 2)) is None
    assert store.get_location(("P1", "C", 1)) is not None


def test_line_locations_are_one_record_per_claim() -> None:
    state = CountingTable()
    store = FaustStore(state)
    engine = Engine(store)
    engine.apply(parse(cl("C", 1, "77412")))
    engine.apply(parse(cl("C", 2, "77014")))
    records = decode_bundle(state[b"P1"] or b"")
    assert [key for kind, key in records if kind == CLAIM_LOCATIONS] == [b"C"]
    assert store.get_location(("P1", "C", 1)) == LineLocation("C1", "prostate", "2024-03-04")
    store.del_location(("P1", "C", 1))
    assert store.get_location(("P1", "C", 1)) is None
    assert store.get_location(("P1", "C", 2)) is not None
    store.del_location(("P1", "C", 2))
    assert store.claim_locations("P1", "C") == {}
    assert all(kind != CLAIM_LOCATIONS for kind, _ in decode_bundle(state[b"P1"] or b""))


def test_a_void_finds_its_line_through_the_claim_record() -> None:
    store = FaustStore(CountingTable())
    engine = Engine(store)
    engine.apply(parse(cl("C", 1, "77412")))
    engine.apply(parse(cl("C", 2, "77014")))
    assert engine.apply(parse(void("C", 2))).outcome == "void"


class TouchRecorder(FaustStore):
    """Records every patient a change of the engine's touched, and counts them."""

    def __init__(self, state: CountingTable) -> None:
        super().__init__(state)
        self.touched: set[str] = set()
        self.changes = 0

    def _set(self, patient_id: str, kind: int, key: bytes, raw: bytes | None) -> None:
        self.touched.add(patient_id)
        self.changes += 1
        super()._set(patient_id, kind, key, raw)


@pytest.mark.parametrize("claims", [True, False])
def test_a_batch_writes_each_patient_it_touched_once(claims: bool) -> None:
    """Issue 9: at most one changelog write per touched patient per batch
    (the patients of the batch's events, and those whose courses the moving
    event time closed or pruned), on claim messages and on line messages."""
    synth = Synth(40, seed=3, violation_rate=0.3, void_rate=0.1)
    events = [
        e
        for e in map(parse_event, generate_lines(synth, claims=claims))
        if not isinstance(e, Invalid)
    ]
    state = CountingTable()
    store = TouchRecorder(state)
    store.hold_writes()
    engine = Engine(store)
    for start in range(0, len(events), 25):
        before, store.touched = state.writes, set()
        for event in events[start : start + 25]:
            engine.apply(event)
        flush(store)
        assert state.writes - before <= len(store.touched)
    assert 0 < state.writes < store.changes / 2


def test_records_and_patient_keys_read_every_bundle() -> None:
    store = FaustStore(CountingTable())
    engine = Engine(store)
    engine.apply(parse(cl("C", 1, "77412")))
    engine.apply(parse(cl("D", 1, "77412", patient="P2")))
    assert sorted(store.patient_keys()) == [b"P1", b"P2"]
    assert len(list(store.records(DAY))) == 2
    assert len(list(store.records(COURSE))) == 2


@pytest.mark.parametrize("batch", [1, 7, 500])
def test_batched_store_gives_the_same_alerts_as_replay(batch: int) -> None:
    """The worker's store, flushed every `batch` events, against MemoryStore."""
    synth = Synth(60, seed=11, violation_rate=0.5, void_rate=0.1, span_days=200)
    events = [e for e in map(parse_event, generate_lines(synth)) if not isinstance(e, Invalid)]
    replayed = Engine(MemoryStore())
    _, store, batched = held_store()
    expected, got = [], []
    for index, event in enumerate(events, start=1):
        expected += [build_alert(t, "") for t in replayed.apply(event).transitions]
        got += [build_alert(t, "") for t in batched.apply(event).transitions]
        if index % batch == 0:
            flush(store)
    assert got == expected
    assert len(expected) > 20


def test_faust_internals_the_worker_relies_on_are_there() -> None:
    """worker.py sets faust.streams._current_event and wraps the consumer's
    force_commit; a Faust upgrade that drops either must fail here."""
    from contextvars import ContextVar

    from faust.streams import _current_event, current_event
    from faust.transport.consumer import Consumer

    from stream_app.stream.worker.batching import as_current as _as_current

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


class CountingConsumer:
    """Faust's consumer as commit_between_batches sees it, at-least-once."""

    in_transaction = False

    def __init__(self, producer: Any) -> None:
        self.app = SimpleNamespace(producer=producer)
        self.commits = 0

    async def force_commit(self) -> bool:
        self.commits += 1
        return True


async def test_a_commit_waits_for_the_batch_in_evaluation() -> None:
    import asyncio

    from stream_app.stream.worker.batching import commit_between_batches as _commit_between_batches

    class Producer:
        async def flush(self) -> None:
            await asyncio.sleep(0)

    consumer, batch_lock = CountingConsumer(Producer()), asyncio.Lock()
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

    from stream_app.stream.worker.batching import commit_between_batches as _commit_between_batches

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


async def test_no_commit_after_a_failed_send(monkeypatch: Any) -> None:
    """At-least-once: a send Kafka refused (an alert, a dead letter, a pack)
    must not be followed by a commit of the events behind it; the worker
    stops instead, to be read again from its last commit. A failure that
    shows only while the commit flushes the producer counts too."""
    import asyncio

    from stream_app.stream import health
    from stream_app.stream.worker import batching, output

    restarts: list[str] = []
    monkeypatch.setattr(health, "request_restart", restarts.append)
    sink = output.Output(None, None, None, exactly_once=False)  # type: ignore[arg-type]

    class Producer:
        fail_on_flush = False

        async def flush(self) -> None:
            if self.fail_on_flush:
                delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                delivery.add_done_callback(sink._on_delivery)
                delivery.set_exception(TimeoutError())

    producer = Producer()
    consumer = CountingConsumer(producer)
    batching.commit_between_batches(consumer, asyncio.Lock(), lambda: sink.failed_sends)
    assert await consumer.force_commit() is True
    assert consumer.commits == 1 and restarts == []

    producer.fail_on_flush = True
    assert await consumer.force_commit() is False
    assert consumer.commits == 1 and sink.failed_sends == 1
    assert restarts == ["a send to Kafka failed"]
    assert await consumer.force_commit() is False  # and never again
    assert consumer.commits == 1


def test_a_batch_cut_short_is_not_acknowledged() -> None:
    """Faust's take_events acknowledges a batch's events however its body
    ends; the worker adds a reference to each event of a batch cut short, so
    that acknowledgement does not make them committable (they are read
    again)."""
    import inspect

    from faust.streams import Stream
    from faust.types.tuples import ConsumerMessage

    from stream_app.stream.worker.batching import keep_unacknowledged as _keep_unacknowledged

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


class ReadCountingTable(CountingTable):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self, key: bytes, default: Any = None) -> Any:
        self.reads += 1
        return super().get(key, default)


def test_patients_stay_decoded_between_batches_until_forgotten() -> None:
    """Issue 22: a patient of an earlier batch is not read and decoded again;
    after `forget` (partitions assigned) or a batch cut short it is."""
    state = ReadCountingTable()
    store = FaustStore(state)
    store.hold_writes()
    engine = Engine(store)
    engine.apply(parse(cl("C", 1, "77412")))
    flush(store)
    reads = state.reads
    engine.apply(parse(cl("C", 2, "77014")))
    flush(store)
    assert state.reads == reads
    store.forget()
    assert store.get_location(("P1", "C", 2)) == LineLocation("C1", "prostate", "2024-03-04")
    assert state.reads == reads + 1
    flush(store)
    engine.apply(parse(cl("C", 3, "77014")))
    store.discard_held()
    assert store.get_location(("P1", "C", 3)) is None
    assert store.get_location(("P1", "C", 2)) is not None


def test_kept_patients_are_bounded() -> None:
    state = ReadCountingTable()
    store = FaustStore(state, keep=2)
    store.hold_writes()
    engine = Engine(store)
    for patient in ("P1", "P2", "P3"):
        engine.apply(parse(cl(f"C-{patient}", 1, "77412", patient=patient)))
        flush(store)
    reads = state.reads
    assert store.get_patient("P3") is not None and state.reads == reads
    assert store.get_patient("P1") is not None and state.reads == reads + 1
