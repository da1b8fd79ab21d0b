"""Alert messages (SPEC 2): from an engine transition to the JSON the
`igrt-alerts` topic and `stream-app replay` carry."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

from .codes import RULESET
from .engine import Transition


def alert_id(rule_id: str, patient_id: str, claim_id: str, line_number: int) -> str:
    return f"{rule_id}:{patient_id}:{claim_id}:{line_number}"


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
