"""Parsing and validation of input events (SPEC 1).

`parse_event` never raises: it returns a typed event or an `Invalid` that says
which field is wrong and why. Unknown extra fields are ignored.
"""

from __future__ import annotations

import sys
from datetime import date, datetime
from functools import lru_cache
from typing import Any

import orjson

from stream_app.core import codes
from stream_app.core.event_types import (
    ACTIONS,
    CLAIM_LEVEL_FIELDS,
    CLAIM_TYPES,
    FREQUENCIES,
    KINDS,
    MAX_CLAIM_LINES,
    MAX_EVENT_BYTES,
    PAYER_TYPES,
    SCHEMA_VERSIONS,
    ClaimEvent,
    ClaimLineEvent,
    CourseEndEvent,
    Event,
    Invalid,
    event_date,
    event_patient,
)
from stream_app.core.event_types import DATE_SHAPE as _DATE_SHAPE
from stream_app.core.event_types import DX_SHAPE as _DX_SHAPE
from stream_app.core.event_types import HCPCS_SHAPE as _HCPCS_SHAPE
from stream_app.core.event_types import MODIFIER_SHAPE as _MODIFIER_SHAPE
from stream_app.core.event_types import POS_SHAPE as _POS_SHAPE
from stream_app.core.model import Line
from stream_app.core.schema import decode_fast

__all__ = [
    "ACTIONS",
    "CLAIM_LEVEL_FIELDS",
    "CLAIM_TYPES",
    "FREQUENCIES",
    "KINDS",
    "MAX_CLAIM_LINES",
    "MAX_EVENT_BYTES",
    "PAYER_TYPES",
    "SCHEMA_VERSIONS",
    "ClaimEvent",
    "ClaimLineEvent",
    "CourseEndEvent",
    "Event",
    "Invalid",
    "event_date",
    "event_patient",
    "parse_event",
    "validate",
]


