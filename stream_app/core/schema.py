"""Typed schemas of the input messages (SPEC 1, 1.1), decoded with msgspec.

`decode_fast` turns a well-formed message into its event in one pass: msgspec
checks the JSON, the types and the numeric ranges against the `Struct`s
below, and a few cached checks do the rest (shapes of codes and dates).
Whatever it does not accept, it hands back as None, and `events.parse_event`
then runs its field-by-field validators to say which field is wrong and why:
so the dead-letter reasons and details are exactly those of the validators,
and this module only ever accepts what they accept (tests/test_schema.py).
"""

from __future__ import annotations

import sys
from datetime import date, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from stream_app.core import codes
from stream_app.core.event_types import (
    DATE_SHAPE,
    DX_SHAPE,
    HCPCS_SHAPE,
    MODIFIER_SHAPE,
    POS_SHAPE,
    ClaimEvent,
    ClaimLineEvent,
    CourseEndEvent,
    Event,
)
from stream_app.core.model import Line

Count = Annotated[int, Meta(ge=1, le=9999)]
Modifiers = Annotated[tuple[str, ...], Meta(max_length=8)]
Diagnoses = Annotated[tuple[str, ...], Meta(max_length=32)]
ClaimType = Literal["professional", "institutional"]
PayerType = Literal["medicare", "medicaid", "commercial", "other"]


class _ClaimLine(msgspec.Struct):
    """One line of a claim message; UNSET fields take the claim's value."""

    line_number: Count | None = None
    date_of_service: str | None = None
    hcpcs: str | None = None
    modifiers: Modifiers | None = None
    units: Count | None = None
    claim_type: ClaimType | UnsetType | None = UNSET
    place_of_service: str | UnsetType | None = UNSET
    payer_id: str | UnsetType | None = UNSET
    payer_type: PayerType | UnsetType | None = UNSET
    diagnosis_codes: Diagnoses | UnsetType | None = UNSET
    course_id: str | UnsetType | None = UNSET
    site: str | UnsetType | None = UNSET
    modality: str | UnsetType | None = UNSET
    received_at: str | UnsetType | None = UNSET


class _Message(msgspec.Struct):
    """Every field any kind of message can carry (unknown ones are ignored)."""

    schema_version: int | UnsetType = UNSET
    kind: str | UnsetType = UNSET
    action: Literal["upsert", "void"] | None = None
    frequency: Literal["original", "replacement", "void"] | None = None
    patient_id: str | None = None
    claim_id: str | None = None
    line_number: Count | None = None
    course_id: str | None = None
    site: str | None = None
    date_of_service: str | None = None
    date: str | None = None
    hcpcs: str | None = None
    modifiers: Modifiers | None = None
    units: Count | None = None
    claim_type: ClaimType | None = None
    place_of_service: str | None = None
    payer_id: str | None = None
    payer_type: PayerType | None = None
    diagnosis_codes: Diagnoses | None = None
    modality: str | None = None
    received_at: str | None = None
    lines: Annotated[list[_ClaimLine], Meta(max_length=999)] | None = None


_DECODER = msgspec.json.Decoder(_Message)


class _Slow(Exception):
    """Not for the fast path: let the validators look at it."""


def decode_fast(raw: bytes | bytearray | memoryview | str) -> Event | None:
    """The message's event if it is well formed, else None (never raises)."""
    try:
        message = _DECODER.decode(raw)
        if message.schema_version is not UNSET and message.schema_version != 1:
            return None
        kind = "claim_line" if message.kind is UNSET else message.kind
        if kind == "claim_line":
            return _claim_line(message)
        if kind == "claim":
            return _claim(message)
        if kind == "course_end":
            return CourseEndEvent(
                _text(message.patient_id),
                _text(message.course_id),
                _text(message.site),
                _date(message.date),
                _timestamp(message.received_at),
            )
        return None
    except Exception:  # _Slow, msgspec's errors, a RecursionError: the slow path says why
        return None


def _claim_line(m: _Message) -> ClaimLineEvent:
    if m.action == "void":
        return ClaimLineEvent(_void_line(m), "void", _timestamp(m.received_at))
    line = Line(
        _text(m.patient_id),
        _text(m.course_id),
        _text(m.site),
        _text(m.claim_id),
        _required(m.line_number),
        _date(m.date_of_service),
        _hcpcs(_required(m.hcpcs)),
        _modifiers(m.modifiers),
        m.units or 1,
        _required(m.claim_type),
        None if m.place_of_service is None else _pos(m.place_of_service),
        None if m.payer_id is None else _text(m.payer_id),
        m.payer_type or "other",
        _diagnoses(m.diagnosis_codes),
        None if m.modality is None else _modality(m.modality),
    )
    return ClaimLineEvent(line, "upsert", _timestamp(m.received_at))


def _void_line(m: _Message) -> Line:
    """A void names a line by its identity; its other fields are optional."""
    if m.claim_type is not None or m.hcpcs is not None or m.course_id is not None:
        raise _Slow  # rare: validated field by field
    if m.site is not None or m.date_of_service is not None:
        raise _Slow
    return Line(
        _text(m.patient_id),
        "",
        "",
        _text(m.claim_id),
        _required(m.line_number),
        "",
        "",
        _modifiers(m.modifiers),
        m.units or 1,
        "professional",
        None if m.place_of_service is None else _pos(m.place_of_service),
        None if m.payer_id is None else _text(m.payer_id),
        m.payer_type or "other",
        _diagnoses(m.diagnosis_codes),
        None if m.modality is None else _modality(m.modality),
    )


