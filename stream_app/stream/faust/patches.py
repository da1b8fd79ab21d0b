"""Version-pinned fixes to faust-streaming 0.15.3: seek before resume, and
gaps that end before the message delivered.

At the end of a table recovery, 0.15.3's `Recovery.on_recovery_completed`
resumes the stream partitions and *then* awaits `consumer.perform_seek()`.
Flow is already on from the changelog read, so during the seek (a few hundred
milliseconds, one committed-offset request per partition) the fetcher hands
the agents records from wherever the consumer stood. When the seek lands,
the next record of that batch looks like a jump in offsets to
`Consumer._drain_messages`, which records a gap and acknowledges it by
itself; `flow_control.resume()` then drops what is still queued. The result
(measured in ../shared/notes/faust-recovery-race.md): duplicate
acknowledgements, commits that crawl by one offset, records never processed
(a partition whose commits stop for good) or silently skipped (wrong alerts).

`on_recovery_completed` below is 0.15.3's method with one change: the seek
happens while the stream partitions are still paused, and nothing awaits
between resuming them and `flow_control.resume()`, so nothing fetched from
the old position can reach an agent. `_add_gap` below keeps a gap in offsets (a
commit marker, a compacted record) from acknowledging the next message a
second time.

`seek_to_committed` below also moves the partitions that have no committed
offset. 0.15.3 leaves the seek to aiokafka's `seek_to_committed`, which seeks
only offsets above 0: a partition the group has never committed stays where
the fetcher stood. Records fetched there and dropped unprocessed (a
recovery's queue cleared on resume, a rebalance) were then never read again.
Measured (SIGKILL before the worker's first commit, then a restart that read
the state changelog; 3 of 11 runs on a loaded machine): every input partition
stood at its end, nothing was processed, the group committed nothing for
good, and the stall check saw nothing waiting. Such partitions are now
sought to the start (or end) that `consumer_auto_offset_reset` names, and a
committed offset of 0 is sought to 0.

`_create_worker_consumer` below makes the consumer's fetch requests wait at
the broker at most FETCH_MAX_WAIT_MS for data, not 0.15.3's fixed 1,500 ms.
aiokafka keeps one fetch request in flight per broker, and leaves out of it
the partitions whose fetched records the app has not taken yet; a request
made while those wait carries only partitions with nothing new (the re-key
topic between ticks, the table changelogs), so the broker holds it for the
whole wait, and the partitions with records queue behind it. Measured: a
Faust agent that does nothing got about one round of fetches a second (1,150
claim messages/s with 128 KiB fetches and 8 partitions), and the worker at a
steady 193 claim messages/s took records 1.2-1.7 s after they were written
(p50), with its agent idle two thirds of the time.

`_highwaters` below asks the broker for the changelogs' end offsets under
exactly-once too. 0.15.3 returns, for a consumer in a transaction,
aiokafka's `last_stable_offset(tp)`: the stable offset of the last *fetch*
of that partition, None before the first. A worker that starts (or is given
a changelog partition) has fetched nothing there, so recovery took the
changelog's highwater for -1: with no local state it restored nothing and
went on with empty tables (alerts opened again, holds lost); with local
state it raised `ConsistencyError: The persisted offset ... is higher than
the last offset in that topic (highwater) (577 > -1)` and the worker
crash-looped (issue 23). aiokafka's `end_offsets` sends the consumer's
isolation level, so under exactly-once (read_committed) it answers the last
stable offset as the broker knows it: the end of the committed records.

`install()` refuses any other Faust version, and any 0.15.3 whose methods are
not the ones these were made from.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
from importlib.metadata import version
from typing import Any, cast

from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.producer import ProducerBuffer

from stream_app.stream import kafkaio
from stream_app.stream.faust import drain as faust_drain

trace = logging.getLogger("stream_app.trace")

FAUST_VERSION = "0.15.3"
# sha256 of inspect.getsource(Recovery.on_recovery_completed) in 0.15.3.
ORIGINAL_SOURCE_SHA256 = "6ef567acf072e46da3fccbccc6d662371f634f622c3d510972d5df81f70ae3ac"

# sha256 of inspect.getsource(Consumer._add_gap) in 0.15.3.
ORIGINAL_ADD_GAP_SHA256 = "4df2573ded7c1c2cde04dc6bde6d4480cb5875ef565256e56966b585ae39b1c1"

# sha256 of inspect.getsource(AIOKafkaConsumerThread.seek_to_committed) in 0.15.3.
ORIGINAL_SEEK_SHA256 = "775ab0adc4b052abee204d5347a556412b1f77ed4de971adde69a55a1cb6f908"

_original = Recovery.on_recovery_completed
_original_send_pending = ProducerBuffer._send_pending
_original_add_gap = Consumer._add_gap
_original_seek_to_committed = AIOKafkaConsumerThread.seek_to_committed

# sha256 of inspect.getsource(AIOKafkaConsumerThread._create_worker_consumer) in 0.15.3.
ORIGINAL_CREATE_CONSUMER_SHA256 = "c2701bfc3e6f6cad95c2be36d6a255a86e2c57d18d36cc1082b5fb5c482d99d7"
_original_create_worker_consumer = AIOKafkaConsumerThread._create_worker_consumer

# sha256 of inspect.getsource(AIOKafkaConsumerThread._highwaters) in 0.15.3.
ORIGINAL_HIGHWATERS_SHA256 = "a7f4f97d9f32aca2777713e22671d70eae4b3ae51541bb09a90448ce83acefce"
_original_highwaters = AIOKafkaConsumerThread._highwaters

# How long the broker may hold a fetch request for data (0.15.3: 1,500 ms);
# the same as the alerts clients' (kafkaio).
FETCH_MAX_WAIT_MS = kafkaio.FETCH_MAX_WAIT_MS


class FaustVersionError(RuntimeError):
    """The installed Faust is not the one this override was written for."""


def source_sha256(function: Any) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()


async def on_recovery_completed(self: Any, generation_id: int = 0) -> None:
    """Call when active table recovery is completed (seek, then resume)."""
    consumer = self.app.consumer
    self.log.info("Restore complete!")
    await self.app.on_rebalance_complete.send()
    self._set_recovery_ended()
    # This needs to happen if all goes well
    callback_coros = [
        asyncio.ensure_future(
            table.on_recovery_completed(
                self.actives_for_table[table],
                self.standbys_for_table[table],
            )
        )
        for table in self.tables.values()
    ]
    if callback_coros:
        await asyncio.wait(callback_coros)
    assignment = consumer.assignment()
    if self.app.consumer_generation_id != generation_id:
        self.log.warning(
            f"Recovery rebalancing again app id "
            f"{self.app.consumer_generation_id} param {generation_id}"
        )
        return
    # stream-app: seek while the stream partitions are still paused...
    if assignment:
        self.log.info("Seek stream partitions to committed offsets.")
        await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
    # ...then resume them, with no await before flow_control.resume().
    consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
    self.completed.set()
    self.log.dev("Resume stream partitions")
    self.app.flow_control.resume()
    consumer.resume_flow()
    # finally make sure the fetcher is running.
    await cast(Any, self.app)._fetcher.maybe_start()
    self.tables.on_actives_ready()
    if not self.app.assignor.assigned_standbys():
        self.tables.on_standbys_ready()
    self.app.on_rebalance_end()
    self.log.info("Worker ready")


async def _add_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
    """0.15.3's Consumer._add_gap for the offsets *before* `offset_to`.

    `_drain_messages` calls it with `offset_to` = the offset of the message it
    is about to deliver, which is acknowledged by itself; 0.15.3 records the
    gap up to and including it, so that offset is acknowledged twice, and a
    duplicate stops `_new_offset`'s run of consecutive offsets: each gap costs
    one commit cycle (about 3 s). Under exactly-once every transaction leaves
    a commit marker in the re-key topic, so commits crawled far behind."""
    if trace.isEnabledFor(logging.DEBUG):
        trace.debug(
            "gap %s/%d %d..%d read %s committed %s",
            tp.topic[-8:],
            tp.partition,
            offset_from,
            offset_to - 1,
            self._read_offset.get(tp),
            self._committed_offset.get(tp),
        )
    await _original_add_gap(self, tp, offset_from, offset_to - 1)


async def seek_to_committed(self: Any) -> Any:
    """Seek partitions to the last committed offset; those without one to
    where `consumer_auto_offset_reset` says (module doc)."""
    reset = self.app.conf.consumer_auto_offset_reset
    return await self.call_thread(seek_committed_or_reset, self._ensure_consumer(), reset)


async def seek_committed_or_reset(kafka: Any, reset: str) -> dict[Any, int | None]:
    """aiokafka's `seek_to_committed` for every assigned partition, then a
    seek for the partitions it leaves alone: 0 for a committed offset of 0,
    the start (or, for reset "latest", the end) for none. Returns the
    committed offsets, as aiokafka's does."""
    committed: dict[Any, int | None] = await kafka.seek_to_committed()
    never = [tp for tp, offset in committed.items() if offset is None or offset < 0]
    for tp, offset in committed.items():
        if offset == 0:
            kafka.seek(tp, 0)
    if never:
        if reset == "latest":
            await kafka.seek_to_end(*never)
        else:
            await kafka.seek_to_beginning(*never)
    return committed


