"""Alert messages (SPEC 2): from an engine transition to the JSON the
`igrt-alerts` topic and `stream-app replay` carry."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from stream_app.core.codes import RULESET
from stream_app.core.engine import Transition


def alert_id(rule_id: str, patient_id: str, claim_id: str, line_number: int) -> str:
    return f"{rule_id}:{patient_id}:{claim_id}:{line_number}"


def now_rfc3339() -> str:
    return rfc3339_utc(datetime.now(UTC))


def rfc3339_utc(moment: datetime) -> str:
    """The one format of `detected_at` (and `received_at`): UTC, milliseconds,
    `Z` (`2026-01-01T00:00:00.000Z`)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def normalise_rfc3339(text: str) -> str:
    """An RFC 3339 timestamp with an offset (`--fixed-time`) in that format:
    `2026-01-01T00:00:00Z` -> `2026-01-01T00:00:00.000Z`. Raises ValueError
    for a text that is not one."""
    moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return rfc3339_utc(moment)


def build_alert(transition: Transition, detected_at: str) -> dict[str, Any]:
    spec, line, profile = transition.spec, transition.line, transition.profile
    return {
        "alert_id": alert_id(spec.rule_id, line.patient_id, line.claim_id, line.line_number),
        "status": transition.status,
        "finality": transition.finality,
        "rule_id": spec.rule_id,
        "title": spec.title,
        "severity": profile.severity.get(spec.rule_id, spec.severity),
        "carc": profile.carc.get(spec.rule_id, spec.carc),
        "patient_id": line.patient_id,
        "course_id": line.course_id,
        "site": line.site,
        "claim_id": line.claim_id,
        "line_number": line.line_number,
        "date_of_service": line.date_of_service,
        "hcpcs": line.hcpcs,
        "modifiers": list(line.modifiers),
        "excess_units": transition.excess_units,
        "evidence": [
            {"claim_id": claim, "line_number": number, "hcpcs": hcpcs, "date_of_service": day}
            for claim, number, hcpcs, day in transition.evidence
        ],
        "message": transition.message,
        "citation": spec.citation,
        "ruleset": RULESET,
        "sequence": transition.sequence,
        "detected_at": detected_at,
    }


def encode_alert(transition: Transition, detected_at: str | None = None) -> bytes:
    return orjson.dumps(build_alert(transition, detected_at or now_rfc3339()))


def fold(alerts: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Last message per alert_id wins; returns the alerts still open."""
    latest: dict[str, dict[str, Any]] = {}
    for alert in alerts:
        latest[alert["alert_id"]] = alert
    return {aid: alert for aid, alert in latest.items() if alert["status"] == "open"}


@dataclass
class AlertCounts:
    """What a stream of alert messages adds up to, named the same way by
    `replay`, `alerts` and the demo:

    - alert messages: every message (each `open` and each `resolved`);
    - distinct alerts: different `alert_id`s among them;
    - open: alerts whose last message is `open` (the fold), by rule.
    """

    messages: Counter[str] = field(default_factory=Counter)  # by status
    seen: set[str] = field(default_factory=set)
    open: dict[str, str] = field(default_factory=dict)  # alert_id -> rule_id

    def add(self, alert_id: str, rule_id: str, status: str) -> None:
        self.messages[status] += 1
        self.seen.add(alert_id)
        if status == "open":
            self.open[alert_id] = rule_id
        else:
            self.open.pop(alert_id, None)

    def render(self) -> list[str]:
        """One line of counts, then the open alerts by rule, indented."""
        statuses = " ".join(f"{k}={v}" for k, v in sorted(self.messages.items()))
        lines = [
            f"{sum(self.messages.values())} alert messages"
            + (f" ({statuses})" if statuses else "")
            + f", {len(self.seen)} distinct alerts, {len(self.open)} open"
        ]
        by_rule = Counter(self.open.values())
        lines.extend(f"  {rule_id}: {count}" for rule_id, count in sorted(by_rule.items()))
        return lines
