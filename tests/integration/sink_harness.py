"""A real PostgreSQL (deploy/local/postgres.sh) and real `stream-app sink
postgres` processes for the sink's tests; alert messages on a real topic."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from integration.harness import ROOT, Broker, free_port, probe, read_all_with

POSTGRES_SH = ROOT / "deploy" / "local" / "postgres.sh"
PASSWORD = "sink-test-secret"


@dataclass
class Postgres:
    """One throwaway cluster with password authentication."""

    port: int
    state_dir: Path
    password: str = PASSWORD
    database: str = "queue"

    @classmethod
    def create(cls) -> Postgres:
        # Not under pytest's tmp dir: as root the server runs as `postgres`,
        # which must be able to enter every parent directory.
        state = Path(tempfile.mkdtemp(prefix="stream-app-pg-"))
        state.chmod(0o755)
        return cls(free_port(), state)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_STATE_DIR": str(self.state_dir / "cluster"),
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_DB": self.database,
        }

    def run(self, *args: str) -> str:
        done = subprocess.run(
            ["bash", str(POSTGRES_SH), *args],
            env=self.env(),
            check=False,
            timeout=120,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:  # e.g. no server binaries: apt-get install postgresql
            raise RuntimeError(f"deploy/local/postgres.sh {' '.join(args)}:\n{done.stderr}")
        return done.stdout.strip()

    def start(self) -> None:
        self.run("start")

    def stop(self) -> None:
        self.run("stop")

    def wipe(self) -> None:
        self.run("stop", "--wipe")
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def url(self, database: str | None = None, password: str | None = None) -> str:
        secret = self.password if password is None else password
        name = database or self.database
        return f"postgresql://stream_app:{secret}@127.0.0.1:{self.port}/{name}"

    def new_database(self) -> str:
        """A fresh database on the cluster; its URL."""
        name = f"t{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.url(name)


def alert(
    alert_id: str, sequence: int, status: str = "open", severity: str = "deny", **extra: Any
) -> dict[str, Any]:
    rule_id, patient_id, claim_id, line_number = alert_id.split(":")
    return {
        "alert_id": alert_id,
        "status": status,
        "finality": "provisional",
        "rule_id": rule_id,
        "title": "test rule",
        "severity": severity,
        "carc": "97",
        "patient_id": patient_id,
        "course_id": f"{patient_id}-RT1",
        "site": "prostate",
        "claim_id": claim_id,
        "line_number": int(line_number),
        "date_of_service": "2026-03-02",
        "hcpcs": "77387",
        "modifiers": ["26"],
        "excess_units": None,
        "evidence": [],
        "message": "test",
        "citation": "test",
        "ruleset": "test",
        "sequence": sequence,
        "detected_at": f"2026-03-02T10:{sequence % 60:02d}:00.000Z",
        **extra,
    }


def encoded(alerts: Iterable[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    """(key, value) as the worker sends them: keyed by claim."""
    return [(str(a["claim_id"]).encode(), orjson.dumps(a)) for a in alerts]


@dataclass
class Topic:
    broker: Broker
    partitions: int = 4
    name: str = field(default_factory=lambda: f"sink-{uuid.uuid4().hex[:8]}-alerts")

    @property
    def kwargs(self) -> dict[str, Any]:
        return {"bootstrap_servers": self.broker.bootstrap}

    def create(self) -> Topic:
        async def go() -> None:
            admin = AIOKafkaAdminClient(**self.kwargs)
            await admin.start()
            try:
                await admin.create_topics([NewTopic(self.name, self.partitions, 1)])
            finally:
                await admin.close()

        asyncio.run(go())
        return self

    def produce(self, messages: Iterable[tuple[bytes | None, bytes | None]]) -> int:
        async def go() -> int:
            producer = AIOKafkaProducer(**self.kwargs, linger_ms=5, acks="all")
            await producer.start()
            sent = 0
            try:
                for key, value in messages:
                    await producer.send(self.name, value, key=key)
                    sent += 1
                await producer.flush()
            finally:
                await producer.stop()
            return sent

        return asyncio.run(go())

    def records(self) -> list[Any]:
        return asyncio.run(read_all_with(self.kwargs, self.name))


def fold_records(records: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """What the table must hold: per alert_id the first message with the
    highest sequence (its partition and offset), and how many messages of it
    the topic holds. Invalid messages are left out, as the sink does."""
    from stream_app.sink.apply import parse

    fold: dict[str, dict[str, Any]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        message = parse(record.value, record.partition, record.offset)
        if message is None:
            continue
        entry = fold.get(message.alert_id)
        if entry is None:
            fold[message.alert_id] = entry = {"sequence": -1, "messages_read": 0}
        entry["messages_read"] += 1
        if message.sequence > entry["sequence"]:
            entry.update(
                sequence=message.sequence,
                status=message.status,
                applied_partition=record.partition,
                applied_offset=record.offset,
            )
    return fold


def table(url: str) -> dict[str, dict[str, Any]]:
    with psycopg.connect(url) as conn:
        cur = conn.execute(
            "SELECT alert_id, sequence, status, applied_partition, applied_offset,"
            " messages_read FROM denial_queue"
        )
        return {
            row[0]: {
                "sequence": row[1],
                "status": row[2],
                "applied_partition": row[3],
                "applied_offset": row[4],
                "messages_read": row[5],
            }
            for row in cur.fetchall()
        }


def stored_offsets(url: str, topic: str) -> dict[int, int]:
    with psycopg.connect(url) as conn:
        cur = conn.execute(
            "SELECT partition, next_offset FROM sink_offsets WHERE topic = %s", (topic,)
        )
        return {int(p): int(o) for p, o in cur.fetchall()}


def end_offsets(topic: Topic) -> dict[int, int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def go() -> dict[int, int]:
        consumer = AIOKafkaConsumer(**topic.kwargs, isolation_level="read_committed")
        await consumer.start()
        try:
            tps = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
            ends = await consumer.end_offsets(tps)
            return {tp.partition: offset for tp, offset in ends.items()}
        finally:
            await consumer.stop()

    return asyncio.run(go())


@dataclass
class SinkProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def wait_metrics(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while probe(self.port, "/metrics") != 200:
            if self.process.poll() is not None:
                raise RuntimeError(f"sink exited {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"sink /metrics not up:\n{self.log()}")
            time.sleep(0.2)


def sink_env(broker: Broker, topic: str, url: str, port: int | None = None) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "STREAM_APP_ALERTS_TOPIC": topic,
        "STREAM_APP_DATABASE_URL": url,
        "STREAM_APP_SINK_PORT": str(port or free_port()),
        "STREAM_APP_SINK_BIND": "127.0.0.1",
        "STREAM_APP_SINK_REFRESH_SECONDS": "1",
    }


def start_sink(env: dict[str, str], log_path: Path) -> SinkProcess:
    log = open(log_path, "ab")  # noqa: SIM115 - closed when the process ends
    process = subprocess.Popen(
        [sys.executable, "-m", "stream_app", "sink", "postgres"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    log.close()
    return SinkProcess(process, log_path, int(env["STREAM_APP_SINK_PORT"]))


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream_app", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def wait_caught_up(url: str, topic: Topic, sink: SinkProcess, timeout: float = 90) -> None:
    """Until the stored offsets are the topic's end offsets."""
    ends = end_offsets(topic)
    deadline = time.monotonic() + timeout
    while True:
        try:
            stored = stored_offsets(url, topic.name)
        except psycopg.Error:
            stored = {}
        if all(stored.get(p, 0) >= end for p, end in ends.items()):
            return
        if sink.process.poll() is not None:
            raise RuntimeError(f"sink exited {sink.process.returncode}:\n{sink.log()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"sink behind: stored {stored}, ends {ends}\n{sink.log()[-3000:]}")
        time.sleep(0.2)
