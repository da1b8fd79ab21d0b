"""Small Kafka clients around the worker: publish a JSON-lines file as intake
would (keyed by patient, SPEC 1), and follow the alerts topic."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError, SaslAuthenticationFailed, UnsupportedSaslMechanismError

from stream_app.stream.settings import KafkaSettings
from stream_app.stream.topics import _LoggedErrors, admin_kwargs

T = TypeVar("T")

# How long `publish` and `follow_alerts` try to reach the broker (and `publish`
# waits for a topic's metadata or a send's acknowledgement) before they raise
# BrokerError: aiokafka's own request timeout. The command line's `--timeout`
# is shorter (cli.KAFKA_TIMEOUT_SECONDS).
DEFAULT_TIMEOUT_SECONDS = 40.0
# How long the broker may hold an alerts fetch for data (aiokafka: 500 ms).
FETCH_MAX_WAIT_MS = 100
CHECK = "check KAFKA_BOOTSTRAP_SERVERS, that the broker is up, and STREAM_APP_SECURITY_PROTOCOL"


class BrokerError(RuntimeError):
    """The broker could not be reached, refused the client, or lost a send."""


def intake_key(raw: bytes, key_by: str = "patient_id") -> bytes | None:
    """The Kafka key intake gives a message: its patient id (SPEC 1), so that
    all of a patient's messages share a partition. `key_by="claim_id"` keys
    by claim instead, as older intake did (the worker re-keys those)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if isinstance(doc, dict):
        key = doc.get(key_by) or doc.get("patient_id")
        if isinstance(key, str):
            return key.encode()
    return None


def _client_kwargs(settings: KafkaSettings) -> dict[str, Any]:
    kwargs = admin_kwargs(settings)
    kwargs.pop("request_timeout_ms", None)
    return kwargs


RECANCEL_SECONDS = 1.0


