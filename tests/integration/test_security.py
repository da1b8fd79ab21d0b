"""The worker on a broker that requires SASL (deploy/local/kafka.sh with
KAFKA_SASL=scram: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 on a SASL_PLAINTEXT
listener): same alerts as replay, a clear exit on bad credentials, no patient
data in /metrics or the log, and the metrics port bound where it is told."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from integration.harness import (
    SaslBroker,
    SecureDeployment,
    comparable,
    fetch_metrics,
    free_port,
    patient_ids,
    replay_alerts,
    string_values,
    worker_log,
)
from stream_app.synth.stream import Synth, generate_lines

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "sample-claims.jsonl"
USERS = {"admin": "admin-secret", "stream-app": "stream-app-secret"}


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaslBroker]:
    broker = SaslBroker(
        free_port(), free_port(), tmp_path_factory.mktemp("kafka-sasl"), "scram", dict(USERS)
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop(wipe=True)


def secure(broker: SaslBroker, tmp_path: Path, **login: str) -> SecureDeployment:
    return SecureDeployment(broker, tmp_path, **login)


def sample_lines() -> list[bytes]:
    return [line for line in SAMPLE.read_bytes().splitlines() if line.strip()]


def test_broker_refuses_clients_without_credentials(sasl_broker: SaslBroker) -> None:
    """The listener really requires SASL: a PLAINTEXT client gets nowhere."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient

    async def plaintext() -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=sasl_broker.bootstrap, request_timeout_ms=3000
        )
        try:
            await asyncio.wait_for(admin.start(), 10)
            await asyncio.wait_for(admin.list_topics(), 10)
        finally:
            await admin.close()

    with pytest.raises(Exception):  # noqa: B017 - a timeout or a connection error
        asyncio.run(plaintext())


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_worker_with_credentials_matches_replay(
    sasl_broker: SaslBroker, tmp_path: Path, mechanism: str
) -> None:
    deployment = secure(sasl_broker, tmp_path, mechanism=mechanism)
    lines = sample_lines()
    worker = deployment.start_worker()
    try:
        assert deployment.publish(lines) == len(lines)
        deployment.wait_caught_up(timeout=180)
        expected = comparable(replay_alerts(lines, close_at_end=False))
        actual = comparable(deployment.alerts())
        assert expected, "the sample should produce open alerts"
        assert actual == expected
        assert worker.process.poll() is None
    finally:
        assert worker.stop() == 0, worker.tail()
    # The credentials reach the broker only: the worker never logs the password.
    assert deployment.password not in worker_log(worker)


@pytest.mark.parametrize(
    ("login", "says"),
    [
        ({"password": "not-the-password"}, "Authentication failed"),
        ({"username": "nobody", "mechanism": "SCRAM-SHA-256"}, "Authentication failed"),
    ],
    ids=["wrong-password", "unknown-user"],
)
def test_bad_credentials_exit_non_zero_with_a_clear_message(
    sasl_broker: SaslBroker, tmp_path: Path, login: dict[str, str], says: str
) -> None:
    deployment = secure(sasl_broker, tmp_path, **login)
    started = time.monotonic()
    worker = deployment.start_worker(wait=False)
    try:
        code = worker.process.wait(30)
    except subprocess.TimeoutExpired:
        worker.kill()
        pytest.fail(f"the worker still runs 30 s after a failed login:\n{worker.tail()}")
    finally:
        worker.stop()
    elapsed = time.monotonic() - started
    text = worker_log(worker)
    assert code == 3, text
    # One attempt, one message: no retry loop, no traceback.
    assert text.count("stream-app worker: ") == 1, text
    assert "refused to authenticate SASL user" in text, text
    assert says in text, text
    assert "Traceback" not in text, text
    assert deployment.password not in text
    assert elapsed < 30


def flowing_stream() -> list[bytes]:
    """The sample, a generated stream and lines that go to the dead-letter
    topic, all carrying patient ids."""
    generated = list(generate_lines(Synth(60, seed=23, violation_rate=0.3, void_rate=0.05)))
    bad = [
        orjson.dumps({"patient_id": "PT-SECRET-1", "claim_id": "X1", "line_number": "one"}),
        orjson.dumps({"patient_id": "PT-SECRET-2", "kind": "claim_snapshot"}),
        b'{"patient_id": "PT-SECRET-3", "claim_id": ',
        orjson.dumps(
            {
                "claim_id": "X4",
                "line_number": 1,
                "patient_id": "PT-SECRET-4",
                "course_id": "K",
                "site": "prostate",
                "date_of_service": "2025-13-45",
                "hcpcs": "77387",
                "claim_type": "professional",
            }
        ),
    ]
    return sample_lines() + bad + generated


def test_metrics_and_log_carry_no_patient_ids(sasl_broker: SaslBroker, tmp_path: Path) -> None:
    deployment = secure(sasl_broker, tmp_path)
    lines = flowing_stream()
    ids = patient_ids(lines)
    assert len(ids) >= 60 and "PT-SECRET-3" in ids
    worker = deployment.start_worker()
    pages: list[str] = []
    try:
        publisher = threading.Thread(target=deployment.publish, args=(lines, 1500.0))
        publisher.start()
        while publisher.is_alive():
            pages.append(fetch_metrics(worker))
            time.sleep(0.5)
        publisher.join()
        deployment.wait_caught_up(timeout=180)
        pages.append(fetch_metrics(worker))
    finally:
        worker.stop()
    assert len(pages) >= 3, "fetch /metrics several times while the stream flows"
    assert "stream_app_lines_total" in pages[-1]
    assert 'stream_app_dead_letters_total{reason="bad_field"}' in pages[-1]
    text = worker_log(worker)
    assert "Worker ready" in text
    claims = string_values(lines, "claim_id")
    assert len(claims) > 100
    for where, content in [("/metrics", "\n".join(pages)), ("the worker log", text)]:
        leaked = sorted(pid for pid in ids if pid in content)
        assert not leaked, f"patient ids in {where}: {leaked[:5]}"
        leaked = sorted(claim for claim in claims if claim in content)
        assert not leaked, f"claim ids in {where}: {leaked[:5]}"


def _listening(port: int) -> list[str]:
    """Local addresses with a TCP socket listening on `port` (from /proc)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            if len(address) == 8:
                found.append(socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]))
            else:
                raw = bytes.fromhex(address)
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                found.append(socket.inet_ntop(socket.AF_INET6, words))
    return found


def _other_local_address() -> str | None:
    """A non-loopback IPv4 address of this host, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.123", 9))  # no packet is sent for a UDP connect
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


def test_web_bind_is_honoured(sasl_broker: SaslBroker, tmp_path: Path) -> None:
    deployment = secure(sasl_broker, tmp_path)
    worker = deployment.start_worker()  # the harness sets STREAM_APP_WEB_BIND=127.0.0.1
    try:
        assert deployment.worker_env(0)["STREAM_APP_WEB_BIND"] == "127.0.0.1"
        assert "# HELP" in fetch_metrics(worker)
        assert _listening(worker.web_port) == ["127.0.0.1"]
        other = _other_local_address()
        if other is not None:
            with pytest.raises(OSError):
                socket.create_connection((other, worker.web_port), timeout=3).close()
    finally:
        worker.stop()
