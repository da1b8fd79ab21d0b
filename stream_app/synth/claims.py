"""Claim messages (SPEC 1.1) from a stream of line messages, as a biller
submits them: a professional claim once its week is over, an institutional
claim once its month is over (`stream-app generate --format claims`).

The line stream is in date order. Each upsert joins its claim's open
submission; the submission goes out when the stream reaches a date past the
claim's period, or earlier when something must follow it: a void or a
re-sent version of one of its lines (a correction or a duplicate), or a
course end of the same patient. Everything that is not an upsert passes
through as the line message it is, so the claims carry exactly the lines the
line stream carries, and fold to the same open alerts.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Final

from stream_app.core.events import CLAIM_LEVEL_FIELDS

Doc = dict[str, Any]

# Values a claim states once when all its lines share them (SPEC 1.1);
# received_at is the claim's own (its latest line's).
_CLAIM_LEVEL: Final = tuple(name for name in CLAIM_LEVEL_FIELDS if name != "received_at")
_IDENTITY: Final = ("patient_id", "claim_id", "kind", "action", "received_at")


def period_end(date_of_service: str, claim_type: str) -> str:
    """The last day of the billing period of a line: Sunday of its week for a
    professional claim, the last day of its month for an institutional one."""
    day = date.fromisoformat(date_of_service)
    if claim_type == "institutional":
        first_of_next = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
        return (first_of_next - timedelta(days=1)).isoformat()
    return (day + timedelta(days=6 - day.weekday())).isoformat()


@dataclass(slots=True)
class _Open:
    """A claim's lines not yet submitted."""

    period_end: str
    lines: dict[int, Doc] = field(default_factory=dict)


def _is_upsert(doc: Doc) -> bool:
    return bool(
        doc.get("kind", "claim_line") == "claim_line" and doc.get("action", "upsert") == "upsert"
    )


def _event_date(doc: Doc) -> str | None:
    found = doc.get("date_of_service") or doc.get("date")
    return found if isinstance(found, str) else None


def claim_message(patient_id: str, claim_id: str, lines: Iterable[Doc]) -> Doc:
    """One claim message of these line documents: shared values stated once."""
    ordered = sorted(lines, key=lambda doc: doc["line_number"])
    shared: Doc = {}
    for name in _CLAIM_LEVEL:
        values = [doc.get(name) for doc in ordered]
        if values[0] is not None and all(value == values[0] for value in values):
            shared[name] = values[0]
    received = [doc["received_at"] for doc in ordered if doc.get("received_at")]
    message: Doc = {"kind": "claim", "claim_id": claim_id, "patient_id": patient_id, **shared}
    if received:
        message["received_at"] = max(received)
    message["lines"] = [
        {k: v for k, v in doc.items() if k not in _IDENTITY and k not in shared} for doc in ordered
    ]
    return message


def as_claims(docs: Iterable[Doc]) -> Iterator[Doc]:
    """Claim messages, and the non-upsert line messages between them."""
    pending: dict[tuple[str, str], _Open] = {}
    # (period end, claim key) of every open submission; an entry whose claim
    # went out early (or was reopened) is skipped when it comes up.
    ends: list[tuple[str, tuple[str, str]]] = []

    def submit(key: tuple[str, str]) -> Doc:
        return claim_message(key[0], key[1], pending.pop(key).lines.values())

    def due(today: str) -> list[tuple[str, str]]:
        keys = []
        while ends and ends[0][0] < today:
            end, key = heapq.heappop(ends)
            found = pending.get(key)
            if found is not None and found.period_end == end and key not in keys:
                keys.append(key)
        return keys

    for doc in docs:
        today = _event_date(doc)
        if today is not None:
            for key in due(today):
                yield submit(key)
        patient = doc["patient_id"]
        if not _is_upsert(doc):
            if doc.get("kind") == "course_end":
                held = [key for key in sorted(pending) if key[0] == patient]
            else:
                held = [key for key in [(patient, doc.get("claim_id", ""))] if key in pending]
            for key in held:
                yield submit(key)
            yield doc
            continue
        key = (patient, doc["claim_id"])
        found = pending.get(key)
        if found is not None and doc["line_number"] in found.lines:
            yield submit(key)  # a correction or duplicate follows what was sent
            found = None
        if found is None:
            found = pending[key] = _Open(period_end(doc["date_of_service"], doc["claim_type"]))
            heapq.heappush(ends, (found.period_end, key))
        found.lines[doc["line_number"]] = doc
    for key in sorted(pending, key=lambda k: (pending[k].period_end, k)):
        yield submit(key)
