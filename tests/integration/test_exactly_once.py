"""The worker with STREAM_APP_PROCESSING_GUARANTEE=exactly_once (Faust with
Kafka transactions): SIGKILL in the middle of a stream, restart, and a
read_committed consumer of the alerts topic sees every transition once and the
same folded alerts as replay.

Two things make that hold, each shown by a test here:
1. Output goes into the transaction in which its source partition's offset is
   committed (stream_app.stream.worker.output Output.send_for). Faust 0.15.3 on its own sends to
   topics the app does not consume (alerts, dead letters) outside any
   transaction, and a re-keyed line in the destination partition's
   transaction; a killed worker's alerts then stayed visible while its table
   changes and offsets rolled back, and the restart sent them again.
2. After a crash the worker drops its local RocksDB tables and rebuilds them
   from the changelogs: RocksDB keeps the writes of the aborted transaction,
   and the restart would take those events as applied and never send their
   alerts (2 of 60 alerts were missing before this).

A transactional write leaves a commit marker in each partition it wrote, so a
topic written only in transactions has end offsets beyond its record count.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from integration.harness import (
    Broker,
    Deployment,
    WorkerProcess,
    assert_matches_replay,
    fetch_metrics,
    repeated_transitions,
    wait_caught_up_records,
    worker_log,
)
from stream_app.stream.topics import repartition_topic
from stream_app.synth.stream import Synth, generate_lines

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "sample-claims.jsonl"
EXACTLY_ONCE = {"STREAM_APP_PROCESSING_GUARANTEE": "exactly_once"}


def lines_done(worker: WorkerProcess) -> float:
    page = fetch_metrics(worker)
    return sum(
        float(m.group(1))
        for m in re.finditer(r"^stream_app_lines_total\{[^}]*\} (\S+)$", page, re.M)
    )


async def _read_uncommitted(bootstrap: str, topic: str) -> tuple[int, list[Any]]:
    """(sum of end offsets, every record including aborted ones)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_uncommitted",
    )
    await consumer.start()
    try:
        tps = sorted(consumer.assignment())
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and [
            tp for tp in tps if await consumer.position(tp) < ends[tp]
        ]:
            for part in (await consumer.getmany(timeout_ms=500, max_records=10000)).values():
                records.extend(part)
        return sum(ends.values()), records
    finally:
        await consumer.stop()


@pytest.fixture(scope="module")
def sample_run(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """An exactly-once worker that has processed the sample stream."""
    deployment = Deployment(broker, tmp_path_factory.mktemp("eos"), extra_env=dict(EXACTLY_ONCE))
    lines = [line for line in SAMPLE.read_bytes().splitlines() if line.strip()]
    worker = deployment.start_worker()
    try:
        deployment.publish(lines)
        wait_caught_up_records(deployment, timeout=180)
    finally:
        assert worker.stop() == 0, worker.tail()
    yield deployment


def test_rekey_topic_is_written_in_transactions(sample_run: Deployment) -> None:
    """The control: Faust's own transactional sends leave commit markers."""
    topic = repartition_topic(sample_run.settings)
    end, records = asyncio.run(_read_uncommitted(sample_run.broker.bootstrap, topic))
    assert records
    assert end > len(records), "no commit markers: the re-key topic was not written in transactions"


def test_alerts_are_written_in_transactions(sample_run: Deployment) -> None:
    topic = sample_run.settings.alerts_topic
    end, records = asyncio.run(_read_uncommitted(sample_run.broker.bootstrap, topic))
    assert records
    assert end > len(records), (
        f"{len(records)} alerts and {end} offsets: no commit markers, the alerts were "
        "written outside any transaction"
    )


@pytest.mark.parametrize("batch_max", ["1", "500"])
def test_sigkill_mid_stream_exactly_once(deployment: Deployment, batch_max: str) -> None:
    """Event by event, and in batches (held table writes, commits between batches)."""
    deployment.extra_env.update(EXACTLY_ONCE, STREAM_APP_BATCH_MAX=batch_max)
    lines = list(generate_lines(Synth(150, seed=29, violation_rate=0.3, void_rate=0.05)))
    half = len(lines) // 2
    worker = deployment.start_worker()
    deployment.publish(lines[:half])
    deadline = time.monotonic() + 90
    while lines_done(worker) < 500 and time.monotonic() < deadline:
        time.sleep(0.2)
    done_at_kill = lines_done(worker)
    worker.kill()
    assert 0 < done_at_kill < half, f"killed after {done_at_kill} of {half} lines"
    deployment.publish(lines[half:])
    worker = deployment.start_worker()
    try:
        # Lag in records: commit markers and aborted records take offsets.
        wait_caught_up_records(deployment, timeout=300)
        alerts = deployment.alerts()  # read_committed
        text = worker_log(worker)
    finally:
        assert worker.stop() == 0, worker.tail()
    assert "Traceback" not in text, worker.tail()
    assert "dropping local tables" in text, "the crash should have been noticed at restart"
    repeated = repeated_transitions(alerts)
    shown = [
        (a["alert_id"], a["sequence"], a["status"], a["finality"], a["detected_at"])
        for a in alerts
        if (a["alert_id"], a["sequence"]) in set(repeated[:3])
    ]
    assert not repeated, f"{len(repeated)} transitions seen twice, e.g. {shown}"
    assert_matches_replay(alerts, lines)
