"""`stream-app sink postgres`: the alerts topic into `denial_queue` (SPEC 11).

Every partition of the alerts topic is assigned by hand (no consumer group),
read with isolation_level read_committed from the offsets stored in
`sink_offsets` (the earliest when none). Each fetched batch is written in one
transaction with the offsets after it (stream_app.sink.apply), so the table
and the offsets move together: a crash at any point (SIGKILL included) resumes
exactly after the last committed batch. When the database goes away the sink
retries with backoff, then seeks every partition back to the stored offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from prometheus_client import start_http_server

from stream_app.sink import apply, database, metrics
from stream_app.sink.settings import SinkSettings
from stream_app.stream.kafkaio import FETCH_MAX_WAIT_MS, BrokerError, _client_kwargs, _start

PREFIX = "stream-app sink"
KAFKA_TIMEOUT_SECONDS = 15.0
BACKOFF_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0)
TOPIC_WAIT_SECONDS = 2.0
Conn = psycopg.AsyncConnection[tuple[Any, ...]]
LOST = (psycopg.OperationalError, psycopg.InterfaceError)


def say(text: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    sys.stderr.write(f"{stamp} {PREFIX}: {text}\n")
    sys.stderr.flush()


class Sink:
    def __init__(self, settings: SinkSettings, url: str, stop: asyncio.Event) -> None:
        self.settings = settings
        self.url = url
        self.topic = settings.alerts_topic
        self.stop = stop
        self.consumer = AIOKafkaConsumer(
            **_client_kwargs(settings),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        self.partitions: list[TopicPartition] = []
        self.saved: dict[int, int] = {}  # partition -> next offset in the database
        self.conn: Conn | None = None
        self.refreshed = 0.0
        self.counted: set[tuple[str, bool]] = {
            (severity, taken) for severity in ("deny", "review") for taken in (False, True)
        }

    # ------------------------------------------------------------ database

    async def connect(self) -> Conn:
        """A working connection, waiting for the database as long as it takes."""
        attempt = 0
        while True:
            try:
                conn = await database.connect_async(self.url)
                await apply.prepare(conn)
            except LOST as exc:
                metrics.DATABASE_UP.set(0)
                delay = BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)]
                attempt += 1
                say(
                    f"PostgreSQL {database.where(self.url)} unavailable "
                    f"({database.reason(exc, self.url)}); retry {attempt} in {delay:g}s"
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), delay)
                if self.stop.is_set():
                    raise asyncio.CancelledError from None
                continue
            metrics.DATABASE_UP.set(1)
            if attempt:
                metrics.RECONNECTS.inc()
                say(f"PostgreSQL {database.where(self.url)} back after {attempt} retries")
            return conn

    async def resume(self) -> None:
        """(Re)connect, and put every partition at the stored offset."""
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await self.conn.close()
        self.conn = None
        while True:
            conn = await self.connect()
            try:
                # A database restored empty gets the schema again (and the
                # sink starts over from the earliest offsets).
                await asyncio.to_thread(self.migrate)
                stored = await apply.stored_offsets(conn, self.topic)
            except LOST:
                with contextlib.suppress(Exception):
                    await conn.close()
                continue
            self.conn = conn
            break
        self.saved = {}
        for tp in self.partitions:
            if tp.partition in stored:
                self.consumer.seek(tp, stored[tp.partition])
                self.saved[tp.partition] = stored[tp.partition]
            else:
                await self.consumer.seek_to_beginning(tp)

    def migrate(self) -> None:
        from stream_app.sink.schema import migrate

        with psycopg.connect(database.conninfo(self.url)) as conn:
            migrate(conn)

    # ------------------------------------------------------------ kafka

    async def assign(self) -> None:
        """Every partition of the topic, waiting for it to exist; again when
        partitions were added."""
        announced = False
        while not self.stop.is_set():
            found = await self.topic_partitions()
            if found:
                break
            if not announced:
                say(f"waiting for topic {self.topic}")
                announced = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), TOPIC_WAIT_SECONDS)
        else:
            return
        self.partitions = [TopicPartition(self.topic, p) for p in sorted(found)]
        self.consumer.assign(self.partitions)
        say(f"reading {self.topic}, {len(self.partitions)} partitions, read_committed")

    async def topic_partitions(self) -> set[int]:
        """The topic's partitions, from fresh metadata (none if it is missing)."""
        cluster = await self.consumer._client.fetch_all_metadata()
        return set(cluster.partitions_for_topic(self.topic) or ())

    async def refresh(self) -> None:
        """The lag and open-rows gauges; new partitions. Every few seconds."""
        now = time.monotonic()
        if now - self.refreshed < self.settings.sink_refresh_seconds:
            return
        self.refreshed = now
        assert self.conn is not None
        counts = await apply.open_by_severity(self.conn)
        for severity, taken in self.counted - set(counts):  # none left: 0, not the last count
            metrics.OPEN_ROWS.labels(severity, "true" if taken else "false").set(0)
        for (severity, taken), count in counts.items():
            metrics.OPEN_ROWS.labels(severity, "true" if taken else "false").set(count)
        self.counted |= set(counts)
        try:
            ends = await self.consumer.end_offsets(self.partitions)
            for tp, end in ends.items():
                position = await self.consumer.position(tp)
                metrics.LAG.labels(str(tp.partition)).set(max(0, end - position))
            added = len(await self.topic_partitions()) > len(self.partitions)
        except KafkaError as exc:  # the broker is away: aiokafka reconnects by itself
            say(f"lag not measured ({type(exc).__name__}: {exc})")
            return
        if added:
            await self.assign()
            await self.resume()

    # ------------------------------------------------------------ the loop

    async def run(self) -> None:
        await self.assign()
        if self.stop.is_set():
            return
        await self.resume()
        while not self.stop.is_set():
            fetched = await self.consumer.getmany(
                timeout_ms=500, max_records=self.settings.sink_batch_max
            )
            try:
                if fetched:
                    await self.write(fetched)
                else:
                    await self.save_positions()
                await self.refresh()
            except LOST as exc:
                metrics.DATABASE_UP.set(0)
                say(
                    f"lost PostgreSQL {database.where(self.url)} "
                    f"({database.reason(exc, self.url)}); resuming from the stored offsets"
                )
                await self.resume()

    async def write(self, fetched: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> None:
        assert self.conn is not None
        records = [record for batch in fetched.values() for record in batch]
        batch = self.batch(records)
        started = time.perf_counter()
        try:
            outcome = await apply.write(self.conn, self.topic, batch)
        except LOST:
            raise
        except psycopg.Error:
            # A message the checks let through that PostgreSQL refuses: one
            # by one, so that only it is skipped (and still counted).
            outcome = await self.write_singly(records)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        metrics.MESSAGES.labels("applied").inc(outcome.applied)
        metrics.MESSAGES.labels("stale").inc(outcome.stale)
        metrics.MESSAGES.labels("invalid").inc(outcome.invalid)
        self.saved.update(batch.next_offsets)

    def batch(self, records: list[ConsumerRecord[Any, Any]], log: bool = True) -> apply.Batch:
        batch = apply.Batch()
        for record in records:
            message = apply.parse(record.value, record.partition, record.offset)
            if message is None and log:
                say(
                    f"skipped a message that is not a valid alert "
                    f"({record.topic} partition {record.partition} offset {record.offset})"
                )
            batch.add(message, record.partition, record.offset)
        return batch

    async def write_singly(self, records: list[ConsumerRecord[Any, Any]]) -> apply.Outcome:
        assert self.conn is not None
        applied = stale = invalid = 0
        for record in records:
            one = self.batch([record], log=False)
            try:
                outcome = await apply.write(self.conn, self.topic, one)
            except LOST:
                raise
            except psycopg.Error as exc:
                say(
                    f"skipped a message PostgreSQL refused ({type(exc).__name__}; "
                    f"{record.topic} partition {record.partition} offset {record.offset})"
                )
                skipped = apply.Batch(next_offsets=one.next_offsets)
                outcome = await apply.write(self.conn, self.topic, skipped)
                invalid += 1
            applied += outcome.applied
            stale += outcome.stale
            invalid += outcome.invalid
        return apply.Outcome(applied, stale, invalid)

    async def save_positions(self) -> None:
        """When idle: positions past what the batches covered (transaction
        markers, aborted records) are stored too, so a caught-up sink's stored
        offsets are the topic's end."""
        assert self.conn is not None
        ahead: dict[int, int] = {}
        for tp in self.partitions:
            position = await self.consumer.position(tp)
            if position > self.saved.get(tp.partition, -1):
                ahead[tp.partition] = position
        if ahead:
            async with self.conn.transaction(), self.conn.cursor() as cur:
                await apply.save_offsets(cur, self.topic, ahead)
            self.saved.update(ahead)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.consumer.stop()
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await self.conn.close()


async def _main(settings: SinkSettings, url: str) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    sink = Sink(settings, url, stop)
    try:
        await _start(sink.consumer, settings, KAFKA_TIMEOUT_SECONDS)
    except BrokerError as exc:
        print(f"{PREFIX}: {exc}", file=sys.stderr)
        return 3
    try:
        await sink.run()
    except asyncio.CancelledError:
        if not stop.is_set():
            raise
    finally:
        await sink.close()
    say("stopped")
    return 0


def run(settings: SinkSettings) -> int:
    """The command: exit 2 on a bad setting, 3 when the database or Kafka
    cannot be reached at start, 0 when stopped by SIGTERM or Ctrl-C."""
    from stream_app.sink.schema import migrate

    url = settings.database_url
    if not url:
        print(f"{PREFIX}: STREAM_APP_DATABASE_URL is not set", file=sys.stderr)
        return 2
    try:
        with database.connect(url, "sink") as conn:
            applied = migrate(conn)
    except database.BadDatabaseUrl as exc:
        print(f"{PREFIX}: {exc}", file=sys.stderr)
        return 2
    except database.DatabaseUnavailable as exc:
        print(exc, file=sys.stderr)
        return 3
    except psycopg.Error as exc:  # connected, but the schema could not be migrated
        print(f"{PREFIX}: {database.schema_error(exc, url)}", file=sys.stderr)
        return 3
    if applied:
        say(f"schema migrated to version {applied[-1]} (applied {applied})")
    try:
        start_http_server(settings.sink_port, settings.sink_bind)
    except OSError as exc:
        print(
            f"{PREFIX}: cannot serve /metrics on port {settings.sink_port} ({exc.strerror}); "
            "check STREAM_APP_SINK_PORT",
            file=sys.stderr,
        )
        return 2
    say(f"metrics on http://{settings.sink_bind}:{settings.sink_port}/metrics")
    return asyncio.run(_main(settings, url))
