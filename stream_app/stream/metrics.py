"""Prometheus metrics of the worker. Label values come only from small fixed
sets (outcomes, reason categories, rule ids, statuses): never a patient, claim
or course.

Counters and histograms are updated as events flow. The state gauges (open
alerts by rule, courses and days held) are recounted from the worker's tables
by `StateGauges`, so they are right again after a restart or a rebalance
instead of drifting with whatever a process happened to see. They count what
the state holds: once the engine drops a closed course (`retain_days` of event
time after its last line) its alerts, final by then, leave the gauge while they
stay open in the alerts topic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable

from prometheus_client import Counter, Gauge, Histogram

from stream_app.core.holds import HoldCounts
from stream_app.stream import codec

log = logging.getLogger("stream_app.stream.metrics")

LINE_OUTCOMES = ("processed", "duplicate", "void", "invalid")
# events.py's reject categories, plus the worker's own ("engine_error").
DEAD_LETTER_REASONS = (
    "too_large",
    "not_json",
    "not_object",
    "unknown_schema",
    "unknown_kind",
    "missing_field",
    "bad_field",
    "bad_date",
    "internal",
    "engine_error",
)
ALERT_STATUSES = ("open", "resolved")
FINALITIES = ("provisional", "final")

LINES = Counter(
    "stream_app_lines_total",
    "Input events by outcome",
    ["outcome"],
)
DEAD_LETTERS = Counter(
    "stream_app_dead_letters_total",
    "Events sent to the dead-letter topic by reason",
    ["reason"],
)
ALERT_TRANSITIONS = Counter(
    "stream_app_alert_transitions_total",
    "Alert messages emitted",
    ["rule_id", "status", "finality"],
)
PROCESSING_SECONDS = Histogram(
    "stream_app_event_processing_seconds",
    "Engine time per event",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
)
# Events per batch = increase of stream_app_lines_total / of stream_app_batches_total.
BATCHES = Counter(
    "stream_app_batches",
    "Batches of re-keyed events evaluated (table writes are applied once per batch)",
)
BATCH_TABLE_WRITES = Counter(
    "stream_app_batch_table_writes_total",
    "Table writes applied at the end of batches (one per changed key per batch)",
)
ROUTES = ("direct", "rekeyed")
ROUTED = Counter(
    "stream_app_routed_total",
    "Valid input messages: evaluated on their own partition (direct) or forwarded "
    "to the re-key topic because they were not on their patient's partition (rekeyed)",
    ["route"],
)
INTAKE_LAG_SECONDS = Histogram(
    "stream_app_intake_to_alert_seconds",
    "From received_at to alert emitted",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
OPEN_ALERTS = Gauge(
    "stream_app_open_alerts",
    "Open alerts of the courses in this worker's state (its active partitions), by rule",
    ["rule_id"],
)
HELD_VIOLATIONS = Gauge(
    "stream_app_held_violations",
    "Violations held in this worker's state (SPEC 4.1: a claim still expected may cure them), "
    "by rule",
    ["rule_id"],
)
HOLDS_CURED = Counter(
    "stream_app_holds_cured",
    "Held violations that went away before their hold ended: never published, by rule",
    ["rule_id"],
)
HOLDS_PUBLISHED = Counter(
    "stream_app_holds_published",
    "Held violations published when their hold ended, by rule",
    ["rule_id"],
)


def count_holds(counts: HoldCounts) -> None:
    """Moves the engine's hold counts into the counters, then clears them."""
    for rule_id, cured in counts.cured.items():
        HOLDS_CURED.labels(rule_id).inc(cured)
    for rule_id, published in counts.published.items():
        HOLDS_PUBLISHED.labels(rule_id).inc(published)
    counts.started.clear()
    counts.cured.clear()
    counts.published.clear()


COURSES = Gauge(
    "stream_app_courses",
    "Courses (patient, course, site) in this worker's state",
)
DAYS = Gauge(
    "stream_app_days",
    "Days (patient, site, date of service) in this worker's state",
)
STATE_SCAN_SECONDS = Gauge(
    "stream_app_state_scan_duration_seconds",
    "How long the last recount of the state gauges took",
)
STATE_SCAN_TIMESTAMP = Gauge(
    "stream_app_state_scan_timestamp_seconds",
    "When the state gauges were last recounted (Unix time); 0 before the first recount",
)
TOPIC_KINDS = ("input", "rekey")
STALL_HEAL_ACTIONS = ("reseek", "exit")
STALLS = Counter(
    "stream_app_stalls_total",
    "Partitions found with events waiting behind a committed offset that stood still "
    "for STREAM_APP_STALL_SECONDS, by topic (input or re-key)",
    ["topic_kind"],
)
STALLED_PARTITIONS = Gauge(
    "stream_app_stalled_partitions",
    "Partitions of this worker stalled now (not yet healed)",
)
SEND_FAILURES = Counter(
    "stream_app_send_failures_total",
    "Alerts, dead letters or re-keyed messages that Kafka refused after its retries "
    "(at-least-once); the worker then stops without committing, and is read again "
    "from its last commit",
)
OFFSET_JUMPS = Counter(
    "stream_app_offset_jumps_total",
    "Fetched records that came past the last offset read with no gap in the log "
    "(at-least-once): the partition was read again from there (stream_app.stream.faust.drain)",
)
STALL_HEALS = Counter(
    "stream_app_stall_heals_total",
    "What the worker did about a stall: reseek (read the partition again from its "
    "committed offset) or exit (stop so that the supervisor restarts it)",
    ["action"],
)

