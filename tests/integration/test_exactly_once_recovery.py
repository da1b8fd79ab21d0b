"""Table recovery under exactly-once (issue 23), on the real broker.

Faust 0.15.3 takes a changelog partition's highwater, under transactions,
from the last *fetch* of that partition (aiokafka's `last_stable_offset`),
which is unknown before the first fetch: recovery took it for -1. A worker
restarted with its local tables then crash-looped on `ConsistencyError: The
persisted offset ... is higher than the last offset in that topic
(highwater) (N > -1)`, and one restarted without them (a lost state
directory, or a crash: the worker drops its tables then) restored nothing
and evaluated the rest of the stream with empty tables
(stream_app.stream.faust.patches._highwaters). The first test shows that
on Faust's method; the second runs a worker through a SIGKILL restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from integration.harness import (
    Broker,
    Deployment,
    assert_matches_replay,
    repeated_transitions,
    wait_caught_up_records,
    worker_log,
)
from stream_app.stream.faust import patches as faust_patches
from stream_app.synth.stream import Synth, generate_lines

EXACTLY_ONCE = {"STREAM_APP_PROCESSING_GUARANTEE": "exactly_once"}


async def _highwater_before_any_fetch(bootstrap: str, topic: str, method: Any) -> Any:
    """Three records written in a transaction (offsets 0-2, its commit
    marker 3), then `method` (a consumer thread's `_highwaters`) for the
    partition of a read_committed consumer that has fetched nothing yet,
    as Faust's recovery asks it for a changelog partition just assigned."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-tx")
    await producer.start()
    try:
        async with producer.transaction():
            for n in range(3):
                await producer.send(topic, f"v{n}".encode(), key=b"k", partition=0)
    finally:
        await producer.stop()
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        thread = SimpleNamespace(
            consumer=SimpleNamespace(in_transaction=True), _ensure_consumer=lambda: consumer
        )
        return (await method(thread, [tp]))[tp]
    finally:
        # aiokafka 0.12 cancels its offset-reset task on a stop that follows
        # an assignment this soon; the stop itself is done.
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()


@pytest.mark.parametrize("fixed", [False, True])
def test_changelog_highwater_under_transactions(broker: Broker, fixed: bool) -> None:
    """0.15.3's `_highwaters` answers None (recovery: highwater -1) for a
    partition not fetched yet; the override answers the last stable offset,
    4 (three records and the commit marker)."""
    from uuid import uuid4

    topic = f"hw-{uuid4().hex[:8]}"
    method = faust_patches._highwaters if fixed else faust_patches._original_highwaters
    found = asyncio.run(_highwater_before_any_fetch(broker.bootstrap, topic, method))
    assert found == (4 if fixed else None)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("restart", ["sigkill"])
def test_exactly_once_restart_recovers_tables(deployment: Deployment, restart: str) -> None:
    """Half a stream, a restart (local tables kept, lost, or dropped after a
    SIGKILL), the other half: the worker recovers its tables from the
    changelog and goes on without a crash, and a read_committed consumer of
    the alerts sees replay's alerts, each transition once."""
    deployment.partitions = 4
    deployment.extra_env.update(EXACTLY_ONCE)
    lines = list(generate_lines(Synth(60, seed=31, violation_rate=0.3)))
    half = len(lines) // 2
    worker = deployment.start_worker()
    try:
        deployment.publish(lines[:half])
        wait_caught_up_records(deployment, timeout=180)
    finally:
        if restart == "sigkill":
            worker.kill()
        else:
            assert worker.stop() == 0, worker.tail()
    if restart == "state-dir-lost":
        shutil.rmtree(deployment.data_root / "worker0")
    deployment.publish(lines[half:])
    worker = deployment.start_worker()
    try:
        wait_caught_up_records(deployment, timeout=180)
        alerts = deployment.alerts()
        text = worker_log(worker).rsplit("[^Worker]: Starting...", 1)[-1]
        assert worker.process.poll() is None, worker.tail()
    finally:
        assert worker.stop() == 0, worker.tail()
    assert "ConsistencyError" not in text, worker.tail()
    assert "Traceback" not in text, worker.tail()
    assert not repeated_transitions(alerts), repeated_transitions(alerts)[:5]
    assert_matches_replay(alerts, lines)


@pytest.mark.timeout(300)
def test_exactly_once_event_time_reaches_partitions_of_another_worker(
    deployment: Deployment,
) -> None:
    """Two workers under exactly-once, one input partition each: patient A's
    held violation on one, patient B's lines on the other move event time
    to the end of A's hold. B's worker tells A's partition through an
    event-time report on the re-key topic; Faust's Topic.send put that
    report in the transaction of the *target* partition, which B's worker
    does not own, so the send failed every time, event time stood still on
    A's partition and the hold never ended (the soak: thousands held at the
    end against replay's 0). Now A's alert opens, as replay's does."""
    import time

    import orjson

    from integration.harness import WorkerProcess
    from stream_app.stream.worker.routing import patient_partition

    deployment.partitions = 2
    deployment.extra_env.update(EXACTLY_ONCE)

    def patient_on(partition: int, prefix: str) -> str:
        n = 0
        while patient_partition(f"{prefix}-{n}".encode(), 2) != partition:
            n += 1
        return f"{prefix}-{n}"

    def line(patient: str, claim: str, date: str, hcpcs: str, kind: str, **more: Any) -> bytes:
        return orjson.dumps(
            {
                "claim_id": claim, "line_number": 1, "patient_id": patient,
                "course_id": f"{patient}-RT1", "site": "prostate", "date_of_service": date,
                "hcpcs": hcpcs, "units": 1, "claim_type": kind, "payer_type": "commercial",
                "diagnosis_codes": ["C61"], **more,
            }
        )  # fmt: skip

    a, b = patient_on(0, "EOS-A"), patient_on(1, "EOS-B")
    lines = [
        line(a, f"P-{a}", "2026-03-02", "77387", "professional",
             modifiers=["26"], place_of_service="11"),
        line(b, f"I-{b}-1", "2026-03-03", "77412", "institutional", modality="IMRT"),
        line(b, f"I-{b}-2", "2026-12-31", "77412", "institutional", modality="IMRT"),
    ]  # fmt: skip
    workers: list[WorkerProcess] = [deployment.start_worker(0), deployment.start_worker(1)]
    try:
        deadline = time.monotonic() + 60
        while "partition" not in worker_log(workers[1]) and time.monotonic() < deadline:
            time.sleep(1)
        time.sleep(10)  # the rebalance that shares the partitions
        deployment.publish(lines)
        wait_caught_up_records(deployment, timeout=120)
        deadline = time.monotonic() + 60
        alerts = deployment.alerts()
        while not alerts and time.monotonic() < deadline:
            time.sleep(2)
            alerts = deployment.alerts()
    finally:
        for worker in workers:
            worker.stop()
    logs = "".join(worker_log(w) for w in workers)
    assert "event-time report not sent" not in logs
    assert_matches_replay(alerts, lines)
