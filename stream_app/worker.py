"""`stream-app worker`: the engine as a Faust stream processor on Kafka.

This layer only moves data: it re-keys input by patient, reads and writes the
tables through `FaustStore`, calls the engine and sends the alerts. Every
decision is the engine's, so the worker and `stream-app replay` agree.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
import time
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import faust
from aiokafka.partitioner import murmur2
from faust.streams import _current_event

from . import faust_metrics, faust_patches, health, metrics
from .alerts import encode_alert, now_rfc3339
from .engine import Engine, EngineSettings, Transition
from .event_time import LowWatermark, Report, SourceClocks
from .events import ClaimLineEvent, Event, Invalid, parse_event
from .faust_store import FaustStore
from .profiles import ProfileBook, ProfileError
from .rules import load_registry
from .settings import WorkerSettings
from .topics import TopicSetupError, ensure_topics, repartition_topic

log = logging.getLogger("stream_app.worker")
# Offsets only (no claim data): STREAM_APP_TRACE=1 logs every event's way.
trace = logging.getLogger("stream_app.trace")

EVENT_TIME_REPORT_SECONDS = 0.5
NEVER_DAYS = 1_000_000  # a retention that never comes
# Outcomes after which a redelivered event may have lost its alerts in a crash.
_ALREADY_APPLIED = frozenset({"duplicate", "void_unknown", "course_end"})
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def new_app(settings: WorkerSettings) -> faust.App:
    """The Faust app with the worker's settings, before agents and tables
    (benchmarks/faust_floor.py builds its floor on the same).

    Installs the seek-before-resume fix to Faust's table recovery first
    (stream_app.faust_patches), which refuses any Faust but 0.15.3."""
    faust_patches.install()
    return faust.App(
        settings.id,
        broker=settings.broker_urls,
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_allow_declare=True,
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        web_enabled=True,
        autodiscover=False,
        producer_max_request_size=MAX_MESSAGE_BYTES,
        producer_linger=settings.producer_linger_seconds,
        consumer_max_fetch_size=MAX_MESSAGE_BYTES,
        processing_guarantee=settings.processing_guarantee,
        broker_credentials=_credentials(settings),
        table_cleanup_interval=3600.0,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
        logging_config=None,
        # Every topic and table carries bytes that we encode ourselves.
        key_serializer="raw",
        value_serializer="raw",
    )


def rocksdb_options(settings: WorkerSettings) -> dict[str, int]:
    """Per-database RocksDB options of every table (see WorkerSettings)."""
    return {
        "write_buffer_size": settings.rocksdb_write_buffer_bytes,
        "max_write_buffer_number": 2,
        "block_cache_size": settings.rocksdb_block_cache_bytes,
    }


def build_app(settings: WorkerSettings, profiles: ProfileBook) -> faust.App:
    app = new_app(settings)
    faust_metrics.install(app)

    def raw_topic(name: str, **extra: Any) -> Any:
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
            **extra,
        )

    def raw_table(name: str) -> Any:
        # bytes key and value types make Faust use its raw codec for the table.
        return app.Table(
            name,
            default=None,
            partitions=settings.partitions,
            key_type=bytes,
            value_type=bytes,
            options=rocksdb_options(settings),
        )

    input_topic = raw_topic(settings.input_topic)
    alerts_topic = raw_topic(settings.alerts_topic)
    dlq_topic = raw_topic(settings.dlq_topic)
    by_patient = raw_topic(repartition_topic(settings))
    store = FaustStore(
        patients=raw_table("patients"),
        courses=raw_table("courses"),
        days=raw_table("days"),
        locations=raw_table("claim_locations"),
    )
    engine = Engine(
        store,
        load_registry(),
        profiles,
        EngineSettings(
            course_idle_days=settings.course_idle_days,
            retain_days=settings.retain_days if settings.prune else NEVER_DAYS,
        ),
    )
    state_gauges = metrics.StateGauges(engine.registry.ids)

    async def _recount_state() -> None:
        await state_gauges.refresh(
            store.days,
            store.courses,
            generation=app.rebalancing_count,
            interrupted=lambda: bool(app.rebalancing),
        )

    app.timer(interval=metrics.StateGauges.TICK_SECONDS)(_recount_state)

    # Offsets below the end of a partition at assignment may have been
    # processed before a crash (see Engine.restate).
    recovery_until: dict[Any, int] = {}
    # With Kafka transactions alerts, tables and offsets commit together, so
    # there is nothing to restate (and restating would repeat transitions).
    restate_on_recovery = settings.processing_guarantee == "at_least_once"
    # Partitions whose event time and idle index must be rebuilt from the
    # tables before their next event (they were just assigned to us).
    adopt_pending: set[int] = set()
    clocks = SourceClocks(settings.partitions)
    forwarded_offsets: dict[int, int] = {}  # input partition -> last offset handled

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def _on_partitions_assigned(sender: Any, assigned: Any, **_: Any) -> None:
        # Re-keyed partitions relearn event time after any rebalance (see
        # event_time()); sources that are done would otherwise never re-tell.
        sources = {tp.partition for tp in assigned if tp.topic == settings.input_topic}
        clocks.keep_only(sources)
        for source in list(forwarded_offsets):
            if source not in sources:
                del forwarded_offsets[source]
        clocks.forget_told()
        ours = [tp for tp in assigned if tp.topic == by_patient.get_topic_name()]
        if not ours:
            return
        adopt_pending.update(tp.partition for tp in ours)
        try:
            highwaters = await app.consumer.highwaters(*ours)
        except Exception as exc:
            log.warning("could not read partition end offsets: %s", type(exc).__name__)
            return
        recovery_until.update(highwaters)

    exactly_once = settings.processing_guarantee == "exactly_once"

    async def send_for(
        origin: Any,
        topic: Any,
        key: bytes | None,
        value: bytes,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Send a message caused by the event at `origin` (its topic partition).

        Under exactly-once the message joins the transaction in which Faust
        commits `origin`'s offset, so output and progress commit together.
        Faust itself would pick the transaction of the *destination* partition,
        and none at all for topics the app does not consume (alerts, DLQ).
        """
        if not exactly_once:
            await topic.send(key=key, value=value, partition=partition, headers=headers)
            return
        group = app.assignor.group_for_topic(origin.topic)
        await app.producer.send(
            topic.get_topic_name(),
            key,
            value,
            partition,
            None,
            headers,
            transactional_id=f"{app.conf.id}-{group}-{origin.partition}",
        )

    async def dead_letter(
        origin: Any, key: bytes | None, raw: bytes, invalid: Invalid, source: str
    ) -> None:
        metrics.LINES_BY_OUTCOME["invalid"].inc()
        metrics.DEAD_LETTERS.labels(invalid.reason).inc()
        await send_for(
            origin,
            dlq_topic,
            key,
            raw,
            headers=[
                ("reason", invalid.reason.encode()),
                ("detail", invalid.detail.encode()),
                ("source", source.encode()),
            ],
        )

    checks = health.Health(
        app,
        {settings.input_topic: "input", by_patient.get_topic_name(): "rekey"},
        settings.stall_seconds,
    )
    checks.install_pages()
    checks.install_check()
    checks.quiet_startup()

    event_times: dict[int, LowWatermark] = {}  # re-keyed partition -> its low watermark

    @app.agent(input_topic)
    async def ingest(stream: Any) -> None:
        # One event at a time: Faust acknowledges an event once the next one
        # is taken, so nothing is committed before it has been forwarded.
        async for event in stream.events():
            await forward(event)

    async def report_event_time() -> None:
        """Every re-keyed partition hears every source's report, so its low
        watermark moves even when no patient of its own shows up."""
        await mark_idle_sources()
        generation = clocks.generation
        for source, target, report in list(clocks.untold()):
            await by_patient.send(
                key=None,
                value=b"",
                partition=target,
                headers=[("tick", b"1"), *_report_headers(source, report)],
            )
            clocks.told(source, target, report, generation)

    async def _report_event_time_every_half_second() -> None:
        # A loop, not app.timer: a report waits for the input's end offsets
        # from the broker and can take longer than the interval (under load,
        # at start-up), which mode's Timer logs as "overlapping" every time.
        # Not during a rebalance: under exactly-once the re-key topic's
        # transactions are being restarted, and a send then fails ("not in
        # transaction"). A report not sent stays untold and goes next time.
        while not app.should_stop:
            await asyncio.sleep(EVENT_TIME_REPORT_SECONDS)
            if app.rebalancing:
                continue
            try:
                await report_event_time()
            except Exception as exc:
                log.warning("event-time report not sent (%s); retrying", type(exc).__name__)

    app.task(_report_event_time_every_half_second)

    async def mark_idle_sources() -> None:
        """A source read to its end does not hold event time back."""
        tps = [tp for tp in app.consumer.assignment() if tp.topic == settings.input_topic]
        if not tps:
            return
        try:
            ends = await app.consumer.highwaters(*tps)
        except Exception as exc:
            log.warning("could not read input end offsets: %s", type(exc).__name__)
            return
        for tp in tps:
            done = forwarded_offsets.get(tp.partition)
            end = ends.get(tp) or 0
            clocks.set_idle(tp.partition, end == 0 or (done is not None and done + 1 >= end))

    async def forward(event: Any) -> None:
        raw = bytes(event.value) if event.value is not None else b""
        parsed = parse_event(raw)
        message = event.message
        forwarded_offsets[message.partition] = message.offset
        if isinstance(parsed, Invalid):
            source = f"{message.topic}:{message.partition}:{message.offset}"
            await dead_letter(message.tp, event.key, raw, parsed, source)
            return
        if isinstance(parsed, ClaimLineEvent):
            patient_id, event_date = parsed.line.patient_id, parsed.line.date_of_service
        else:
            patient_id, event_date = parsed.patient_id, parsed.date
        clocks.observe(message.partition, event_date)
        report = clocks.reports[message.partition]
        generation = clocks.generation
        key = patient_id.encode()
        target = patient_partition(key, settings.partitions)
        await send_for(
            message.tp,
            by_patient,
            key,
            raw,
            partition=target,
            headers=_report_headers(message.partition, report),
        )
        clocks.told(message.partition, target, report, generation)
        if trace.isEnabledFor(logging.DEBUG):
            trace.debug("fwd %d@%d -> %d", message.partition, message.offset, target)

    def event_time(partition: int, headers: Any) -> LowWatermark:
        """Fold a message's source report into the partition's low watermark.

        Held in memory only: after a restart or a rebalance the partition is
        read again from its committed offset, and event time must be learnt
        again in that order (a stored value could be ahead of the messages
        still to come, and close their courses early).
        """
        low = event_times.get(partition)
        if low is None:
            low = event_times[partition] = LowWatermark(settings.partitions)
        source = _header(headers, "src")
        if source is not None:
            report = Report(_header(headers, "wm") or "", _header(headers, "idle") == "1")
            low.update(int(source), report)
        return low

    # Held by `evaluate` from the start of a batch until Faust has acknowledged
    # its events; commits wait for it (see _commit_between_batches).
    batch_lock = asyncio.Lock()

    @app.agent(by_patient)
    async def evaluate(stream: Any) -> None:
        _commit_between_batches(app.consumer, batch_lock)
        if trace.isEnabledFor(logging.DEBUG):
            _trace_offsets(app.consumer)
        if settings.batch_max <= 1:
            # One event at a time, table writes at once: Faust acknowledges
            # an event when the next one is taken.
            async for event in stream.events():
                await evaluate_one(event)
            return
        store.hold_writes()
        async for events in stream.take_events(settings.batch_max, settings.batch_seconds):
            await batch_lock.acquire()
            try:
                await evaluate_batch(events)
            except BaseException:
                _keep_unacknowledged(events)
                raise
            finally:
                # take_events acknowledges the batch right after this body,
                # without suspending: a callback runs only after that.
                asyncio.get_running_loop().call_soon(batch_lock.release)

    async def evaluate_batch(events: list[Any]) -> None:
        last_of_partition: dict[int, Any] = {}
        for event in events:
            partition = event.message.partition
            last_of_partition[partition] = event
            store.partition = partition
            with _as_current(event):
                await evaluate_one(event)
        written = store.flush(partial(_as_current_of, last_of_partition))
        metrics.BATCHES.inc()
        metrics.BATCH_TABLE_WRITES.inc(written)

    async def evaluate_one(event: Any) -> None:
        message = event.message
        if message.partition in adopt_pending:
            adopt_pending.discard(message.partition)
            event_times.pop(message.partition, None)
            adopt(message.partition)
        clock = event_time(message.partition, message.headers)
        watermark, settled, latest = clock.low, clock.settled, clock.latest
        if _header(message.headers, "tick") is not None:
            ticked = engine.tick(message.partition, watermark, settled, latest)
            if trace.isEnabledFor(logging.DEBUG):
                trace.debug("tick %d@%d %d", message.partition, message.offset, len(ticked))
            await send_alerts(message.tp, ticked, None)
            return
        raw = bytes(event.value) if event.value is not None else b""
        parsed = parse_event(raw)
        if isinstance(parsed, Invalid):  # only if someone writes to our internal topic
            await dead_letter(message.tp, event.key, raw, parsed, "internal")
            return
        started = time.perf_counter()
        try:
            result = engine.apply(parsed, message.partition, watermark, settled, latest)
            transitions = result.transitions
            if (
                restate_on_recovery
                and not transitions
                and result.outcome in _ALREADY_APPLIED
                and (message.offset < recovery_until.get(message.tp, -1))
            ):
                transitions = engine.restate(parsed)
        except Exception as exc:
            # No traceback text: exception messages can carry claim data.
            log.error(
                "engine failed on an event (%s); sent to the dead-letter topic",
                type(exc).__name__,
            )
            await dead_letter(
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
        metrics.LINES_BY_OUTCOME[_outcome_label(result.outcome)].inc()
        await send_alerts(message.tp, transitions, parsed)

    def adopt(partition: int) -> None:
        """Rebuild the partition's idle-course index from state."""
        mine = (
            key.decode()
            for key in store.patients
            if patient_partition(key, settings.partitions) == partition
        )
        found = engine.adopt(partition, mine)
        log.info("partition %d: %d patients in state", partition, found)

    async def send_alerts(origin: Any, transitions: list[Transition], parsed: Event | None) -> None:
        if not transitions:
            return
        detected_at = now_rfc3339()
        for transition in transitions:
            await send_for(
                origin,
                alerts_topic,
                transition.line.claim_id.encode(),
                encode_alert(transition, detected_at),
            )
            metrics.ALERT_TRANSITIONS.labels(
                transition.spec.rule_id, transition.status, transition.finality
            ).inc()
        received_at = parsed.received_at if parsed is not None else None
        if received_at:
            lag = (datetime.now(UTC) - datetime.fromisoformat(received_at)).total_seconds()
            metrics.INTAKE_LAG_SECONDS.observe(max(lag, 0.0))

    return app


def _commit_between_batches(consumer: Any, batch_lock: asyncio.Lock) -> None:
    """Make Faust's offset commits wait for the batch being evaluated (the
    lock is never held event by event) and, under exactly-once, for the
    producer buffer to drain into the transaction (drain_producer_buffer).

    A commit in the middle of a batch would, under exactly-once, commit the
    transaction with the alerts of the batch's first events but without their
    table writes (held until the batch ends) or their offsets (acknowledged
    when it ends); after a crash the events would run again on the old state
    and send their alerts twice. Between batches, everything sent belongs to
    acknowledged events.
    """
    if getattr(consumer, "_stream_app_guarded", False):
        return
    force_commit = consumer.force_commit

    async def force_commit_between_batches(*args: Any, **kwargs: Any) -> Any:
        async with batch_lock:
            if getattr(consumer, "in_transaction", False):
                await drain_producer_buffer(consumer.app.producer)
            return await force_commit(*args, **kwargs)

    consumer.force_commit = force_commit_between_batches
    consumer._stream_app_guarded = True


def _trace_offsets(consumer: Any) -> None:
    """STREAM_APP_TRACE: log the offsets committed and sought."""
    if getattr(consumer, "_stream_app_traced", False):
        return
    commit_offsets, perform_seek = consumer._commit_offsets, consumer.perform_seek

    async def traced_commit(offsets: Any, *args: Any, **kwargs: Any) -> Any:
        done = await commit_offsets(offsets, *args, **kwargs)
        shown = " ".join(f"{tp.topic[-8:]}/{tp.partition}={o}" for tp, o in offsets.items())
        trace.debug("commit %s -> %s", shown, done)
        return done

    async def traced_seek() -> None:
        await perform_seek()
        shown = " ".join(
            f"{tp.topic[-8:]}/{tp.partition}={o}" for tp, o in consumer._read_offset.items()
        )
        trace.debug("sought %s", shown)

    callback = consumer.callback

    async def traced_callback(message: Any) -> Any:
        trace.debug("dlv %s/%d@%d", message.topic[-8:], message.partition, message.offset)
        return await callback(message)

    consumer._commit_offsets, consumer.perform_seek = traced_commit, traced_seek
    consumer.callback = traced_callback
    consumer._stream_app_traced = True


DRAIN_SECONDS = 30.0


async def drain_producer_buffer(producer: Any, timeout: float = DRAIN_SECONDS) -> None:
    """Wait until Faust's producer buffer has handed every message to Kafka's
    producer, so that it joins the transaction about to commit.

    Table writes reach their changelog through that buffer (`send_soon`), and
    Faust 0.15.3 commits a transaction without draining it (only its
    at-least-once commit flushes the producer). A batch's changelog messages
    could then land in the next transaction, after the offsets of the events
    that made them: a crash in between lost those table writes (measured:
    SIGKILL mid-stream under exactly-once with batches left 4 extra alerts).
    """
    buffer = producer.buffer
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not faust_patches.buffer_drained(buffer):
        if loop.time() > deadline:
            log.warning("producer buffer not drained in %.0f s before a commit", timeout)
            return
        # flush() returns once the queue is empty, or after 0.1 s without a send.
        await buffer.flush()
        await asyncio.sleep(0.001)


def _keep_unacknowledged(events: list[Any]) -> None:
    """Keep the events of a batch cut short (the worker stopping in the
    middle of it, an error) from being acknowledged, so that they are read
    again from the committed offset.

    Faust's take_events acknowledges a batch's events however its body ends;
    the batch's table writes, held until its end, are lost, and committing
    its offsets would skip its events (alerts missing, or state behind the
    alerts already sent). One more reference per message outlives that
    acknowledgement."""
    for event in events:
        event.message.incref()


@contextmanager
def _as_current(event: Any) -> Iterator[None]:
    """Make `event` Faust's current event: table reads and writes take their
    partition from it (faust.streams sets the same context variable)."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def _as_current_of(events: dict[int, Any], partition: int) -> AbstractContextManager[None]:
    return _as_current(events[partition])


def _report_headers(source: int, report: Report) -> list[tuple[str, bytes]]:
    return [
        ("src", str(source).encode()),
        ("wm", report.watermark.encode()),
        ("idle", b"1" if report.idle else b"0"),
    ]


def _header(headers: Any, name: str) -> str | None:
    for key, value in headers or ():
        if key == name:
            return value.decode() if isinstance(value, bytes | bytearray) else str(value)
    return None


def patient_partition(key: bytes, partitions: int) -> int:
    """The re-key topic's partition of a patient: Kafka's default (murmur2)."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def _outcome_label(outcome: str) -> str:
    return {"void_unknown": "void", "course_end": "processed"}.get(outcome, outcome)


def _credentials(settings: WorkerSettings) -> Any:
    if not settings.security_protocol.startswith("SASL"):
        if settings.security_protocol == "SSL":
            import ssl

            return faust.SSLCredentials(
                ssl.create_default_context(
                    cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None
                )
            )
        return None
    ssl_context = None
    if settings.security_protocol == "SASL_SSL":
        import ssl

        ssl_context = ssl.create_default_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None
        )
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=settings.sasl_password,
        mechanism=settings.sasl_mechanism,
        ssl_context=ssl_context,
    )