def _create_worker_consumer(self: Any, transport: Any) -> Any:
    """0.15.3's consumer, with FETCH_MAX_WAIT_MS (module doc). aiokafka's
    `AIOKafkaConsumer.start` hands `_fetch_max_wait_ms` to its fetcher
    (checked by check_faust)."""
    consumer = _original_create_worker_consumer(self, transport)
    consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
    return consumer


async def _highwaters(self: Any, partitions: list[Any]) -> Any:
    """The end offsets from the broker, at the consumer's isolation level
    (read_committed under exactly-once: the last stable offsets), not the
    last fetch's (module doc)."""
    return await self._ensure_consumer().end_offsets(partitions)


def _aiokafka_reads_fetch_wait() -> bool:
    import aiokafka

    start = inspect.getsource(aiokafka.AIOKafkaConsumer.start)
    return "fetch_max_wait_ms=self._fetch_max_wait_ms" in start


def _checked_sources() -> list[tuple[Any, str]]:
    return [
        (_original_create_worker_consumer, ORIGINAL_CREATE_CONSUMER_SHA256),
        (_original, ORIGINAL_SOURCE_SHA256),
        (_original_add_gap, ORIGINAL_ADD_GAP_SHA256),
        (_original_seek_to_committed, ORIGINAL_SEEK_SHA256),
        (_original_highwaters, ORIGINAL_HIGHWATERS_SHA256),
        (faust_drain.original_drain_messages, faust_drain.ORIGINAL_DRAIN_SHA256),
    ]


