"""Readiness, liveness and stall healing of the worker (SPEC 9).

- `/readyz`: 503 until the first rebalance has ended and while the worker
  rebalances or recovers its tables; 200 once it processes.
- `/healthz`: 503 once the worker has found a stall it could not heal (it is
  then on its way out; see below); 200 otherwise.
- Stall: an assigned input or re-key partition with events waiting behind a
  committed offset that has not moved for `stall_seconds`, counted only while
  the worker is ready and the broker answers. Events wait when the end offset
  is past the committed one and the consumer has either read something at or
  past the committed offset, or has not read to the end (under exactly-once a
  caught-up partition's end lies past its committed offset by the commit
  marker: that is not waiting).
- Healing: the first stall of a partition is healed in place: the partition
  is sought back to its committed offset and Faust's acknowledgement and gap
  bookkeeping for it is dropped (the stale bookkeeping is what holds the
  commits back), so its events are read again (the engine recognises what it
  has applied; folding by alert_id absorbs repeated alerts). If the same
  partition is still stalled at the same offset `stall_seconds` later, the
  worker stops cleanly and exits with EXIT_STALLED so that its supervisor
  restarts it: a restart reads every partition again from its committed
  offset, after the table recovery that stream_app.stream.faust.patches fixed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stream_app.stream import metrics

log = logging.getLogger("stream_app.stream.health")

EXIT_STALLED = 4
# A stopping worker that has not exited this long after a stall gives up on
# a clean stop.
EXIT_GRACE_SECONDS = 60.0
END_OFFSETS_TIMEOUT_SECONDS = 10.0
POSITION_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class Progress:
    """One partition at one look: offsets as Kafka counts them (the committed
    offset is the next to read)."""

    committed: int | None
    end: int
    read: int | None  # offset of the last message handed to the agents
    position: int | None  # the fetcher's next offset

    @property
    def waiting(self) -> bool:
        committed = self.committed or 0
        if self.end <= committed:
            return False
        read_past_commit = self.read is not None and self.read >= committed
        not_at_end = self.position is None or self.position < self.end
        return read_past_commit or not_at_end


@dataclass
class _Watch:
    committed: int | None
    since: float
    stalled: bool = False
    healed_at: int | None = None  # committed offset at the last in-place heal


class StallTracker:
    """Which partitions have had events waiting behind the same committed
    offset for `stall_seconds` (pure: time and offsets are given)."""

    def __init__(self, stall_seconds: float) -> None:
        self.stall_seconds = stall_seconds
        self._watches: dict[Any, _Watch] = {}

    def reset(self) -> None:
        """Forget every clock (not ready, broker away, a rebalance)."""
        self._watches.clear()

    def observe(self, now: float, progress: Mapping[Any, Progress]) -> list[Any]:
        """Partitions that have just become stalled."""
        for tp in set(self._watches) - set(progress):
            del self._watches[tp]
        found = []
        for tp, seen in progress.items():
            watch = self._watches.get(tp)
            if watch is None or watch.committed != seen.committed or not seen.waiting:
                healed_at = watch.healed_at if watch is not None else None
                self._watches[tp] = _Watch(seen.committed, now, healed_at=healed_at)
                continue
            if not watch.stalled and now - watch.since >= self.stall_seconds:
                watch.stalled = True
                found.append(tp)
        return found

    def stalled(self) -> list[Any]:
        return [tp for tp, watch in self._watches.items() if watch.stalled]

    def healed_before(self, tp: Any) -> bool:
        """True if an in-place heal of tp at this committed offset did not help."""
        watch = self._watches[tp]
        return watch.healed_at is not None and watch.healed_at == watch.committed

    def healed(self, now: float, tp: Any) -> None:
        watch = self._watches[tp]
        watch.healed_at, watch.stalled, watch.since = watch.committed, False, now


class Health:
    """Readiness, liveness and the stall check of one Faust app."""

    def __init__(
        self,
        app: Any,
        topic_kinds: Mapping[str, str],
        stall_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        stop: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.topic_kinds = dict(topic_kinds)  # topic -> "input" | "rekey"
        self.tracker = StallTracker(stall_seconds)
        self.clock = clock
        self.stop = stop or _stop_this_process
        self.failed: str | None = None  # why the worker cannot go on by itself
        self.check_seconds = max(1.0, min(10.0, stall_seconds / 6))

    # ------------------------------------------------------------ probes
    def ready(self) -> bool:
        app = self.app
        return bool(app.rebalancing_count) and not app.rebalancing and not app.in_recovery

    def live(self) -> bool:
        return self.failed is None

    def install_pages(self) -> None:
        health = self

        async def healthz(web: Any, request: Any) -> Any:
            if health.live():
                return web.json({"status": "ok"})
            return web.json({"status": "failing", "reason": health.failed}, status=503)

        async def readyz(web: Any, request: Any) -> Any:
            if health.ready() and health.live():
                return web.json({"status": "ready"})
            return web.json({"status": "not ready"}, status=503)

        self.app.page("/healthz")(healthz)
        self.app.page("/readyz")(readyz)

    def quiet_startup(self) -> None:
        """Log the coordinator and metadata errors of a routine start-up at
        INFO (see StartupNoise)."""
        noise = StartupNoise(self.ready)
        for name in StartupNoise.LOGGERS:
            logging.getLogger(name).addFilter(noise)

    # ------------------------------------------------------------ stall check
    def install_check(self) -> None:
        async def _stall_check() -> None:
            while not self.app.should_stop:
                await asyncio.sleep(self.check_seconds)
                await self.check()

        self.app.task(_stall_check)

    async def check(self) -> None:
        if self.failed is not None:
            return
        if not self.ready():
            self.tracker.reset()
            self._show_stalled()
            return
        progress = await self.progress()
        if progress is None:  # broker away: not a stall of ours
            self.tracker.reset()
            self._show_stalled()
            return
        for tp in self.tracker.observe(self.clock(), progress):
            await self.on_stall(tp, progress[tp])
        self._show_stalled()

    async def progress(self) -> dict[Any, Progress] | None:
        consumer = self.app.consumer
        tps = [tp for tp in consumer.assignment() if tp.topic in self.topic_kinds]
        if not tps:
            return {}
        # The aiokafka consumer lives on Faust's consumer thread and its event
        # loop: asking it from this loop mixes two loops on one connection
        # (aiokafka then logs CorrelationIdError, drops the connection and
        # fails the fetch under way), so the questions go to that thread.
        thread = consumer._thread
        try:
            kafka = thread._ensure_consumer()
            ends, positions = await asyncio.wait_for(
                thread.call_thread(_offsets_on_consumer_thread, kafka, tps),
                END_OFFSETS_TIMEOUT_SECONDS + POSITION_TIMEOUT_SECONDS * len(tps),
            )
        except Exception as exc:  # the broker is away, or a rebalance began
            log.debug("stall check: no end offsets (%s)", type(exc).__name__)
            return None
        return {
            tp: Progress(
                committed=consumer._committed_offset.get(tp),
                end=ends[tp],
                read=consumer._read_offset.get(tp),
                position=positions[tp],
            )
            for tp in tps
        }

    async def on_stall(self, tp: Any, seen: Progress) -> None:
        kind = self.topic_kinds[tp.topic]
        metrics.STALLS.labels(kind).inc()
        where = f"{kind} partition {tp.partition}"
        if self.tracker.healed_before(tp):
            self.failed = f"{where} stalled again at offset {seen.committed}"
            metrics.STALL_HEALS.labels("exit").inc()
            log.error(
                "stall: %s still stalled at committed offset %s after a re-seek; "
                "stopping, exit code %d (the supervisor restarts the worker)",
                where,
                seen.committed,
                EXIT_STALLED,
            )
            self.stop()
            return
        log.warning(
            "stall: %s: committed offset %s has not moved for %.0f s with events "
            "up to %d waiting; re-seeking it to the committed offset",
            where,
            seen.committed,
            self.tracker.stall_seconds,
            seen.end,
        )
        await reseek(self.app.consumer, tp, seen.committed or 0)
        metrics.STALL_HEALS.labels("reseek").inc()
        self.tracker.healed(self.clock(), tp)

    def _show_stalled(self) -> None:
        metrics.STALLED_PARTITIONS.set(len(self.tracker.stalled()))


class StartupNoise(logging.Filter):
    """Until the worker is first ready, demote to INFO the warnings and errors
    that every start on a new group or broker logs while the group
    coordinator loads and Faust creates its topics ("Group Coordinator
    Request failed: [Error 15]", "Marking the coordinator dead", "Topic …
    not found in cluster metadata", "Ignoring missing topic"). After that they
    mean what they say (README, Operations: broker down) and keep their
    level."""

    LOGGERS = (
        "aiokafka.consumer.group_coordinator",
        "aiokafka.cluster",
        "faust.assignor.partition_assignor",
    )
    ROUTINE = (
        "Group Coordinator Request failed",
        "Marking the coordinator dead",
        "not found in cluster metadata",
        "Ignoring missing topic",
    )

    def __init__(self, ready: Callable[[], bool]) -> None:
        super().__init__()
        self.ready = ready
        self.started = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.started:
            self.started = self.ready()
        if not self.started and record.levelno > logging.INFO:
            text = str(record.msg)
            if any(part in text for part in self.ROUTINE):
                record.levelno, record.levelname = logging.INFO, "INFO"
        return True


async def _offsets_on_consumer_thread(
    kafka: Any, tps: list[Any]
) -> tuple[Mapping[Any, int], dict[Any, int | None]]:
    """End offsets and fetch positions of tps, run on the consumer's own loop."""
    ends = await asyncio.wait_for(kafka.end_offsets(tps), END_OFFSETS_TIMEOUT_SECONDS)
    positions: dict[Any, int | None] = {}
    for tp in tps:
        try:  # unknown (None) until the fetcher has a position
            positions[tp] = await asyncio.wait_for(kafka.position(tp), POSITION_TIMEOUT_SECONDS)
        except Exception:
            positions[tp] = None
    return ends, positions


async def reseek(consumer: Any, tp: Any, committed: int) -> None:
    """Read tp again from its committed offset, with Faust's acknowledgement
    and gap bookkeeping for it dropped (faust.transport.consumer.Consumer)."""
    for bookkeeping in (consumer._acked, consumer._acked_index, consumer._gap):
        bookkeeping.pop(tp, None)
    await consumer.seek(tp, committed)


_exit_requested = False


def exit_requested() -> bool:
    """True once a stall it could not heal has made the worker stop."""
    return _exit_requested


def request_restart(reason: str) -> None:
    """Stop so that the supervisor restarts the worker (once; see
    _stop_this_process); `reason` must carry no claim data."""
    if _exit_requested:
        return
    log.error(
        "%s: stopping, exit code %d (the supervisor restarts the worker)", reason, EXIT_STALLED
    )
    _stop_this_process()


def _stop_this_process() -> None:
    """Stop the worker cleanly (Faust's SIGTERM path commits what it can);
    run_worker then exits with EXIT_STALLED. If the clean stop hangs, exit
    anyway after EXIT_GRACE_SECONDS."""
    global _exit_requested
    _exit_requested = True
    watchdog = threading.Timer(EXIT_GRACE_SECONDS, os._exit, (EXIT_STALLED,))
    watchdog.daemon = True
    watchdog.start()
    os.kill(os.getpid(), signal.SIGTERM)