def _not_routine_backpressure(record: logging.LogRecord) -> bool:
    """Faust warns "producer buffer full" (and logs the flush) whenever table
    writes queue more than 100 changelog messages: several times a second
    under load. That is its normal flow control, not a fault."""
    return not str(record.msg).startswith(("producer buffer full", "producer flush took"))


def run_worker() -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("faust.transport.producer").addFilter(_not_routine_backpressure)
    try:
        settings = WorkerSettings()
    except Exception as exc:  # pydantic's message names the variable
        print(f"stream-app worker: bad settings: {exc}", file=sys.stderr)
        return 2
    if settings.trace:
        trace.setLevel(logging.DEBUG)
    registry = load_registry()
    try:
        profiles = ProfileBook.load_or_default(settings.payer_profiles, registry.ids)
    except ProfileError as exc:
        print(f"stream-app worker: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(ensure_topics(settings))
    except TopicSetupError as exc:
        print(f"stream-app worker: {exc}", file=sys.stderr)
        return 3
    from . import kafka_backoff

    kafka_backoff.install()  # no busy loop while the broker is down
    app = build_app(settings, profiles)
    tables_dir = Path(app.conf.tabledir)
    if settings.processing_guarantee == "exactly_once" and settings.store.startswith("rocksdb"):
        drop_tables_after_crash(tables_dir)
    worker = faust.Worker(app, loglevel=settings.log_level, override_logging=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code in (0, None):
            mark_clean_shutdown(tables_dir)
            if health.exit_requested():
                return health.EXIT_STALLED
        raise
    mark_clean_shutdown(tables_dir)
    return health.EXIT_STALLED if health.exit_requested() else 0


CLEAN_SHUTDOWN_MARKER = "clean-shutdown"


def drop_tables_after_crash(tables_dir: Path) -> bool:
    """Under exactly-once, drop local tables that a crash may have left ahead
    of what Kafka committed; True if dropped.

    RocksDB keeps every table write at once, including those of a transaction
    that the crash aborted; the restarted worker would then take the aborted
    events as already applied and never send their alerts. Tables rebuilt
    from the changelogs (read_committed) hold only committed writes. This is
    what Kafka Streams does with its checkpoint file under exactly-once.
    """
    marker = tables_dir / CLEAN_SHUTDOWN_MARKER
    if marker.exists():
        marker.unlink()  # a crash from now on leaves no marker
        return False
    if not tables_dir.exists() or not any(tables_dir.iterdir()):
        return False
    log.warning(
        "exactly-once: the last run did not shut down cleanly; dropping local tables "
        "in %s and rebuilding them from the changelog topics",
        tables_dir,
    )
    shutil.rmtree(tables_dir)
    return True


def mark_clean_shutdown(tables_dir: Path) -> None:
    if tables_dir.exists():
        (tables_dir / CLEAN_SHUTDOWN_MARKER).touch()
