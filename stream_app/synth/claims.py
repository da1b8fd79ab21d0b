"""Claim messages (SPEC 1.1) from a stream of line messages in submission
order (`stream-app generate --format claims`): the generator gives every line
of a claim its claim's submission time as received_at, professional claims
weekly and institutional claims monthly (stream_app/synth/course.py), and
emits the lines of one submission together. Each such run becomes one claim
message; a duplicate, a correction or a rebilled line, received later, is a
claim message of its own. Everything that is not an upsert (voids, course
ends) passes through as the line message it is, so the claims carry exactly
the lines the line stream carries, submission by submission in the same
order (a claim's lines in line-number order).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
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


def _is_upsert(doc: Doc) -> bool:
    return bool(
        doc.get("kind", "claim_line") == "claim_line" and doc.get("action", "upsert") == "upsert"
    )


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
    """Claim messages, and the non-upsert line messages between them: each run
    of upserts of one claim with one received_at (one submission) is one
    claim message."""
    run: list[Doc] = []
    numbers: set[Any] = set()

    def submit() -> Doc:
        message = claim_message(run[0]["patient_id"], run[0]["claim_id"], run)
        run.clear()
        numbers.clear()
        return message

    for doc in docs:
        if not _is_upsert(doc):
            if run:
                yield submit()
            yield doc
            continue
        if run and (
            doc["line_number"] in numbers
            or doc["claim_id"] != run[0]["claim_id"]
            or doc["patient_id"] != run[0]["patient_id"]
            or doc.get("received_at") != run[0].get("received_at")
        ):
            yield submit()
        run.append(doc)
        numbers.add(doc["line_number"])
    if run:
        yield submit()
