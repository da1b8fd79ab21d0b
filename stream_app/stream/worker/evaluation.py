"""Evaluation: one agent reads the input and re-key topics. Each input
message is routed (see routing): evaluated here if it is on its patient's
partition, else forwarded. Each event to evaluate (or batch of them) is
applied by the engine against the tables, under the low watermark of its
partition, and its alert transitions are sent. Ticks carry event-time
reports only."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from functools import partial
from typing import Any

import faust

from stream_app.core.engine import Engine
from stream_app.core.event_time import LowWatermark, Report
from stream_app.core.events import Event, Invalid, parse_event
from stream_app.stream import metrics
from stream_app.stream.faust_store import FaustStore
from stream_app.stream.settings import WorkerSettings
from stream_app.stream.worker.batching import (
    as_current,
    as_current_of,
    commit_between_batches,
    keep_unacknowledged,
)
from stream_app.stream.worker.output import Output
from stream_app.stream.worker.routing import PACK_HEADER, Routing, decode_pack, patient_partition
from stream_app.stream.worker.trace import trace, trace_offsets

log = logging.getLogger("stream_app.stream.worker")

# A batch gives the event loop a turn at least this often, so that the
# producer sends the alerts of its first events while the rest are evaluated
# (issue 22: a batch of hundreds of messages held them all until its end).
YIELD_SECONDS = 0.02

# Outcomes after which a redelivered event may have lost its alerts in a crash.
_ALREADY_APPLIED = frozenset({"duplicate", "void_unknown", "course_end"})


def header(headers: Any, name: str) -> str | None:
    for key, value in headers or ():
        if key == name:
            return value.decode() if isinstance(value, bytes | bytearray) else str(value)
    return None


def heard_in(headers: Any) -> tuple[int, Report] | None:
    """The source report in a re-keyed message's headers, if any."""
    source = header(headers, "src")
    if source is None:
        return None
    return int(source), Report(header(headers, "wm") or "", header(headers, "idle") == "1")


def outcome_label(outcome: str) -> str:
    return {"void_unknown": "void", "course_end": "processed"}.get(outcome, outcome)


