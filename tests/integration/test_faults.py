"""Broker faults: the broker goes away in the middle of a stream for 20 s and
comes back with its data. The worker rides it out in the same process (no
crash, no restart, no busy loop), says in its log that the broker is
unreachable and that it rejoined, and its alerts still equal replay's.

The broker is the test's own (not the session one), so stopping it disturbs
no other test."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.harness import (
    Broker,
    Deployment,
    WorkerProcess,
    assert_matches_replay,
    fetch_metrics,
    start_own_broker,
    worker_log,
)
from stream_app.synth.stream import Synth, generate_lines

OUTAGE_SECONDS = 20


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    broker = start_own_broker(tmp_path / "kafka")
    try:
        yield broker
    finally:
        broker.stop(wipe=True)


def stream() -> list[bytes]:
    # Generated lines only: its dates run forward from 2025-01, so lines that
    # arrive during or after the outage are never far behind event time.
    return list(generate_lines(Synth(150, seed=17, violation_rate=0.3, void_rate=0.05)))


def lines_done(worker: WorkerProcess) -> float:
    """Input events the worker has evaluated so far, from its /metrics."""
    page = fetch_metrics(worker)
    return sum(
        float(m.group(1))
        for m in re.finditer(r"^stream_app_lines_total\{[^}]*\} (\S+)$", page, re.M)
    )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_broker_outage_mid_stream(own_broker: Broker, tmp_path: Path) -> None:
    deployment = Deployment(own_broker, tmp_path / "app")
    lines = stream()
    half = len(lines) // 2
    worker = deployment.start_worker()
    try:
        deployment.publish(lines[:half])
        deadline = time.monotonic() + 60
        while lines_done(worker) < 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        done_at_stop = lines_done(worker)
        assert 0 < done_at_stop < half, "the broker should stop in the middle of processing"

        own_broker.stop()
        log_before = len(worker_log(worker).splitlines())
        cpu_before = cpu_seconds(worker.process.pid)
        time.sleep(OUTAGE_SECONDS / 2)
        # /metrics stays up (it does not need the broker); the counters stand still.
        during = lines_done(worker)
        time.sleep(OUTAGE_SECONDS / 2)
        assert lines_done(worker) - during < 1000
        assert worker.process.poll() is None, worker.tail()
        outage_cpu = (cpu_seconds(worker.process.pid) - cpu_before) / OUTAGE_SECONDS
        outage_lines = len(worker_log(worker).splitlines()) - log_before
        own_broker.start()  # same state dir: topics, offsets and changelogs are kept

        deployment.publish(lines[half:])
        deployment.wait_caught_up(timeout=300)
        assert worker.process.poll() is None, worker.tail()
        text = worker_log(worker)

        # One process, never restarted, nothing crashed.
        assert text.count("[^Worker]: Starting...") == 1, worker.tail()
        for crash in ("Crashed reason", "Traceback", "Worker exited"):
            assert crash not in text, f"{crash!r} in the worker log:\n{worker.tail()}"
        # No busy loop while the broker is away (aiokafka alone would spin at
        # ~75% of a core and write ~6,000 lines a second here).
        assert outage_cpu < 0.3, f"worker used {outage_cpu:.0%} of a core while the broker was down"
        assert outage_lines < 100 * OUTAGE_SECONDS, f"{outage_lines} log lines in the outage"
        # The log says what happened: broker unreachable, then back and rejoined.
        after_stop = text.split("Connect call failed", 1)
        assert len(after_stop) == 2, "the log should say the broker refused connections"
        assert "Unable connect to node" in text
        assert "Marking the coordinator dead" in text
        # Back: the group coordinator is found again (with or without a rejoin).
        assert "Discovered coordinator" in after_stop[1]

        assert_matches_replay(deployment.alerts(), lines)
    finally:
        assert worker.stop() == 0, worker.tail()
