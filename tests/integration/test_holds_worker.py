"""Holds (SPEC 4.1) in the worker on a real broker: a held violation is
state, so it survives a restart and a lost state directory (the tables come
back from their changelog) and is published once event time, moved on by
another patient's lines on another partition (the worker's event-time
ticks), reaches its end, and not before; and with holds on, a generated
stream's folded alerts equal replay's."""

from __future__ import annotations

import io
import re
import shutil
import time
from collections.abc import Callable
from datetime import date, timedelta
from itertools import count
from typing import Any

import orjson
import pytest

from integration.harness import (
    Deployment,
    WorkerProcess,
    assert_matches_replay,
    fetch_metrics,
    repeated_transitions,
    worker_log,
)
from stream_app.core.engine import Engine
from stream_app.core.profiles import DEFAULT_HOLD_DAYS
from stream_app.core.store import MemoryStore
from stream_app.replay import Replay
from stream_app.stream.worker.routing import patient_partition
from stream_app.synth.stream import Synth, generate_lines

RULE = "igrt-without-fraction"
HELD_ON = "2026-03-02"
# The default hold_days: its hold ends on the day HELD_ON + DEFAULT_HOLD_DAYS.
HOLD_END = (date.fromisoformat(HELD_ON) + timedelta(days=DEFAULT_HOLD_DAYS)).isoformat()
DAY_BEFORE_END = (date.fromisoformat(HOLD_END) - timedelta(days=1)).isoformat()
PARTITIONS = 2
# Seconds the input and re-key topics' lag must stay 0: the event-time
# reports go out every 0.5 s (the harness's default, 6 s, is for big streams).
SETTLE = 2.0


def patient_on(partition: int, prefix: str, partitions: int = PARTITIONS) -> str:
    """The first patient id `prefix-N` whose messages land on `partition`."""
    for n in count():
        patient = f"{prefix}-{n}"
        if patient_partition(patient.encode(), partitions) == partition:
            return patient
    raise AssertionError("unreachable")


def claim_line(
    patient: str, claim: str, date: str, hcpcs: str, claim_type: str, **fields: Any
) -> bytes:
    return orjson.dumps(
        {
            "claim_id": claim,
            "line_number": 1,
            "patient_id": patient,
            "course_id": f"{patient}-RT1",
            "site": "prostate",
            "date_of_service": date,
            "hcpcs": hcpcs,
            "units": 1,
            "claim_type": claim_type,
            "payer_type": "commercial",
            "diagnosis_codes": ["C61"],
            **fields,
        }
    )


def held_line(patient: str) -> bytes:
    """A professional 77387-26 with no fraction that day: held (always)."""
    return claim_line(
        patient, f"P-{patient}", HELD_ON, "77387", "professional",
        modifiers=["26"], place_of_service="11",
    )  # fmt: skip


def fraction(patient: str, claim: str, date: str) -> bytes:
    """An IMRT fraction of another patient: no alert, only event time."""
    return claim_line(patient, claim, date, "77412", "institutional", modality="IMRT")


def labelled(page: str, name: str) -> dict[str, float]:
    """{rule_id: value} of a metric labelled by rule_id on a /metrics page."""
    found = re.findall(rf'^{name}\{{rule_id="([^"]+)"\}} (\S+)$', page, re.M)
    return {rule_id: float(value) for rule_id, value in found}