class Evaluation:
    def __init__(
        self,
        app: faust.App,
        settings: WorkerSettings,
        store: FaustStore,
        engine: Engine,
        output: Output,
        routing: Routing,
    ) -> None:
        self.app = app
        self.routing = routing
        self.settings = settings
        self.store = store
        self.engine = engine
        self.output = output
        # Offsets below the end of a partition at assignment may have been
        # processed before a crash (see Engine.restate).
        self.recovery_until: dict[Any, int] = {}
        # With Kafka transactions alerts, tables and offsets commit together,
        # so there is nothing to restate (and restating would repeat
        # transitions).
        self.restate_on_recovery = settings.processing_guarantee == "at_least_once"
        # Partitions whose event time and idle index must be rebuilt from the
        # tables before their next event (they were just assigned to us).
        self.adopt_pending: set[int] = set()
        self.event_times: dict[int, LowWatermark] = {}  # re-keyed partition -> low watermark
        # Held from the start of a batch until Faust has acknowledged its
        # events; commits wait for it (see commit_between_batches).
        self.batch_lock = asyncio.Lock()
        # Events by outcome label since the last count_outcomes (the counter
        # is incremented once per batch, not per event).
        self.outcomes: Counter[str] = Counter()

    def install(self, both: Any) -> None:
        """`both`: the input and re-key topics, as one channel."""
        evaluation, settings = self, self.settings

        @self.app.agent(both)
        async def evaluate(stream: Any) -> None:
            consumer = evaluation.app.consumer
            commit_between_batches(
                consumer, evaluation.batch_lock, lambda: evaluation.output.failed_sends
            )
            if trace.isEnabledFor(logging.DEBUG):
                trace_offsets(consumer)
            evaluation.store.hold_writes()
            if settings.batch_max <= 1:
                # One event at a time, its table writes at its end: Faust
                # acknowledges an event when the next one is taken.
                async for event in stream.events():
                    await evaluation.evaluate_alone(event)
                return
            async for events in stream.take_events(settings.batch_max, settings.batch_seconds):
                await evaluation.batch_lock.acquire()
                try:
                    await evaluation.evaluate_batch(events)
                except BaseException:
                    keep_unacknowledged(events)
                    evaluation.store.discard_held()
                    evaluation.routing.discard_pending()
                    evaluation.outcomes.clear()  # read again, counted then
                    raise
                finally:
                    # take_events acknowledges the batch right after this
                    # body, without suspending: a callback runs only after.
                    asyncio.get_running_loop().call_soon(evaluation.batch_lock.release)

    async def on_assigned(self, ours: list[Any]) -> None:
        """Our input and re-key partitions were (re)assigned: relearn their
        event time and idle index, and note how far they may have been
        processed."""
        self.store.forget()  # another worker may have changed their patients
        self.adopt_pending.update(tp.partition for tp in ours)
        try:
            highwaters = await self.app.consumer.highwaters(*ours)
        except Exception as exc:
            log.warning("could not read partition end offsets: %s", type(exc).__name__)
            return
        self.recovery_until.update(highwaters)

    async def evaluate_batch(self, events: list[Any]) -> None:
        last_of_partition: dict[int, Any] = {}
        yielded = time.perf_counter()
        for event in events:
            partition = event.message.partition
            last_of_partition[partition] = event
            self.store.partition = partition
            with as_current(event):
                await self.take(event)
            if time.perf_counter() - yielded >= YIELD_SECONDS:
                await asyncio.sleep(0)  # commits wait for the batch (batch_lock)
                yielded = time.perf_counter()
        await self.routing.send_pending()
        written = self.store.flush(partial(as_current_of, last_of_partition))
        self.count_outcomes()
        metrics.BATCHES.inc()
        metrics.BATCH_TABLE_WRITES.inc(written)
        metrics.count_holds(self.engine.context.holds)

    async def evaluate_alone(self, event: Any) -> None:
        self.store.partition = event.message.partition
        await self.take(event)
        metrics.count_holds(self.engine.context.holds)
        await self.routing.send_pending()
        self.store.flush(lambda _: as_current(event))
        self.count_outcomes()

    def count_outcomes(self) -> None:
        for label, count in self.outcomes.items():
            metrics.LINES_BY_OUTCOME[label].inc(count)
        self.outcomes.clear()

    async def take(self, event: Any) -> None:
        message = event.message
        if message.topic == self.settings.input_topic:
            routed = await self.routing.route(event)
            if routed is not None:
                await self.evaluate(event, routed, None)
            return
        headers = message.headers
        if header(headers, PACK_HEADER) is not None:
            await self.take_pack(event)
            return
        if header(headers, "tick") is not None:
            clock = self.clock_of(message.partition, heard_in(headers))
            ticked = self.engine.tick(message.partition, clock.low, clock.settled, clock.latest)
            if trace.isEnabledFor(logging.DEBUG):
                trace.debug("tick %d@%d %d", message.partition, message.offset, len(ticked))
            await self.output.send_alerts(message.tp, ticked, None)
            return
        raw = bytes(event.value) if event.value is not None else b""
        parsed = parse_event(raw)
        if isinstance(parsed, Invalid):  # only if someone writes to our internal topic
            await self.output.dead_letter(message.tp, event.key, raw, parsed, "internal")
            return
        await self.evaluate(event, parsed, heard_in(headers))

    async def take_pack(self, event: Any) -> None:
        """Input messages forwarded together from one source (see
        routing.Pack), each with its source's report as it was forwarded."""
        message = event.message
        source = int(header(message.headers, "src") or 0)
        value = bytes(event.value or b"")
        try:
            items = decode_pack(value)
        except Exception as exc:  # only if someone writes to our internal topic
            invalid = Invalid("internal", f"not a pack: {type(exc).__name__}")
            await self.output.dead_letter(message.tp, event.key, value, invalid, "internal")
            return
        for watermark, raw in items:
            parsed = parse_event(raw)
            if isinstance(parsed, Invalid):
                await self.output.dead_letter(message.tp, None, raw, parsed, "internal")
                continue
            await self.evaluate(event, parsed, (source, Report(watermark, False)), raw)

    def clock_of(self, partition: int, heard: tuple[int, Report] | None) -> LowWatermark:
        if partition in self.adopt_pending:
            self.adopt_pending.discard(partition)
            self.event_times.pop(partition, None)
            self.adopt(partition)
        return self.hear(partition, heard)

    async def evaluate(
        self,
        event: Any,
        parsed: Event,
        heard: tuple[int, Report] | None,
        raw: bytes | None = None,
    ) -> None:
        """Apply `parsed`, read from `event` (`heard`: the source report that
        came with it, None for a message evaluated straight from the input
        topic; `raw`: its bytes, when `event` carried more than it)."""
        message, engine = event.message, self.engine
        clock = self.clock_of(message.partition, heard)
        watermark, settled, latest = clock.low, clock.settled, clock.latest
        started = time.perf_counter()
        try:
            result = engine.apply(parsed, message.partition, watermark, settled, latest)
            transitions = result.transitions
            if (
                self.restate_on_recovery
                and not transitions
                and result.outcome in _ALREADY_APPLIED
                and (message.offset < self.recovery_until.get(message.tp, -1))
            ):
                transitions = engine.restate(parsed)
        except Exception as exc:
            # No traceback text: exception messages can carry claim data.
            log.error(
                "engine failed on an event (%s); sent to the dead-letter topic",
                type(exc).__name__,
            )
            if raw is None:
                raw = bytes(event.value) if event.value is not None else b""
            await self.output.dead_letter(
                message.tp,
                event.key,
                raw,
                Invalid("engine_error", type(exc).__name__),
                "engine",
            )
            return
        if trace.isEnabledFor(logging.DEBUG):
            trace.debug(
                "eval %d@%d %s %d",
                message.partition,
                message.offset,
                result.outcome,
                len(transitions),
            )
        metrics.PROCESSING_SECONDS.observe(time.perf_counter() - started)
        self.outcomes[outcome_label(result.outcome)] += 1
        await self.output.send_alerts(message.tp, transitions, parsed)

    def hear(self, partition: int, heard: tuple[int, Report] | None) -> LowWatermark:
        """Fold a source report into the partition's low watermark.

        Held in memory only: after a restart or a rebalance the partition is
        read again from its committed offset, and event time must be learnt
        again in that order (a stored value could be ahead of the messages
        still to come, and close their courses early).
        """
        low = self.event_times.get(partition)
        if low is None:
            low = self.event_times[partition] = LowWatermark(self.settings.partitions)
        own = self.routing.own_report(partition)
        if own is not None:
            low.update(partition, own)
        if heard is not None and not (own is not None and heard[0] == partition):
            low.update(*heard)
        return low

    def adopt(self, partition: int) -> None:
        """Rebuild the partition's idle-course index from state."""
        partitions = self.settings.partitions
        mine = (
            key.decode()
            for key in self.store.patient_keys()
            if patient_partition(key, partitions) == partition
        )
        found = self.engine.adopt(partition, mine)
        log.info("partition %d: %d patients in state", partition, found)