def _claim(m: _Message) -> ClaimEvent:
    patient_id, claim_id = _text(m.patient_id), _text(m.claim_id)
    frequency = m.frequency or "original"
    raw_lines = m.lines
    if raw_lines is None:
        if frequency != "void":
            raise _Slow
        raw_lines = []
    if not raw_lines and frequency != "void":
        raise _Slow
    # The claim's own values, checked as such (also when it has no lines).
    claim_type = m.claim_type
    pos = None if m.place_of_service is None else _pos(m.place_of_service)
    payer_id = None if m.payer_id is None else _text(m.payer_id)
    payer_type = m.payer_type
    diagnoses = _diagnoses(m.diagnosis_codes)
    course_id = None if m.course_id is None else _text(m.course_id)
    site = None if m.site is None else _text(m.site)
    modality = None if m.modality is None else _modality(m.modality)
    received_at = _timestamp(m.received_at)
    lines: dict[int, Line] = {}
    for raw in raw_lines:
        number = _required(raw.line_number)
        if number in lines:
            raise _Slow
        if raw.received_at is not UNSET:
            _timestamp(raw.received_at)
        lines[number] = Line(
            patient_id,
            _text(course_id if raw.course_id is UNSET else raw.course_id),
            _text(site if raw.site is UNSET else raw.site),
            claim_id,
            number,
            _date(raw.date_of_service),
            _hcpcs(_required(raw.hcpcs)),
            _modifiers(raw.modifiers),
            raw.units or 1,
            _required(claim_type if raw.claim_type is UNSET else raw.claim_type),
            _optional(pos, raw.place_of_service, _pos),
            _optional(payer_id, raw.payer_id, _text),
            (payer_type if raw.payer_type is UNSET else raw.payer_type) or "other",
            diagnoses if raw.diagnosis_codes is UNSET else _diagnoses(raw.diagnosis_codes),
            _optional(modality, raw.modality, _modality),
        )
    ordered = tuple(lines[number] for number in sorted(lines))
    return ClaimEvent(patient_id, claim_id, frequency, ordered, received_at)


def _optional(inherited: Any, own: Any, check: Any) -> Any:
    if own is UNSET:
        return inherited
    return None if own is None else check(own)


def _required(value: Any) -> Any:
    if value is None:
        raise _Slow
    return value


def _text(value: str | None) -> str:
    if value is None or len(value) > 128 or not value.strip():
        raise _Slow
    return sys.intern(value)


def _date(value: str | None) -> str:
    checked = None if value is None else _checked_date(value)
    if checked is None:
        raise _Slow
    return checked


def _hcpcs(value: str) -> str:
    checked = _checked_hcpcs(value)
    if checked is None:
        raise _Slow
    return checked


def _pos(value: str) -> str:
    checked = _checked_pos(value)
    if checked is None:
        raise _Slow
    return checked


def _modality(value: str) -> str:
    upper = value.upper()
    if upper not in codes.EVENT_MODALITIES:
        raise _Slow
    return sys.intern(upper)


def _modifiers(value: tuple[str, ...] | None) -> tuple[str, ...]:
    if not value:
        return ()
    checked = _checked_modifiers(value)
    if checked is None:
        raise _Slow
    return checked


def _diagnoses(value: tuple[str, ...] | None) -> tuple[str, ...]:
    if not value:
        return ()
    checked = _checked_diagnoses(value)
    if checked is None:
        raise _Slow
    return checked


def _timestamp(value: str | None) -> str | None:
    if value is None:
        return None
    if datetime.fromisoformat(value).tzinfo is None:  # a ValueError: the slow path too
        raise _Slow
    return value


# Codes, dates and code lists repeat across lines: each distinct one is
# checked once, and one copy of it is shared by every line that has it.
@lru_cache(maxsize=16384)
def _checked_date(value: str) -> str | None:
    if not DATE_SHAPE.fullmatch(value):
        return None
    try:
        return sys.intern(value) if date.fromisoformat(value).year >= 1900 else None
    except ValueError:
        return None


@lru_cache(maxsize=1024)
def _checked_pos(value: str) -> str | None:
    return sys.intern(value) if POS_SHAPE.fullmatch(value) else None


@lru_cache(maxsize=4096)
def _checked_hcpcs(value: str) -> str | None:
    upper = value.upper()
    return sys.intern(upper) if HCPCS_SHAPE.fullmatch(upper) else None


@lru_cache(maxsize=4096)
def _checked_modifiers(value: tuple[str, ...]) -> tuple[str, ...] | None:
    upper = tuple(item.upper() for item in value)
    if not all(MODIFIER_SHAPE.fullmatch(item) for item in upper):
        return None
    return tuple(sys.intern(item) for item in upper)


@lru_cache(maxsize=16384)
def _checked_diagnoses(value: tuple[str, ...]) -> tuple[str, ...] | None:
    normalized = tuple(item.replace(".", "").strip().upper() for item in value)
    if not all(DX_SHAPE.fullmatch(code) for code in normalized):
        return None
    return tuple(sys.intern(code) for code in normalized)