class _Reject(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def parse_event(raw: bytes | bytearray | memoryview | str) -> Event | Invalid:
    """Decode and validate one message; never raises. A well-formed message
    takes the typed schemas of `schema`; anything else the validators below,
    which say which field is wrong and why."""
    if len(raw) > MAX_EVENT_BYTES:
        return Invalid("too_large", f"event is {len(raw)} bytes; the limit is {MAX_EVENT_BYTES}")
    return decode_fast(raw) or validate(raw)


def validate(raw: bytes | bytearray | memoryview | str) -> Event | Invalid:
    """The field-by-field validators alone (no size check); never raises."""
    try:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _Reject("not_json", _not_json(raw, exc)) from None
        if not isinstance(doc, dict):
            raise _Reject("not_object", f"expected a JSON object, got {_type_name(doc)}")
        return _parse_document(doc)
    except _Reject as rejected:
        return Invalid(rejected.reason, rejected.detail)
    except Exception as exc:  # defensive: a parser bug must not stop the stream
        return Invalid("internal", f"unexpected {type(exc).__name__}: {exc}")


def _not_json(raw: bytes | bytearray | memoryview | str, exc: orjson.JSONDecodeError) -> str:
    """Why a message is not JSON: bytes that are not UTF-8 (where), or the
    JSON parser's own words."""
    if not isinstance(raw, str):
        try:
            bytes(raw).decode()
        except UnicodeDecodeError as bad:
            return f"not valid UTF-8: byte {bad.object[bad.start]:#04x} at offset {bad.start}"
    return f"not valid JSON: {exc}"


def _parse_document(doc: dict[str, Any]) -> Event:
    version = doc.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version not in SCHEMA_VERSIONS:
        raise _Reject("unknown_schema", f"schema_version: unsupported {version!r}; known: 1")
    kind = doc.get("kind", "claim_line")
    if kind == "claim_line":
        return _parse_claim_line(doc)
    if kind == "course_end":
        return _parse_course_end(doc)
    if kind == "claim":
        return _parse_claim(doc)
    raise _Reject(
        "unknown_kind", f"kind: unknown {kind!r}; expected claim_line, claim or course_end"
    )


def _parse_claim_line(doc: dict[str, Any]) -> ClaimLineEvent:
    action = _enum(doc, "action", ACTIONS, "upsert")
    # A void names a line by its identity; its other fields are optional.
    needed = action == "upsert"
    line = Line(
        patient_id=_string(doc, "patient_id"),
        claim_id=_string(doc, "claim_id"),
        line_number=_positive_int(doc, "line_number"),
        course_id=_string(doc, "course_id", required=needed) or "",
        site=_string(doc, "site", required=needed) or "",
        date_of_service=_date(doc, "date_of_service", required=needed) or "",
        hcpcs=_hcpcs(doc, required=needed),
        modifiers=_modifiers(doc),
        units=_positive_int(doc, "units", default=1),
        claim_type=_enum(doc, "claim_type", CLAIM_TYPES, None if needed else "professional"),
        place_of_service=_pos(doc),
        payer_id=_string(doc, "payer_id", required=False),
        payer_type=_enum(doc, "payer_type", PAYER_TYPES, "other"),
        diagnosis_codes=_diagnoses(doc),
        modality=_modality(doc),
    )
    return ClaimLineEvent(line, action, _timestamp(doc, "received_at"))


def _parse_claim(doc: dict[str, Any]) -> ClaimEvent:
    patient_id = _string(doc, "patient_id")
    claim_id = _string(doc, "claim_id")
    frequency = _enum(doc, "frequency", FREQUENCIES, "original")
    raw_lines = doc.get("lines")
    if raw_lines is None:
        raw_lines = [] if frequency == "void" else None
    if not isinstance(raw_lines, list):
        raise _missing("lines") if raw_lines is None else _wrong("lines", "a list", raw_lines)
    if not raw_lines and frequency != "void":
        raise _Reject("bad_field", "lines: a claim needs 1 to 999 lines (empty only for a void)")
    if len(raw_lines) > MAX_CLAIM_LINES:
        raise _Reject("bad_field", f"lines: {len(raw_lines)} lines; at most {MAX_CLAIM_LINES}")
    inherited = {name: doc[name] for name in CLAIM_LEVEL_FIELDS if doc.get(name) is not None}
    # Claim-level values are checked once, as such, so that a bad one is named
    # as the claim's, not as its first line's.
    _check_claim_level(inherited)
    received_at = _timestamp(doc, "received_at")
    lines: dict[int, Line] = {}
    for index, raw_line in enumerate(raw_lines):
        line = _claim_message_line(raw_line, index, inherited, patient_id, claim_id)
        if line.line_number in lines:
            raise _Reject(
                "bad_field", f"lines[{index}]: line_number {line.line_number} appears twice"
            )
        lines[line.line_number] = line
    ordered = tuple(lines[number] for number in sorted(lines))
    return ClaimEvent(patient_id, claim_id, frequency, ordered, received_at)


def _check_claim_level(inherited: dict[str, Any]) -> None:
    checks = {
        "claim_type": lambda d: _enum(d, "claim_type", CLAIM_TYPES, None),
        "place_of_service": _pos,
        "payer_id": lambda d: _string(d, "payer_id", required=False),
        "payer_type": lambda d: _enum(d, "payer_type", PAYER_TYPES, "other"),
        "diagnosis_codes": _diagnoses,
        "course_id": lambda d: _string(d, "course_id"),
        "site": lambda d: _string(d, "site"),
        "modality": _modality,
    }
    for name, check in checks.items():
        if name in inherited:
            check(inherited)


def _claim_message_line(
    raw_line: Any, index: int, inherited: dict[str, Any], patient_id: str, claim_id: str
) -> Line:
    if not isinstance(raw_line, dict):
        raise _wrong(f"lines[{index}]", "a line object", raw_line)
    fields = {**inherited, **raw_line, "patient_id": patient_id, "claim_id": claim_id}
    fields.pop("action", None)
    fields.pop("kind", None)
    try:
        return _parse_claim_line(fields).line
    except _Reject as rejected:
        number = raw_line.get("line_number")
        which = f"line_number {number}" if isinstance(number, int) else f"lines[{index}]"
        raise _Reject(rejected.reason, f"{which}: {rejected.detail}") from None


def _parse_course_end(doc: dict[str, Any]) -> CourseEndEvent:
    return CourseEndEvent(
        patient_id=_string(doc, "patient_id"),
        course_id=_string(doc, "course_id"),
        site=_string(doc, "site"),
        date=_date(doc, "date") or "",
        received_at=_timestamp(doc, "received_at"),
    )


def _type_name(value: Any) -> str:
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "integer",
        float: "number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _missing(name: str) -> _Reject:
    return _Reject("missing_field", f"{name}: required field is missing")


def _wrong(name: str, expected: str, value: Any) -> _Reject:
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    return _Reject("bad_field", f"{name}: expected {expected}, got {_type_name(value)} {shown}")


def _string(doc: dict[str, Any], name: str, required: bool = True) -> Any:
    value = doc.get(name)
    if value is None:
        if required:
            raise _missing(name)
        return None
    if not isinstance(value, str) or not value.strip():
        raise _wrong(name, "a non-empty string", value)
    if len(value) > 128:
        raise _Reject("bad_field", f"{name}: longer than 128 characters")
    # Ids and dates repeat across many held lines: share one copy of each.
    return sys.intern(value)


def _positive_int(doc: dict[str, Any], name: str, default: int | None = None) -> int:
    value = doc.get(name)
    if value is None:
        if default is None:
            raise _missing(name)
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _wrong(name, "an integer >= 1", value)
    if value > 9999:
        raise _Reject("bad_field", f"{name}: {value} is implausibly large (max 9999)")
    return value


def _enum(doc: dict[str, Any], name: str, allowed: frozenset[str], default: str | None) -> str:
    value = doc.get(name)
    if value is None:
        if default is None:
            raise _missing(name)
        return default
    if not isinstance(value, str) or value not in allowed:
        raise _wrong(name, "one of " + ", ".join(sorted(allowed)), value)
    return sys.intern(value)


@lru_cache(maxsize=16384)
def _valid_date(value: str) -> bool:
    try:
        return date.fromisoformat(value).year >= 1900
    except ValueError:
        return False


def _date(doc: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = doc.get(name)
    if value is None:
        if required:
            raise _missing(name)
        return None
    if not isinstance(value, str) or not _DATE_SHAPE.fullmatch(value):
        raise _wrong(name, "a date YYYY-MM-DD", value)
    if not _valid_date(value):
        raise _Reject("bad_date", f"{name}: {value} is not a calendar date")
    return sys.intern(value)


def _hcpcs(doc: dict[str, Any], required: bool) -> str:
    value = doc.get("hcpcs")
    if value is None:
        if required:
            raise _missing("hcpcs")
        return ""
    if not isinstance(value, str) or not _HCPCS_SHAPE.fullmatch(value.upper()):
        raise _wrong("hcpcs", "a 5-character CPT/HCPCS code", value)
    return sys.intern(value.upper())


def _modifiers(doc: dict[str, Any]) -> tuple[str, ...]:
    value = doc.get("modifiers")
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > 8:
        raise _wrong("modifiers", "a list of at most 8 two-character strings", value)
    modifiers = []
    for item in value:
        if not isinstance(item, str) or not _MODIFIER_SHAPE.fullmatch(item.upper()):
            raise _wrong("modifiers", "two-character modifiers", item)
        modifiers.append(item.upper())
    return _shared(tuple(modifiers))


def _pos(doc: dict[str, Any]) -> str | None:
    value = doc.get("place_of_service")
    if value is None:
        return None
    if not isinstance(value, str) or not _POS_SHAPE.fullmatch(value):
        raise _wrong("place_of_service", "a 2-digit string", value)
    return sys.intern(value)


def _diagnoses(doc: dict[str, Any]) -> tuple[str, ...]:
    value = doc.get("diagnosis_codes")
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > 32:
        raise _wrong("diagnosis_codes", "a list of at most 32 ICD-10-CM codes", value)
    normalized = []
    for item in value:
        if not isinstance(item, str):
            raise _wrong("diagnosis_codes", "ICD-10-CM code strings", item)
        code = item.replace(".", "").strip().upper()
        if not _DX_SHAPE.fullmatch(code):
            raise _wrong("diagnosis_codes", "ICD-10-CM codes like C44.91", item)
        normalized.append(code)
    return _shared(tuple(normalized))


_SHARED_TUPLES: dict[tuple[str, ...], tuple[str, ...]] = {}


def _shared(items: tuple[str, ...]) -> tuple[str, ...]:
    """One copy of each modifier or diagnosis list (there are few distinct ones)."""
    found = _SHARED_TUPLES.get(items)
    if found is not None:
        return found
    if len(_SHARED_TUPLES) < 65536:
        _SHARED_TUPLES[items] = items
    return items


def _modality(doc: dict[str, Any]) -> str | None:
    value = doc.get("modality")
    if value is None:
        return None
    if not isinstance(value, str) or value.upper() not in codes.EVENT_MODALITIES:
        raise _wrong("modality", "one of " + ", ".join(sorted(codes.EVENT_MODALITIES)), value)
    return sys.intern(value.upper())


def _timestamp(doc: dict[str, Any], name: str) -> str | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _wrong(name, "an RFC 3339 timestamp", value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _wrong(name, "an RFC 3339 timestamp", value) from None
    if parsed.tzinfo is None:
        raise _Reject("bad_field", f"{name}: timestamp needs a UTC offset or Z")
    return value