# Children exist from the start, so rate() and alert rules see a 0 before the first event.
# LINES_BY_OUTCOME saves a labels() lookup on every line.
LINES_BY_OUTCOME = {outcome: LINES.labels(outcome) for outcome in LINE_OUTCOMES}
for _reason in DEAD_LETTER_REASONS:
    DEAD_LETTERS.labels(_reason)
ROUTED_BY = {route: ROUTED.labels(route) for route in ROUTES}
for _kind in TOPIC_KINDS:
    STALLS.labels(_kind)
for _action in STALL_HEAL_ACTIONS:
    STALL_HEALS.labels(_action)


class StateGauges:
    """Recounts open alerts, courses and days from the day and course records
    of the state table (FaustStore.records).

    A Faust table iterates only the partitions this worker is active for, so
    the sum over the workers of a group is the whole state. A recount reads
    every day once; it yields to the event loop every `chunk` rows, starts at
    most every `min_interval` seconds and spends at most `max_share` of the
    time counting, so a large state is recounted less often rather than
    slowing the stream. After a rebalance (a new `generation`) it is due at
    once.
    """

    TICK_SECONDS = 5.0

    def __init__(
        self,
        rule_ids: Iterable[str],
        *,
        min_interval: float = 15.0,
        max_share: float = 0.05,
        chunk: int = 500,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rule_ids = tuple(rule_ids)
        self.min_interval = min_interval
        self.max_share = max_share
        self.chunk = chunk
        self.clock = clock
        self.generation: int | None = None
        self.next_due = 0.0
        self.running = False
        # Set when a table refused to be iterated while it changed (memory://):
        # from then on a recount reads the table without yielding.
        self.atomic = False
        for rule_id in self.rule_ids:
            OPEN_ALERTS.labels(rule_id)
            HELD_VIOLATIONS.labels(rule_id)
            HOLDS_CURED.labels(rule_id)
            HOLDS_PUBLISHED.labels(rule_id)
            for status in ALERT_STATUSES:
                for finality in FINALITIES:
                    ALERT_TRANSITIONS.labels(rule_id, status, finality)

    def due(self, generation: int = 0) -> bool:
        return not self.running and (generation != self.generation or self.clock() >= self.next_due)

    async def refresh(
        self,
        days: Iterable[bytes | None],
        courses: Iterable[object],
        *,
        generation: int = 0,
        interrupted: Callable[[], bool] = lambda: False,
    ) -> bool:
        """Recount if due; True if the gauges were updated."""
        if not self.due(generation) or interrupted():
            return False
        self.running = True
        started = self.clock()
        try:
            counted = await self._count(days, courses, interrupted)
        except RuntimeError as exc:  # a dict changed size while we yielded
            if not interrupted():
                self.atomic = True
            log.info("state recount restarted: %s", exc)
            return False
        except Exception as exc:  # metrics must never stop the worker
            log.warning("state recount failed: %s", type(exc).__name__)
            self.next_due = self.clock() + self.min_interval
            return False
        finally:
            self.running = False
        if counted is None:
            return False
        open_alerts, held, n_days, n_courses = counted
        elapsed = self.clock() - started
        for rule_id in {*self.rule_ids, *open_alerts}:
            OPEN_ALERTS.labels(rule_id).set(open_alerts.get(rule_id, 0))
        for rule_id in {*self.rule_ids, *held}:
            HELD_VIOLATIONS.labels(rule_id).set(held.get(rule_id, 0))
        DAYS.set(n_days)
        COURSES.set(n_courses)
        STATE_SCAN_SECONDS.set(elapsed)
        STATE_SCAN_TIMESTAMP.set(time.time())
        self.generation = generation
        self.next_due = self.clock() + max(self.min_interval, elapsed / self.max_share)
        return True

    async def _count(
        self,
        days: Iterable[bytes | None],
        courses: Iterable[object],
        interrupted: Callable[[], bool],
    ) -> tuple[Tally[str], Tally[str], int, int] | None:
        open_alerts: Tally[str] = Tally()
        held: Tally[str] = Tally()
        n_days = 0
        for n_rows, raw in enumerate(days, 1):
            if raw:
                n_days += 1
                for memos in codec.decode_day(raw).memos.values():
                    for rule_id, memo in memos.items():
                        if memo.is_open:
                            open_alerts[rule_id] += 1
                        elif memo.is_held:
                            held[rule_id] += 1
            if n_rows % self.chunk == 0 and not self.atomic:
                await asyncio.sleep(0)
                if interrupted():
                    return None
        n_courses = 0
        for n_courses, _ in enumerate(courses, 1):
            if n_courses % (self.chunk * 20) == 0 and not self.atomic:
                await asyncio.sleep(0)
                if interrupted():
                    return None
        return open_alerts, held, n_days, n_courses
