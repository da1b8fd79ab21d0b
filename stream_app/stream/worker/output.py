"""What the worker sends: alerts and dead letters, each in the transaction of
the event that caused it under exactly-once."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any, cast

import faust

from stream_app.core.alerts import encode_alert, now_rfc3339
from stream_app.core.engine import Transition
from stream_app.core.events import Event, Invalid
from stream_app.stream import metrics

log = logging.getLogger("stream_app.stream.worker")


class Output:
    def __init__(
        self, app: faust.App, alerts_topic: Any, dlq_topic: Any, *, exactly_once: bool
    ) -> None:
        self.app = app
        self.alerts_topic = alerts_topic
        self.dlq_topic = dlq_topic
        self.exactly_once = exactly_once
        # Sends Kafka refused after its retries (see send_for); a commit
        # after one would skip events whose output never arrived.
        self.failed_sends = 0

    async def send_for(
        self,
        origin: Any,
        topic: Any,
        key: bytes | None,
        value: bytes,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Send a message caused by the event at `origin` (its topic partition).

        Under exactly-once the message joins the transaction in which Faust
        commits `origin`'s offset, so output and progress commit together.
        Faust itself would pick the transaction of the *destination* partition,
        and none at all for topics the app does not consume (alerts, DLQ).

        Under at-least-once the message goes to Faust's producer directly, not
        through `Topic.send`: the same Kafka producer, which Faust flushes
        before each commit, without Topic.send's per-message future,
        callbacks and sensors (measured: about 0.27 ms a message through
        Topic.send against 0.03 ms, benchmarks/README.md). A send that fails
        is counted and stops the next commit (batching.commit_between_batches).
        """
        app = self.app
        transactional_id = None
        if self.exactly_once:
            group = app.assignor.group_for_topic(origin.topic)
            transactional_id = f"{app.conf.id}-{group}-{origin.partition}"
        delivery = await app.producer.send(
            topic.get_topic_name(),
            key,
            value,
            partition,
            None,
            headers,
            transactional_id=transactional_id,
        )
        if transactional_id is None:
            cast("asyncio.Future[Any]", delivery).add_done_callback(self._on_delivery)

    def _on_delivery(self, delivery: asyncio.Future[Any]) -> None:
        if delivery.cancelled():
            failure: str = "CancelledError"
        elif delivery.exception() is not None:
            failure = type(delivery.exception()).__name__
        else:
            return
        self.failed_sends += 1
        metrics.SEND_FAILURES.inc()
        log.error("a send to Kafka failed (%s); no commit from now on", failure)

    async def dead_letter(
        self, origin: Any, key: bytes | None, raw: bytes, invalid: Invalid, source: str
    ) -> None:
        metrics.LINES_BY_OUTCOME["invalid"].inc()
        metrics.DEAD_LETTERS.labels(invalid.reason).inc()
        await self.send_for(
            origin,
            self.dlq_topic,
            key,
            raw,
            headers=[
                ("reason", invalid.reason.encode()),
                ("detail", invalid.detail.encode()),
                ("source", source.encode()),
            ],
        )

    async def send_alerts(
        self, origin: Any, transitions: list[Transition], parsed: Event | None
    ) -> None:
        if not transitions:
            return
        detected_at = now_rfc3339()
        for transition in transitions:
            await self.send_for(
                origin,
                self.alerts_topic,
                transition.line.claim_id.encode(),
                encode_alert(transition, detected_at),
            )
            metrics.ALERT_TRANSITIONS.labels(
                transition.spec.rule_id, transition.status, transition.finality
            ).inc()
        received_at = parsed.received_at if parsed is not None else None
        if received_at:
            lag = (datetime.now(UTC) - datetime.fromisoformat(received_at)).total_seconds()
            metrics.INTAKE_LAG_SECONDS.observe(max(lag, 0.0))
