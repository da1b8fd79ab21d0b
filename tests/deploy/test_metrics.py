"""stream_app.stream.metrics: the names follow client_python's conventions, labels
come from small fixed sets, and the state gauges recount open alerts, courses
and days from the worker's tables, so they are right after a restart."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.registry import REGISTRY

import stream_app.sink.metrics  # noqa: F401 - the denial-queue sink's, same conventions
from stream_app.core.alerts import build_alert, fold
from stream_app.core.engine import Engine
from stream_app.core.events import Invalid, parse_event
from stream_app.core.rules import load_registry
from stream_app.core.store import MemoryStore
from stream_app.stream import metrics
from stream_app.stream.faust_store import COURSE, DAY, FaustStore
from stream_app.synth.stream import Synth, generate_lines

RULE_IDS = load_registry().ids
ALLOWED_LABELS = {
    "outcome",
    "reason",
    "rule_id",
    "status",
    "finality",
    "topic_kind",
    "action",
    "route",
    # the sink's (stream_app.sink.metrics): partition numbers, not ids
    "severity",
    "taken",
    "partition",
}


def families() -> dict[str, Any]:
    return {m.name: m for m in REGISTRY.collect() if m.name.startswith("stream_app_")}


def test_names_units_and_labels() -> None:
    found = families()
    assert {
        "stream_app_lines",
        "stream_app_dead_letters",
        "stream_app_alert_transitions",
        "stream_app_event_processing_seconds",
        "stream_app_intake_to_alert_seconds",
        "stream_app_open_alerts",
        "stream_app_courses",
        "stream_app_days",
        "stream_app_stalls",
        "stream_app_stalled_partitions",
        "stream_app_stall_heals",
        "stream_app_sink_messages",
        "stream_app_sink_lag_messages",
        "stream_app_sink_open_alerts",
    } <= set(found)
    for name, family in found.items():
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), name
        if family.type == "histogram":
            assert name.endswith("_seconds"), f"{name}: histograms are in seconds"
        if family.type == "gauge":
            assert not name.endswith("_total"), name
        for sample in family.samples:
            assert set(sample.labels) - {"le"} <= ALLOWED_LABELS, (name, sample.labels)
            assert not any(k in sample.labels for k in ("patient_id", "claim_id", "course_id"))


def test_fixed_label_sets_exist_from_the_start() -> None:
    value = REGISTRY.get_sample_value
    for kind in metrics.TOPIC_KINDS:
        assert value("stream_app_stalls_total", {"topic_kind": kind}) is not None
    for action in metrics.STALL_HEAL_ACTIONS:
        assert value("stream_app_stall_heals_total", {"action": action}) is not None
    for outcome in metrics.LINE_OUTCOMES:
        assert REGISTRY.get_sample_value("stream_app_lines_total", {"outcome": outcome}) is not None
    for reason in metrics.DEAD_LETTER_REASONS:
        value = REGISTRY.get_sample_value("stream_app_dead_letters_total", {"reason": reason})
        assert value is not None


class Tables:
    """The worker's state table as a plain dict, filled by the engine; its
    day and course records as the worker hands them to the gauges."""

    def __init__(self, patients: int, seed: int, span_days: int) -> None:
        self.state: dict[bytes, bytes | None] = {}
        store = FaustStore(self.state)
        self.engine = Engine(store)
        alerts = []
        synth = Synth(patients, seed=seed, violation_rate=0.3, void_rate=0.05, span_days=span_days)
        for raw in generate_lines(synth):
            event = parse_event(raw)
            if not isinstance(event, Invalid):
                alerts += [build_alert(t, "") for t in self.engine.apply(event).transitions]
        self.open_by_rule = Counter(a["rule_id"] for a in fold(alerts).values())
        self.days = list(store.records(DAY))
        self.courses = list(store.records(COURSE))


@pytest.fixture(scope="module")
def tables() -> Tables:
    """A stream short enough that the engine drops no course: the gauges
    then equal the open alerts of the alerts topic."""
    found = Tables(patients=60, seed=5, span_days=30)
    assert found.engine.pruned_courses == 0
    return found


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def open_alerts() -> dict[str, float]:
    values = {rule_id: gauge("stream_app_open_alerts", rule_id=rule_id) for rule_id in RULE_IDS}
    return {rule_id: value for rule_id, value in values.items() if value}


def refresh(gauges: metrics.StateGauges, tables: Tables, **kwargs: Any) -> bool:
    return asyncio.run(gauges.refresh(tables.days, tables.courses, **kwargs))


def test_state_gauges_count_open_alerts_courses_and_days(tables: Tables) -> None:
    assert sum(tables.open_by_rule.values()) > 5
    gauges = metrics.StateGauges(RULE_IDS, chunk=7)
    assert refresh(gauges, tables)
    assert open_alerts() == tables.open_by_rule
    assert gauge("stream_app_days") == len(tables.days)
    assert gauge("stream_app_courses") == len(tables.courses)
    assert gauge("stream_app_state_scan_timestamp_seconds")
    for rule_id in RULE_IDS:  # every rule has a series, zero or not
        assert gauge("stream_app_open_alerts", rule_id=rule_id) is not None


def test_after_a_restart_the_gauges_are_right_again(tables: Tables) -> None:
    for rule_id in RULE_IDS:  # what a new process starts from
        metrics.OPEN_ALERTS.labels(rule_id).set(0)
    metrics.DAYS.set(0)
    restarted = metrics.StateGauges(RULE_IDS)
    assert refresh(restarted, tables)
    assert open_alerts() == tables.open_by_rule
    assert gauge("stream_app_days") == len(tables.days)


def test_recounts_are_spaced_and_rebalances_trigger_one(tables: Tables) -> None:
    now = [1000.0]
    gauges = metrics.StateGauges(RULE_IDS, min_interval=15.0, clock=lambda: now[0])
    assert refresh(gauges, tables, generation=1)
    now[0] += 5
    assert not refresh(gauges, tables, generation=1)
    assert refresh(gauges, tables, generation=2)  # a rebalance happened
    now[0] += 16
    assert refresh(gauges, tables, generation=2)


def test_a_recount_interrupted_by_a_rebalance_changes_nothing(tables: Tables) -> None:
    gauges = metrics.StateGauges(RULE_IDS, chunk=5)
    metrics.DAYS.set(-1)
    calls = iter([False, False, True])
    assert not refresh(gauges, tables, interrupted=lambda: next(calls, True))
    assert gauge("stream_app_days") == -1
    assert gauges.due()


class Changing:
    """Records from a table that, like memory://, fails when it changes
    during iteration."""

    def __init__(self, records: list[bytes]) -> None:
        self.records = records
        self.fail = True

    def __iter__(self) -> Iterator[bytes]:
        for n, record in enumerate(list(self.records)):
            if n == 3 and self.fail:
                self.fail = False
                raise RuntimeError("dictionary changed size during iteration")
            yield record


def test_a_table_that_changed_under_the_recount_is_read_at_once(tables: Tables) -> None:
    gauges = metrics.StateGauges(RULE_IDS, chunk=2)
    days = Changing(tables.days)
    assert not asyncio.run(gauges.refresh(days, tables.courses))
    assert gauges.atomic
    assert asyncio.run(gauges.refresh(days, tables.courses))
    assert gauge("stream_app_days") == len(tables.days)


def test_alerts_of_dropped_courses_leave_the_gauge() -> None:
    """Over 640 days of stream the engine drops closed courses (retain_days
    behind the event time); their final alerts stay open in the topic but
    are no longer state, so the gauge counts fewer."""
    long = Tables(patients=60, seed=5, span_days=640)
    assert long.engine.pruned_courses > 0
    store = MemoryStore()
    engine = Engine(store)
    for raw in generate_lines(Synth(60, seed=5, violation_rate=0.3, void_rate=0.05)):
        event = parse_event(raw)
        if not isinstance(event, Invalid):
            engine.apply(event)
    in_state = Counter(
        rule_id
        for day in store.days.values()
        for memos in day.memos.values()
        for rule_id, memo in memos.items()
        if memo.is_open
    )
    assert refresh(metrics.StateGauges(RULE_IDS), long)
    assert open_alerts() == in_state
    assert sum(in_state.values()) < sum(long.open_by_rule.values())
