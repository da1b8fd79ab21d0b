"""What the worker sends: alerts and dead letters, each in the transaction of
the event that caused it under exactly-once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import faust

from .. import metrics
from ..alerts import encode_alert, now_rfc3339
from ..engine import Transition
from ..events import Event, Invalid


class Output:
    def __init__(
        self, app: faust.App, alerts_topic: Any, dlq_topic: Any, *, exactly_once: bool
    ) -> None:
        self.app = app
        self.alerts_topic = alerts_topic
        self.dlq_topic = dlq_topic
        self.exactly_once = exactly_once

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
        """
        if not self.exactly_once:
            await topic.send(key=key, value=value, partition=partition, headers=headers)
            return
        app = self.app
        group = app.assignor.group_for_topic(origin.topic)
        await app.producer.send(
            topic.get_topic_name(),
            key,
            value,
            partition,
            None,
            headers,
            transactional_id=f"{app.conf.id}-{group}-{origin.partition}",
        )

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