def check_faust() -> None:
    """Raise FaustVersionError unless Faust is the version this override fits."""
    installed = version("faust-streaming")
    if installed != FAUST_VERSION:
        raise FaustVersionError(
            f"stream_app.stream.faust.patches fits faust-streaming {FAUST_VERSION}, "
            f"not {installed}: "
            "check whether Recovery.on_recovery_completed still resumes the stream partitions "
            "before it seeks them (../shared/notes/faust-recovery-race.md), then update "
            "or drop the override"
        )
    for function, expected in _checked_sources():
        found = source_sha256(function)
        if found != expected:
            raise FaustVersionError(
                f"faust's {function.__qualname__} is not 0.15.3's (sha256 {found}): "
                "the override in stream_app.stream.faust.patches no longer fits it"
            )
    if not _aiokafka_reads_fetch_wait():
        raise FaustVersionError(
            "aiokafka's AIOKafkaConsumer.start no longer passes _fetch_max_wait_ms to its "
            "fetcher: stream_app.stream.faust.patches._create_worker_consumer no longer fits it"
        )


async def _send_pending_counted(self: Any, fut: Any) -> None:
    """0.15.3's ProducerBuffer._send_pending, counting the sends under way:
    a message taken from the buffer's queue is not yet in Kafka's producer
    until this returns (see buffer_drained)."""
    self._stream_app_sending = getattr(self, "_stream_app_sending", 0) + 1
    try:
        await _original_send_pending(self, fut)
    finally:
        self._stream_app_sending -= 1


def buffer_drained(buffer: Any) -> bool:
    """Every message put in Faust's producer buffer (table changelog writes
    go there) has been handed to Kafka's producer."""
    return not buffer.size and not getattr(buffer, "_stream_app_sending", 0)


def install() -> None:
    """Replace Recovery.on_recovery_completed, Consumer._add_gap and
    _drain_messages and the consumer thread's seek_to_committed, and count the
    producer buffer's sends (idempotent; before the app starts); refuse other
    versions."""
    check_faust()
    Recovery.on_recovery_completed = on_recovery_completed  # type: ignore[method-assign]
    ProducerBuffer._send_pending = _send_pending_counted  # type: ignore[method-assign]
    Consumer._add_gap = _add_gap  # type: ignore[method-assign]
    Consumer._drain_messages = faust_drain._drain_messages  # type: ignore[method-assign]
    AIOKafkaConsumerThread.seek_to_committed = seek_to_committed  # type: ignore[method-assign]
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]
    AIOKafkaConsumerThread._highwaters = _highwaters  # type: ignore[method-assign]


def installed() -> bool:
    return (
        Recovery.on_recovery_completed is on_recovery_completed
        and ProducerBuffer._send_pending is _send_pending_counted
        and Consumer._add_gap is _add_gap
        and Consumer._drain_messages is faust_drain._drain_messages
        and AIOKafkaConsumerThread.seek_to_committed is seek_to_committed
        and AIOKafkaConsumerThread._create_worker_consumer is _create_worker_consumer
        and AIOKafkaConsumerThread._highwaters is _highwaters
    )