def run_interruptible(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, where Ctrl-C (SIGINT) always ends the run with
    KeyboardInterrupt.

    asyncio.run cancels the main task once. Python 3.11's asyncio.wait_for,
    which aiokafka awaits its connection with, loses that cancellation when
    it lands just as the connection is made (gh-86296, fixed in 3.12): the
    client then waited out its 15 s timeout and reported Kafka unreachable.
    The cancellation is repeated every second until the task ends."""
    interrupted = False

    async def run() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def cancel() -> None:
            if not task.done():
                task.cancel()
                loop.call_later(RECANCEL_SECONDS, cancel)

        def on_sigint() -> None:
            nonlocal interrupted
            interrupted = True
            cancel()

        loop.add_signal_handler(signal.SIGINT, on_sigint)
        try:
            return await main
        finally:
            loop.remove_signal_handler(signal.SIGINT)

    try:
        return asyncio.run(run())
    except asyncio.CancelledError:
        if interrupted:
            raise KeyboardInterrupt from None
        raise


async def _start(
    client: AIOKafkaProducer | AIOKafkaConsumer, settings: KafkaSettings, timeout: float
) -> None:
    """Start a client within `timeout` seconds, or raise BrokerError with the
    cause aiokafka logged (its own error says only "Unable to bootstrap")."""
    logged = _LoggedErrors()
    aiokafka_log = logging.getLogger("aiokafka")
    aiokafka_log.addHandler(logged)  # also keeps its retries off stderr
    try:
        await asyncio.wait_for(client.start(), timeout)
    except asyncio.CancelledError:  # Ctrl-C
        with contextlib.suppress(Exception):
            await client.stop()
        raise
    except (TimeoutError, KafkaError, OSError) as exc:
        with contextlib.suppress(Exception):
            await client.stop()
        refused = [
            e
            for e in logged.errors
            if isinstance(e, SaslAuthenticationFailed | UnsupportedSaslMechanismError)
        ]
        servers = settings.bootstrap_servers
        if refused:
            raise BrokerError(
                f"Kafka at {servers} refused to authenticate SASL user "
                f"{settings.sasl_username!r} ({settings.sasl_mechanism}): {refused[-1]}; "
                "check STREAM_APP_SASL_USERNAME, _PASSWORD and _MECHANISM"
            ) from None
        if isinstance(exc, TimeoutError):
            why = f"no answer within {timeout:g}s"
        else:
            cause = logged.errors[-1] if logged.errors else exc
            why = f"{type(cause).__name__}: {cause}"
        raise BrokerError(f"cannot reach Kafka at {servers} ({why}); {CHECK}") from None
    finally:
        aiokafka_log.removeHandler(logged)


async def publish(
    settings: KafkaSettings,
    lines: Iterable[bytes],
    *,
    rate: float | None = None,
    stamp: bool = False,
    key_by: str = "patient_id",
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    weight: Callable[[bytes], int] | None = None,
) -> int:
    """Send each non-empty line to the input topic; returns how many were
    delivered. `rate` paces messages per second, or units per second of
    `weight` (a claim's lines, say) when given. Raises BrokerError when the
    broker cannot be reached within `timeout` seconds, or a send fails (the
    topic missing, the broker lost)."""
    producer = AIOKafkaProducer(
        **_client_kwargs(settings),
        linger_ms=5,
        max_request_size=4 * 1024 * 1024,
        acks="all",
        request_timeout_ms=int(timeout * 1000),
    )
    await _start(producer, settings, timeout)
    sent = 0
    paced = 0  # messages, or units of `weight`, sent so far
    failed: list[BaseException] = []

    def delivered(future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None and not failed:
            failed.append(future.exception())  # type: ignore[arg-type]

    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for raw in lines:
            if not raw.strip():
                continue
            if stamp:
                raw = _stamp(raw)
            future = await producer.send(settings.input_topic, raw, key=intake_key(raw, key_by))
            future.add_done_callback(delivered)
            if failed:
                break
            sent += 1
            paced += weight(raw) if weight else 1
            if rate:
                delay = started + paced / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
        await producer.flush()
    except KafkaError as exc:
        failed.append(exc)
    finally:
        await producer.stop()
    if failed:
        error = failed[0]
        raise BrokerError(
            f"sending to topic {settings.input_topic} on Kafka at {settings.bootstrap_servers} "
            f"failed with {sent} lines queued ({type(error).__name__}: {error}); "
            "check that the topic exists (the worker creates it) and that the broker is up"
        )
    return sent


def _stamp(raw: bytes) -> bytes:
    """Set received_at to now, for produce-to-alert lag."""
    from stream_app.core.alerts import now_rfc3339

    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
    if not isinstance(doc, dict):
        return raw
    doc["received_at"] = now_rfc3339()
    return orjson.dumps(doc)


async def follow_alerts(
    settings: KafkaSettings,
    on_alert: Callable[[dict[str, Any]], None],
    *,
    idle_seconds: float | None = None,
    from_beginning: bool = True,
    stop: asyncio.Event | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> int:
    """Read alerts until `idle_seconds` pass with none (or forever); returns the
    count. Raises BrokerError when the broker cannot be reached within `timeout`."""
    consumer = AIOKafkaConsumer(
        settings.alerts_topic,
        **_client_kwargs(settings),
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        group_id=None,
        isolation_level="read_committed",
        # aiokafka's 500 ms: a fetch of idle partitions would hold alerts of
        # busy ones back that long (stream_app.stream.faust.patches, FETCH_MAX_WAIT_MS)
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    await _start(consumer, settings, timeout)
    count = 0
    try:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while not (stop and stop.is_set()):
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                for record in records:
                    last = loop.time()
                    alert = _alert(record.value)
                    if alert is None:
                        where = f"partition {record.partition} offset {record.offset}"
                        sys.stderr.write(
                            f"stream-app alerts: skipped a message that is not an alert "
                            f"({record.topic} {where})\n"
                        )
                        continue
                    on_alert(alert)
                    count += 1
            if idle_seconds is not None and loop.time() - last > idle_seconds:
                break
    finally:
        await consumer.stop()
    return count


# What `alerts` reads and prints of each message.
ALERT_KEYS = (
    "alert_id",
    "status",
    "finality",
    "severity",
    "carc",
    "rule_id",
    "claim_id",
    "line_number",
    "hcpcs",
    "date_of_service",
    "message",
)


def _alert(value: bytes | None) -> dict[str, Any] | None:
    """The alert a message carries, or None for one that is not an alert."""
    try:
        doc = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or not all(key in doc for key in ALERT_KEYS):
        return None
    return doc


# Evidence lines `alerts` names in the text format; the rest are counted.
EVIDENCE_SHOWN = 3


def format_alert(alert: dict[str, Any]) -> str:
    """One alert message on one line: two messages of one alert differ in
    their sequence number (and mostly in their evidence), which it shows."""
    excess = f" excess={alert['excess_units']}" if alert.get("excess_units") else ""
    sequence = f" #{alert['sequence']}" if alert.get("sequence") is not None else ""
    return (
        f"{alert['status']:<8} {alert['finality']:<11} {alert['severity']:<6} "
        f"CARC {alert['carc']:<3} {alert['rule_id']:<32} claim {alert['claim_id']} "
        f"line {alert['line_number']} {alert['hcpcs']} {alert['date_of_service']}{excess}"
        f"{sequence}{_evidence(alert)}: {alert['message']}"
    )


def _evidence(alert: dict[str, Any]) -> str:
    """` evidence I100703:9 77523, P100706:3 77387 2025-12-16, +2 more`: claim,
    line and code of each evidence line, its date where it is not the alert's."""
    evidence = alert.get("evidence")
    if not isinstance(evidence, list) or not evidence:
        return ""
    shown = []
    for item in evidence[:EVIDENCE_SHOWN]:
        if not isinstance(item, dict):
            continue
        text = f"{item.get('claim_id')}:{item.get('line_number')} {item.get('hcpcs')}"
        if item.get("date_of_service") not in (None, alert["date_of_service"]):
            text += f" {item['date_of_service']}"
        shown.append(text)
    if len(evidence) > EVIDENCE_SHOWN:
        shown.append(f"+{len(evidence) - EVIDENCE_SHOWN} more")
    return " evidence " + ", ".join(shown)


def print_alert(alert: dict[str, Any]) -> None:
    sys.stdout.write(format_alert(alert) + "\n")
    sys.stdout.flush()