def plain(page: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", page, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def recounted_after(worker: WorkerProcess, since: float, timeout: float = 60) -> str:
    """/metrics once the worker has recounted its state after `since` (the
    held gauge comes from that recount, every 15 s or after a rebalance)."""
    deadline = time.monotonic() + timeout
    page = fetch_metrics(worker)
    while plain(page, "stream_app_state_scan_timestamp_seconds") < since:
        assert time.monotonic() < deadline, f"no state recount in {timeout}s:\n{worker.tail()}"
        time.sleep(1)
        page = fetch_metrics(worker)
    return page


def held(page: str) -> dict[str, float]:
    """The held-violations gauge's non-zero values, by rule."""
    return {rule: n for rule, n in labelled(page, "stream_app_held_violations").items() if n}


def published_total(page: str) -> float:
    return sum(labelled(page, "stream_app_holds_published_total").values())


def wait_held(
    worker: WorkerProcess,
    expected: dict[str, float] | Callable[[dict[str, float]], bool],
    timeout: float = 45,
) -> None:
    """Until the held gauge (recounted from the state table every 15 s, and
    at once after a rebalance) reads `expected` (or satisfies it)."""
    ok = expected if callable(expected) else expected.__eq__
    deadline = time.monotonic() + timeout
    seen = held(fetch_metrics(worker))
    while not ok(seen):
        assert time.monotonic() < deadline, f"held {seen}, expected {expected}:\n{worker.tail()}"
        time.sleep(0.5)
        seen = held(fetch_metrics(worker))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("restart", ["sigterm", "state-dir-lost"])
def test_held_violation_survives_and_is_published_when_its_hold_ends(
    deployment: Deployment, restart: str
) -> None:
    """Patient A's 77387-26 on a day without a fraction is held; the worker
    restarts (its state directory gone in the second case: the tables come
    back from the changelog) and still holds it; patient B's lines on the
    other partition move event time to the day before the hold ends (A's
    course closes: that ends no hold) and then to its end: A's alert opens
    then, once, and equals replay's."""
    deployment.partitions = PARTITIONS
    a, b = patient_on(0, "HOLD-A"), patient_on(1, "HOLD-B")
    lines = [
        held_line(a),
        fraction(b, f"I-{b}-1", DAY_BEFORE_END),
        fraction(b, f"I-{b}-2", HOLD_END),
    ]
    alert_id = f"{RULE}:{a}:P-{a}:1"

    worker = deployment.start_worker()
    try:
        deployment.publish(lines[:1])
        deployment.wait_caught_up(timeout=120, settle=SETTLE)  # committed: processed
        assert deployment.alerts() == [], "a held violation is not published"
    finally:
        assert worker.stop() == 0, worker.tail()

    state = deployment.data_root / "worker0"
    if restart == "state-dir-lost":
        assert any(state.iterdir()), "the worker should have written its tables"
        shutil.rmtree(state)
    worker = deployment.start_worker()
    try:
        # Back from the local store or the changelog: still held, unpublished
        # (the held gauge is recounted from the state table as it starts).
        wait_held(worker, {RULE: 1})

        # Event time the day before the hold ends: still held.
        deployment.publish(lines[1:2])
        deployment.wait_caught_up(timeout=120, settle=SETTLE)
        assert deployment.alerts() == [], "published before its hold ended"
        restarted = worker_log(worker).rsplit("[^Worker]: Starting...", 1)[1]
        rebuilt = re.findall(r"partition \d+: (\d+) patients in state", restarted)
        assert sum(map(int, rebuilt)) >= 1, "patient A should be in the restarted worker's state"

        # Event time reaches the end of the hold: the alert opens, once.
        deployment.publish(lines[2:])
        deployment.wait_caught_up(timeout=120, settle=SETTLE)
        alerts = deployment.alerts()
        assert [(x["alert_id"], x["status"], x["sequence"]) for x in alerts] == [
            (alert_id, "open", 1)
        ], alerts
        # Its course closed on the way (idle for 45 days): final.
        assert alerts[0]["finality"] == "final"
        assert_matches_replay(alerts, lines)

        page = fetch_metrics(worker)
        assert labelled(page, "stream_app_holds_published_total").get(RULE) == 1
        assert worker.process.poll() is None, worker.tail()
    finally:
        assert worker.stop() == 0, worker.tail()


def test_generated_stream_with_holds_matches_replay(deployment: Deployment) -> None:
    """A generated stream, with a SIGTERM restart in the middle, folds to
    replay's alerts (`--no-close-at-end`, holds at their default). The
    stream exercises holds: replay publishes some when their hold ends and
    cures many more; the worker publishes some too, and what it still holds
    at the end is what replay still holds."""
    deployment.partitions = 4
    lines = list(generate_lines(Synth(120, seed=29, violation_rate=0.3, void_rate=0.05)))
    summary = Replay(Engine(MemoryStore()), io.BytesIO(), io.StringIO(), close_at_end=False).run(
        lines
    )
    replay_held = sum(summary.holds.held().values())
    assert sum(summary.holds.published.values()) > 0, "the stream should publish held alerts"
    assert sum(summary.holds.cured.values()) > 0, "the stream should cure held violations"

    half = len(lines) // 2
    worker = deployment.start_worker()
    try:
        deployment.publish(lines[:half])
        deployment.wait_caught_up(timeout=180, settle=SETTLE)
        wait_held(worker, lambda seen: bool(seen))  # some held mid-stream
        published_before = published_total(fetch_metrics(worker))
    finally:
        assert worker.stop() == 0, worker.tail()
    worker = deployment.start_worker()
    try:
        deployment.publish(lines[half:])
        deployment.wait_caught_up(timeout=180, settle=SETTLE)
        alerts = deployment.alerts()
        assert_matches_replay(alerts, lines)
        assert not repeated_transitions(alerts), repeated_transitions(alerts)[:5]
        page = recounted_after(worker, time.time())
        still = held(page)
        published = published_before + published_total(page)
        print(
            f"replay: {dict(summary.holds.held())} held at the end, "
            f"{sum(summary.holds.published.values())} published; "
            f"worker: {still} held at the end, {published:.0f} published"
        )
        assert sum(still.values()) == replay_held
        assert published > 0, "the worker should have published held alerts"
    finally:
        assert worker.stop() == 0, worker.tail()
