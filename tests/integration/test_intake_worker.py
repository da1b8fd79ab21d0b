"""837 files through the worker on a real broker: `stream-app intake x12
--publish`, then the worker's alerts equal replay's (SPEC 10, 1.1)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import orjson
from aiokafka.partitioner import murmur2

from integration.harness import Deployment, assert_matches_replay
from stream_app.stream.topics import ensure_topics

ROOT = Path(__file__).resolve().parents[2]
FILES = [
    ROOT / "examples" / "x12" / "radonc-837p.txt",
    ROOT / "examples" / "x12" / "radonc-837i.txt",
]


def intake(deployment: Deployment, *extra: str) -> subprocess.CompletedProcess[bytes]:
    env = deployment.worker_env(0)
    return subprocess.run(
        [sys.executable, "-m", "stream_app", "intake", "x12", *map(str, FILES), *extra],
        env=env, capture_output=True, cwd=ROOT, timeout=180, check=False,
    )  # fmt: skip


def claim_lines(deployment: Deployment) -> list[bytes]:
    claims = intake(deployment)
    assert claims.returncode == 0, claims.stderr
    lines = claims.stdout.splitlines()
    assert len(lines) == 11
    return lines


def publish(deployment: Deployment) -> None:
    published = intake(deployment, "--publish")
    assert published.returncode == 0, published.stderr
    topic = deployment.settings.input_topic
    assert f"published 11 claims to {topic}".encode() in published.stderr


def test_intake_publishes_each_claim_keyed_by_patient_on_its_partition(
    deployment: Deployment,
) -> None:
    lines = claim_lines(deployment)
    asyncio.run(ensure_topics(deployment.settings))  # as the worker does
    publish(deployment)
    records = deployment.read_topic(deployment.settings.input_topic)
    assert sorted(record.value for record in records) == sorted(lines)
    for record in records:  # keyed by patient, on the patient's partition (murmur2)
        patient = orjson.loads(record.value)["patient_id"]
        assert record.key == patient.encode()
        assert record.partition == (murmur2(record.key) & 0x7FFFFFFF) % deployment.partitions
    for patient in {orjson.loads(line)["patient_id"] for line in lines}:  # in file order
        mine = [r.value for r in records if orjson.loads(r.value)["patient_id"] == patient]
        assert mine == [line for line in lines if orjson.loads(line)["patient_id"] == patient]


def test_837_files_published_by_intake_give_the_alerts_of_replay(deployment: Deployment) -> None:
    lines = claim_lines(deployment)
    worker = deployment.start_worker()  # it creates the topics, with their partitions
    try:
        publish(deployment)
        deployment.wait_caught_up()
        assert_matches_replay(deployment.alerts(), lines)
    finally:
        assert worker.stop() == 0, worker.tail()
