"""Input event types and the constants of the input contract (SPEC 1).

`events.parse_event` produces them; `schema` decodes the common case fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import msgspec

from stream_app.core.model import Line

MAX_EVENT_BYTES: Final = 1024 * 1024
CLAIM_TYPES: Final = frozenset({"professional", "institutional"})
PAYER_TYPES: Final = frozenset({"medicare", "medicaid", "commercial", "other"})
ACTIONS: Final = frozenset({"upsert", "void"})
KINDS: Final = frozenset({"claim_line", "course_end", "claim"})
FREQUENCIES: Final = frozenset({"original", "replacement", "void"})
MAX_CLAIM_LINES: Final = 999
# Claim-level values that each line of a claim message takes unless it gives
# its own (SPEC 1.1).
CLAIM_LEVEL_FIELDS: Final = (
    "claim_type",
    "place_of_service",
    "payer_id",
    "payer_type",
    "diagnosis_codes",
    "course_id",
    "site",
    "modality",
    "received_at",
)
SCHEMA_VERSIONS: Final = frozenset({1})

DATE_SHAPE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
HCPCS_SHAPE: Final = re.compile(r"[0-9A-Z]{5}")
MODIFIER_SHAPE: Final = re.compile(r"[0-9A-Z]{2}")
POS_SHAPE: Final = re.compile(r"[0-9]{2}")
DX_SHAPE: Final = re.compile(r"[A-Z][0-9A-Z]{2,6}")


class ClaimLineEvent(msgspec.Struct, frozen=True, gc=False):
    line: Line
    action: str  # "upsert" | "void"
    received_at: str | None = None  # intake time, for lag metrics; not state


class CourseEndEvent(msgspec.Struct, frozen=True, gc=False):
    patient_id: str
    course_id: str
    site: str
    date: str
    received_at: str | None = None


class ClaimEvent(msgspec.Struct, frozen=True, gc=False):
    """A whole claim (SPEC 1.1): its lines are applied together."""

    patient_id: str
    claim_id: str
    frequency: str  # "original" | "replacement" | "void"
    lines: tuple[Line, ...]  # by line number; empty only for a void
    received_at: str | None = None

    @property
    def date(self) -> str:
        """The claim's event time: its latest date of service ("" for a bare void)."""
        return max((line.date_of_service for line in self.lines), default="")


@dataclass(frozen=True, slots=True)
class Invalid:
    reason: str  # a short fixed category, fit for a metric label
    detail: str  # which field and why, for people


Event = ClaimLineEvent | CourseEndEvent | ClaimEvent


def event_date(event: Event) -> str:
    """The event's own event time: its date of service, or the course's end."""
    if isinstance(event, CourseEndEvent | ClaimEvent):
        return event.date
    return event.line.date_of_service


def event_patient(event: Event) -> str:
    if isinstance(event, CourseEndEvent | ClaimEvent):
        return event.patient_id
    return event.line.patient_id
