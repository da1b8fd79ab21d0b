"""Drives a real broker and real `stream-app worker` processes for tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from stream_app.core.alerts import fold
from stream_app.core.engine import Engine
from stream_app.core.store import MemoryStore
from stream_app.replay import Replay
from stream_app.stream.kafkaio import publish
from stream_app.stream.settings import WorkerSettings
from stream_app.stream.topics import repartition_topic

ROOT = Path(__file__).resolve().parents[2]
KAFKA_SH = ROOT / "deploy" / "local" / "kafka.sh"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Broker:
    port: int
    controller_port: int
    state_dir: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_STATE_DIR": str(self.state_dir),
        }

    def run(self, *args: str, timeout: float = 180) -> None:
        subprocess.run(["bash", str(KAFKA_SH), *args], env=self.env(), check=True, timeout=timeout)

    def start(self) -> None:
        self.run("start")

    def stop(self, wipe: bool = False) -> None:
        self.run("stop", *(["--wipe"] if wipe else []))


@dataclass
class Deployment:
    """One isolated set of topics and one consumer group on the broker."""

    broker: Broker
    data_root: Path
    name: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}")
    partitions: int = 8
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def settings(self) -> WorkerSettings:
        return WorkerSettings(**self._settings_kwargs())

    def _settings_kwargs(self) -> dict[str, Any]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap,
            "input_topic": f"{self.name}-claim-lines",
            "alerts_topic": f"{self.name}-igrt-alerts",
            "dlq_topic": f"{self.name}-claim-lines-dlq",
            "partitions": self.partitions,
            "id": f"{self.name}-app",
        }

    def worker_env(self, index: int) -> dict[str, str]:
        s = self.settings
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap,
            "STREAM_APP_INPUT_TOPIC": s.input_topic,
            "STREAM_APP_ALERTS_TOPIC": s.alerts_topic,
            "STREAM_APP_DLQ_TOPIC": s.dlq_topic,
            "STREAM_APP_PARTITIONS": str(s.partitions),
            "STREAM_APP_ID": s.id,
            "STREAM_APP_DATA_DIR": str(self.data_root / f"worker{index}"),
            "STREAM_APP_WEB_PORT": str(free_port()),
            "STREAM_APP_WEB_BIND": "127.0.0.1",
            **self.extra_env,
        }

    def start_worker(self, index: int = 0, wait: bool = True) -> WorkerProcess:
        """A worker process, restarted when it exits with code 4 (a stall it
        could not heal), as Kubernetes or deploy/local/supervise.sh would."""
        env = self.worker_env(index)
        log_path = self.data_root / f"worker{index}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")  # noqa: SIM115 - owned by the WorkerProcess

        def spawn() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [sys.executable, "-m", "stream_app", "worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

        worker = WorkerProcess(spawn(), log_path, int(env["STREAM_APP_WEB_PORT"]), log, spawn)
        worker.supervise()
        if wait:
            worker.wait_ready()
        return worker

    def publish(
        self, lines: Iterable[bytes], rate: float | None = None, key_by: str = "patient_id"
    ) -> int:
        return asyncio.run(publish(self.settings, lines, rate=rate, key_by=key_by))

    def read_topic(self, topic: str) -> list[Any]:
        return asyncio.run(_read_all(self.broker.bootstrap, topic))

    def alerts(self) -> list[dict[str, Any]]:
        return [
            orjson.loads(record.value) for record in self.read_topic(self.settings.alerts_topic)
        ]

    def wait_caught_up(self, timeout: float = 600, settle: float = 6.0) -> None:
        """Until the group has consumed everything on the input and re-key topics.

        `settle` covers the worker's event-time reports, sent on a 0.5 s timer
        after the input is read to its end: a course closed by them is only
        closed once the re-key topic has them too."""
        wait_caught_up_with(self, {"bootstrap_servers": self.broker.bootstrap}, timeout, settle)


EXIT_STALLED = 4  # stream_app.stream.health.EXIT_STALLED
MAX_RESTARTS = 5


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    web_port: int
    _log: Any
    _spawn: Callable[[], subprocess.Popen[bytes]] | None = None
    restarts: int = 0
    _stopping: bool = False

    def supervise(self) -> None:
        """Restart the worker when it exits with code 4, at most MAX_RESTARTS
        times (a thread; stop() and kill() end it)."""
        import threading

        def watch() -> None:
            while not self._stopping:
                code = self.process.wait()
                if self._stopping or code != EXIT_STALLED or self.restarts >= MAX_RESTARTS:
                    return
                self.restarts += 1
                self._log.write(f"harness: worker exited 4, restart {self.restarts}\n".encode())
                self._log.flush()
                assert self._spawn is not None
                self.process = self._spawn()

        if self._spawn is not None:
            threading.Thread(target=watch, daemon=True).start()

    def ready(self) -> bool:
        """GET /readyz answers 200 (SPEC 9: tables recovered, processing)."""
        return probe(self.web_port, "/readyz") == 200

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return
            if self.process.poll() is not None and self.process.returncode != EXIT_STALLED:
                raise RuntimeError(f"worker exited {self.process.returncode}:\n{self.tail()}")
            time.sleep(0.3)
        raise TimeoutError(f"worker not ready in {timeout}s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        self._stopping = True
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        self._log.close()

    def stop(self, timeout: float = 60) -> int:
        self._stopping = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if not self._log.closed:
            self._log.close()
        return self.process.returncode


def probe(port: int, path: str, host: str = "127.0.0.1") -> int | None:
    """HTTP status of GET path on the worker's web port; None if it does not answer."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


