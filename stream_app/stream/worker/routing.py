"""Routing of input messages. Intake keys messages by patient, so with the
input topic partitioned as the tables are, a message normally sits on its
patient's partition already and is evaluated where it is (direct). Any
other valid message is forwarded once to its patient's partition of the
re-key topic, in a pack with the batch's other messages from the same source
for the same partition, each with its source's event-time report (see
Pack); invalid ones go to the dead-letter topic. Reports also go out on their own
every half second, so that each re-keyed partition's low watermark moves
when no patient of its own shows up."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
import msgspec
from aiokafka.partitioner import murmur2
from faust.types import TP

from stream_app.core.event_time import Report, SourceClocks
from stream_app.core.events import Event, Invalid, event_date, event_patient, parse_event
from stream_app.stream import metrics
from stream_app.stream.settings import WorkerSettings
from stream_app.stream.worker.output import Output
from stream_app.stream.worker.trace import trace

log = logging.getLogger("stream_app.stream.worker")

EVENT_TIME_REPORT_SECONDS = 0.5
PACK_HEADER = "pack"
# A pack is sent when a batch ends, or before it would grow past these.
PACK_MAX_ITEMS = 500
PACK_MAX_BYTES = 1024 * 1024

_pack_encoder = msgspec.msgpack.Encoder()
_pack_decoder = msgspec.msgpack.Decoder(list[tuple[str, bytes]])


def encode_pack(items: list[tuple[str, bytes]]) -> bytes:
    return _pack_encoder.encode(items)


def decode_pack(raw: bytes) -> list[tuple[str, bytes]]:
    """[(the source's watermark as the message was forwarded, its bytes)]."""
    return _pack_decoder.decode(raw)


class Pack:
    """Input messages of one source partition for one re-keyed partition,
    forwarded as one message: Faust's cost is per message, and the re-key
    trip paid it twice for every line (issue 9). Each carries the source's
    event-time report as it was forwarded, so the target hears the same
    reports in the same order as message by message."""

    __slots__ = ("generation", "items", "origin", "report", "size")

    def __init__(self, origin: Any, generation: int) -> None:
        self.origin = origin
        self.generation = generation
        self.items: list[tuple[str, bytes]] = []
        self.report = Report("", False)
        self.size = 0

    def add(self, raw: bytes, report: Report) -> None:
        self.items.append((report.watermark, raw))
        self.report = report
        self.size += len(raw) + 16


def patient_partition(key: bytes, partitions: int) -> int:
    """The re-key topic's partition of a patient: Kafka's default (murmur2)."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def report_headers(source: int, report: Report) -> list[tuple[str, bytes]]:
    return [
        ("src", str(source).encode()),
        ("wm", report.watermark.encode()),
        ("idle", b"1" if report.idle else b"0"),
    ]


class Routing:
    """`direct`: the input topic has the tables' partition count, so Faust
    assigns its partition p with table partition p (they are co-partitioned)
    and a message whose patient hashes to p can be evaluated as it is read."""

    def __init__(
        self,
        app: faust.App,
        settings: WorkerSettings,
        by_patient: Any,
        output: Output,
        *,
        direct: bool = True,
    ) -> None:
        self.app = app
        self.settings = settings
        self.by_patient = by_patient
        self.output = output
        self.direct = direct
        self.clocks = SourceClocks(settings.partitions)
        self.forwarded_offsets: dict[int, int] = {}  # input partition -> last offset handled
        # Messages to forward at the end of the batch, by (source, target).
        self.pending: dict[tuple[int, int], Pack] = {}

    def install(self) -> None:
        """The event-time reports' loop (input messages are read by the
        evaluation agent, which calls `route`)."""
        report_loop = self._report_event_time_every_half_second

        async def _report_event_time() -> None:  # app.task passes the app to a method
            await report_loop()

        self.app.task(_report_event_time)

    def on_assigned(self, assigned: Any) -> None:
        # Re-keyed partitions relearn event time after any rebalance (see
        # Evaluation.event_time); sources that are done would otherwise never
        # re-tell.
        sources = {tp.partition for tp in assigned if tp.topic == self.settings.input_topic}
        self.clocks.keep_only(sources)
        for source in list(self.forwarded_offsets):
            if source not in sources:
                del self.forwarded_offsets[source]
        self.clocks.forget_told()

    def own_report(self, partition: int) -> Report | None:
        """With direct routing, the latest report of input partition
        `partition` holds for table partition `partition`: everything of the
        source that belongs there was evaluated as it was read."""
        return self.clocks.reports.get(partition) if self.direct else None

    async def route(self, event: Any) -> Event | None:
        """An input message: returned parsed if it is to be evaluated here and
        now (on its patient's partition), else forwarded there or dead-lettered."""
        raw = bytes(event.value) if event.value is not None else b""
        parsed = parse_event(raw)
        message = event.message
        self.forwarded_offsets[message.partition] = message.offset
        if isinstance(parsed, Invalid):
            source = f"{message.topic}:{message.partition}:{message.offset}"
            await self.output.dead_letter(message.tp, event.key, raw, parsed, source)
            return None
        clocks = self.clocks
        clocks.observe(message.partition, event_date(parsed))
        key = event_patient(parsed).encode()
        target = patient_partition(key, self.settings.partitions)
        if self.direct and target == message.partition:
            metrics.ROUTED_BY["direct"].inc()
            return parsed
        metrics.ROUTED_BY["rekeyed"].inc()
        pair = (message.partition, target)
        pack = self.pending.get(pair)
        if pack is None:
            pack = self.pending[pair] = Pack(message.tp, clocks.generation)
        pack.add(raw, clocks.reports[message.partition])
        if trace.isEnabledFor(logging.DEBUG):
            trace.debug("fwd %d@%d -> %d", message.partition, message.offset, target)
        if len(pack.items) >= PACK_MAX_ITEMS or pack.size >= PACK_MAX_BYTES:
            del self.pending[pair]
            await self._send(pair, pack)
        return None

    async def send_pending(self) -> None:
        """Forward what the batch routed elsewhere (before its offsets are
        acknowledged)."""
        pending, self.pending = self.pending, {}
        for pair, pack in pending.items():
            await self._send(pair, pack)

    def discard_pending(self) -> None:
        """A batch cut short: its input messages are read again."""
        self.pending = {}

    async def _send(self, pair: tuple[int, int], pack: Pack) -> None:
        source, target = pair
        await self.output.send_for(
            pack.origin,
            self.by_patient,
            None,
            encode_pack(pack.items),
            partition=target,
            headers=[(PACK_HEADER, b"1"), ("src", str(source).encode())],
        )
        self.clocks.told(source, target, pack.report, pack.generation)

    async def report_event_time(self) -> None:
        """Every re-keyed partition hears every source's report, so its low
        watermark moves even when no patient of its own shows up."""
        await self.mark_idle_sources()
        clocks = self.clocks
        generation = clocks.generation
        for source, target, report in list(clocks.untold()):
            if (source, target) in self.pending:
                continue  # told with the pack, after the messages it holds
            headers = [("tick", b"1"), *report_headers(source, report)]
            if self.output.exactly_once:
                # In the transaction of the source partition, which this
                # worker owns: Faust's Topic.send picks the *target*'s
                # transaction, which only the target's owner has ("No
                # transaction producer found"), so with more than one
                # worker most reports never went, and event time stood
                # still on their partitions (issue 23's soak: holds never
                # ended, courses never closed).
                origin = TP(self.settings.input_topic, source)
                await self.output.send_for(
                    origin, self.by_patient, None, b"", partition=target, headers=headers
                )
            else:
                await self.by_patient.send(
                    key=None, value=b"", partition=target, headers=headers
                )
            clocks.told(source, target, report, generation)

    async def _report_event_time_every_half_second(self) -> None:
        # A loop, not app.timer: a report waits for the input's end offsets
        # from the broker and can take longer than the interval (under load,
        # at start-up), which mode's Timer logs as "overlapping" every time.
        # Not during a rebalance: under exactly-once the re-key topic's
        # transactions are being restarted, and a send then fails ("not in
        # transaction"). A report not sent stays untold and goes next time.
        app = self.app
        while not app.should_stop:
            await asyncio.sleep(EVENT_TIME_REPORT_SECONDS)
            if app.rebalancing:
                continue
            try:
                await self.report_event_time()
            except Exception as exc:
                log.warning("event-time report not sent (%s); retrying", type(exc).__name__)

    async def mark_idle_sources(self) -> None:
        """A source read to its end does not hold event time back. One with
        nothing read since it was assigned is read to its end when the
        group's committed offset is (a restart with no new input there):
        otherwise it would hold every partition's event time back, and no
        course would close nor hold end, until a message arrives on it."""
        consumer = self.app.consumer
        tps = [tp for tp in consumer.assignment() if tp.topic == self.settings.input_topic]
        if not tps:
            return
        try:
            ends = await consumer.highwaters(*tps)
        except Exception as exc:
            log.warning("could not read input end offsets: %s", type(exc).__name__)
            return
        committed = getattr(consumer, "_committed_offset", {})  # the next offset to read
        for tp in tps:
            done = self.forwarded_offsets.get(tp.partition)
            end = ends.get(tp) or 0
            if done is not None:
                idle = done + 1 >= end
            else:
                start = committed.get(tp)
                idle = end == 0 or (start is not None and start >= end)
            self.clocks.set_idle(tp.partition, idle)
