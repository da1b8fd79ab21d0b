"""Readiness, liveness, stall detection and healing (stream_app.stream.health, SPEC 9),
on fake Faust and aiokafka consumers."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace
from typing import Any, NamedTuple

import pytest

from stream_app.stream import health, metrics
from stream_app.stream.health import Health, Progress, StallTracker


class TP(NamedTuple):
    topic: str
    partition: int


INPUT, REKEY, CHANGELOG = TP("lines", 0), TP("app-by-patient", 3), TP("app-days-changelog", 0)
KINDS = {"lines": "input", "app-by-patient": "rekey"}


@pytest.mark.parametrize(
    ("progress", "waiting"),
    [
        (Progress(committed=100, end=100, read=99, position=100), False),  # caught up
        (Progress(committed=None, end=0, read=None, position=0), False),  # empty
        (Progress(committed=99, end=100, read=98, position=100), False),  # EOS marker
        (Progress(committed=50, end=100, read=70, position=100), True),  # a hole
        (Progress(committed=50, end=100, read=49, position=50), True),  # nothing fetched
        (Progress(committed=None, end=10, read=None, position=0), True),  # never committed
    ],
)
def test_events_wait_behind_the_committed_offset(progress: Progress, waiting: bool) -> None:
    assert progress.waiting is waiting


def test_a_stall_is_a_committed_offset_that_stands_still_with_events_waiting() -> None:
    tracker = StallTracker(stall_seconds=60)
    stuck = {INPUT: Progress(50, 100, 70, 100)}
    assert tracker.observe(0, stuck) == []
    assert tracker.observe(59, stuck) == []
    assert tracker.observe(60, stuck) == [INPUT]
    assert tracker.observe(61, stuck) == [], "found once"
    assert tracker.stalled() == [INPUT]


def test_a_moving_or_caught_up_partition_is_no_stall() -> None:
    tracker = StallTracker(stall_seconds=60)
    for second in range(0, 300, 10):
        moving = {INPUT: Progress(second, second + 500, second + 20, second + 500)}
        assert tracker.observe(second, moving) == []
        done = {REKEY: Progress(7, 7, 6, 7)}
        assert tracker.observe(second, done) == []


def test_the_clock_starts_again_after_a_reset() -> None:
    tracker = StallTracker(stall_seconds=60)
    stuck = {INPUT: Progress(50, 100, 70, 100)}
    tracker.observe(0, stuck)
    tracker.reset()  # not ready, or broker away
    assert tracker.observe(59, stuck) == []
    assert tracker.observe(118, stuck) == []
    assert tracker.observe(119, stuck) == [INPUT]


class FakeKafka:
    def __init__(self) -> None:
        self.ends: dict[TP, int] = {}
        self.positions: dict[TP, int] = {}
        self.down = False
        self.on_its_thread = False

    async def end_offsets(self, tps: list[TP]) -> dict[TP, int]:
        assert self.on_its_thread, "the aiokafka consumer is asked from another event loop"
        if self.down:
            raise ConnectionError("broker away")
        return {tp: self.ends[tp] for tp in tps}

    async def position(self, tp: TP) -> int:
        assert self.on_its_thread, "the aiokafka consumer is asked from another event loop"
        return self.positions[tp]


class FakeConsumerThread:
    """Faust's consumer thread: the aiokafka consumer is asked only through
    call_thread (its own event loop)."""

    def __init__(self, kafka: FakeKafka) -> None:
        self.kafka = kafka
        self.calls = 0

    def _ensure_consumer(self) -> FakeKafka:
        return self.kafka

    async def call_thread(self, fun: Any, *args: Any) -> Any:
        self.calls += 1
        self.kafka.on_its_thread = True
        try:
            return await fun(*args)
        finally:
            self.kafka.on_its_thread = False


class FakeConsumer:
    """The parts of faust.transport.consumer.Consumer that Health reads."""

    def __init__(self) -> None:
        self.kafka = FakeKafka()
        self._thread = FakeConsumerThread(self.kafka)
        self._committed_offset: dict[TP, int | None] = defaultdict(lambda: None)
        self._read_offset: dict[TP, int | None] = defaultdict(lambda: None)
        self._acked: dict[TP, list[int]] = defaultdict(list)
        self._acked_index: dict[TP, set[int]] = defaultdict(set)
        self._gap: dict[TP, Any] = {}
        self.seeks: list[tuple[TP, int]] = []

    def assignment(self) -> set[TP]:
        return {INPUT, REKEY, CHANGELOG}

    async def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))
        self._read_offset[tp] = offset

    def set(self, tp: TP, committed: int, end: int, read: int, position: int) -> None:
        self._committed_offset[tp] = committed
        self._read_offset[tp] = read
        self.kafka.ends[tp] = end
        self.kafka.positions[tp] = position


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def worker(stall_seconds: float = 60) -> tuple[Health, FakeConsumer, Clock, list[str]]:
    consumer = FakeConsumer()
    consumer.set(INPUT, committed=100, end=100, read=99, position=100)
    consumer.set(REKEY, committed=40, end=90, read=60, position=90)  # a hole at 40
    app = SimpleNamespace(
        consumer=consumer, rebalancing_count=1, rebalancing=False, in_recovery=False
    )
    stops: list[str] = []
    clock = Clock()
    checks = Health(app, KINDS, stall_seconds, clock=clock, stop=lambda: stops.append("stop"))
    return checks, consumer, clock, stops


def count(metric: Any, *labels: str) -> float:
    return float(metric.labels(*labels)._value.get())


async def test_a_stall_is_healed_by_reading_the_partition_again() -> None:
    checks, consumer, clock, stops = worker()
    consumer._acked[REKEY] = [41, 42, 42, 43]
    consumer._acked_index[REKEY] = {41, 42, 43}
    consumer._gap[REKEY] = object()
    before = count(metrics.STALLS, "rekey"), count(metrics.STALL_HEALS, "reseek")
    for second in range(0, 61, 10):
        clock.now = second
        await checks.check()
    assert consumer.seeks == [(REKEY, 40)]
    assert REKEY not in consumer._acked and REKEY not in consumer._gap
    assert INPUT in consumer._committed_offset, "the caught-up partition is left alone"
    assert count(metrics.STALLS, "rekey") == before[0] + 1
    assert count(metrics.STALL_HEALS, "reseek") == before[1] + 1
    assert checks.live() and not stops
    # The re-read moves the committed offset: no second stall.
    consumer.set(REKEY, committed=90, end=90, read=89, position=90)
    for second in range(70, 300, 10):
        clock.now = second
        await checks.check()
    assert consumer.seeks == [(REKEY, 40)] and not stops


async def test_a_stall_that_a_reseek_does_not_heal_stops_the_worker() -> None:
    checks, consumer, clock, stops = worker()
    exits = count(metrics.STALL_HEALS, "exit")
    for second in range(0, 200, 10):
        clock.now = second
        await checks.check()
    assert consumer.seeks == [(REKEY, 40)]
    assert stops == ["stop"]
    assert not checks.live() and checks.failed and "rekey partition 3" in checks.failed
    assert count(metrics.STALL_HEALS, "exit") == exits + 1


async def test_no_stall_while_not_ready_or_while_the_broker_is_away() -> None:
    checks, consumer, clock, stops = worker()
    checks.app.in_recovery = True  # a long table recovery is not a stall
    for second in range(0, 300, 10):
        clock.now = second
        await checks.check()
    checks.app.in_recovery = False
    consumer.kafka.down = True
    for second in range(300, 600, 10):
        clock.now = second
        await checks.check()
    assert consumer.seeks == [] and not stops


def test_ready_once_the_first_rebalance_has_ended() -> None:
    checks, _, _, _ = worker()
    app = checks.app
    app.rebalancing_count, app.rebalancing = 0, False
    assert not checks.ready()
    app.rebalancing_count, app.rebalancing = 1, True
    assert not checks.ready()
    app.rebalancing, app.in_recovery = False, True
    assert not checks.ready()
    app.in_recovery = False
    assert checks.ready()


def test_the_stall_time_is_sixty_seconds_or_less_by_default() -> None:
    from stream_app.stream.settings import WorkerSettings

    assert WorkerSettings().stall_seconds <= 60


def test_the_faust_internals_health_relies_on_are_there() -> None:
    """health.py reads and clears these attributes of Faust's consumer; a
    Faust upgrade that drops one must fail here."""
    import inspect

    from faust.transport.consumer import Consumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    source = inspect.getsource(Consumer.__init__)
    for name in ("_committed_offset", "_read_offset", "_acked", "_acked_index", "_gap"):
        assert f"self.{name} =" in source, name
    assert callable(Consumer.seek)
    assert callable(AIOKafkaConsumerThread._ensure_consumer)
    assert health.EXIT_STALLED not in (0, 1, 2, 3)


def test_routine_start_up_errors_are_logged_at_info_until_ready() -> None:
    import logging

    ready = [False]
    noise = health.StartupNoise(lambda: ready[0])

    def record(level: int, msg: str) -> logging.LogRecord:
        return logging.LogRecord("aiokafka", level, __file__, 1, msg, (), None)

    early = record(logging.WARNING, "Marking the coordinator dead (node %s)for group %s.")
    other = record(logging.ERROR, "Failed fetch messages from 1: NodeNotReadyError")
    assert noise.filter(early) and early.levelno == logging.INFO
    assert noise.filter(other) and other.levelno == logging.ERROR
    ready[0] = True
    late = record(logging.WARNING, "Marking the coordinator dead (node %s)for group %s.")
    assert noise.filter(late) and late.levelno == logging.WARNING
    ready[0] = False  # a later rebalance: still a warning
    again = record(logging.ERROR, "Group Coordinator Request failed: %s")
    assert noise.filter(again) and again.levelno == logging.ERROR
