"""Throughput of `stream-app sink postgres`: alert messages/s into the
denial queue, from a fresh sink process to caught up.

    .venv/bin/python benchmarks/sink.py                    # 200,000 messages
    .venv/bin/python benchmarks/sink.py --messages 50000   # a small run

Starts its own Kafka (deploy/local/kafka.sh) and PostgreSQL
(deploy/local/postgres.sh) on free ports, with the helpers of
tests/integration/, and stops them at the end. The alerts are real: `stream-app
generate` claim lines through the replay engine (stream_app.replay.Replay),
whose alerts are cloned under new patient, claim and alert ids until there are
--messages of them, each alert with one to three messages (open, resolved,
open again: higher sequences) and --stale of re-sent old ones, keyed by claim
as the worker sends them. They are published first; then a sink starts on an
empty database and is timed from its start to the moment its stored offsets
are the topic's end offsets (and from its first batch). The engine's own alert
rate (replay, in this process) is printed for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from integration.harness import Broker, free_port  # noqa: E402
from integration.sink_harness import (  # noqa: E402
    Postgres,
    Topic,
    sink_env,
    start_sink,
    stored_offsets,
    table,
    wait_caught_up,
)

from stream_app.core.engine import Engine  # noqa: E402
from stream_app.core.store import MemoryStore  # noqa: E402
from stream_app.replay import Replay  # noqa: E402


def replay_alerts(patients: int) -> tuple[list[dict[str, Any]], float, int, float]:
    """Alerts of a generated stream through the engine: the alerts, alerts/s,
    claim messages, claim messages/s."""
    command = [sys.executable, "-m", "stream_app", "generate", "--patients", str(patients)]
    command += ["--violation-rate", "0.6", "--voids", "0.1", "--seed", "21", "--quiet"]
    generated = subprocess.run(
        command,
        check=True,
        capture_output=True,
        cwd=ROOT,
    ).stdout
    lines = generated.splitlines()
    out = io.BytesIO()
    replay = Replay(Engine(MemoryStore()), out, io.StringIO(), close_at_end=True)
    started = time.perf_counter()
    replay.run(lines)
    seconds = time.perf_counter() - started
    alerts = [orjson.loads(line) for line in out.getvalue().splitlines()]
    return alerts, len(alerts) / seconds, len(lines), len(lines) / seconds


def synthesize(templates: list[dict[str, Any]], count: int, stale: float) -> list[Any]:
    """`count` (key, value) alert messages cloned from the templates."""
    rng = random.Random(7)
    out: list[tuple[bytes, bytes]] = []
    sent: list[tuple[bytes, bytes]] = []
    n = 0
    while len(out) < count:
        base = dict(templates[n % len(templates)])
        patient, claim = f"B{n:08d}", f"BC{n:09d}"
        base.update(patient_id=patient, claim_id=claim, course_id=f"{patient}-RT1")
        base["alert_id"] = f"{base['rule_id']}:{patient}:{claim}:{base['line_number']}"
        n += 1
        for sequence, status in enumerate(("open", "resolved", "open")[: rng.randint(1, 3)], 1):
            message = (
                claim.encode(),
                orjson.dumps(base | {"sequence": sequence, "status": status}),
            )
            out.append(message)
            sent.append(message)
            if rng.random() < stale:
                out.append(rng.choice(sent[-50:]))
    return out[:count]


async def publish(bootstrap: str, topic: str, messages: list[Any]) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, acks="all", max_batch_size=512 * 1024
    )
    await producer.start()
    started = time.perf_counter()
    try:
        for key, value in messages:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()
    return time.perf_counter() - started


def first_batch_time(url: str, topic: str, deadline: float) -> float:
    while time.monotonic() < deadline:
        try:
            if stored_offsets(url, topic):
                return time.monotonic()
        except Exception:
            pass
        time.sleep(0.01)
    raise TimeoutError("the sink wrote nothing")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--patients", type=int, default=1500, help="of the replayed stream")
    parser.add_argument("--stale", type=float, default=0.05, help="share of re-sent messages")
    parser.add_argument("--batch-max", type=int, default=5000, help="STREAM_APP_SINK_BATCH_MAX")
    args = parser.parse_args(argv)

    templates, replay_rate, lines, lines_rate = replay_alerts(args.patients)
    print(
        f"replay: {len(templates)} alerts from {lines} claim messages (violation rate 0.6): "
        f"{replay_rate:,.0f} alerts/s, {lines_rate:,.0f} claim messages/s"
    )
    messages = synthesize(templates, args.messages, args.stale)

    state = Path(tempfile.mkdtemp(prefix="sink-bench-", dir=ROOT / ".cache"))
    broker = Broker(free_port(), free_port(), state / "kafka")
    postgres = Postgres.create()
    broker.start()
    try:
        postgres.start()
        topic = Topic(broker, partitions=args.partitions).create()
        seconds = asyncio.run(publish(broker.bootstrap, topic.name, messages))
        print(f"publish: {len(messages):,} alert messages in {seconds:.1f}s")
        url = postgres.new_database()
        env = sink_env(broker, topic.name, url) | {"STREAM_APP_SINK_BATCH_MAX": str(args.batch_max)}
        started = time.monotonic()
        sink = start_sink(env, state / "sink.log")
        try:
            first = first_batch_time(url, topic.name, started + 120)
            wait_caught_up(url, topic, sink, timeout=1200)
            done = time.monotonic()
        finally:
            sink.stop()
        rows = len(table(url))
        total = done - started
        applying = done - first
        print(f"sink: {len(messages):,} messages, {rows:,} rows, batch max {args.batch_max}")
        print(f"sink: {len(messages) / total:,.0f} msgs/s from process start ({total:.1f}s)")
        print(
            f"sink: {len(messages) / applying:,.0f} msgs/s from its first batch ({applying:.1f}s)"
        )
        print(
            f"engine (replay, one process): {replay_rate:,.0f} alerts/s at violation rate 0.6 "
            "(the worker's alert rate is at most this per process)"
        )
        verdict = "PASS" if len(messages) / total >= 10_000 else "FAIL"
        print(f"{verdict}: at least 10,000 alert messages/s (issue 21)")
    finally:
        postgres.wipe()
        broker.stop(wipe=True)
        shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