async def _read_all(bootstrap: str, topic: str) -> list[Any]:
    return await read_all_with({"bootstrap_servers": bootstrap}, topic)


def replay_alerts(lines: Iterable[bytes], close_at_end: bool = False) -> list[dict[str, Any]]:
    import io

    out = io.BytesIO()
    Replay(Engine(MemoryStore()), out, io.StringIO(), close_at_end=close_at_end).run(lines)
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def comparable(alerts: Iterable[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """Folded open alerts, without the fields that legitimately differ per run."""
    return {
        alert_id: (
            a["rule_id"],
            a["finality"],
            a["excess_units"],
            a["severity"],
            a["carc"],
            tuple(tuple(sorted(e.items())) for e in a["evidence"]),
            a["hcpcs"],
            a["date_of_service"],
        )
        for alert_id, a in fold(alerts).items()
    }


def history(alerts: list[dict[str, Any]], alert_ids: list[str]) -> dict[str, list[str]]:
    """Each alert's messages in topic order: status, finality, detected_at."""
    return {
        alert_id: [
            f"{a['status']}/{a['finality']}@{a.get('detected_at', '?')}"
            for a in alerts
            if a["alert_id"] == alert_id
        ]
        for alert_id in alert_ids
    }


def assert_matches_replay(alerts: Iterable[dict[str, Any]], lines: list[bytes]) -> None:
    """The folded alerts equal `stream-app replay --no-close-at-end` of the lines."""
    alerts = list(alerts)
    expected = comparable(replay_alerts(lines, close_at_end=False))
    actual = comparable(alerts)
    missing = expected.keys() - actual.keys()
    extra = actual.keys() - expected.keys()
    differ = [k for k in expected.keys() & actual.keys() if expected[k] != actual[k]]
    assert not missing and not extra and not differ, (
        f"{len(missing)} missing, {len(extra)} extra, {len(differ)} differ; "
        f"e.g. {sorted(missing)[:3]} {sorted(extra)[:3]} "
        f"{[(k, expected[k], actual[k]) for k in differ[:2]]}; "
        f"their messages on the alerts topic: {history(alerts, [*missing, *extra, *differ][:4])}"
    )
    assert expected, "the stream should produce open alerts"


# ---------------------------------------------------------------- hardening helpers
# (SASL broker and deployment, a broker of a test's own, worker logs and metrics)


@dataclass
class SaslBroker(Broker):
    """A broker whose client listener is SASL_PLAINTEXT (kafka.sh KAFKA_SASL)."""

    sasl: str = "plain"  # or "scram": PLAIN plus SCRAM-SHA-256/512
    users: dict[str, str] = field(
        default_factory=lambda: {"admin": "admin-secret", "stream-app": "stream-app-secret"}
    )

    def env(self) -> dict[str, str]:
        return {
            **super().env(),
            "KAFKA_SASL": self.sasl,
            "KAFKA_SASL_USERS": ",".join(f"{name}:{pw}" for name, pw in self.users.items()),
        }


def start_own_broker(state_dir: Path) -> Broker:
    """A broker on free ports for one test (stopping it disturbs no other test)."""
    own = Broker(free_port(), free_port(), state_dir)
    own.start()
    return own


@dataclass
class SecureDeployment(Deployment):
    """A deployment whose worker and test clients log in with SASL."""

    username: str = "stream-app"
    password: str = "stream-app-secret"
    mechanism: str = "PLAIN"

    def _settings_kwargs(self) -> dict[str, Any]:
        return {
            **super()._settings_kwargs(),
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": self.mechanism,
            "sasl_username": self.username,
            "sasl_password": self.password,
        }

    def worker_env(self, index: int) -> dict[str, str]:
        return {
            **super().worker_env(index),
            "STREAM_APP_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "STREAM_APP_SASL_MECHANISM": self.mechanism,
            "STREAM_APP_SASL_USERNAME": self.username,
            "STREAM_APP_SASL_PASSWORD": self.password,
            **self.extra_env,
        }

    def read_topic(self, topic: str) -> list[Any]:
        return asyncio.run(read_all_with(client_kwargs(self.settings), topic))

    def wait_caught_up(self, timeout: float = 600, settle: float = 6.0) -> None:
        wait_caught_up_with(self, client_kwargs(self.settings), timeout, settle)


def client_kwargs(settings: WorkerSettings) -> dict[str, Any]:
    """aiokafka connection arguments (bootstrap and security) for these settings."""
    from stream_app.stream.topics import admin_kwargs

    kwargs = admin_kwargs(settings)
    kwargs.pop("request_timeout_ms", None)
    return kwargs


async def read_all_with(kwargs: dict[str, Any], topic: str) -> list[Any]:
    """`_read_all` with any connection arguments (read_committed)."""
    consumer = AIOKafkaConsumer(
        topic,
        **kwargs,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = sorted(consumer.assignment())
        assert tps, f"topic {topic} has no partitions"
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10000)
            for part in batch.values():
                records.extend(part)
        return records
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def _group_behind(
    kwargs: dict[str, Any], group: str, topics: list[str], **consumer_options: Any
) -> AsyncIterator[tuple[AIOKafkaConsumer, dict[Any, int], dict[Any, int]]]:
    """(consumer of the topics, end offsets, offset lag of each partition behind)."""
    admin = AIOKafkaAdminClient(**kwargs)
    consumer = AIOKafkaConsumer(*topics, **kwargs, group_id=None, **consumer_options)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        tps = sorted(consumer.assignment())
        assert {tp.topic for tp in tps} == set(topics), f"topics missing: {topics}"
        ends = await consumer.end_offsets(tps)
        behind: dict[Any, int] = {}
        for tp in tps:
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else 0
            if ends[tp] > done:
                behind[tp] = ends[tp] - done
        yield consumer, ends, behind
    finally:
        await consumer.stop()
        await admin.close()


async def group_lag_with(kwargs: dict[str, Any], group: str, topics: list[str]) -> int:
    """The group's committed offset lag over the topics."""
    async with _group_behind(kwargs, group, topics) as (_, _, behind):
        return sum(behind.values())


def wait_caught_up_with(
    deployment: Deployment, kwargs: dict[str, Any], timeout: float = 300, settle: float = 2.0
) -> None:
    """`Deployment.wait_caught_up` with any connection arguments."""
    _wait_for_no_lag(deployment, group_lag_with, kwargs, timeout, settle, "")


def _wait_for_no_lag(
    deployment: Deployment,
    lag_with: Callable[[dict[str, Any], str, list[str]], Coroutine[Any, Any, int]],
    kwargs: dict[str, Any],
    timeout: float,
    settle: float,
    unit: str,
) -> None:
    """Until the group's lag on the input and re-key topics is 0, twice
    `settle` seconds apart."""
    deadline = time.monotonic() + timeout
    topics = [deployment.settings.input_topic, repartition_topic(deployment.settings)]
    lag = -1
    while time.monotonic() < deadline:
        lag = asyncio.run(lag_with(kwargs, deployment.settings.id, topics))
        if lag == 0:
            time.sleep(settle)
            if asyncio.run(lag_with(kwargs, deployment.settings.id, topics)) == 0:
                return
        time.sleep(1.0)
    where = asyncio.run(_lag_by_partition(kwargs, deployment.settings.id, topics))
    raise TimeoutError(
        f"worker group did not catch up in {timeout}s (lag {lag}{unit}); "
        f"behind by partition (committed/end): {where}"
    )


async def _lag_by_partition(kwargs: dict[str, Any], group: str, topics: list[str]) -> str:
    """Each partition behind, as topic[partition]=committed/end (for a timeout's message)."""
    try:
        async with _group_behind(kwargs, group, topics) as (_, ends, behind):
            return ", ".join(
                f"{tp.topic}[{tp.partition}]={ends[tp] - behind[tp]}/{ends[tp]}"
                for tp in sorted(behind)
            )
    except Exception as exc:  # the message is for a failure already under way
        return f"unknown ({type(exc).__name__})"


def worker_log(worker: WorkerProcess) -> str:
    """Everything the worker has written (stdout and stderr) so far."""
    return worker.log_path.read_text(errors="replace")


def fetch_metrics(worker: WorkerProcess, host: str = "127.0.0.1", timeout: float = 10) -> str:
    """The worker's /metrics page."""
    import urllib.request

    url = f"http://{host}:{worker.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


def patient_ids(lines: Iterable[bytes]) -> set[str]:
    """Every patient_id value in a stream of JSON lines (invalid lines too)."""
    import re

    found: set[str] = set()
    for line in lines:
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("patient_id"), str):
            found.add(doc["patient_id"])
        for match in re.finditer(rb'"patient_id"\s*:\s*"([^"\\]+)"', line):
            found.add(match.group(1).decode(errors="replace"))
    return {pid for pid in found if pid}


def repeated_transitions(alerts: Iterable[dict[str, Any]]) -> list[tuple[str, int]]:
    """(alert_id, sequence) pairs that occur more than once."""
    from collections import Counter

    counts = Counter((a["alert_id"], a["sequence"]) for a in alerts)
    return sorted(key for key, n in counts.items() if n > 1)


async def record_lag_with(kwargs: dict[str, Any], group: str, topics: list[str]) -> int:
    """The group's lag counted in records, not offsets (read_committed).

    Under exactly-once the worker writes the re-key topic in transactions: each
    commit marker takes an offset but is no record, and records of an aborted
    transaction (a killed worker's) are never delivered. A caught-up group's
    committed offset can therefore stay short of the end offset; this counts
    only what a read_committed consumer would still get. A partition with any
    such record counts its whole offset lag."""
    options = {"enable_auto_commit": False, "isolation_level": "read_committed"}
    async with _group_behind(kwargs, group, topics, **options) as (consumer, ends, behind):
        for tp, lag_of_tp in behind.items():
            consumer.seek(tp, ends[tp] - lag_of_tp)
        lag = 0
        deadline = time.monotonic() + 30
        while behind and time.monotonic() < deadline:
            batch = await consumer.getmany(*behind, timeout_ms=500, max_records=1000)
            for tp, records in batch.items():
                if records and tp in behind:
                    lag += behind.pop(tp)
            for tp in list(behind):
                if await consumer.position(tp) >= ends[tp]:
                    del behind[tp]  # only markers or aborted records were left
        return lag + sum(behind.values())


def wait_caught_up_records(
    deployment: Deployment,
    kwargs: dict[str, Any] | None = None,
    timeout: float = 300,
    settle: float = 2.0,
) -> None:
    """`Deployment.wait_caught_up` with lag counted in records (`record_lag_with`)."""
    kwargs = kwargs or {"bootstrap_servers": deployment.broker.bootstrap}
    _wait_for_no_lag(deployment, record_lag_with, kwargs, timeout, settle, " records")


def string_values(lines: Iterable[bytes], name: str) -> set[str]:
    """Every string value of the field `name` in JSON lines, invalid lines too."""
    import re

    pattern = re.compile(rb'"' + re.escape(name.encode()) + rb'"\s*:\s*"([^"\\]+)"')
    return {
        match.group(1).decode(errors="replace")
        for line in lines
        for match in pattern.finditer(line)
    }
