"""Small Kafka clients around the worker: publish a JSON-lines file as intake
would (keyed by patient, SPEC 1), and follow the alerts topic."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from .settings import WorkerSettings
from .topics import admin_kwargs


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


def _client_kwargs(settings: WorkerSettings) -> dict[str, Any]:
    kwargs = admin_kwargs(settings)
    kwargs.pop("request_timeout_ms", None)
    return kwargs


async def publish(
    settings: WorkerSettings,
    lines: Iterable[bytes],
    *,
    rate: float | None = None,
    stamp: bool = False,
    key_by: str = "patient_id",
) -> int:
    """Send each non-empty line to the input topic; returns how many were sent."""
    producer = AIOKafkaProducer(
        **_client_kwargs(settings),
        linger_ms=5,
        max_request_size=4 * 1024 * 1024,
        acks="all",
    )
    await producer.start()
    sent = 0
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for raw in lines:
            if not raw.strip():
                continue
            if stamp:
                raw = _stamp(raw)
            await producer.send(settings.input_topic, raw, key=intake_key(raw, key_by))
            sent += 1
            if rate:
                delay = started + sent / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def _stamp(raw: bytes) -> bytes:
    """Set received_at to now, for produce-to-alert lag."""
    from .alerts import now_rfc3339

    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
    if not isinstance(doc, dict):
        return raw
    doc["received_at"] = now_rfc3339()
    return orjson.dumps(doc)


async def follow_alerts(
    settings: WorkerSettings,
    on_alert: Callable[[dict[str, Any]], None],
    *,
    idle_seconds: float | None = None,
    from_beginning: bool = True,
    stop: asyncio.Event | None = None,
) -> int:
    """Read alerts until `idle_seconds` pass with none (or forever); returns the count."""
    consumer = AIOKafkaConsumer(
        settings.alerts_topic,
        **_client_kwargs(settings),
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        group_id=None,
        isolation_level="read_committed",
    )
    await consumer.start()
    count = 0
    try:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while not (stop and stop.is_set()):
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                for record in records:
                    on_alert(orjson.loads(record.value))
                    count += 1
                    last = loop.time()
            if idle_seconds is not None and loop.time() - last > idle_seconds:
                break
    finally:
        await consumer.stop()
    return count


def print_alert(alert: dict[str, Any]) -> None:
    excess = f" excess={alert['excess_units']}" if alert.get("excess_units") else ""
    sys.stdout.write(
        f"{alert['status']:<8} {alert['finality']:<11} {alert['severity']:<6} "
        f"CARC {alert['carc']:<3} {alert['rule_id']:<32} claim {alert['claim_id']} "
        f"line {alert['line_number']} {alert['hcpcs']} {alert['date_of_service']}{excess}: "
        f"{alert['message']}\n"
    )
    sys.stdout.flush()
